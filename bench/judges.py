"""The judges scored by the benchmark, each on the same simulated stream.

Every judge answers one question per run: after which window (0-based index)
would it roll the canary back, or ``NEVER``. Looks happen after every window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr, ndtri
from sim import METRICS, Stream
from siskin.analysis.mannwhitney import ScoredMetric
from siskin.analysis.sequential import MIN_WINDOWS_FOR_PASS, JudgeSettings, log_fail_e_process
from siskin.analysis.windows import CountWindow

FloatArray = npt.NDArray[np.float64]
NEVER = -1
ALPHA = 0.01
SISKIN_SETTINGS = JudgeSettings(alpha=ALPHA, metric_count=len(METRICS))
"""The product's defaults for a two-metric template (alpha 0.01 split over errors and slow requests)."""
SISKIN_VARIANTS = {
    "siskin_hard_1_2": JudgeSettings(alpha=ALPHA, metric_count=len(METRICS), tolerance=1.2, spread=1.0),
    "siskin_no_spread": JudgeSettings(alpha=ALPHA, metric_count=len(METRICS), tolerance=1.0, spread=1.0),
}
"""Sensitivity checks, not product defaults: tolerance as a hard boundary at 1.2, and at 1 with no spread."""
SPRT_BETA = 0.2
SPRT_AA_RATIO = 2.0
KAYENTA_CONFIDENCE = 0.98
KAYENTA_TOLERANCE = 0.25
NOISE_SCALE = 1e-5
_NOISE_SEED = 7
"""Kayenta adds noise when both arms are constant; the product seeds it like this."""
KAYENTA_MIN_WINDOWS = MIN_WINDOWS_FOR_PASS
"""First judgment after 3 windows, as the product's Kayenta-compatible judge does."""
KAYENTA_DIRECTION = "increase"
KAYENTA_FIXED_WINDOW = 89
"""Kayenta's single fixed-horizon judgment: after window 90, i.e. at 15 minutes."""
THRESHOLD_LOOKBACK = 30
"""Argo-style rule over ``rate(...[5m])``: the last 30 windows (or all so far)."""
THRESHOLD_RATE = 0.01


def first(mask: npt.NDArray[np.bool_]) -> int:
    """Index of the first True, or NEVER."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else NEVER


def earliest(*indices: int) -> int:
    """The earliest of several first-fail indices (NEVER ignored)."""
    found = [i for i in indices if i != NEVER]
    return min(found) if found else NEVER


def count_windows(stream: Stream, metric: str) -> tuple[list[CountWindow], list[int]]:
    """The product's windows for one metric, and the stream index of each (zero-traffic windows are dropped)."""
    windows: list[CountWindow] = []
    index: list[int] = []
    nc, nb = stream.canary_requests, stream.baseline_requests
    xc, xb = stream.canary_events[metric], stream.baseline_events[metric]
    for i in range(stream.windows):
        if nc[i] + nb[i] == 0:
            continue
        start = i * 10.0
        windows.append(CountWindow(start, start + 10.0, int(nc[i]), int(nb[i]), int(xc[i]), int(xb[i])))
        index.append(i)
    return windows, index


def siskin(stream: Stream, settings: JudgeSettings = SISKIN_SETTINGS) -> int:
    """First window at which the product's fail e-process of any metric reaches M / alpha."""
    fails = []
    for metric in METRICS:
        windows, index = count_windows(stream, metric)
        log_e = log_fail_e_process(windows, settings.tolerance, settings.spread)
        hit = first(log_e >= math.log(settings.threshold))
        fails.append(index[hit] if hit != NEVER else NEVER)
    return earliest(*fails)


def sprt_llr(stream: Stream, metric: str, ratio: float | FloatArray) -> FloatArray:
    """Cumulative log-likelihood ratio of canary-vs-baseline event counts: H1 ``ratio`` (per window) vs H0 1."""
    nc = stream.canary_requests.astype(float)
    total = nc + stream.baseline_requests
    share = np.divide(nc, total, out=np.zeros_like(nc), where=total > 0)
    xc = stream.canary_events[metric].astype(float)
    events = xc + stream.baseline_events[metric]
    r = np.broadcast_to(np.asarray(ratio, dtype=float), xc.shape)
    llr: FloatArray = np.cumsum(xc * np.log(r) - events * np.log1p(share * (r - 1.0)))
    return llr


