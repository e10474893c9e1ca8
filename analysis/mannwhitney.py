"""The Kayenta-compatible judge: Mann-Whitney classification per metric and a weighted score.

Why it exists: a Spinnaker user's canary config should mean the same thing here,
and the benchmark needs "Kayenta as deployed" to compare Siskin's sequential
judge against. The rules follow Kayenta's ``NetflixACAJudge``:

- **Cleaning.** NaN (and +/-Inf, which a Prometheus division by zero yields) is
  removed (``nan_strategy="remove"``) or replaced by 0 (``"replace"``).
- **Missing data.** An empty arm is ``NoData``; ``NodataFailMetric`` when the
  metric must have data and is not critical; ``Pass`` under ``replace``.
  Identical samples, or one value shared by every point, are ``Pass``.
- **Test.** The 98% confidence interval and Hodges-Lehmann (HL) estimate of the
  shift canary - baseline by inverting the rank-sum test with its normal
  approximation, tie- and continuity-corrected (R's ``wilcox.test(conf.int=TRUE,
  exact=FALSE)``). The statistic is a step function of the shift ``d`` that only
  jumps at the pairwise differences, so the root R's ``uniroot`` finds is an
  order statistic of those differences; here it is read off directly with one
  ``numpy.partition`` instead of a root search. Where the statistic is exactly
  zero on a whole interval, R returns whatever point its search lands on; this
  returns the median of the differences, which lies in that interval.
  When both arms are constant (but differ) Kayenta adds Gaussian noise with sd
  ``1e-5 * value``; so does this, with a fixed seed.
- **Classification.** ``High`` when the interval's lower end exceeds
  ``0.25 * |HL|`` and the effect size (mean ratio, or CLES) is at least
  ``allowed_increase``; ``Low`` mirrors it with ``allowed_decrease``;
  ``direction`` limits which side may fail. A mean ratio is 1 when the baseline
  mean is 0, and undefined (never High or Low) when only the canary mean is 0.
- **Score** (``WeightedSumScorer``). Group score = 100 * Pass / (Pass + High +
  Low + NodataFailMetric), metric weights applied; a group with nothing counted
  scores 100. Summary = sum of group score * group weight / 100; groups without
  a configured weight share what is left of 100. A critical metric that is not
  Pass, or >= 50% NoData metrics, forces 0. Rounded to two decimals.

The p-value is reported (R's, with tie and continuity correction) but, as in
Kayenta, plays no part in the classification.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from .sequential import MIN_WINDOWS_FOR_PASS
from .verdict import MetricVerdict
from .windows import CountWindow

FloatArray = npt.NDArray[np.float64]
Classification = Literal["Pass", "High", "Low", "NoData", "NodataFailMetric"]
Direction = Literal["increase", "decrease", "either"]
EffectMeasure = Literal["meanRatio", "cles"]
NanStrategy = Literal["remove", "replace"]
ScoreClass = Literal["Pass", "Marginal", "Fail"]

TOLERANCE = 0.25
"""Kayenta's hard-coded fraction of |HL| the interval must clear."""
NOISE_SCALE = 1e-5
_NOISE_SEED = 7
_DEFAULT_EFFECT: dict[str, float] = {"meanRatio": 1.0, "cles": 0.5}
NODATA_SHARE = 50.0
"""Percent of NoData metrics at or above which the score is forced to 0."""


@dataclass(frozen=True)
class MannWhitneyResult:
    """Kayenta's classification of one metric, with the figures behind it."""

    classification: Classification
    hl_estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    canary_mean: float | None
    baseline_mean: float | None
    effect_size: float | None
    canary_count: int
    baseline_count: int
    reason: str


def _clean(values: Sequence[float] | FloatArray, nan_strategy: NanStrategy) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    bad = ~np.isfinite(array)
    if not bad.any():
        return array
    if nan_strategy == "remove":
        kept: FloatArray = array[~bad]
        return kept
    replaced: FloatArray = np.where(bad, 0.0, array)
    return replaced


def _tie_sum(counts: npt.NDArray[np.int64]) -> float:
    """sum(t^3 - t) over tie-group sizes t."""
    sizes = counts.astype(np.float64)
    return float(np.sum(sizes**3 - sizes))


def _tie_term(values: FloatArray) -> float:
    """sum(t^3 - t) over groups of tied values."""
    if values.size < 2:
        return 0.0
    ordered = np.sort(values)
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return 0.0
    starts = np.flatnonzero(np.concatenate(([True], ~same, [True])))
    counts = np.diff(starts).astype(np.float64)
    return float(np.sum(counts**3 - counts))


