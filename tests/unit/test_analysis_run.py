"""look() over a fake provider and advance()'s counting rules, phases and idempotency."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from siskin.analysis.prometheus import _api_error, parse_matrix, provider_for
from siskin.analysis.provider import ProviderUnreachable, QueryError, TrackSeries
from siskin.analysis.queries import QueryContext
from siskin.analysis.run import AnalysisLook, AnalysisRunState, advance, look
from siskin.analysis.template import AnalysisTemplateSpec
from siskin.analysis.verdict import MetricVerdict

CTX = QueryContext("shop", "podinfo")


def template(**metric: Any) -> AnalysisTemplateSpec:
    errors = {"requests": 'req{rollout="{{name}}"}', "events": 'err{rollout="{{name}}"}'}
    return AnalysisTemplateSpec.model_validate(
        {"interval": "10s", "minDuration": "30s", "metrics": [{"name": "errors", "errors": errors, **metric}]}
    )


class FakeProvider:
    """Per-window rates for canary/baseline; answers like Prometheus would for [start, end] every step."""

    def __init__(self, rps: float, canary_error: float, baseline_error: float, seed: int = 0) -> None:
        self.rps, self.errors = rps, {"canary": canary_error, "baseline": baseline_error}
        self.rng = np.random.default_rng(seed)
        self.queries: list[str] = []
        self.cache: dict[tuple[str, float], float] = {}

    def range_by_track(self, query: str, start: float, end: float, step_seconds: float) -> TrackSeries:
        self.queries.append(query)
        result: TrackSeries = {}
        for track, error in self.errors.items():
            points = []
            t = start
            while t <= end + 1e-9:
                if (track, t) not in self.cache:
                    self.cache[(track, t)] = float(self.rng.poisson(self.rps * step_seconds))
                requests = self.cache[(track, t)]
                key = (track + "err", t)
                if key not in self.cache:
                    self.cache[key] = float(self.rng.binomial(int(requests), error))
                points.append((t, requests if query.startswith("req") else self.cache[key]))
                t += step_seconds
            result[track] = points
        return result


class BrokenProvider:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def range_by_track(self, query: str, start: float, end: float, step_seconds: float) -> TrackSeries:
        raise self.error


def test_look_queries_aligned_windows_and_fails_a_bad_canary() -> None:
    provider = FakeProvider(50, 0.10, 0.01)
    result = look(template(), provider, CTX, started_at=1000.7, now=1061.0)
    (verdict,) = result.verdicts
    assert verdict.verdict == "Fail"
    assert verdict.windows == 6  # (1000, 1010] ... (1050, 1060]
    assert provider.queries == ['req{rollout="podinfo"}', 'err{rollout="podinfo"}']


def test_before_the_first_window_ends_the_look_is_inconclusive_without_queries() -> None:
    provider = FakeProvider(50, 0.01, 0.01)
    (verdict,) = look(template(), provider, CTX, started_at=1000.0, now=1009.0).verdicts
    assert verdict.verdict == "Inconclusive"
    assert provider.queries == []


def test_provider_errors_become_error_verdicts_with_the_message() -> None:
    broken = BrokenProvider(ProviderUnreachable("cannot reach Prometheus at http://p:9090: Connection refused"))
    (verdict,) = look(template(), broken, CTX, 1000.0, 1100.0).verdicts
    assert verdict.verdict == "Error"
    assert "Connection refused" in verdict.reason


def test_empty_requests_result_is_an_error_naming_the_track() -> None:
    class OnlyBaseline(FakeProvider):
        def range_by_track(self, query: str, start: float, end: float, step_seconds: float) -> TrackSeries:
            return {k: v for k, v in super().range_by_track(query, start, end, step_seconds).items() if k != "canary"}

    (verdict,) = look(template(), OnlyBaseline(50, 0.01, 0.01), CTX, 1000.0, 1100.0).verdicts
    assert verdict.verdict == "Error"
    assert "no data for track canary" in verdict.reason


def fold(spec: AnalysisTemplateSpec, verdicts: list[str], *, deadline_at: int | None = None) -> AnalysisRunState:
    state: AnalysisRunState | None = None
    for index, kind in enumerate(verdicts):
        verdict = MetricVerdict(name="errors", verdict=kind, reason=f"look {index} {kind}")
        state = advance(
            state, AnalysisLook(at=100.0 + index, started_at=0.0, verdicts=[verdict]), spec,
            deadline_reached=deadline_at is not None and index >= deadline_at,
        )
    assert state is not None
    return state


def test_failure_limit_follows_argo_semantics() -> None:
    assert fold(template(), ["Inconclusive", "Fail"]).phase == "Failed"
    assert fold(template(failureLimit=1), ["Fail"]).phase == "Running"
    state = fold(template(failureLimit=1), ["Fail", "Fail"])
    assert state.phase == "Failed" and state.message == "errors: look 1 Fail"


def test_consecutive_errors_end_the_run_only_beyond_the_limit() -> None:
    assert fold(template(consecutiveErrorLimit=2), ["Error", "Error", "Inconclusive", "Error", "Error"]).phase == (
        "Running"
    )
    state = fold(template(consecutiveErrorLimit=2), ["Error", "Error", "Error"])
    assert state.phase == "Error"
    assert "3 looks in a row" in state.message


def test_all_pass_succeeds_and_deadline_without_pass_is_inconclusive() -> None:
    assert fold(template(), ["Inconclusive", "Pass"]).phase == "Successful"
    state = fold(template(), ["Inconclusive", "Inconclusive"], deadline_at=1)
    assert state.phase == "Inconclusive"
    assert state.message.startswith("deadline reached without a verdict: errors: look 1")
    assert fold(template(), ["Error", "Error"], deadline_at=1).phase == "Inconclusive"


def test_sample_ratio_mismatch_counts_against_the_inconclusive_limit() -> None:
    srm = MetricVerdict(
        name="errors", verdict="Inconclusive", reason="sample ratio mismatch", sample_ratio_mismatch=True
    )
    spec = template(inconclusiveLimit=1)
    state = advance(None, AnalysisLook(at=1, started_at=0, verdicts=[srm]), spec, deadline_reached=False)
    assert state.phase == "Running" and state.metrics[0].inconclusives == 1
    state = advance(state, AnalysisLook(at=2, started_at=0, verdicts=[srm]), spec, deadline_reached=False)
    assert state.phase == "Inconclusive"


def test_advance_is_idempotent_and_state_round_trips_through_json() -> None:
    spec = template(failureLimit=3)
    fail = MetricVerdict(name="errors", verdict="Fail", reason="bad", ratio_high=math.inf)
    once = advance(None, AnalysisLook(at=5, started_at=0, verdicts=[fail]), spec, deadline_reached=False)
    twice = advance(once, AnalysisLook(at=5, started_at=0, verdicts=[fail]), spec, deadline_reached=False)
    assert twice == once and once.metrics[0].failures == 1 and once.look_count == 1
    stored = json.loads(json.dumps(once.model_dump(mode="json", by_alias=True)))
    assert stored["lookCount"] == 1 and stored["metrics"][0]["latest"]["ratioHigh"] is None
    assert AnalysisRunState.model_validate(stored) == once
    finished = advance(once, AnalysisLook(at=5, started_at=0, verdicts=[fail]), spec, deadline_reached=True)
    assert finished.phase == "Inconclusive"


def test_whole_run_over_looks_fails_a_bad_canary_and_passes_a_good_one() -> None:
    for canary_error, expected in ((0.07, "Failed"), (0.02, "Successful")):
        spec, provider = template(), FakeProvider(50, canary_error, 0.02, seed=4)
        state: AnalysisRunState | None = None
        for now in range(1010, 1900, 10):
            state = advance(state, look(spec, provider, CTX, 1000.0, float(now)), spec, deadline_reached=False)
            if state.done:
                break
        assert state is not None
        assert state.phase == expected, state.message


def test_parse_matrix_rejects_what_it_cannot_read() -> None:
    ok = parse_matrix([{"metric": {"track": "canary"}, "values": [[1, "NaN"], [2, "+Inf"], [3, "4"]]}])
    assert math.isnan(ok["canary"][0][1]) and ok["canary"][1][1] == math.inf
    with pytest.raises(QueryError, match="no 'track' label"):
        parse_matrix([{"metric": {"job": "x"}, "values": []}])
    with pytest.raises(QueryError, match="several series"):
        parse_matrix([{"metric": {"track": "a"}, "values": []}] * 2)
    with pytest.raises(QueryError, match="unreadable sample"):
        parse_matrix([{"metric": {"track": "a"}, "values": [[1, "x"]]}])
    with pytest.raises(QueryError, match="matrix"):
        parse_matrix([{"metric": {"track": "a"}, "value": [1, "2"]}])


def test_prometheus_error_text_is_extracted() -> None:
    from prometheus_api_client.exceptions import PrometheusApiClientException

    body = b'{"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}'
    exc = PrometheusApiClientException(f"HTTP Status Code 400 ({body!r})")
    assert _api_error(exc) == "bad_data: 1:5: parse error: unclosed left parenthesis (HTTP 400)"


def test_provider_for_uses_the_template_address_or_the_default() -> None:
    assert provider_for(template(), "http://default:9090").address == "http://default:9090"
    settings = {"prometheus": {"address": "http://p:9090/", "timeout": "3s"}}
    own = AnalysisTemplateSpec.model_validate({**template().model_dump(by_alias=True), "provider": settings})
    provider = provider_for(own, "http://default:9090")
    assert (provider.address, provider.timeout_seconds) == ("http://p:9090", 3.0)


# --------------------------------------------------------------------------- judges, critical metrics, score


def mw_template(**spec: Any) -> AnalysisTemplateSpec:
    errors = {"requests": 'req{rollout="{{name}}"}', "events": 'err{rollout="{{name}}"}'}
    metrics = spec.pop("metrics", [{"name": "errors", "errors": errors}])
    return AnalysisTemplateSpec.model_validate(
        {"judge": "mannWhitney", "interval": "10s", "minDuration": "30s", "metrics": metrics, **spec}
    )


def run_to_end(spec: AnalysisTemplateSpec, provider: Any, until: int = 1300) -> AnalysisRunState:
    state: AnalysisRunState | None = None
    for now in range(1010, until + 1, 10):
        state = advance(state, look(spec, provider, CTX, 1000.0, float(now)), spec, deadline_reached=now == until)
        if state.done:
            break
    assert state is not None
    return state


def test_look_dispatches_to_the_mann_whitney_judge() -> None:
    result = look(mw_template(), FakeProvider(50, 0.10, 0.01), CTX, started_at=1000.0, now=1120.0)
    (verdict,) = result.verdicts
    assert verdict.verdict == "Fail" and verdict.classification == "High"
    assert verdict.reason.startswith("Kayenta: High") and verdict.p_value is not None
    assert verdict.hl_estimate is not None and verdict.hl_estimate > 0.05
    early = look(mw_template(), FakeProvider(50, 0.10, 0.01), CTX, started_at=1000.0, now=1020.0).verdicts[0]
    assert early.verdict == "Inconclusive" and "not judged yet" in early.reason


def test_mann_whitney_run_fails_below_marginal_and_succeeds_at_the_deadline_above_pass() -> None:
    failed = run_to_end(mw_template(), FakeProvider(50, 0.10, 0.01, seed=1))
    assert failed.phase == "Failed" and failed.score == 0.0
    assert failed.message.startswith("score 0 < marginal 75") and "errors: Kayenta: High" in failed.message
    healthy = run_to_end(mw_template(), FakeProvider(50, 0.02, 0.02, seed=2))
    assert healthy.phase == "Successful" and healthy.score == 100.0, healthy.message
    assert healthy.look_count == 30  # never Successful before the deadline


def test_mann_whitney_scores_only_judged_looks_without_errors() -> None:
    spec = mw_template()
    fail = MetricVerdict(name="errors", verdict="Fail", reason="Kayenta: High")
    early = advance(None, AnalysisLook(at=20, started_at=0, verdicts=[fail]), spec, deadline_reached=False)
    assert early.phase == "Running" and early.score is None  # 2 windows: not judged
    error = MetricVerdict.error("errors", "Prometheus down")
    state = advance(None, AnalysisLook(at=100, started_at=0, verdicts=[error]), spec, deadline_reached=True)
    assert state.phase == "Inconclusive" and state.score is None  # no data is never Successful
    assert "no score yet" in state.message


def test_mann_whitney_groups_and_marginal_scores_keep_running() -> None:
    errors = {"requests": "req", "events": "err"}
    metrics = [{"name": n, "errors": errors, "group": g} for n, g in (("a", "x"), ("b", "x"), ("c", "y"))]
    spec = mw_template(metrics=metrics, groups={"x": 40}, scoreThresholds={"pass": 95, "marginal": 50})
    verdicts = [MetricVerdict(name="a", verdict="Fail", reason="High"),
                MetricVerdict(name="b", verdict="Pass", reason="ok"),
                MetricVerdict(name="c", verdict="Pass", reason="ok")]
    state = advance(None, AnalysisLook(at=100, started_at=0, verdicts=verdicts), spec, deadline_reached=False)
    assert state.phase == "Running" and state.score == 80.0  # x: 50% * 40 + y: 100% * 60
    final = advance(state, AnalysisLook(at=100, started_at=0, verdicts=verdicts), spec, deadline_reached=True)
    assert final.phase == "Inconclusive" and "score 80" in final.message
    assert advance(final, AnalysisLook(at=110, started_at=0, verdicts=verdicts), spec,
                   deadline_reached=True) == final


def test_a_critical_fail_ends_the_run_at_once_for_both_judges() -> None:
    seq = template(failureLimit=5, critical=True)
    state = fold(seq, ["Inconclusive", "Fail"])
    assert state.phase == "Failed"
    assert state.message.startswith("critical metric failed: errors: look 1 Fail; score 0")
    assert fold(template(failureLimit=5), ["Fail"]).phase == "Running"
    errors = {"requests": "req", "events": "err"}
    spec = mw_template(metrics=[{"name": "errors", "errors": errors, "critical": True},
                                {"name": "other", "errors": errors}],
                       scoreThresholds={"pass": 95, "marginal": 0})
    verdicts = [MetricVerdict(name="errors", verdict="Fail", reason="Kayenta: High"),
                MetricVerdict(name="other", verdict="Pass", reason="ok")]
    state = advance(None, AnalysisLook(at=100, started_at=0, verdicts=verdicts), spec, deadline_reached=False)
    assert state.phase == "Failed" and state.message == "critical metric failed: errors: Kayenta: High; score 0"


def test_direction_reaches_the_sequential_judge() -> None:
    spec = template(direction="decrease")
    (verdict,) = look(spec, FakeProvider(50, 0.01, 0.10), CTX, started_at=1000.0, now=1120.0).verdicts
    assert verdict.verdict == "Fail" and "(decrease)" in verdict.reason


def test_mann_whitney_state_round_trips_through_json() -> None:
    state = run_to_end(mw_template(), FakeProvider(50, 0.02, 0.02, seed=3), until=1100)
    stored = json.loads(json.dumps(state.model_dump(mode="json", by_alias=True)))
    assert "score" in stored and "pValue" in stored["metrics"][0]["latest"]
    assert AnalysisRunState.model_validate(stored) == state


# --------------------------------------------------------------------------- degenerate input never passes


class DegenerateProvider:
    """Answers every query with the same kind of degenerate data for ``windows`` windows."""

    def __init__(self, kind: str, value: float, windows: int) -> None:
        self.kind, self.value, self.windows = kind, value, windows

    def range_by_track(self, query: str, start: float, end: float, step_seconds: float) -> TrackSeries:
        if self.kind == "empty":
            return {}
        value = {"nan": math.nan, "inf": math.inf, "constant": self.value, "zero traffic": 0.0}[self.kind]
        points = [(start + k * step_seconds, value) for k in range(self.windows)
                  if start + k * step_seconds <= end + 1e-9]
        return {"canary": points, "baseline": list(points)}


@settings(max_examples=120, deadline=None)
@given(
    kind=st.sampled_from(["empty", "nan", "inf", "constant", "zero traffic"]),
    value=st.floats(min_value=0, max_value=1e6),
    windows=st.integers(min_value=1, max_value=40),
    judge_name=st.sampled_from(["sequential", "mannWhitney"]),
    nan_strategy=st.sampled_from(["remove", "replace"]),
    latency=st.booleans(),
)
def test_degenerate_input_never_passes_nor_raises(
    kind: str, value: float, windows: int, judge_name: str, nan_strategy: str, latency: bool
) -> None:
    metric: dict[str, Any] = {"name": "m"}
    if latency:
        metric["latency"] = {"histogram": "http_duration_seconds", "threshold": "100ms"}
    else:
        metric["errors"] = {"requests": "req", "events": "err"}
    if judge_name == "mannWhitney":
        metric["nanStrategy"] = nan_strategy
    spec = AnalysisTemplateSpec.model_validate(
        {"judge": judge_name, "interval": "10s", "minDuration": "30s", "metrics": [metric]}
    )
    provider = DegenerateProvider(kind, value, windows)
    state: AnalysisRunState | None = None
    end = 1000 + 10 * (windows + 3)
    for now in range(1010, end + 1, 10):
        seen = look(spec, provider, CTX, 1000.0, float(now))
        assert all(v.verdict != "Pass" for v in seen.verdicts), seen.verdicts
        state = advance(state, seen, spec, deadline_reached=now == end)
    assert state is not None and state.phase != "Successful", state.message


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["nan", "inf", "constant", "zero traffic"]),
    value=st.floats(min_value=0, max_value=1e6),
    windows=st.integers(min_value=0, max_value=40),
    nan_strategy=st.sampled_from(["remove", "replace"]),
    direction=st.sampled_from(["increase", "decrease", "either"]),
)
def test_degenerate_windows_never_pass_in_the_pure_judges(
    kind: str, value: float, windows: int, nan_strategy: str, direction: str
) -> None:
    from siskin.analysis.mannwhitney import MannWhitneySettings, judge_windows
    from siskin.analysis.sequential import JudgeSettings, judge
    from siskin.analysis.windows import build_windows, window_ends

    raw = {"nan": math.nan, "inf": math.inf, "constant": value, "zero traffic": 0.0}[kind]
    ends = window_ends(1010.0, 10.0, windows)
    series: TrackSeries = {track: [(t, raw) for t in ends] for track in ("canary", "baseline")}
    built = build_windows(ends, 10.0, series, events=series)
    seq = judge("m", built.windows, JudgeSettings(alpha=0.01, direction=direction))  # type: ignore[arg-type]
    mw = judge_windows(
        "m", built.windows,
        MannWhitneySettings(nan_strategy=nan_strategy, direction=direction),  # type: ignore[arg-type]
        expected_windows=built.expected, empty_windows=built.skipped.get("no traffic", 0),
    )
    assert seq.verdict != "Pass" and mw.verdict != "Pass"
    single = build_windows(ends[:1], 10.0, {t: [(1010.0, 100.0)] for t in ("canary", "baseline")},
                           events={"canary": [(1010.0, 1.0)], "baseline": [(1010.0, 5.0)]})
    assert judge_windows("m", single.windows, MannWhitneySettings()).verdict != "Pass"
    assert judge("m", single.windows, JudgeSettings(alpha=0.01)).verdict != "Pass"
