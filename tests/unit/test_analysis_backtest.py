"""The A/A backtest's pure parts (query rewrite, pod split, Wilson interval, slicing) and a replay on a fake."""

from __future__ import annotations

import io
import math
import zlib

import numpy as np
import pytest
from siskin.analysis.backtest import (
    BacktestError,
    PodSplit,
    StablePodsProvider,
    backtest,
    backtest_command,
    default_run_length,
    load_template,
    metric_rewrites,
    parse_time,
    per_pod_query,
    rewrite_query,
    runs_needed,
    slice_runs,
    split_pods,
    sum_halves,
    wilson_interval,
)
from siskin.analysis.provider import TrackSeries
from siskin.analysis.queries import QueryContext
from siskin.analysis.template import AnalysisTemplateSpec

from siskin.cli import build_parser

CTX = QueryContext("shop", "podinfo")
SELECTOR = 'namespace="{{namespace}}",rollout="{{name}}",track=~"canary|baseline"'
SPEC = {
    "alpha": 0.01,
    "interval": "10s",
    "minDuration": "30s",
    "metrics": [
        {
            "name": "errors",
            "errors": {
                "requests": f"sum by (track) (increase(http_requests_total{{{SELECTOR}}}[{{{{interval}}}}]))",
                "events": f'sum by (track) (increase(http_requests_total{{{SELECTOR},code=~"5.."}}[{{{{interval}}}}]))',
            },
        },
        {
            "name": "latency",
            "latency": {"histogram": "http_request_duration_seconds", "selector": SELECTOR, "threshold": "250ms"},
        },
    ],
}
TEMPLATE = AnalysisTemplateSpec.model_validate(SPEC)


# ----------------------------------------------------------------------------- query rewrite


def test_errors_queries_select_stable_and_group_by_pod() -> None:
    roles = metric_rewrites(TEMPLATE, CTX)["errors"]
    events = rewrite_query(roles["events"], "errors", "events")
    assert events == (
        'sum by (pod) (increase(http_requests_total{namespace="shop",rollout="podinfo",track="stable",'
        'code=~"5.."}[10s]))'
    )
    assert per_pod_query(roles["requests"], "errors", "requests") == (
        'label_replace(sum by (pod) (increase(http_requests_total{namespace="shop",rollout="podinfo",'
        'track="stable"}[10s])), "track", "pod:$1", "pod", "(.*)")'
    )


def test_latency_queries_keep_the_bucket_matcher() -> None:
    roles = metric_rewrites(TEMPLATE, CTX)["latency"]
    assert set(roles) == {"requests", "fast"}
    count = rewrite_query(roles["requests"], "latency", "histogram count")
    bucket = rewrite_query(roles["fast"], "latency", "histogram bucket", pod_label="kubernetes_pod_name")
    assert count.startswith("sum by (pod) (increase(http_request_duration_seconds_count{")
    assert 'track="stable"}' in count
    assert bucket.startswith("sum by (kubernetes_pod_name) (increase(http_request_duration_seconds_bucket{")
    assert 'track="stable",le=~`0\\.25' in bucket


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('sum(increase(x{track="canary"}[1m])) by (track)', 'sum(increase(x{track="stable"}[1m])) by (pod)'),
        ("sum BY(track) (x{track=~'baseline|canary'})", "sum BY (pod) (x{track=\"stable\"})"),
        ('sum by (track) (x{track=~"^(canary|baseline)$", a="{b}"})', 'sum by (pod) (x{track="stable", a="{b}"})'),
        (
            'sum by (track) (a{track=~"canary|baseline"}) / sum by (track) (b{track=~"canary|baseline"})',
            'sum by (pod) (a{track="stable"}) / sum by (pod) (b{track="stable"})',
        ),
        ('sum by (track) (histogram_quantile(0.9, sum by (le, track) (x{track="canary"})))', None),
    ],
)
def test_rewrite_shapes(query: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(BacktestError, match=r"groups with `by \(le, track\)`"):
            rewrite_query(query, "m", "requests")
    else:
        assert rewrite_query(query, "m", "requests") == expected


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ('sum(increase(x{track=~"canary|baseline"}[1m]))', "has no `by (track)` grouping"),
        ("sum by (track) (increase(x[1m]))", "has no label matchers"),
        ('sum without (track) (x{track="canary"})', "groups with `without (track)`"),
        ('sum by (track) (x{track=~".+"})', 'its matcher track=~".+" does not select canary'),
        ('sum by (track) (x{track!="stable"})', 'its matcher track!="stable" does not select'),
        ('sum by (track) (x{track=~"canary|baseline|stable"})', "does not select canary and/or baseline"),
        ('sum by (track) (x{a="b"})', 'the selector {a="b"} has no track matcher'),
        ('sum by (track) (x{track="canary",track="baseline"})', "has 2 track matchers"),
        ('sum by (track) (x{track=~"canary|baseline", a~"b"})', "cannot read the label matchers"),
    ],
)
def test_rewrite_refusals_name_metric_role_and_shape(query: str, problem: str) -> None:
    with pytest.raises(BacktestError) as info:
        rewrite_query(query, "errors", "events")
    message = str(info.value)
    assert message.startswith("metric 'errors': cannot replay its events query as A/A: ")
    assert problem in message
    assert 'sum by (track) (increase(METRIC{...,track=~"canary|baseline"}' in message
    assert message.endswith(f"query: {query}")


