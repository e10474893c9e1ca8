"""The sequential judge: anytime-valid evidence that a canary is worse, or good enough.

Model (research-stats.md §4). In window ``i`` the canary serves ``n_ci`` and the
baseline ``n_bi`` requests; ``rho_i = n_ci / (n_ci + n_bi)``. Given that one of
the ``e_i`` bad events of the window happens, it is a canary event with
probability ``rho_i r / (1 + rho_i (r - 1))`` where ``r`` is the canary/baseline
ratio of per-request event rates. Shared load changes cancel, and changing
weights are handled exactly because every window keeps its own ``rho_i``:

    l_t(r) = X_c log r - sum_i e_i log(1 + rho_i (r - 1))

- FAIL test, H0: r <= tolerance. ``E_t`` mixes likelihood ratios against
  ``r0 = tolerance`` over a grid ``r0 e^u``, u in (0, 2.3], weights
  ``exp(-u^2 / 0.98)``. Each ratio is a nonnegative supermartingale under H0,
  so by Ville's inequality P(ever E_t >= M / alpha) <= alpha / M. FAIL is sticky:
  the judge uses the largest ``E_t`` over every prefix of the windows.
- Direction. ``decrease`` runs the same test with canary and baseline swapped
  (H0: r >= 1 / tolerance); ``either`` averages the two one-sided e-processes,
  which splits alpha evenly between the sides and stays anytime-valid (an
  average of supermartingales is one). PASS then needs the confidence
  sequence's lower end >= 1 / max_ratio (decrease) or both ends inside.
- Confidence sequence: the ratios ``r`` whose two-sided mixture (log s ~ N(0, 1))
  stays below ``M / alpha``. PASS needs its upper end <= ``max_ratio``, enough
  analysed time and events, and at least ``MIN_WINDOWS_FOR_PASS`` windows.
- Sample-ratio mismatch: the same machinery on request counts (canary vs
  baseline should be split ``expected_canary_share``), two one-sided tests
  against ``1 +/- srm_tolerance`` averaged into one e-value. A mismatch makes the
  verdict Inconclusive, never Pass. A FAIL still wins: the fail test conditions
  on the observed split of each window, so it stays valid when the split is off.

Everything here is pure: lists of counts in, a :class:`MetricVerdict` out. No
input makes it raise or pass without evidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp

from .verdict import MetricVerdict
from .windows import MAX_COUNT, CountWindow

FloatArray = npt.NDArray[np.float64]

MIN_WINDOWS_FOR_PASS = 3
"""A PASS on one or two windows would rest on whatever happened in a few seconds; never do that."""

_FAIL_U = np.linspace(2.3 / 48, 2.3, 48)
_FAIL_LOG_W = -(_FAIL_U**2) / 0.98 - logsumexp(-(_FAIL_U**2) / 0.98)
_CS_LOG_S = np.linspace(-3.0, 3.0, 61)
_CS_LOG_W = -(_CS_LOG_S**2) / 2 - logsumexp(-(_CS_LOG_S**2) / 2)
_CANDIDATE_LOG_R = np.linspace(-5.0, 5.0, 1001)
_MAX_REPORTED_E = 1e300


@dataclass(frozen=True)
class JudgeSettings:
    """How strictly one metric is judged."""

    alpha: float
    metric_count: int = 1
    tolerance: float = 1.2
    max_ratio: float = 1.5
    min_events: int = 20
    min_duration_seconds: float = 0.0
    expected_canary_share: float = 0.5
    srm_tolerance: float = 0.1
    event_noun: str = "errors"
    direction: Literal["increase", "decrease", "either"] = "increase"
    """Which way the canary may not move: ``decrease`` fails on r < 1/tolerance, ``either`` on both sides."""

    @property
    def threshold(self) -> float:
        """E-value at which the metric fails: M / alpha (alpha split evenly over M metrics)."""
        return self.metric_count / self.alpha


@dataclass(frozen=True)
class _Arrays:
    canary_requests: FloatArray
    baseline_requests: FloatArray
    canary_events: FloatArray
    baseline_events: FloatArray
    seconds: FloatArray

    @property
    def events(self) -> FloatArray:
        return self.canary_events + self.baseline_events

    @property
    def canary_share(self) -> FloatArray:
        total = self.canary_requests + self.baseline_requests
        return np.divide(self.canary_requests, total, out=np.zeros_like(total), where=total > 0)


def log_likelihood_paths(
    canary_events: FloatArray, total_events: FloatArray, canary_share: FloatArray, log_ratios: FloatArray
) -> FloatArray:
    """``l_t(r)`` for every prefix t (rows) and every ``r = exp(log_ratios)`` (columns), up to a constant."""
    ratios = np.exp(log_ratios)[None, :]
    share = canary_share[:, None]
    per_window = canary_events[:, None] * log_ratios[None, :] - total_events[:, None] * np.log1p(
        share * (ratios - 1.0)
    )
    result: FloatArray = np.cumsum(per_window, axis=0)
    return result


def log_one_sided_e_process(
    canary_events: FloatArray, total_events: FloatArray, canary_share: FloatArray, null_ratio: float
) -> FloatArray:
    """log E_t for H0: r <= null_ratio, per prefix t (mixture over r = null_ratio * e^u, u > 0)."""
    if canary_events.size == 0:
        return np.zeros(0)
    log_grid = math.log(null_ratio) + np.concatenate(([0.0], _FAIL_U))
    paths = log_likelihood_paths(canary_events, total_events, canary_share, log_grid)
    log_lr = paths[:, 1:] - paths[:, :1]
    result: FloatArray = logsumexp(log_lr + _FAIL_LOG_W[None, :], axis=1)
    return result


def log_fail_e_process(windows: Sequence[CountWindow], tolerance: float) -> FloatArray:
    """log E_t of the fail test after each window (H0: canary/baseline event-rate ratio <= tolerance)."""
    arrays = _arrays(windows)
    return log_one_sided_e_process(arrays.canary_events, arrays.events, arrays.canary_share, tolerance)


def log_directed_e_process(
    windows: Sequence[CountWindow], tolerance: float, direction: Literal["increase", "decrease", "either"]
) -> FloatArray:
    """log E_t of the fail test in ``direction`` (see the module docstring) after each window."""
    arrays = _arrays(windows)
    events, share = arrays.events, arrays.canary_share
    up = log_one_sided_e_process(arrays.canary_events, events, share, tolerance)
    if direction == "increase":
        return up
    down = log_one_sided_e_process(arrays.baseline_events, events, 1.0 - share, tolerance)
    if direction == "decrease":
        return down
    both: FloatArray = np.logaddexp(up, down) - math.log(2.0)
    return both


def log_srm_e_process(
    windows: Sequence[CountWindow], expected_canary_share: float = 0.5, tolerance: float = 0.1
) -> FloatArray:
    """log e-value per prefix that the canary's request share is off by more than ``tolerance`` (relative)."""
    arrays = _arrays(windows)
    if arrays.seconds.size == 0:
        return np.zeros(0)
    total = arrays.canary_requests + arrays.baseline_requests
    share = np.full_like(total, expected_canary_share)
    null = 1.0 + tolerance
    log_up = log_one_sided_e_process(arrays.canary_requests, total, share, null)
    log_down = log_one_sided_e_process(arrays.baseline_requests, total, 1.0 - share, null)
    result: FloatArray = np.logaddexp(log_up, log_down) - math.log(2.0)
    return result


