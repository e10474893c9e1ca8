"""The sequential judge on simulated Poisson/binomial counts: error control, power, and robustness."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from siskin.analysis.sequential import (
    JudgeSettings,
    burst_inflation,
    confidence_sequence,
    judge,
    log_fail_e_process,
    log_srm_e_process,
    rate_upper_bound,
)
from siskin.analysis.windows import CountWindow, build_windows

WINDOW = 10.0
TWO_METRICS = JudgeSettings(alpha=0.01, metric_count=2, min_events=20, min_duration_seconds=60)


def simulate(
    windows: int,
    rps_per_arm: float | list[float],
    canary_error: float,
    baseline_error: float,
    seed: int,
    canary_share: float | list[float] = 0.5,
) -> list[CountWindow]:
    """Poisson requests per arm per 10 s window, binomial errors; rates and shares may change per window."""
    rng = np.random.default_rng(seed)
    rates = rps_per_arm if isinstance(rps_per_arm, list) else [rps_per_arm] * windows
    shares = canary_share if isinstance(canary_share, list) else [canary_share] * windows
    result = []
    for i in range(windows):
        total = 2 * rates[i] * WINDOW
        nc = int(rng.poisson(total * shares[i]))
        nb = int(rng.poisson(total * (1 - shares[i])))
        xc = int(rng.binomial(nc, canary_error))
        xb = int(rng.binomial(nb, baseline_error))
        result.append(CountWindow(i * WINDOW, (i + 1) * WINDOW, nc, nb, xc, xb))
    return result


def windows_to_fail(windows: list[CountWindow], judge_settings: JudgeSettings) -> int | None:
    log_e = log_fail_e_process(windows, judge_settings.tolerance)
    crossed = np.nonzero(log_e >= math.log(judge_settings.threshold))[0]
    return int(crossed[0]) + 1 if crossed.size else None


def test_a_a_false_rollbacks_stay_under_alpha_over_300_runs() -> None:
    runs, false_fails = 300, 0
    for seed in range(runs):
        windows = simulate(180, 50, 0.02, 0.02, seed)  # 30 minutes, looking every window
        false_fails += judge("errors", windows, TWO_METRICS).verdict == "Fail"
    assert false_fails / runs <= TWO_METRICS.alpha / TWO_METRICS.metric_count + 0.01


def test_a_a_at_the_tolerance_boundary_stays_under_alpha() -> None:
    """The hardest null: canary exactly `tolerance` times worse. Ville's bound still holds."""
    strict = JudgeSettings(alpha=0.05, metric_count=1, tolerance=1.2, spread=1.0)
    fails = sum(
        judge("errors", simulate(90, 50, 0.024, 0.02, seed), strict).verdict == "Fail" for seed in range(300)
    )
    assert fails / 300 <= 0.05 + 0.03


def test_one_to_ten_percent_errors_fails_in_the_first_windows() -> None:
    for seed in range(20):
        needed = windows_to_fail(simulate(30, 50, 0.10, 0.01, seed), TWO_METRICS)
        assert needed is not None and needed <= 2


def test_two_to_seven_percent_errors_fails_within_a_few_windows_at_50_rps() -> None:
    needed = [windows_to_fail(simulate(60, 50, 0.07, 0.02, seed), TWO_METRICS) for seed in range(100)]
    assert all(n is not None for n in needed)
    counts = np.array(needed, dtype=float)
    assert np.median(counts) <= 3
    assert np.percentile(counts, 90) <= 4


def test_fail_verdict_names_rates_ratio_and_e_value() -> None:
    verdict = judge("errors", simulate(6, 50, 0.07, 0.02, 1), TWO_METRICS)
    assert verdict.verdict == "Fail"
    assert verdict.reason.startswith("canary ")
    assert "vs baseline" in verdict.reason and "e-value" in verdict.reason and ">= 200" in verdict.reason
    assert verdict.ratio_low is not None and verdict.ratio_low > 1.0
    assert verdict.to_dict()["ratioEstimate"] == pytest.approx(verdict.ratio_estimate)


def test_healthy_canary_passes_once_enough_events() -> None:
    passes = sum(
        judge("errors", simulate(60, 50, 0.02, 0.02, seed), TWO_METRICS).verdict == "Pass" for seed in range(20)
    )
    assert passes >= 18
    early = judge("errors", simulate(3, 50, 0.02, 0.02, 0), TWO_METRICS)
    assert early.verdict == "Inconclusive"
    assert "not yet" in early.reason


