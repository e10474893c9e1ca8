"""The Kayenta-compatible classifier and scorer: classification rules, HL/CI against R's algorithm, p-values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu, rankdata
from siskin.analysis.mannwhitney import (
    MannWhitneyResult,
    MannWhitneySettings,
    ScoredMetric,
    classify,
    judge_windows,
    score,
    window_rates,
)
from siskin.analysis.verdict import MetricVerdict
from siskin.analysis.windows import CountWindow

# --------------------------------------------------------------------------- R's algorithm, by rank and root search


def r_wdiff(canary: np.ndarray, baseline: np.ndarray, d: float, zq: float) -> float:
    """R's wilcox.test ``wdiff``: the continuity-corrected, tie-corrected z of the rank sum at shift d, minus zq."""
    nx, ny = len(canary), len(baseline)
    ranks = rankdata(np.concatenate((canary - d, baseline)))
    _, ties = np.unique(ranks, return_counts=True)
    dz = ranks[:nx].sum() - nx * (nx + 1) / 2 - nx * ny / 2
    sigma = math.sqrt(nx * ny / 12 * ((nx + ny + 1) - np.sum(ties**3 - ties) / ((nx + ny) * (nx + ny - 1))))
    return float((dz - np.sign(dz) * 0.5) / sigma - zq)


def r_root(canary: np.ndarray, baseline: np.ndarray, zq: float) -> float:
    """R's ``root``: the bounds when the sign does not change, else where wdiff crosses zero (bisection)."""
    low, high = canary.min() - baseline.max(), canary.max() - baseline.min()
    if r_wdiff(canary, baseline, low, zq) <= 0:
        return float(low)
    if r_wdiff(canary, baseline, high, zq) >= 0:
        return float(high)
    for _ in range(200):
        middle = (low + high) / 2
        if r_wdiff(canary, baseline, middle, zq) > 0:
            low = middle
        else:
            high = middle
    return float((low + high) / 2)


Z98 = 2.3263478740408408


def test_hand_computed_two_points_each() -> None:
    # differences 3-1, 3-2, 4-1, 4-2 = [1, 2, 2, 3]: HL 2; sigma = sqrt(4/12 * 5), z*sigma = 3.00, so the
    # interval's ranks ceil(2 - 3.5) and ceil(2 + 3.5) clamp to the extremes [1, 3].
    result = classify([3, 4], [1, 2])
    assert (result.hl_estimate, result.ci_low, result.ci_high) == (2.0, 1.0, 3.0)
    # Kayenta's known small-sample weakness: two points each are enough for High.
    assert result.classification == "High"