def confidence_sequence(windows: Sequence[CountWindow], level_threshold: float) -> tuple[float, float | None]:
    """Bounds (low, high) on the ratio, valid at every look with error <= 1 / level_threshold.

    ``high`` is ``None`` when the data cannot bound the ratio (no baseline events).
    """
    arrays = _arrays(windows)
    if arrays.seconds.size == 0:
        return 0.0, None
    share, events = arrays.canary_share, arrays.events
    loglik_cand = _final_loglik(arrays.canary_events, events, share, _CANDIDATE_LOG_R)
    loglik_mix = _final_loglik(arrays.canary_events, events, share, _CS_LOG_S)
    log_mixture = float(logsumexp(loglik_mix + _CS_LOG_W))
    inside = np.nonzero(log_mixture - loglik_cand < math.log(level_threshold))[0]
    if inside.size == 0:  # the maximum likelihood ratio lies off the grid
        estimate = int(np.argmax(loglik_cand))
        inside = np.array([estimate])
    low_index, high_index = int(inside[0]), int(inside[-1])
    low = 0.0 if low_index == 0 else math.exp(_CANDIDATE_LOG_R[low_index])
    high = None if high_index == _CANDIDATE_LOG_R.size - 1 else math.exp(_CANDIDATE_LOG_R[high_index])
    return low, high