def test_min_events_and_min_duration_hold_back_a_pass() -> None:
    windows = simulate(60, 50, 0.02, 0.02, 3)
    assert judge("e", windows, JudgeSettings(alpha=0.01, min_events=10**6)).verdict == "Inconclusive"
    assert judge("e", windows, JudgeSettings(alpha=0.01, min_duration_seconds=3600)).verdict == "Inconclusive"


def test_weights_changing_mid_run_are_handled_exactly() -> None:
    # Traffic per arm follows 5% -> 10% -> 20% -> 50% of 200 rps; canary and baseline stay equal.
    rates = [10.0] * 12 + [20.0] * 12 + [40.0] * 12 + [100.0] * 12
    aa_fails = sum(
        judge("e", simulate(48, rates, 0.02, 0.02, seed), TWO_METRICS).verdict == "Fail" for seed in range(100)
    )
    assert aa_fails <= 2
    assert all(windows_to_fail(simulate(48, rates, 0.08, 0.02, s), TWO_METRICS) for s in range(20))

    # The canary's share of the two arms itself moves (0.2 -> 0.5): the e-process uses each window's share.
    shares = [0.2] * 24 + [0.5] * 24
    calm = [windows_to_fail(simulate(48, 50, 0.02, 0.02, s, shares), TWO_METRICS) for s in range(100)]
    assert sum(n is not None for n in calm) <= 2
    bad = [windows_to_fail(simulate(48, 50, 0.08, 0.02, s, shares), TWO_METRICS) for s in range(20)]
    assert all(n is not None for n in bad)


def test_sample_ratio_mismatch_is_inconclusive_never_pass() -> None:
    windows = simulate(60, 50, 0.02, 0.02, 5, canary_share=0.35)
    verdict = judge("errors", windows, TWO_METRICS)
    assert verdict.verdict == "Inconclusive"
    assert verdict.sample_ratio_mismatch
    assert verdict.reason.startswith("sample ratio mismatch")
    balanced = simulate(60, 50, 0.02, 0.02, 5)
    assert float(np.max(log_srm_e_process(balanced))) < math.log(200)


def test_fail_wins_over_sample_ratio_mismatch() -> None:
    verdict = judge("errors", simulate(30, 50, 0.10, 0.01, 2, canary_share=0.35), TWO_METRICS)
    assert verdict.verdict == "Fail"


def test_no_baseline_events_leaves_the_ratio_unbounded() -> None:
    windows = [CountWindow(i * 10, i * 10 + 10, 500, 500, 0, 0) for i in range(30)]
    low, high = confidence_sequence(windows, 200)
    assert high is None and low == 0.0
    verdict = judge("errors", windows, TWO_METRICS)
    assert verdict.verdict == "Inconclusive"
    assert verdict.ratio_high is None
    assert "upper bound inf" in verdict.reason


@pytest.mark.parametrize(
    "windows",
    [
        [],
        [CountWindow(0, 10, 0, 0, 0, 0)] * 10,
        [CountWindow(0, 10, 10**6, 10**6, 10**4, 10**4)],
        [CountWindow(0, 10, -5, 10, 0, 0)],
        [CountWindow(0, 10, 5, 5, 9, 0)],
    ],
)
def test_degenerate_input_never_passes(windows: list[CountWindow]) -> None:
    assert judge("errors", windows, JudgeSettings(alpha=0.05)).verdict != "Pass"


finite_or_not = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=0, max_value=1e6),
    st.integers(min_value=-10, max_value=10**7).map(float),
    st.just(0.0),
)
unusable = st.one_of(
    st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.floats(max_value=-1.0, allow_infinity=False)
)


def prometheus_series(values: list[float], length: int, drop_last_baseline: bool) -> tuple[
    list[float], dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float]]]
]:
    """Requests and events series built from ``values`` as if Prometheus returned them."""
    ends = [10.0 * (i + 1) for i in range(length)]
    baseline_ends = ends[:-1] if drop_last_baseline else ends

    def series(offset: int) -> dict[str, list[tuple[float, float]]]:
        return {
            "canary": [(t, values[(offset + i) % len(values)]) for i, t in enumerate(ends)],
            "baseline": [(t, values[(offset + 6 + i) % len(values)]) for i, t in enumerate(baseline_ends)],
        }

    return ends, series(0), series(12)


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(min_value=0, max_value=6),
    values=st.lists(finite_or_not, min_size=24, max_size=24),
    drop_last_baseline=st.booleans(),
)
def test_prometheus_garbage_never_raises_and_a_pass_needs_evidence(
    length: int, values: list[float], drop_last_baseline: bool
) -> None:
    """Up to 6 windows straight from 'Prometheus': NaN, inf, negative, zero, missing samples."""
    ends, requests, events = prometheus_series(values, length, drop_last_baseline)
    window_set = build_windows(ends, 10.0, requests, events=events)
    rules = JudgeSettings(alpha=0.05)
    verdict = judge("errors", window_set.windows, rules, window_note=window_set.summary())
    assert verdict.to_dict()["verdict"] == verdict.verdict
    if verdict.verdict == "Pass":
        assert verdict.windows >= 3
        assert verdict.canary_events + verdict.baseline_events >= rules.min_events
        assert verdict.ratio_high is not None and verdict.ratio_high <= rules.max_ratio