def test_hand_computed_interior_interval() -> None:
    # canary = baseline + 5 over 0..9: differences 5 + m, m in -9..9 with count 10 - |m|. sigma = sqrt(100/12 * 21)
    # = 13.23, z*sigma = 30.78: lower rank ceil(50 - 31.28) = 19 -> m = -4 (cumulative 15 < 19 <= 21) -> 1;
    # upper rank ceil(50 + 31.28) = 82 -> m = 4 (cumulative 79 < 82 <= 85) -> 9.
    baseline = np.arange(10.0)
    result = classify(baseline + 5, baseline)
    assert (result.hl_estimate, result.ci_low, result.ci_high) == (5.0, 1.0, 9.0)
    assert result.ci_low == pytest.approx(r_root(baseline + 5, baseline, Z98), abs=1e-9)
    assert result.ci_high == pytest.approx(r_root(baseline + 5, baseline, -Z98), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=2, max_value=25), st.integers(min_value=2, max_value=25),
    st.floats(min_value=-2, max_value=2), st.booleans(), st.integers(min_value=0, max_value=10**6),
)
def test_interval_and_estimate_match_r(nc: int, nb: int, shift: float, tied: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    canary = rng.normal(shift, 1, nc)
    baseline = rng.normal(0, 1, nb)
    if tied:
        canary, baseline = np.round(canary), np.round(baseline)
    if len(set(canary) | set(baseline)) == 1 or (nc == nb and np.array_equal(np.sort(canary), np.sort(baseline))):
        return
    if canary.min() == canary.max() and baseline.min() == baseline.max():
        return  # noise added: covered separately
    result = classify(canary, baseline)
    assert result.ci_low == pytest.approx(r_root(canary, baseline, Z98), abs=1e-7)
    assert result.ci_high == pytest.approx(r_root(canary, baseline, -Z98), abs=1e-7)
    assert result.hl_estimate is not None
    # R's estimate is any point where wdiff(., 0) changes sign; the HL median lies in that set.
    assert r_wdiff(canary, baseline, result.hl_estimate - 1e-9, 0) >= 0 >= r_wdiff(
        canary, baseline, result.hl_estimate + 1e-9, 0
    )
    expected = mannwhitneyu(canary, baseline, alternative="two-sided", method="asymptotic").pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_p_value_matches_scipy_with_heavy_ties() -> None:
    rng = np.random.default_rng(3)
    canary, baseline = rng.poisson(3, 180) / 100, rng.poisson(3, 180) / 100
    expected = mannwhitneyu(canary, baseline, alternative="two-sided", method="asymptotic").pvalue
    result = classify(canary, baseline)
    assert result.p_value == pytest.approx(expected, rel=1e-9)
    assert result.ci_low == pytest.approx(r_root(canary, baseline, Z98), abs=1e-9)


# --------------------------------------------------------------------------- classification rules


def test_a_clear_increase_is_high_and_direction_limits_it() -> None:
    rng = np.random.default_rng(1)
    baseline = rng.normal(10, 1, 60)
    canary = rng.normal(13, 1, 60)
    assert classify(canary, baseline).classification == "High"
    assert classify(canary, baseline, direction="increase").classification == "High"
    assert classify(canary, baseline, direction="decrease").classification == "Pass"
    assert classify(baseline, canary).classification == "Low"
    assert classify(baseline, canary, direction="increase").classification == "Pass"
    high = classify(canary, baseline)
    assert "High" in high.reason and "98% CI" in high.reason and "n=60/60" in high.reason


def test_effect_size_thresholds_hold_back_small_effects() -> None:
    rng = np.random.default_rng(2)
    baseline = rng.normal(100, 1, 80)
    canary = baseline + 3  # ratio ~1.03
    assert classify(canary, baseline).classification == "High"
    assert classify(canary, baseline, allowed_increase=1.05).classification == "Pass"
    assert classify(baseline, canary, allowed_decrease=0.95).classification == "Pass"
    cles = classify(canary, baseline, effect_measure="cles")
    assert cles.classification == "High" and cles.effect_size is not None and cles.effect_size > 0.5
    assert classify(canary, baseline, effect_measure="cles", allowed_increase=0.99).classification == "Pass"


def test_mean_ratio_with_a_zero_mean() -> None:
    zeros, some = np.zeros(30), np.full(30, 0.02)
    high = classify(some, zeros)  # baseline mean 0: ratio taken as 1, which meets allowedIncrease 1
    assert high.classification == "High" and high.effect_size == 1.0
    low = classify(zeros, some)  # canary mean 0: ratio undefined, never Low
    assert low.classification == "Pass" and low.effect_size is None


def test_identical_and_single_valued_data_pass() -> None:
    assert classify([1, 2, 3], [3, 2, 1]).classification == "Pass"
    result = classify([0.5] * 10, [0.5] * 7)
    assert result.classification == "Pass" and "all 0.5" in result.reason


def test_constant_but_different_arms_get_deterministic_noise() -> None:
    first = classify([2.0] * 20, [1.0] * 20)
    assert first == classify([2.0] * 20, [1.0] * 20)
    assert first.classification == "High"
    assert first.hl_estimate == pytest.approx(1.0, rel=1e-3)


def test_empty_data_and_nan_strategies() -> None:
    assert classify([], [1.0]).classification == "NoData"
    assert classify([], []).classification == "NoData"
    assert classify([], [1.0], must_have_data=True).classification == "NodataFailMetric"
    assert classify([], [1.0], must_have_data=True, critical=True).classification == "NoData"
    assert classify([], [1.0], nan_strategy="replace").classification == "Pass"
    nan = [math.nan] * 5
    assert classify(nan, [0.1] * 5).classification == "NoData"
    replaced = classify(nan, [0.0] * 5, nan_strategy="replace")
    assert replaced.classification == "Pass" and replaced.canary_count == 5
    removed = classify([math.nan, 0.5, math.inf, 0.4, 0.6], [0.5, 0.4, 0.6])
    assert removed.canary_count == 3 and removed.classification == "Pass"


def test_bad_confidence_raises() -> None:
    with pytest.raises(ValueError, match="confidence"):
        classify([1.0], [2.0], confidence=1.0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=12),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=12),
    st.sampled_from(["remove", "replace"]), st.sampled_from(["increase", "decrease", "either"]),
    st.booleans(), st.booleans(),
)
def test_classify_never_raises(
    canary: list[float], baseline: list[float], nan: str, direction: str, must: bool, critical: bool
) -> None:
    result = classify(canary, baseline, nan_strategy=nan, direction=direction,  # type: ignore[arg-type]
                      must_have_data=must, critical=critical)
    assert result.classification in ("Pass", "High", "Low", "NoData", "NodataFailMetric")
    assert result.reason