def test_latency_without_track_matcher_points_at_the_selector() -> None:
    spec = {**SPEC, "metrics": [{"name": "latency", "latency": {"histogram": "h", "selector": 'job="web"',
                                                                    "threshold": "250ms"}}]}
    with pytest.raises(BacktestError, match=r"metric 'latency': cannot replay its histogram count "
                                            r"\(from latency.selector\) query as A/A: the selector"):
        metric_rewrites(AnalysisTemplateSpec.model_validate(spec), CTX)


# ----------------------------------------------------------------------------- pods, sums, statistics


def test_pod_split_is_deterministic_and_balanced() -> None:
    pods = ["web-d", "web-a", "web-c", "web-b"]
    split = split_pods(pods)
    assert split == split_pods(reversed(pods)) == split_pods([*pods, "web-a"])
    assert split == PodSplit(canary=("web-a", "web-c"), baseline=("web-b", "web-d"))
    odd = split_pods(["c", "a", "b"])
    assert odd == PodSplit(canary=("a",), baseline=("b",), left_out=("c",))
    assert odd.half_of("c") is None and odd.pods == ("a", "b", "c")
    assert split_pods(["only"]).left_out == ("only",)


def test_sum_halves_adds_pods_per_timestamp_and_leaves_gaps() -> None:
    split = PodSplit(canary=("a", "c"), baseline=("b",), left_out=("d",))
    series = {
        "a": [(10.0, 1.0), (20.0, 2.0)],
        "c": [(10.0, 3.0)],
        "b": [(20.0, 5.0)],
        "d": [(10.0, 100.0)],
        "e": [(10.0, 100.0)],
    }
    assert sum_halves(series, split) == {"canary": [(10.0, 4.0), (20.0, 2.0)], "baseline": [(20.0, 5.0)]}
    nan = sum_halves({"a": [(1.0, math.nan)], "c": [(1.0, 1.0)]}, split)
    assert math.isnan(nan["canary"][0][1]) and "baseline" not in nan


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(0, 10, 0.0, 0.277533), (5, 100, 0.021544, 0.111750), (1, 1, 0.206549, 1.0), (50, 100, 0.403832, 0.596168)],
)
def test_wilson_interval_values(k: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-6)


def test_wilson_interval_edges_and_runs_needed() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert runs_needed(0.01) == 381
    assert wilson_interval(0, runs_needed(0.01))[1] <= 0.01 < wilson_interval(0, runs_needed(0.01) - 1)[1]
    assert runs_needed(0.05) == 73


def test_run_slicing() -> None:
    assert slice_runs(100.0, 130.0, 10.0) == [(100.0, 110.0), (110.0, 120.0), (120.0, 130.0)]
    assert slice_runs(100.4, 135.0, 10.0) == [(101.0, 111.0), (111.0, 121.0), (121.0, 131.0)]
    assert slice_runs(100.0, 109.0, 10.0) == []
    with pytest.raises(ValueError, match="positive"):
        slice_runs(0.0, 10.0, 0.0)
    assert default_run_length(TEMPLATE) == 600.0
    long = AnalysisTemplateSpec.model_validate({**SPEC, "minDuration": "5m"})
    assert default_run_length(long) == 900.0


def test_parse_time_forms() -> None:
    now = 1_800_000_000.0
    assert parse_time("now", now) == now
    assert parse_time("-6h", now) == now - 6 * 3600
    assert parse_time("now-90m", now) == now - 5400
    assert parse_time("1700000000", now) == 1_700_000_000.0
    assert parse_time("2024-01-02T03:04:05Z", now) == 1_704_164_645.0
    assert parse_time("2024-01-02T05:04:05+02:00", now) == 1_704_164_645.0
    with pytest.raises(BacktestError, match="no time zone"):
        parse_time("2024-01-02T03:04:05", now)
    with pytest.raises(BacktestError, match="time: cannot read 'yesterday'"):
        parse_time("yesterday", now)


def test_cli_accepts_relative_times_as_values() -> None:
    args = build_parser().parse_args(["analysis", "backtest", "t.yaml", "--from", "-6h", "--to", "now",
                                      "--arg", "a=b", "--json"])
    assert (args.start, args.end, args.arg, args.json, args.namespace) == ("-6h", "now", ["a=b"], True, "default")