@settings(max_examples=100, deadline=None)
@given(value=finite_or_not, length=st.integers(min_value=0, max_value=30))
def test_constant_series_never_pass(value: float, length: int) -> None:
    ends, requests, events = prometheus_series([value] * 24, length, drop_last_baseline=False)
    window_set = build_windows(ends, 10.0, requests, events=events)
    assert judge("errors", window_set.windows, JudgeSettings(alpha=0.5, min_events=0)).verdict != "Pass"


@settings(max_examples=100, deadline=None)
@given(values=st.lists(unusable, min_size=24, max_size=24), length=st.integers(min_value=0, max_value=6))
def test_non_finite_or_negative_values_are_never_judged(values: list[float], length: int) -> None:
    ends, requests, events = prometheus_series(values, length, drop_last_baseline=False)
    window_set = build_windows(ends, 10.0, requests, events=events)
    assert window_set.usable == 0
    verdict = judge("errors", window_set.windows, JudgeSettings(alpha=0.5), window_note=window_set.summary())
    assert verdict.verdict == "Inconclusive"
    assert verdict.reason.startswith("no usable data yet")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(*(st.integers(min_value=-3, max_value=10**15) for _ in range(4))), min_size=0, max_size=2
    )
)
def test_at_most_two_windows_of_any_counts_never_pass(counts: list[tuple[int, int, int, int]]) -> None:
    windows = [CountWindow(i * 10, i * 10 + 10, *c) for i, c in enumerate(counts)]
    verdict = judge("errors", windows, JudgeSettings(alpha=0.5, min_events=0, min_duration_seconds=0))
    assert verdict.verdict != "Pass"


# --------------------------------------------------------------------------- direction


def test_decrease_fails_a_canary_with_fewer_events_and_ignores_more() -> None:
    # "decrease" is for metrics where fewer events is bad (e.g. successful checkouts among requests).
    down = JudgeSettings(alpha=0.01, direction="decrease")
    fewer = judge("ok", simulate(30, 50, 0.01, 0.10, 1), down)
    assert fewer.verdict == "Fail" and "(decrease)" in fewer.reason
    assert judge("ok", simulate(30, 50, 0.10, 0.01, 1), down).verdict != "Fail"
    assert judge("ok", simulate(30, 50, 0.01, 0.10, 1), JudgeSettings(alpha=0.01)).verdict != "Fail"


def test_either_fails_both_ways_and_passes_only_inside_both_bounds() -> None:
    either = JudgeSettings(alpha=0.01, direction="either", min_duration_seconds=60)
    assert judge("x", simulate(30, 50, 0.10, 0.01, 2), either).verdict == "Fail"
    assert judge("x", simulate(30, 50, 0.01, 0.10, 2), either).verdict == "Fail"
    healthy = judge("x", simulate(120, 50, 0.02, 0.02, 2), either)
    assert healthy.verdict == "Pass" and "within [1/maxRatio, maxRatio]" in healthy.reason
    assert healthy.ratio_low is not None and healthy.ratio_low >= 1 / either.max_ratio


def test_either_stays_under_alpha_in_a_a() -> None:
    either = JudgeSettings(alpha=0.05, direction="either")
    fails = sum(judge("x", simulate(90, 50, 0.02, 0.02, seed), either).verdict == "Fail" for seed in range(200))
    assert fails / 200 <= 0.05


