"""The analysis against a real Prometheus scraping a tiny exporter with a bad and a healthy canary."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from siskin.analysis.prometheus import PrometheusProvider
from siskin.analysis.queries import QueryContext
from siskin.analysis.run import advance, look
from siskin.analysis.template import AnalysisTemplateSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prometheus_fixture import PrometheusServer, TrafficExporter, free_port, scraping

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus binary not installed")

INTERVAL_SECONDS = 3
RPS_PER_TRACK = 100
# rollout -> track -> (error share, slow share)
BEHAVIOUR = {
    "bad": {"baseline": (0.01, 0.02), "canary": (0.20, 0.40), "stable": (0.01, 0.02)},
    "equal": {"baseline": (0.02, 0.05), "canary": (0.02, 0.05), "stable": (0.02, 0.05)},
}


def exporter_for_tracks() -> TrafficExporter:
    """Simulated traffic for two rollouts, per track."""
    series = {("demo", rollout, track): shares for rollout, tracks in BEHAVIOUR.items()
              for track, shares in tracks.items()}
    return TrafficExporter(["namespace", "rollout", "track"], series, RPS_PER_TRACK, seed=7)


TEMPLATE = AnalysisTemplateSpec.model_validate({
    "alpha": 0.01,
    "interval": f"{INTERVAL_SECONDS}s",
    "minDuration": "6s",
    "metrics": [
        {
            "name": "errors",
            "errors": {
                "requests": 'sum by (track) (increase(http_requests_total{namespace="{{namespace}}",'
                'rollout="{{name}}",track=~"canary|baseline"}[{{interval}}]))',
                "events": 'sum by (track) (increase(http_requests_total{namespace="{{namespace}}",'
                'rollout="{{name}}",track=~"canary|baseline",code=~"5.."}[{{interval}}]))',
            },
        },
        {
            "name": "latency",
            "latency": {
                "histogram": "http_request_duration_seconds",
                "selector": 'namespace="{{namespace}}",rollout="{{name}}",track=~"canary|baseline"',
                "threshold": "250ms",
            },
        },
    ],
})


@pytest.fixture(scope="module")
def prometheus() -> Iterator[tuple[PrometheusServer, float]]:
    """Exporter + Prometheus, yielded once a few complete windows of data exist."""
    query = "sum by (track) (http_requests_total)"
    with scraping(exporter_for_tracks(), query, "canary") as server:
        started_at = time.time()
        time.sleep(4 * INTERVAL_SECONDS + 1)
        yield server, started_at


def test_bad_canary_fails_on_errors_and_latency(prometheus: tuple[PrometheusServer, float]) -> None:
    server, started_at = prometheus
    provider = PrometheusProvider(server.url)
    result = look(TEMPLATE, provider, QueryContext("demo", "bad"), started_at, time.time())
    verdicts = {v.name: v for v in result.verdicts}
    assert verdicts["errors"].verdict == "Fail", verdicts["errors"].reason
    assert verdicts["latency"].verdict == "Fail", verdicts["latency"].reason
    assert verdicts["errors"].windows >= 3
    state = advance(None, result, TEMPLATE, deadline_reached=False)
    assert state.phase == "Failed"
    assert state.message.startswith("errors: canary")


def test_equal_canary_does_not_fail(prometheus: tuple[PrometheusServer, float]) -> None:
    server, started_at = prometheus
    provider = PrometheusProvider(server.url)
    result = look(TEMPLATE, provider, QueryContext("demo", "equal"), started_at, time.time())
    for verdict in result.verdicts:
        assert verdict.verdict in {"Pass", "Inconclusive"}, verdict.reason
        assert verdict.canary_requests > 0 and verdict.baseline_requests > 0
        assert not verdict.sample_ratio_mismatch, verdict.reason


def test_missing_bucket_and_bad_query_are_errors_with_reasons(
    prometheus: tuple[PrometheusServer, float],
) -> None:
    server, started_at = prometheus
    spec = TEMPLATE.model_dump(by_alias=True)
    spec["metrics"][1]["latency"]["threshold"] = "300ms"
    spec["metrics"][0]["errors"]["events"] = "sum by (track) (increase(http_requests_total[{{interval}}])"
    broken = AnalysisTemplateSpec.model_validate(spec)
    result = look(broken, PrometheusProvider(server.url), QueryContext("demo", "bad"), started_at, time.time())
    verdicts = {v.name: v for v in result.verdicts}
    assert verdicts["errors"].verdict == "Error"
    assert "parse error" in verdicts["errors"].reason
    assert verdicts["latency"].verdict == "Error"
    assert "le=300ms" in verdicts["latency"].reason


def test_unreachable_prometheus_is_an_error_with_a_clear_message() -> None:
    provider = PrometheusProvider(f"http://127.0.0.1:{free_port()}", retries=0, timeout_seconds=2)
    now = time.time()
    result = look(TEMPLATE, provider, QueryContext("demo", "bad"), now - 30, now)
    for verdict in result.verdicts:
        assert verdict.verdict == "Error"
        assert "cannot reach Prometheus at http://127.0.0.1:" in verdict.reason
        assert "refused" in verdict.reason.lower()