# ----------------------------------------------------------------------------- replay on a fake Prometheus


class PodsPrometheus:
    """Answers the per-pod queries like Prometheus would: Poisson requests, binomial errors and slow requests."""

    def __init__(self, pods: dict[str, float], rps: float = 50.0) -> None:
        self.pods, self.rps = pods, rps
        self.queries: list[tuple[str, float, float]] = []

    def _draw(self, pod: str, t: float, step: float) -> tuple[float, float]:
        rng = np.random.default_rng(zlib.crc32(f"{pod}@{t:.3f}".encode()))
        requests = float(rng.poisson(self.rps * step))
        return requests, float(rng.binomial(int(requests), self.pods[pod]))

    def range_by_track(self, query: str, start: float, end: float, step_seconds: float) -> TrackSeries:
        self.queries.append((query, start, end))
        result: TrackSeries = {}
        for pod in self.pods:
            points = []
            for k in range(round((end - start) / step_seconds) + 1):
                t = start + k * step_seconds
                requests, bad = self._draw(pod, t, step_seconds)
                value = bad if 'code=~"5.."' in query else requests - bad if "_bucket" in query else requests
                points.append((t, value))
            result[f"pod:{pod}"] = points
        return result


def test_a_a_replay_of_equal_pods_rolls_nothing_back() -> None:
    fake = PodsPrometheus({f"web-{i}": 0.02 for i in range(4)})
    report = backtest(TEMPLATE, fake, CTX, 1000.0, 1000.0 + 6 * 240, 240.0, template_name="red")
    assert len(report.runs) == 6 and report.count("Failed") == 0
    assert report.judged == 6 and report.count("Successful") >= 4
    summary = report.summary()
    assert summary["run_details"][0]["canary_pods"] == ["web-0", "web-2"]
    assert summary["per_metric"]["errors"]["failed"] == 0
    assert summary["verdict"].startswith("NOT trusted: upper 95% bound") and "replay >= 381 runs" in summary["verdict"]
    # one range query per metric query and run: looks inside a run are served from it
    assert len(fake.queries) == 6 * 4


def test_a_a_replay_with_one_bad_pod_shows_false_rollbacks() -> None:
    fake = PodsPrometheus({"web-0": 0.2, "web-1": 0.02, "web-2": 0.02, "web-3": 0.02})
    report = backtest(TEMPLATE, fake, CTX, 1000.0, 1000.0 + 3 * 120, 120.0)
    assert report.count("Failed") == 3
    assert report.per_metric()["errors"]["failed"] == 3
    assert "raise spread: healthy pods differ by more than it allows" in report.verdict()
    assert report.runs[0].message.startswith("errors: canary")


def test_a_single_stable_pod_is_refused_with_the_reason() -> None:
    with pytest.raises(BacktestError, match=r"A/A needs at least two stable pods; found 1 \(3 of 3 runs\); "
                                            r"stable pods seen: web-0"):
        backtest(TEMPLATE, PodsPrometheus({"web-0": 0.02}), CTX, 0.0, 30.0, 10.0)


def test_range_and_run_length_errors() -> None:
    fake = PodsPrometheus({"a": 0.0, "b": 0.0})
    with pytest.raises(BacktestError, match="is not after --from"):
        backtest(TEMPLATE, fake, CTX, 100.0, 50.0, 10.0)
    with pytest.raises(BacktestError, match="shorter than the template's interval 10s"):
        backtest(TEMPLATE, fake, CTX, 0.0, 100.0, 5.0)
    with pytest.raises(BacktestError, match="shorter than one run"):
        backtest(TEMPLATE, fake, CTX, 0.0, 100.0, 600.0)


def test_provider_slices_one_fetch_for_every_look() -> None:
    fake = PodsPrometheus({"a": 0.0, "b": 0.0})
    query = "q"
    provider = StablePodsProvider(fake, {query: "per-pod q"}, fetch_until=50.0)
    provider.split = split_pods(["a", "b"])
    short = provider.range_by_track(query, 10.0, 20.0, 10.0)
    full = provider.range_by_track(query, 10.0, 50.0, 10.0)
    assert [t for t, _ in short["canary"]] == [10.0, 20.0]
    assert [t for t, _ in full["baseline"]] == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert fake.queries == [("per-pod q", 10.0, 50.0)]


