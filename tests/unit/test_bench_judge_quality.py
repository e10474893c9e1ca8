"""The judge-quality benchmark on a tiny configuration: its output, its judges and its simulator."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import judge_quality
import judges
import report
import sim
from siskin.analysis import mannwhitney
from siskin.analysis.sequential import judge

HEADLINE = judge_quality.HEADLINE_TRAFFIC
BIG = "errors 1%→10%"


@pytest.fixture(scope="module")
def outcome() -> judge_quality.Outcome:
    cells = [(HEADLINE, judge_quality.HEADLINE_SCENARIO), (HEADLINE, BIG)]
    return judge_quality.benchmark([HEADLINE], cells, aa_runs=40, runs=12, seed=7, workers=1, chunk=20)


def test_summary_has_the_keys_users_read(outcome: judge_quality.Outcome) -> None:
    summary = outcome.summary
    for key in ("alpha", "aa_false_rollback_rate", "aa_false_rollback_upper95", "ttd_median_s",
                "aa_false_rollback_rate_by_judge"):
        assert key in summary
    required = {"siskin", "oracle_sprt", "kayenta_deployed", "kayenta_calibrated", "kayenta_fixed", "threshold"}
    assert required <= set(summary["ttd_median_s"])
    assert required <= set(summary["aa_false_rollback_rate_by_judge"])
    assert summary["alpha"] == 0.01
    assert summary["aa_false_rollback_rate"] <= summary["aa_false_rollback_upper95"]


def test_siskin_rarely_rolls_back_a_healthy_canary(outcome: judge_quality.Outcome) -> None:
    assert outcome.rates["siskin"].runs == 40
    assert outcome.rates["siskin"].rate <= 0.1
    assert outcome.rates["threshold"].rate > 0.5  # a 1% rule on a 1% service: the contrast the table shows


def test_a_tenfold_error_rate_is_caught_and_the_oracle_is_not_slower(outcome: judge_quality.Outcome) -> None:
    big = outcome.detections[(HEADLINE.label, BIG)]
    assert big["siskin"].power_30 >= 0.9
    assert big["oracle_sprt"].power_30 >= 0.9
    assert big["siskin"].median_s is not None and big["oracle_sprt"].median_s is not None
    assert big["oracle_sprt"].median_s <= big["siskin"].median_s


def test_oracle_is_not_slower_than_siskin_on_average() -> None:
    scenario = sim.SCENARIOS["errors 1%→2%"]
    gaps = []
    for seed in range(15):
        stream = sim.simulate(HEADLINE, scenario, np.random.default_rng(seed))
        mine, oracle = judges.siskin(stream), judges.oracle_sprt(stream, dict(scenario.ratio_paths()))
        if judges.NEVER not in (mine, oracle):
            gaps.append(mine - oracle)
    assert len(gaps) >= 5
    assert np.mean(gaps) >= 0  # in windows, over runs both detect (an accepted SPRT H0 never detects)


def test_siskin_fails_at_the_window_the_product_judge_does() -> None:
    stream = sim.simulate(HEADLINE, sim.SCENARIOS[BIG], np.random.default_rng(3))
    fail = judges.siskin(stream)
    assert fail != judges.NEVER
    windows, index = judges.count_windows(stream, "errors")
    position = index.index(fail)
    settings = judges.SISKIN_SETTINGS
    assert judge("errors", windows[: position + 1], settings).verdict == "Fail"
    if position > 0:
        assert judge("errors", windows[:position], settings).verdict != "Fail"


@pytest.mark.parametrize("scenario", ["A/A", "errors 1%→2%", "p99 latency +20%"])
def test_bench_kayenta_statistic_matches_the_product_classifier(scenario: str) -> None:
    stream = sim.simulate(sim.Traffic(50, 0.05), sim.SCENARIOS[scenario], np.random.default_rng(11))
    for metric in sim.METRICS:
        canary, baseline = judges.window_rates(stream, metric)
        for look in (2, 3, 5, 9, 30, 120):
            c, b = canary[: look + 1], baseline[: look + 1]
            z = judges.kayenta_z(c, b)
            for confidence in (0.8, 0.98, 0.999):
                high = mannwhitney.classify(c, b, confidence=confidence, direction="increase")
                assert (high.classification == "High") == (z > judges.z_for_confidence(confidence))


def test_same_seed_same_runs_whatever_the_chunking() -> None:
    whole = judge_quality.run_task(judge_quality.Task(HEADLINE, BIG, 5, 0, 4, z_calibrated=3.0))
    first = judge_quality.run_task(judge_quality.Task(HEADLINE, BIG, 5, 0, 2, z_calibrated=3.0))
    second = judge_quality.run_task(judge_quality.Task(HEADLINE, BIG, 5, 2, 2, z_calibrated=3.0))
    for name, fails in whole["fails"].items():
        assert fails == first["fails"][name] + second["fails"][name]


def test_calibration_matches_the_target_rate() -> None:
    paths = np.full((100, sim.WINDOWS), -math.inf)
    paths[:, 10] = np.arange(100) / 10.0  # run i peaks at i / 10
    calibration = judge_quality.calibrate(paths, 0.05)
    assert calibration.rate == pytest.approx(0.05)
    assert calibration.first_look == judges.KAYENTA_MIN_WINDOWS - 1
    paths[:20, 2] = math.inf  # 20% High at any confidence on the first judged window
    later = judge_quality.calibrate(paths, 0.05)
    assert later.first_look > 2 and later.rate == pytest.approx(0.05)


def test_wilson_interval() -> None:
    low, high = report.wilson(0, 2000)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.0015 < high < 0.0025
    low, high = report.wilson(20, 2000)
    assert low < 0.01 < high


def test_simulated_stable_service_has_its_nominal_rates() -> None:
    stream = sim.simulate(sim.Traffic(200, 0.2), sim.SCENARIOS["A/A"], np.random.default_rng(0))
    requests = stream.baseline_requests.sum()
    assert abs(requests - 200 * 0.2 * sim.HORIZON_S) < 0.35 * 200 * 0.2 * sim.HORIZON_S  # diurnal phase moves it
    assert 0.007 < stream.baseline_events["errors"].sum() / requests < 0.016
    assert 0.007 < stream.baseline_events["slow"].sum() / requests < 0.02
    assert stream.canary_buckets is not None and np.all(np.diff(stream.canary_buckets, axis=1) >= 0)


@pytest.mark.parametrize("traffic", [sim.Traffic(50, 0.05), sim.Traffic(200, None)])
def test_incremental_kayenta_path_equals_the_direct_statistic(traffic: sim.Traffic) -> None:
    stream = sim.simulate(traffic, sim.SCENARIOS["p99 latency +20%"], np.random.default_rng(2))
    stream.canary_requests[7] = 0  # a window without canary traffic: its NaN rate is removed
    for metric in sim.METRICS:
        stream.canary_events[metric][7] = 0
    path = judges.KayentaPath(stream).path()
    for look in range(judges.KAYENTA_MIN_WINDOWS - 1, sim.WINDOWS, 7):
        direct = -math.inf
        for metric in sim.METRICS:
            canary, baseline = judges.window_rates(stream, metric)
            c, b = canary[: look + 1], baseline[: look + 1]
            direct = max(direct, judges.kayenta_z(c[np.isfinite(c)], b[np.isfinite(b)]))
        assert path[look] == direct