def simulate_real_tracks(
    windows: int,
    seed: int,
    track_sd: float = 0.08,
    burst_cv: float = 0.25,
    canary_factor: float = 1.0,
    rps_per_arm: float = 100.0,
) -> list[CountWindow]:
    """Requests per arm at 2% errors, as real pods behave: each track keeps its own small bias for the
    whole run (log-normal, ``track_sd``) and bursts every window (gamma, ``burst_cv``)."""
    rng = np.random.default_rng(seed)
    bias = math.exp(rng.normal(0.0, track_sd))
    shape = 1 / burst_cv**2 if burst_cv else 0.0
    result = []
    for i in range(windows):
        nc, nb = int(rng.poisson(rps_per_arm * WINDOW)), int(rng.poisson(rps_per_arm * WINDOW))
        burst_c, burst_b = (rng.gamma(shape, 1 / shape, 2) if shape else (1.0, 1.0))
        xc = int(rng.binomial(nc, min(1.0, 0.02 * bias * canary_factor * burst_c)))
        xb = int(rng.binomial(nb, min(1.0, 0.02 * burst_b)))
        result.append(CountWindow(i * WINDOW, (i + 1) * WINDOW, nc, nb, xc, xb))
    return result


def _inflation(windows: list[CountWindow]) -> np.ndarray:
    canary = np.array([w.canary_events for w in windows], dtype=float)
    events = canary + np.array([w.baseline_events for w in windows], dtype=float)
    share = np.array([w.canary_requests / (w.canary_requests + w.baseline_requests) for w in windows])
    return burst_inflation(canary, events, share)


def test_the_spread_between_healthy_tracks_is_not_a_regression() -> None:
    """Two healthy tracks differ by a few percent for the whole run; at high traffic a hard boundary at
    ratio 1 rolls that back, the default spread (1.2) does not."""
    hard = JudgeSettings(alpha=0.01, metric_count=2, spread=1.0)
    runs = [simulate_real_tracks(90, seed, burst_cv=0.0, rps_per_arm=400) for seed in range(200)]
    default_fails = sum(judge("errors", w, TWO_METRICS).verdict == "Fail" for w in runs)
    hard_fails = sum(judge("errors", w, hard).verdict == "Fail" for w in runs)
    assert default_fails / 200 <= 0.005 + 0.01
    assert hard_fails / 200 >= 0.05


def test_bursty_windows_are_measured_and_do_not_roll_back_healthy_canaries() -> None:
    bursty = _inflation(simulate_real_tracks(90, 1, track_sd=0.0))
    calm = _inflation(simulate_real_tracks(90, 1, track_sd=0.0, burst_cv=0.0))
    assert 1.7 <= bursty[-1] <= 3.0  # about 1 + 39 * 0.25 * 2 * 0.25^2 = 2.2 at 40 events per window
    assert calm[-1] < 1.2
    fails = sum(
        judge("errors", simulate_real_tracks(90, seed), TWO_METRICS).verdict == "Fail" for seed in range(200)
    )
    assert fails / 200 <= 0.005 + 0.01


def test_a_real_regression_still_fails_through_spread_and_bursts() -> None:
    needed = [
        windows_to_fail(simulate_real_tracks(90, seed, canary_factor=2.0), TWO_METRICS) for seed in range(20)
    ]
    assert all(n is not None for n in needed)
    assert float(np.median(np.array(needed, dtype=float))) <= 12


def test_a_service_with_no_errors_passes_on_its_own_rate_with_pass_below_rate() -> None:
    """Zero errors on both arms can never bound the ratio; passBelowRate lets the canary's rate decide."""
    clean = [CountWindow(i * WINDOW, (i + 1) * WINDOW, 500, 500, 0, 0) for i in range(30)]
    assert judge("errors", clean, TWO_METRICS).verdict == "Inconclusive"
    rare = JudgeSettings(alpha=0.01, metric_count=2, min_duration_seconds=60, pass_below_rate=0.001)
    early = judge("errors", clean[:2], rare)
    assert early.verdict == "Inconclusive" and "or a canary rate shown <= passBelowRate 0.1%" in early.reason
    verdict = judge("errors", clean, rare)
    assert verdict.verdict == "Pass"
    assert verdict.reason.startswith("canary 0% errors, at most ") and "<= passBelowRate 0.1%" in verdict.reason


def test_pass_below_rate_never_passes_a_canary_above_it() -> None:
    only_rate = JudgeSettings(alpha=0.01, metric_count=2, pass_below_rate=0.001, min_events=10**6)
    for seed in range(20):
        windows = simulate(120, 50, 0.002, 0.002, seed)  # 0.2%, twice the allowed rate
        assert all(judge("errors", windows[:t], only_rate).verdict != "Pass" for t in range(5, 121, 5))