# --------------------------------------------------------------------------- score


def mw(label: str) -> MannWhitneyResult:
    return MannWhitneyResult(label, None, None, None, None, None, None, None, 0, 0, label)  # type: ignore[arg-type]


def test_group_score_and_unweighted_groups_share_the_remainder() -> None:
    metrics = [ScoredMetric("a", "errors"), ScoredMetric("b", "errors"), ScoredMetric("c", "latency"),
               ScoredMetric("d", "saturation")]
    results = {"a": mw("Pass"), "b": mw("High"), "c": mw("Pass"), "d": mw("Pass")}
    result = score(results, metrics, group_weights={"errors": 50})
    # errors 50% * 50 + latency 100% * 25 + saturation 100% * 25
    assert result.score == 75.0 and result.classification == "Marginal"
    assert result.group_scores == {"errors": 50.0, "latency": 100.0, "saturation": 100.0}
    assert score(results, metrics, group_weights={"errors": 50}, marginal_threshold=80).classification == "Fail"


def test_metric_weights_within_a_group_and_ungrouped_metrics() -> None:
    metrics = [ScoredMetric("a", weight=3), ScoredMetric("b", weight=1)]
    result = score({"a": mw("Pass"), "b": mw("Low")}, metrics)
    assert result.score == 75.0 and result.group_scores == {"default": 75.0}


def test_nodata_is_left_out_of_its_group_but_half_nodata_forces_zero() -> None:
    metrics = [ScoredMetric(n) for n in "abc"]
    assert score({"a": mw("Pass"), "b": mw("Pass"), "c": mw("NoData")}, metrics).score == 100.0
    forced = score({"a": mw("Pass"), "b": mw("NoData")}, metrics[:2])
    assert forced.score == 0.0 and ">= 50%" in forced.reason
    assert score({"a": mw("Pass")}, metrics).score == 0.0  # missing results are NoData
    failing = score({"a": mw("Pass"), "b": mw("NodataFailMetric"), "c": mw("Pass")}, metrics)
    assert failing.score == pytest.approx(66.67) and "b (NodataFailMetric)" in failing.reason


def test_a_group_with_only_nodata_counts_as_full_marks() -> None:
    metrics = [ScoredMetric("a", "x"), ScoredMetric("b", "y"), ScoredMetric("c", "y")]
    assert score({"a": mw("NoData"), "b": mw("Pass"), "c": mw("Pass")}, metrics).score == 100.0


def test_a_critical_metric_not_passing_forces_zero() -> None:
    metrics = [ScoredMetric("a", critical=True), ScoredMetric("b"), ScoredMetric("c")]
    result = score({"a": mw("High"), "b": mw("Pass"), "c": mw("Pass")}, metrics)
    assert result.score == 0.0 and result.classification == "Fail" and "critical" in result.reason
    assert score({"a": mw("NoData"), "b": mw("Pass"), "c": mw("Pass")}, metrics).score == 0.0