@lru_cache(maxsize=64)
def _quantile(confidence: float) -> float:
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def _select(part: FloatArray, pivot: int, k: int) -> float:
    """The k-th smallest (0-based) of ``part``, already partitioned around index ``pivot``."""
    if k == pivot:
        return float(part[pivot])
    if k < pivot:
        return float(np.partition(part[:pivot], k)[k])
    return float(np.partition(part[pivot + 1 :], k - pivot - 1)[k - pivot - 1])


def _g(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3g}"


def classify(
    canary: Sequence[float] | FloatArray,
    baseline: Sequence[float] | FloatArray,
    *,
    confidence: float = 0.98,
    direction: Direction = "either",
    allowed_increase: float | None = None,
    allowed_decrease: float | None = None,
    effect_measure: EffectMeasure = "meanRatio",
    nan_strategy: NanStrategy = "remove",
    must_have_data: bool = False,
    critical: bool = False,
) -> MannWhitneyResult:
    """Kayenta's Pass/High/Low/NoData/NodataFailMetric for canary vs baseline samples.

    ``allowed_increase``/``allowed_decrease`` default to the measure's neutral
    value (1.0 for ``meanRatio``, 0.5 for ``cles``). Raises ``ValueError`` only
    for a confidence outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    up = _DEFAULT_EFFECT[effect_measure] if allowed_increase is None else allowed_increase
    down = _DEFAULT_EFFECT[effect_measure] if allowed_decrease is None else allowed_decrease
    c = _clean(canary, nan_strategy)
    b = _clean(baseline, nan_strategy)
    nc, nb = int(c.size), int(b.size)

    if nc == 0 or nb == 0:
        missing = " and ".join(arm for arm, n in (("canary", nc), ("baseline", nb)) if n == 0)
        if nan_strategy == "replace":
            label: Classification = "Pass"
            reason = f"no {missing} data; nanStrategy replace: Pass"
        elif must_have_data and not critical:
            label, reason = "NodataFailMetric", f"no {missing} data and mustHaveData is set"
        else:
            label, reason = "NoData", f"no {missing} data"
        return MannWhitneyResult(
            label, None, None, None, None, float(c.mean()) if nc else None, float(b.mean()) if nb else None,
            None, nc, nb, reason,
        )

    canary_mean, baseline_mean = float(c.mean()), float(b.mean())
    c_lo, c_hi, b_lo, b_hi = float(c.min()), float(c.max()), float(b.min()), float(b.max())
    if c_lo == c_hi == b_lo == b_hi or (nc == nb and np.array_equal(np.sort(c), np.sort(b))):
        what = f"all {_g(c_lo)}" if c_lo == c_hi == b_lo == b_hi else "identical"
        return MannWhitneyResult(
            "Pass", 0.0, 0.0, 0.0, 1.0, canary_mean, baseline_mean, 1.0 if effect_measure == "meanRatio" else 0.5,
            nc, nb, f"Pass: canary and baseline data are {what} (n={nc}/{nb})",
        )
    noisy = c_lo == c_hi and b_lo == b_hi
    if noisy:
        rng = np.random.default_rng(_NOISE_SEED + 1000 * nc + nb)
        c = c + rng.normal(0.0, abs(c_lo) * NOISE_SCALE, nc)
        b = b + rng.normal(0.0, abs(b_lo) * NOISE_SCALE, nb)

    pairs = nc * nb
    n = nc + nb
    z = _quantile(confidence)
    values_c, counts_c = np.unique(c, return_counts=True)
    values_b, counts_b = np.unique(b, return_counts=True)
    # Off the pairwise differences only within-arm ties exist: the variance of the CI's statistic.
    ties_ci = _tie_sum(counts_c) + _tie_sum(counts_b)
    sigma_ci = math.sqrt(nc * nb / 12.0 * ((n + 1) - ties_ci / (n * (n - 1))))
    # Centred statistic at shift d with k differences <= d is pairs/2 - k; the root is the k-th smallest
    # difference for the smallest k with (pairs/2 - k) - sign * 0.5 <= zq * sigma.
    half = pairs / 2.0
    k_low_wanted = math.ceil(half - (z * sigma_ci + 0.5))
    k_low = min(max(k_low_wanted, 1), pairs)
    k_high = min(max(math.ceil(half + z * sigma_ci + 0.5), 1), pairs)
    mid = pairs // 2  # 0-based; with an even count the median also needs index mid - 1
    if values_c.size * values_b.size * 4 <= pairs:
        # Heavily tied (counts, rates of rare events): order statistics of the distinct differences.
        distinct = np.subtract.outer(values_c, values_b).ravel()
        weight = np.multiply.outer(counts_c, counts_b).ravel()
        order = np.argsort(distinct, kind="stable")
        ordered, cumulative = distinct[order], np.cumsum(weight[order])

        def kth(k: int) -> float:  # 0-based
            return float(ordered[np.searchsorted(cumulative, k + 1)])

        upper_middle = kth(mid)
        hl = upper_middle if pairs % 2 else (kth(mid - 1) + upper_middle) / 2.0
        ci_low, ci_high = kth(k_low - 1), kth(k_high - 1)
        above = int(weight[distinct > 0.0].sum())
        tied = int(weight[distinct == 0.0].sum())
    else:
        diffs = np.subtract.outer(c, b).ravel()
        part = np.partition(diffs, mid)
        upper_middle = float(part[mid])
        hl = upper_middle if pairs % 2 else (float(part[:mid].max()) + upper_middle) / 2.0
        ci_low, ci_high = _select(part, mid, k_low - 1), _select(part, mid, k_high - 1)
        above = int(np.count_nonzero(diffs > 0.0))
        tied = int(np.count_nonzero(diffs == 0.0))

    u_canary = above + 0.5 * tied
    ties_all = _tie_term(np.concatenate((c, b)))
    sigma_p = math.sqrt(pairs / 12.0 * ((n + 1) - ties_all / (n * (n - 1))))
    if sigma_p > 0:
        z_p = max(abs(u_canary - half) - 0.5, 0.0) / sigma_p
        p_value = min(1.0, math.erfc(z_p / math.sqrt(2.0)))
    else:
        p_value = 1.0

    if effect_measure == "cles":
        effect = u_canary / pairs
        effect_text = f"CLES {_g(effect)}"
    else:
        mean_c, mean_b = (float(c.mean()), float(b.mean())) if noisy else (canary_mean, baseline_mean)
        effect = 1.0 if mean_b == 0.0 else (math.nan if mean_c == 0.0 else mean_c / mean_b)
        effect_text = f"mean ratio {_g(effect)}"

    bound = TOLERANCE * abs(hl)
    high = direction in ("increase", "either") and ci_low > bound and effect >= up
    low = direction in ("decrease", "either") and ci_high < -bound and effect <= down
    level = f"{confidence:.0%}"
    interval = f"{level} CI of the shift [{_g(ci_low)}, {_g(ci_high)}]"
    if k_low_wanted < 1:  # too few samples for the level: the interval is the whole range of differences
        interval = f"CI of the shift [{_g(ci_low)}, {_g(ci_high)}] (all differences: n={nc}/{nb} is too few"
        interval += f" for {level})"
    figures = (
        f"canary mean {_g(canary_mean)} vs baseline {_g(baseline_mean)}, {effect_text}; "
        f"HL shift {_g(hl)}, {interval}"
    )
    tail = f"; p={_g(p_value)}, n={nc}/{nb}"
    if high:
        label = "High"
        reason = f"High: {figures} lies above 0.25*|HL| = {_g(bound)} and effect >= {_g(up)}{tail}"
    elif low:
        label = "Low"
        reason = f"Low: {figures} lies below -0.25*|HL| = {_g(-bound)} and effect <= {_g(down)}{tail}"
    else:
        label = "Pass"
        reason = f"Pass: {figures} within +/-0.25*|HL| or effect within bounds ({direction}){tail}"
    return MannWhitneyResult(
        label, hl, ci_low, ci_high, p_value, canary_mean, baseline_mean,
        None if math.isnan(effect) else effect, nc, nb, reason,
    )


# --------------------------------------------------------------------------- score


class Verdictish(Protocol):
    """Anything with a Siskin verdict (``MetricVerdict``): Pass, Fail, Inconclusive or Error."""

    @property
    def verdict(self) -> str: ...


VERDICT_CLASSIFICATION: dict[str, Classification] = {
    "Pass": "Pass",
    "Fail": "High",
    "Inconclusive": "NoData",
    "Error": "NoData",
}
"""How a Siskin verdict counts in the score: a Fail counts like Kayenta's High (a failing metric),
an Inconclusive or Error like NoData (left out of its group, counted towards the 50% NoData rule).
A verdict that carries Kayenta's own label (``classification``, set by the mannWhitney judge) is
scored by that label instead, so the score is the one Kayenta would give."""

DEFAULT_GROUP = "default"
_LABELS = frozenset({"Pass", "High", "Low", "NoData", "NodataFailMetric"})


@dataclass(frozen=True)
class ScoredMetric:
    """A metric as the scorer sees it: its group, its weight within the group, and whether it is critical."""

    name: str
    group: str | None = None
    weight: float = 1.0
    critical: bool = False


@dataclass(frozen=True)
class ScoreResult:
    """The summary score (0-100), its class against the thresholds, and each group's score."""

    score: float
    classification: ScoreClass
    reason: str
    group_scores: dict[str, float]