def oracle_sprt(
    stream: Stream, ratios: dict[str, float | FloatArray], alpha: float = ALPHA, beta: float = SPRT_BETA
) -> int:
    """Wald's SPRT per metric told the true ratio (alpha split over the metrics as the product does).

    The ratio may be given per window (warm-up dilutes a latency regression in
    the first minutes). Metrics whose true ratio is 1 throughout have no H1 and
    are not tested. A metric's test stops at the first boundary crossing; only
    the upper one is a rollback.
    """
    per_metric = alpha / len(METRICS)
    upper, lower = math.log((1 - beta) / per_metric), math.log(beta / (1 - per_metric))
    fails = []
    for metric in METRICS:
        ratio = ratios[metric]
        if np.all(np.asarray(ratio) == 1.0):
            continue
        llr = sprt_llr(stream, metric, ratio)
        stop = first((llr >= upper) | (llr <= lower))
        fails.append(stop if stop != NEVER and llr[stop] >= upper else NEVER)
    return earliest(*fails)


def window_rates(stream: Stream, metric: str) -> tuple[FloatArray, FloatArray]:
    """Per-window event rates (events / requests; NaN without requests) of canary and baseline."""
    with np.errstate(invalid="ignore", divide="ignore"):
        canary = stream.canary_events[metric] / stream.canary_requests.astype(float)
        baseline = stream.baseline_events[metric] / stream.baseline_requests.astype(float)
    return canary, baseline


def _tie_term(values: FloatArray) -> float:
    _, counts = np.unique(values, return_counts=True)
    return float(np.sum(counts**3.0 - counts))


def kayenta_z(canary: FloatArray, baseline: FloatArray) -> float:
    """The largest CI quantile at which the product's Kayenta classifier says High (-inf: never, inf: always).

    The classifier's lower CI end is the ``k``-th smallest pairwise difference
    with ``k = ceil(pairs/2 - z sigma - 0.5)`` (at least 1), and High needs it
    above ``d = 0.25 |HL|`` with a mean ratio >= 1. With ``m`` differences
    ``<= d`` that holds exactly when ``z < (pairs/2 - 0.5 - m) / sigma``, or at
    every ``z`` when ``m = 0``. So one number per look gives the verdict at
    every confidence: High iff ``z_for_confidence(c) <`` this value.
    """
    n1, n2 = canary.size, baseline.size
    if n1 == 0 or n2 == 0:
        return -math.inf
    lo, hi = min(canary.min(), baseline.min()), max(canary.max(), baseline.max())
    if lo == hi or (n1 == n2 and np.array_equal(np.sort(canary), np.sort(baseline))):
        return -math.inf
    if canary.min() == canary.max() and baseline.min() == baseline.max():  # Kayenta's jitter, as the product adds it
        rng = np.random.default_rng(_NOISE_SEED + 1000 * n1 + n2)
        canary = canary + rng.normal(0.0, abs(float(canary[0])) * NOISE_SCALE, n1)
        baseline = baseline + rng.normal(0.0, abs(float(baseline[0])) * NOISE_SCALE, n2)
    mean_c, mean_b = float(canary.mean()), float(baseline.mean())
    if mean_b != 0.0 and (mean_c == 0.0 or mean_c / mean_b < 1.0):
        return -math.inf
    diffs = np.subtract.outer(canary, baseline).ravel()
    shift = KAYENTA_TOLERANCE * abs(float(np.median(diffs)))
    at_or_below = int(np.count_nonzero(diffs <= shift))
    if at_or_below == 0:
        return math.inf
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - (_tie_term(canary) + _tie_term(baseline)) / (n * (n - 1))))
    return (diffs.size / 2.0 - 0.5 - at_or_below) / sigma