def test_rate_upper_bound_covers_the_true_rate_at_every_look() -> None:
    rng = np.random.default_rng(11)
    rate, misses = 0.001, 0
    for _ in range(300):
        events = rng.binomial(500, rate, size=100).cumsum()
        requests = 500 * np.arange(1, 101)
        misses += any(rate_upper_bound(int(e), int(n), 200) < rate for e, n in zip(events, requests, strict=True))
    assert misses <= 300 * (1 / 200) + 3
    assert rate_upper_bound(0, 0, 200) == 1.0
    assert rate_upper_bound(0, 10_000, 200) < rate_upper_bound(0, 1_000, 200) < 0.02


def _same(count: int, nc: float, nb: float, xc: float, xb: float, start: float = 0.0) -> list[CountWindow]:
    return [CountWindow(start + i * WINDOW, start + (i + 1) * WINDOW, nc, nb, xc, xb) for i in range(count)]  # type: ignore[arg-type]


def test_settings_that_cannot_be_judged_are_refused_up_front() -> None:
    for bad in (dict(alpha=0), dict(alpha=2), dict(alpha=float("nan")), dict(spread=0.5), dict(tolerance=float("nan")),
                dict(max_ratio=1.0), dict(metric_count=0), dict(direction="up"),
                dict(pass_below_rate=0.01, direction="either")):
        with pytest.raises(ValueError, match="invalid JudgeSettings: "):
            JudgeSettings(**{"alpha": 0.01, **bad})  # type: ignore[arg-type]


def test_repeated_or_overlapping_windows_count_once() -> None:
    repeated = [CountWindow(0, 10, 500, 500, 10, 10)] * 60
    verdict = judge("errors", repeated, TWO_METRICS)
    assert verdict.windows == 1 and verdict.verdict == "Inconclusive"
    assert "59 windows ignored: 59 overlapping an earlier window" in verdict.reason


def test_ignored_windows_are_named_even_in_a_pass() -> None:
    whole_floats = _same(30, 500.0, 500.0, 10.0, 10.0)
    assert judge("errors", whole_floats, TWO_METRICS).windows == 30
    mixed = _same(30, 500, 500, 10, 10) + _same(30, 500.5, 500, 10, 10, start=300)
    verdict = judge("errors", mixed, TWO_METRICS)
    assert "30 windows ignored: 30 with counts that are not whole numbers" in verdict.reason


def test_almost_every_request_an_event_is_a_query_problem_not_a_pass() -> None:
    verdict = judge("errors", _same(60, 1000, 1000, 999, 999), TWO_METRICS)
    assert verdict.verdict == "Inconclusive"
    assert "99% or more of requests counted as events on both arms" in verdict.reason


def test_no_events_on_either_arm_says_so_and_points_at_pass_below_rate() -> None:
    verdict = judge("errors", _same(60, 500, 500, 0, 0), TWO_METRICS)
    assert verdict.verdict == "Inconclusive"
    assert "ratio n/a (no events)" in verdict.reason
    assert "set passBelowRate to pass on the canary's own rate" in verdict.reason


def test_a_canary_stuck_between_max_ratio_and_spread_is_explained() -> None:
    loose = JudgeSettings(alpha=0.01, metric_count=2, spread=5.0, max_ratio=2.0)
    verdict = judge("errors", _same(300, 5000, 5000, 300, 100), loose)
    assert verdict.verdict == "Inconclusive"
    assert "shown above maxRatio, but spread 5 lets healthy pods differ so much" in verdict.reason


def test_windows_out_of_time_order_are_judged_in_order() -> None:
    bad = simulate(60, 50, 0.12, 0.02, 4)
    in_order, reversed_order = judge("errors", bad, TWO_METRICS), judge("errors", bad[::-1], TWO_METRICS)
    assert in_order.verdict == reversed_order.verdict == "Fail"
    assert reversed_order.windows == 60


def test_settings_of_the_wrong_type_are_refused_and_numbers_are_coerced() -> None:
    for bad in (dict(alpha="0.05"), dict(alpha=None), dict(metric_count=2.5), dict(min_duration_seconds=math.inf)):
        with pytest.raises(ValueError, match="invalid JudgeSettings: "):
            JudgeSettings(**{"alpha": 0.01, **bad})  # type: ignore[arg-type]
    coerced = JudgeSettings(alpha=Fraction(1, 20), metric_count=np.int64(2))  # type: ignore[arg-type]
    assert judge("errors", simulate(30, 50, 0.12, 0.02, 1), coerced).verdict == "Fail"