def classification_of(result: MannWhitneyResult | Verdictish | None) -> Classification:
    """Kayenta's label for a classifier result, or for a Siskin verdict via :data:`VERDICT_CLASSIFICATION`."""
    if result is None:
        return "NoData"
    if isinstance(result, MannWhitneyResult):
        return result.classification
    own = getattr(result, "classification", None)
    if own in _LABELS and result.verdict != "Error":
        return own  # type: ignore[no-any-return]
    return VERDICT_CLASSIFICATION.get(result.verdict, "NoData")


def score(
    results: Mapping[str, MannWhitneyResult | Verdictish],
    metrics: Sequence[ScoredMetric],
    *,
    pass_threshold: float = 95.0,
    marginal_threshold: float = 75.0,
    group_weights: Mapping[str, float] | None = None,
) -> ScoreResult:
    """Kayenta's weighted-sum score of ``metrics`` (a metric missing from ``results`` counts as NoData)."""
    weights = dict(group_weights or {})
    labels = {m.name: classification_of(results.get(m.name)) for m in metrics}

    groups: dict[str, list[ScoredMetric]] = {}
    for metric in metrics:
        groups.setdefault(metric.group or DEFAULT_GROUP, []).append(metric)
    unweighted = [g for g in groups if g not in weights]
    share = (100.0 - sum(weights.values())) / len(unweighted) if unweighted else 0.0
    group_scores: dict[str, float] = {}
    summary = 0.0
    for group, members in groups.items():
        counted = [m for m in members if labels[m.name] != "NoData"]
        total = sum(m.weight for m in counted)
        passed = sum(m.weight for m in counted if labels[m.name] == "Pass")
        group_score = 100.0 * passed / total if total > 0 else 100.0
        group_scores[group] = round(group_score, 2)
        summary += group_score * weights.get(group, share) / 100.0

    def failing() -> str:
        bad = [f"{m.name} ({labels[m.name]})" for m in metrics if labels[m.name] not in ("Pass", "NoData")]
        return ", ".join(bad) if bad else "none"

    critical = [m for m in metrics if m.critical and labels[m.name] != "Pass"]
    nodata = sum(1 for m in metrics if labels[m.name] == "NoData")
    if not metrics:
        value, why = 0.0, "no metrics to score"
    elif critical:
        named = ", ".join(f"{m.name} ({labels[m.name]})" for m in critical)
        value, why = 0.0, f"critical metric not Pass: {named}; score forced to 0"
    elif 100.0 * nodata / len(metrics) >= NODATA_SHARE:
        value, why = 0.0, f"{nodata} of {len(metrics)} metrics NoData (>= {NODATA_SHARE:g}%); score forced to 0"
    else:
        value = round(summary, 2)
        why = f"failing: {failing()}"
    if value >= pass_threshold:
        label: ScoreClass = "Pass"
        reason = f"score {value:g} >= pass {pass_threshold:g}"
    elif value >= marginal_threshold:
        label = "Marginal"
        reason = f"score {value:g} >= marginal {marginal_threshold:g}, < pass {pass_threshold:g}"
    else:
        label = "Fail"
        reason = f"score {value:g} < marginal {marginal_threshold:g}"
    return ScoreResult(value, label, f"{reason}; {why}", group_scores)