def test_template_loading_and_command_input_errors() -> None:
    name, spec = load_template("kind: AnalysisTemplate\nmetadata: {name: red}\nspec:\n  metrics: []\n"
                               .replace("metrics: []", "interval: 10s\n  metrics: [{name: e, errors: "
                                        "{requests: r, events: e}}]"), "t.yaml")
    assert name == "red" and spec.interval == "10s"
    for spec_fields, metric_fields, message in [
        ("groups: {latency: 10}, ", "", r"^t.yaml: spec.groups.latency: no metric has group 'latency'"),
        ("", "tolerance: 0.5, ", r"^t.yaml: spec.metrics\[0\].tolerance: "),
        ("", "tolernce: 2, ", r"^t.yaml: spec.metrics\[0\].tolernce: is not a known field"),
        ("alpha: 2, ", "", r"^t.yaml: spec.alpha: "),
        ("scoreThresholds: {pass: 50, marginal: 90}, ", "", r"^t.yaml: spec.scoreThresholds: marginal 90 is above"),
        ("", "passBelowRate: 2e-1, direction: either, ", r"^t.yaml: spec.metrics\[0\].passBelowRate \(metric 'e'\)"),
    ]:
        with pytest.raises(BacktestError, match=message):
            load_template(f"kind: AnalysisTemplate\nspec: {{{spec_fields}metrics: [{{name: e, {metric_fields}"
                          "errors: {requests: r, events: e}}]}", "t.yaml")
    with pytest.raises(BacktestError, match="holds 0 AnalysisTemplates"):
        load_template("kind: Rollout\n", "t.yaml")
    with pytest.raises(BacktestError, match=r"cannot read template /nonexistent\.yaml"):
        backtest_command("/nonexistent.yaml", prometheus="http://x", start="-1h", end="now", namespace="shop",
                         name="web", args=[], run_length=None)
    yaml_text = (
        "kind: AnalysisTemplate\nspec:\n  metrics:\n  - name: errors\n"
        "    errors: {requests: 'r{rollout=\"{{name}}\"}', events: e}\n"
    )
    with pytest.raises(BacktestError, match=r"use \{\{name\}\}: pass --name"):
        backtest_command("-", prometheus="http://x", start="-1h", end="now", namespace="shop", name="",
                         args=[], run_length=None, stdin=io.StringIO(yaml_text))
    with pytest.raises(BacktestError, match="--arg 'oops' is not K=V"):
        backtest_command("-", prometheus="http://x", start="-1h", end="now", namespace="shop", name="web",
                         args=["oops"], run_length=None, stdin=io.StringIO(yaml_text))
    with pytest.raises(BacktestError, match=r"^--from: cannot read 'garbage': use RFC 3339"):
        backtest_command("-", prometheus="http://x", start="garbage", end="now", namespace="shop", name="web",
                         args=[], run_length=None, stdin=io.StringIO(yaml_text))
    with pytest.raises(BacktestError, match=r"^--to: '2024-01-02T03:04:05' has no time zone"):
        backtest_command("-", prometheus="http://x", start="-1h", end="2024-01-02T03:04:05", namespace="shop",
                         name="web", args=[], run_length=None, stdin=io.StringIO(yaml_text))
    with pytest.raises(BacktestError, match=r"^--from: '99999999999999999999' is before 1970 or after 9999"):
        backtest_command("-", prometheus="http://x", start="99999999999999999999", end="now", namespace="shop",
                         name="web", args=[], run_length=None, stdin=io.StringIO(yaml_text))
    with pytest.raises(BacktestError, match=r"^--from/--to span \d+ runs of 600s, more than 20000; narrow the range"):
        backtest_command("-", prometheus="http://x", start="0", end="now", namespace="shop", name="web",
                         args=[], run_length=None, stdin=io.StringIO(yaml_text))
    with pytest.raises(BacktestError, match=r"is in the future .*; use --to now or an earlier time"):
        backtest_command("-", prometheus="http://x", start="-1h", end="100000", namespace="shop", name="web",
                         args=[], run_length=None, stdin=io.StringIO(yaml_text), now=10_000.0)


def test_no_stable_data_points_at_the_context() -> None:
    with pytest.raises(BacktestError, match=r"no stable data: .* \(2 of 2 runs\); check --namespace/--name/--arg"):
        backtest(TEMPLATE, PodsPrometheus({}), CTX, 0.0, 20.0, 10.0)


def test_series_without_a_pod_label_ask_for_pod_label() -> None:
    with pytest.raises(BacktestError, match=r"metric 'errors': stable series have no 'pod' label.*--pod-label"):
        backtest(TEMPLATE, PodsPrometheus({"": 0.0}), CTX, 0.0, 20.0, 10.0)


def test_odd_pod_count_leaves_the_last_pod_out() -> None:
    fake = PodsPrometheus({"a": 0.02, "b": 0.02, "c": 0.9})
    report = backtest(TEMPLATE, fake, CTX, 1000.0, 1120.0, 120.0)
    assert report.count("Failed") == 0
    assert report.summary()["run_details"][0]["left_out"] == ["c"]