def judge(
    name: str, windows: Sequence[CountWindow], settings: JudgeSettings, *, window_note: str = ""
) -> MetricVerdict:
    """Pass, Fail or Inconclusive for one metric from all its windows so far (never raises on data)."""
    valid = [w for w in windows if _valid(w)]
    dropped = len(windows) - len(valid)
    note = window_note or (f"{dropped} invalid windows ignored" if dropped else "")
    threshold = settings.threshold
    if not valid:
        reason = "no usable data yet" + (f" ({note})" if note else "")
        return MetricVerdict(name=name, verdict="Inconclusive", reason=reason, threshold=threshold)

    arrays = _arrays(valid)
    nc, nb = int(arrays.canary_requests.sum()), int(arrays.baseline_requests.sum())
    xc, xb = int(arrays.canary_events.sum()), int(arrays.baseline_events.sum())
    canary_rate = xc / nc if nc else None
    baseline_rate = xb / nb if nb else None
    ratio = canary_rate / baseline_rate if canary_rate is not None and baseline_rate else None
    analysed = float(arrays.seconds.sum())

    log_e = log_directed_e_process(valid, settings.tolerance, settings.direction)
    log_e_max = float(np.max(log_e))
    e_value = math.exp(min(log_e_max, math.log(_MAX_REPORTED_E)))
    log_srm = log_srm_e_process(valid, settings.expected_canary_share, settings.srm_tolerance)
    srm_e = math.exp(min(float(np.max(log_srm)), math.log(_MAX_REPORTED_E)))
    srm = float(np.max(log_srm)) >= math.log(threshold)
    low, high = confidence_sequence(valid, threshold)

    figures = dict(
        name=name, windows=len(valid), analysed_seconds=analysed,
        canary_requests=nc, baseline_requests=nb, canary_events=xc, baseline_events=xb,
        canary_rate=canary_rate, baseline_rate=baseline_rate, ratio_estimate=ratio,
        ratio_low=low, ratio_high=high, e_value=e_value, threshold=threshold,
        sample_ratio_mismatch=srm, srm_e_value=srm_e,
    )
    comparison = (
        f"canary {_pct(canary_rate)} vs baseline {_pct(baseline_rate)} {settings.event_noun}, "
        f"ratio {_num(ratio)} [{_num(low)}, {_num(high)}]"
    )
    if xc == nc and xb == nb:
        reason = (
            f"every request counted as an event ({xc} of {nc} canary, {xb} of {nb} baseline): "
            "check that the events query filters bad events"
        )
        return MetricVerdict(verdict="Inconclusive", reason=reason, **figures)
    if log_e_max >= math.log(threshold):
        side = "" if settings.direction == "increase" else f" ({settings.direction})"
        reason = f"{comparison}, e-value {_num(e_value)} >= {_num(threshold)}{side}"
        return MetricVerdict(verdict="Fail", reason=reason, **figures)
    if srm:
        share = nc / (nc + nb) if nc + nb else 0.0
        reason = (
            f"sample ratio mismatch: canary got {share:.1%} of canary+baseline requests "
            f"({nc} vs {nb}), expected {settings.expected_canary_share:.0%}; "
            f"e-value {_num(srm_e)} >= {_num(threshold)}; check traffic routing"
        )
        return MetricVerdict(verdict="Inconclusive", reason=reason, **figures)

    missing: list[str] = []
    if settings.direction != "decrease" and (high is None or high > settings.max_ratio):
        missing.append(f"upper bound {_num(high)} > maxRatio {_num(settings.max_ratio)}")
    if settings.direction != "increase" and low < 1.0 / settings.max_ratio:
        missing.append(f"lower bound {_num(low)} < 1/maxRatio {_num(1.0 / settings.max_ratio)}")
    if xc + xb < settings.min_events:
        missing.append(f"{xc + xb} of {settings.min_events} events")
    if analysed < settings.min_duration_seconds:
        missing.append(f"{analysed:g}s of {settings.min_duration_seconds:g}s analysed")
    if len(valid) < MIN_WINDOWS_FOR_PASS:
        missing.append(f"{len(valid)} of {MIN_WINDOWS_FOR_PASS} windows")
    if not missing:
        bounds = {
            "increase": f"upper bound <= maxRatio {_num(settings.max_ratio)}",
            "decrease": f"lower bound >= 1/maxRatio {_num(1.0 / settings.max_ratio)}",
            "either": f"bounds within [1/maxRatio, maxRatio] for maxRatio {_num(settings.max_ratio)}",
        }[settings.direction]
        reason = f"{comparison}, {bounds}"
        return MetricVerdict(verdict="Pass", reason=reason, **figures)
    reason = f"{comparison}, e-value {_num(e_value)} < {_num(threshold)}; not yet: " + ", ".join(missing)
    if note:
        reason += f" ({note})"
    return MetricVerdict(verdict="Inconclusive", reason=reason, **figures)