# --------------------------------------------------------------------------- windows -> verdict


@dataclass(frozen=True)
class MannWhitneySettings:
    """How one metric is judged by the Kayenta-compatible judge over count windows."""

    confidence: float = 0.98
    direction: Direction = "increase"
    allowed_increase: float | None = None
    allowed_decrease: float | None = None
    effect_measure: EffectMeasure = "meanRatio"
    nan_strategy: NanStrategy = "remove"
    must_have_data: bool = False
    critical: bool = False
    interval_seconds: float = 10.0
    min_duration_seconds: float = 0.0
    min_events: int = 20
    event_noun: str = "errors"


def window_rates(windows: Sequence[CountWindow], empty_windows: int = 0) -> tuple[FloatArray, FloatArray]:
    """Per-window event rates (canary, baseline); NaN where a track had no requests.

    ``empty_windows`` windows with no traffic on either track add a NaN to both.
    """
    count = len(windows) + empty_windows
    canary = np.full(count, np.nan)
    baseline = np.full(count, np.nan)
    for i, w in enumerate(windows):
        if w.canary_requests > 0:
            canary[i] = w.canary_events / w.canary_requests
        if w.baseline_requests > 0:
            baseline[i] = w.baseline_events / w.baseline_requests
    return canary, baseline


def judge_windows(
    name: str,
    windows: Sequence[CountWindow],
    settings: MannWhitneySettings,
    *,
    expected_windows: int | None = None,
    empty_windows: int = 0,
    window_note: str = "",
) -> MetricVerdict:
    """A Siskin verdict for one metric from Kayenta's classification of its per-window rates.

    High/Low -> Fail, Pass -> Pass, NoData -> Inconclusive (Fail with ``must_have_data``).
    Nothing is judged before ``MIN_WINDOWS_FOR_PASS`` windows and ``min_duration`` have
    elapsed (``expected_windows``, default ``len(windows)``). A Pass further needs evidence,
    where Kayenta would pass without any: that many windows with traffic on both tracks,
    ``min_events`` events, and not every request counted as an event; otherwise it is
    Inconclusive. Kayenta's own label is kept in ``classification`` and is what the score counts.
    """
    canary, baseline = window_rates(windows, empty_windows)
    result = classify(
        canary, baseline, confidence=settings.confidence, direction=settings.direction,
        allowed_increase=settings.allowed_increase, allowed_decrease=settings.allowed_decrease,
        effect_measure=settings.effect_measure, nan_strategy=settings.nan_strategy,
        must_have_data=settings.must_have_data, critical=settings.critical,
    )
    nc = sum(w.canary_requests for w in windows)
    nb = sum(w.baseline_requests for w in windows)
    xc = sum(w.canary_events for w in windows)
    xb = sum(w.baseline_events for w in windows)
    both = sum(1 for w in windows if w.canary_requests > 0 and w.baseline_requests > 0)
    elapsed_windows = len(windows) + empty_windows if expected_windows is None else expected_windows
    elapsed = elapsed_windows * settings.interval_seconds
    figures = dict(
        name=name, windows=len(windows), analysed_seconds=sum(w.end - w.start for w in windows),
        canary_requests=nc, baseline_requests=nb, canary_events=xc, baseline_events=xb,
        canary_rate=xc / nc if nc else None, baseline_rate=xb / nb if nb else None,
        ratio_estimate=result.effect_size if settings.effect_measure == "meanRatio" else None,
        ratio_low=None, ratio_high=None, p_value=result.p_value, hl_estimate=result.hl_estimate,
        classification=result.classification,
    )
    kayenta = f"Kayenta: {result.reason}"
    waiting: list[str] = []
    if elapsed_windows < MIN_WINDOWS_FOR_PASS:
        waiting.append(f"{elapsed_windows} of {MIN_WINDOWS_FOR_PASS} windows")
    if elapsed < settings.min_duration_seconds:
        waiting.append(f"{elapsed:g}s of {settings.min_duration_seconds:g}s elapsed")
    note = f" ({window_note})" if window_note else ""
    if waiting:
        return MetricVerdict(verdict="Inconclusive", reason=f"{kayenta}; not judged yet: {', '.join(waiting)}{note}",
                             **figures)
    label = result.classification
    if label in ("High", "Low", "NodataFailMetric") or (label == "NoData" and settings.must_have_data):
        return MetricVerdict(verdict="Fail", reason=kayenta + note, **figures)
    if label == "NoData":
        return MetricVerdict(verdict="Inconclusive", reason=kayenta + note, **figures)
    missing: list[str] = []
    if both < MIN_WINDOWS_FOR_PASS:
        missing.append(f"{both} of {MIN_WINDOWS_FOR_PASS} windows with traffic on both tracks")
    if xc + xb < settings.min_events:
        missing.append(f"{xc + xb} of {settings.min_events} {settings.event_noun}")
    if nc + nb > 0 and xc == nc and xb == nb:
        missing.append(f"every request counted as an event: check that the {settings.event_noun} query filters")
    if missing:
        return MetricVerdict(verdict="Inconclusive", reason=f"{kayenta}; no evidence: {', '.join(missing)}{note}",
                             **figures)
    return MetricVerdict(verdict="Pass", reason=kayenta + note, **figures)