class _Pairs:
    """One metric's samples so far and all canary-baseline differences, kept sorted as windows arrive."""

    def __init__(self, canary: FloatArray, baseline: FloatArray) -> None:
        self._canary_all, self._baseline_all = canary, baseline
        self.canary = np.empty(canary.size)
        self.baseline = np.empty(baseline.size)
        self.n1 = self.n2 = 0
        self.diffs = np.empty(0)
        self._counts: tuple[dict[float, int], dict[float, int]] = ({}, {})
        self._ties = [0.0, 0.0]
        self._range = [[math.inf, -math.inf], [math.inf, -math.inf]]

    def _keep(self, arm: int, value: float) -> None:
        counts = self._counts[arm]
        t = counts.get(value, 0)
        counts[value] = t + 1
        self._ties[arm] += (t + 1) ** 3 - (t + 1) - (t**3 - t)
        low, high = self._range[arm]
        self._range[arm] = [min(low, value), max(high, value)]

    def add(self, window: int) -> None:
        """Take in window ``window``'s rates (NaN and infinite rates are removed, as nanStrategy remove does)."""
        new = []
        value = float(self._canary_all[window])
        if math.isfinite(value):
            new.append(value - self.baseline[: self.n2])
            self.canary[self.n1] = value
            self.n1 += 1
            self._keep(0, value)
        value = float(self._baseline_all[window])
        if math.isfinite(value):
            new.append(self.canary[: self.n1] - value)
            self.baseline[self.n2] = value
            self.n2 += 1
            self._keep(1, value)
        if new:
            self.diffs = np.sort(np.concatenate([self.diffs, *new]), kind="stable")

    def z(self) -> float:
        """:func:`kayenta_z` of the samples so far, from the sorted differences."""
        c, b, n1, n2 = self.canary[: self.n1], self.baseline[: self.n2], self.n1, self.n2
        if n1 == 0 or n2 == 0:
            return -math.inf
        (c_lo, c_hi), (b_lo, b_hi) = self._range
        if c_lo == c_hi and b_lo == b_hi:  # constant arms: equal (Pass) or jittered; rare, take the slow path
            return kayenta_z(c, b)
        pairs = self.diffs.size
        mid = pairs // 2
        hl = float(self.diffs[mid]) if pairs % 2 else (float(self.diffs[mid - 1]) + float(self.diffs[mid])) / 2.0
        if hl == 0.0 and n1 == n2 and np.array_equal(np.sort(c), np.sort(b)):  # identical samples have HL 0
            return -math.inf
        mean_c, mean_b = float(c.mean()), float(b.mean())
        if mean_b != 0.0 and (mean_c == 0.0 or mean_c / mean_b < 1.0):
            return -math.inf
        at_or_below = int(np.searchsorted(self.diffs, KAYENTA_TOLERANCE * abs(hl), side="right"))
        if at_or_below == 0:
            return math.inf
        n = n1 + n2
        sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - (self._ties[0] + self._ties[1]) / (n * (n - 1))))
        return (pairs / 2.0 - 0.5 - at_or_below) / sigma


class KayentaPath:
    """Per look (after each window), the largest Kayenta High statistic over the metrics, computed on demand."""

    def __init__(self, stream: Stream) -> None:
        self._pairs = [_Pairs(*window_rates(stream, metric)) for metric in METRICS]
        self._z = np.full(stream.windows, np.nan)
        self._seen = 0
        self.windows = stream.windows

    def z(self, look: int) -> float:
        """The statistic after window ``look`` (High at confidence c iff it exceeds ``z_for_confidence(c)``)."""
        while self._seen <= look:
            window = self._seen
            value = -math.inf
            for pairs in self._pairs:
                pairs.add(window)
                if window >= KAYENTA_MIN_WINDOWS - 1:
                    value = max(value, pairs.z())
            self._z[window] = value
            self._seen += 1
        return float(self._z[look])

    def first_over(self, z: float, first_look: int = 0) -> int:
        """First look (from ``first_look``) whose statistic exceeds ``z``: where Kayenta at that confidence fails."""
        for look in range(first_look, self.windows):
            if self.z(look) > z:
                return look
        return NEVER

    def path(self) -> FloatArray:
        """The statistic after every window."""
        return np.array([self.z(look) for look in range(self.windows)])