def _valid(window: CountWindow) -> bool:
    counts = (window.canary_requests, window.baseline_requests, window.canary_events, window.baseline_events)
    return (
        all(isinstance(c, int) and 0 <= c <= MAX_COUNT for c in counts)
        and window.canary_events <= window.canary_requests
        and window.baseline_events <= window.baseline_requests
        and window.canary_requests + window.baseline_requests > 0
        and math.isfinite(window.end - window.start)
        and window.end > window.start
    )


def _arrays(windows: Sequence[CountWindow]) -> _Arrays:
    def column(attribute: str) -> FloatArray:
        return np.array([float(getattr(w, attribute)) for w in windows], dtype=np.float64)

    return _Arrays(
        canary_requests=column("canary_requests"),
        baseline_requests=column("baseline_requests"),
        canary_events=column("canary_events"),
        baseline_events=column("baseline_events"),
        seconds=np.array([w.end - w.start for w in windows], dtype=np.float64),
    )


def _final_loglik(
    canary_events: FloatArray, total_events: FloatArray, canary_share: FloatArray, log_ratios: FloatArray
) -> FloatArray:
    per_window = total_events[:, None] * np.log1p(canary_share[:, None] * (np.exp(log_ratios)[None, :] - 1.0))
    result: FloatArray = float(canary_events.sum()) * log_ratios - per_window.sum(axis=0)
    return result


def _pct(rate: float | None) -> str:
    if rate is None:
        return "n/a"
    percent = rate * 100
    return f"{percent:.1f}%" if percent >= 10 else f"{percent:.2g}%"


def _num(value: float | None) -> str:
    if value is None:
        return "inf"
    return f"{value:.3g}" if abs(value) < 1e6 else f"{value:.2e}"