def test_siskin_verdicts_score_through_the_mapping() -> None:
    def verdict(kind: str) -> MetricVerdict:
        return MetricVerdict(name="x", verdict=kind, reason="")  # type: ignore[arg-type]

    metrics = [ScoredMetric(n) for n in "abcd"]
    results = {"a": verdict("Pass"), "b": verdict("Fail"), "c": verdict("Pass"), "d": verdict("Inconclusive")}
    assert score(results, metrics).score == pytest.approx(66.67)
    results["d"] = verdict("Error")
    results["c"] = verdict("Inconclusive")
    assert score(results, metrics).score == 0.0  # 2 of 4 NoData


def test_no_metrics_scores_zero() -> None:
    assert score({}, []).score == 0.0


# --------------------------------------------------------------------------- windows -> verdict


def windows(counts: list[tuple[int, int, int, int]], seconds: float = 10.0) -> list[CountWindow]:
    return [CountWindow(i * seconds, (i + 1) * seconds, nc, nb, xc, xb) for i, (nc, nb, xc, xb) in enumerate(counts)]


def test_window_rates_are_nan_without_requests() -> None:
    canary, baseline = window_rates(windows([(10, 0, 1, 0), (20, 10, 2, 1)]), empty_windows=1)
    assert canary[:2].tolist() == [0.1, 0.1] and math.isnan(canary[2])
    assert math.isnan(baseline[0]) and baseline[1] == 0.1 and math.isnan(baseline[2])


def test_verdict_maps_kayenta_labels_and_waits_for_min_duration() -> None:
    rng = np.random.default_rng(5)
    bad = windows([(500, 500, int(rng.binomial(500, 0.10)), int(rng.binomial(500, 0.01))) for _ in range(12)])
    mw_settings = MannWhitneySettings(min_duration_seconds=60)
    failed = judge_windows("errors", bad, mw_settings)
    assert failed.verdict == "Fail" and failed.classification == "High"
    assert failed.p_value is not None and failed.hl_estimate is not None and failed.hl_estimate > 0.05
    assert failed.reason.startswith("Kayenta: High")
    early = judge_windows("errors", bad[:4], mw_settings)
    assert early.verdict == "Inconclusive" and "40s of 60s elapsed" in early.reason
    good = windows([(500, 500, int(rng.binomial(500, 0.01)), int(rng.binomial(500, 0.01))) for _ in range(12)])
    assert judge_windows("errors", good, mw_settings).verdict == "Pass"


def test_verdict_for_missing_data() -> None:
    empty: list[CountWindow] = []
    assert judge_windows("e", empty, MannWhitneySettings(), expected_windows=6).verdict == "Inconclusive"
    must = judge_windows("e", empty, MannWhitneySettings(must_have_data=True), expected_windows=6)
    assert must.verdict == "Fail" and must.classification == "NodataFailMetric"
    critical = judge_windows("e", empty, MannWhitneySettings(must_have_data=True, critical=True), expected_windows=6)
    assert critical.verdict == "Fail" and critical.classification == "NoData"
    replaced = judge_windows("e", empty, MannWhitneySettings(nan_strategy="replace"), empty_windows=6)
    assert replaced.classification == "Pass" and replaced.verdict == "Inconclusive"
    every = judge_windows("e", windows([(10, 10, 10, 10)] * 5), MannWhitneySettings())
    assert every.verdict == "Inconclusive" and "every request counted as an event" in every.reason


def test_kayenta_pass_without_events_is_not_a_siskin_pass_but_scores_as_kayenta_would() -> None:
    quiet = judge_windows("e", windows([(100, 100, 0, 0)] * 8), MannWhitneySettings())
    assert quiet.verdict == "Inconclusive" and quiet.classification == "Pass" and "0 of 20 errors" in quiet.reason
    assert score({"e": quiet}, [ScoredMetric("e")]).score == 100.0


def test_an_interval_too_short_for_its_level_says_so() -> None:
    result = classify(np.array([0.05, 0.06, 0.07]), np.array([0.01, 0.02, 0.03]), confidence=0.98)
    assert "98% CI" not in result.reason
    assert "all differences: n=3/3 is too few for 98%" in result.reason