def kayenta_z_path(stream: Stream) -> FloatArray:
    """Per look (after each window), the largest Kayenta High statistic over the metrics."""
    return KayentaPath(stream).path()


def z_for_confidence(confidence: float) -> float:
    """The two-sided normal quantile Kayenta's CI uses at ``confidence``."""
    return float(-ndtri((1 - confidence) / 2))


def confidence_for_z(z: float) -> float:
    """Inverse of :func:`z_for_confidence`."""
    return float(1 - 2 * ndtr(-z))


@dataclass(frozen=True)
class KayentaClassifier:
    """The product's Kayenta-compatible classify/score pair."""

    classify: Callable[..., Any]
    score: Callable[..., Any]
    source: str


def kayenta_look(kayenta: KayentaClassifier, stream: Stream, upto: int, confidence: float) -> bool:
    """One Kayenta judgment over windows ``0..upto``: True when the score is below marginal (rollback)."""
    results = {}
    for metric in METRICS:
        canary, baseline = window_rates(stream, metric)
        results[metric] = kayenta.classify(
            canary[: upto + 1], baseline[: upto + 1], confidence=confidence, direction=KAYENTA_DIRECTION
        )
    scored = kayenta.score(results, [ScoredMetric(metric) for metric in METRICS])
    return bool(scored.classification == "Fail")


SCREEN_MARGIN = 0.75


def kayenta_deployed(
    kayenta: KayentaClassifier, stream: Stream, path: KayentaPath, confidence: float = KAYENTA_CONFIDENCE,
    margin: float = SCREEN_MARGIN,
) -> int:
    """First look at which the product's classifier + scorer fail the canary (Kayenta re-run every window).

    The product's classifier is asked at every look whose bench statistic is
    within ``margin`` of the confidence's critical value (far below it, the
    classifier cannot say High); every other look is taken as a pass. The
    benchmark checks that screening against unscreened runs (see ``screen_check``).
    """
    critical = z_for_confidence(confidence)
    for look in range(KAYENTA_MIN_WINDOWS - 1, stream.windows):
        if path.z(look) > critical - margin and kayenta_look(kayenta, stream, look, confidence):
            return look
    return NEVER


def screen_check(kayenta: KayentaClassifier, stream: Stream, path: KayentaPath, confidence: float) -> tuple[int, int]:
    """Looks where the product's verdict and the bench statistic disagree, and looks compared (every look)."""
    critical = z_for_confidence(confidence)
    looks = range(KAYENTA_MIN_WINDOWS - 1, stream.windows)
    disagree = sum(kayenta_look(kayenta, stream, look, confidence) != (path.z(look) > critical) for look in looks)
    return disagree, len(looks)


def kayenta_fixed(kayenta: KayentaClassifier, stream: Stream, confidence: float = KAYENTA_CONFIDENCE) -> int:
    """One Kayenta judgment at the fixed horizon: fails at ``KAYENTA_FIXED_WINDOW`` or never."""
    return KAYENTA_FIXED_WINDOW if kayenta_look(kayenta, stream, KAYENTA_FIXED_WINDOW, confidence) else NEVER


def threshold(stream: Stream, rate: float = THRESHOLD_RATE, lookback: int = THRESHOLD_LOOKBACK) -> int:
    """Argo-style rule on the canary alone: error rate < 1% and p99 < the slow boundary, every window.

    Each look computes ``rate(events[5m]) / rate(requests[5m])`` over the last
    ``lookback`` windows; p99 above the boundary means more than 1% of requests
    are slow. The first violation fails the canary.
    """
    requests = _trailing(stream.canary_requests.astype(float), lookback)
    fails = []
    for metric in METRICS:
        events = _trailing(stream.canary_events[metric].astype(float), lookback)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = events / requests
        violated = (ratio >= rate) if metric == "errors" else (ratio > rate)
        fails.append(first(violated & (requests > 0)))
    return earliest(*fails)


def _trailing(values: FloatArray, lookback: int) -> FloatArray:
    total = np.cumsum(values)
    shifted = np.concatenate([np.zeros(lookback), total[:-lookback]]) if lookback < total.size else 0.0
    result: FloatArray = total - shifted
    return result
