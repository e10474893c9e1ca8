"""``siskin analysis backtest`` through the CLI against a real Prometheus scraping four stable pods.

Two rollouts are exported side by side: ``same`` (four pods behaving alike), and
``mixed`` (one pod much worse), which is what an A/A replay exists to catch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prometheus_fixture import TrafficExporter, free_port, scraping

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus binary not installed")

ROOT = Path(__file__).resolve().parents[2]
RPS_PER_POD = 100
HISTORY_SECONDS = 40
PODS = [f"web-{i}" for i in range(4)]
# rollout -> pod -> (error share, slow share)
BEHAVIOUR = {
    "same": {pod: (0.02, 0.05) for pod in PODS},
    "mixed": {pod: (0.30, 0.40) if pod == "web-0" else (0.02, 0.05) for pod in PODS},
}
SELECTOR = 'namespace="{{namespace}}",rollout="{{name}}",track=~"canary|baseline"'
TEMPLATE = {
    "apiVersion": "siskin.dev/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "red"},
    "spec": {
        "alpha": 0.01,
        "interval": "2s",
        "minDuration": "4s",
        "metrics": [
            {
                "name": "errors",
                "errors": {
                    "requests": f"sum by (track) (increase(http_requests_total{{{SELECTOR}}}[{{{{interval}}}}]))",
                    "events": f'sum by (track) (increase(http_requests_total{{{SELECTOR},code=~"5.."}}'
                    "[{{interval}}]))",
                },
                "maxRatio": 3,
            },
            {
                "name": "latency",
                "latency": {"histogram": "http_request_duration_seconds", "selector": SELECTOR, "threshold": "250ms"},
                "maxRatio": 3,
            },
        ],
    },
}


def exporter_for_pods() -> TrafficExporter:
    """Four stable pods per rollout."""
    series = {("demo", rollout, "stable", pod): shares for rollout, pods in BEHAVIOUR.items()
              for pod, shares in pods.items()}
    return TrafficExporter(["namespace", "rollout", "track", "pod"], series, RPS_PER_POD, seed=11)


@pytest.fixture(scope="module")
def history() -> Iterator[tuple[str, float, float]]:
    """Prometheus URL and a ``[from, to]`` range holding ``HISTORY_SECONDS`` of scraped data."""
    query = 'sum by (track) (http_requests_total{track="stable"})'
    with scraping(exporter_for_pods(), query, "stable") as server:
        start = float(int(time.time()) + 2)
        time.sleep(max(0.0, start + HISTORY_SECONDS + 0.5 - time.time()))
        yield server.url, start, start + HISTORY_SECONDS


@pytest.fixture(scope="module")
def template_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("backtest") / "red.yaml"
    path.write_text(yaml.safe_dump(TEMPLATE))
    return path


def siskin(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "siskin", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60)


def backtest(template: str, url: str, start: float, end: float, name: str, stdin: str | None = None) -> Any:
    return siskin("analysis", "backtest", template, "--prometheus", url, "--from", f"{start:.0f}",
                  "--to", f"{end:.0f}", "--namespace", "demo", "--name", name, "--run-length", "10s", "--json",
                  stdin=stdin)


def test_equal_pods_give_no_false_rollbacks(history: tuple[str, float, float], template_file: Path) -> None:
    url, start, end = history
    result = backtest(str(template_file), url, start, end, "same")
    print(result.stdout, result.stderr)
    assert result.returncode == 3, result.stderr  # not trusted: four runs cannot show a 1% rate
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["runs"] == HISTORY_SECONDS // 10
    assert report["judged"] >= 3 and report["skipped"] == 0
    assert report["false_rollbacks"] == 0
    assert report["false_rollback_upper95"] > report["alpha"]
    assert report["run_details"][0]["canary_pods"] == ["web-0", "web-2"]
    assert report["run_details"][0]["baseline_pods"] == ["web-1", "web-3"]
    assert "false rollbacks: 0 of" in result.stdout
    assert "NOT trusted: upper 95% bound" in result.stdout and "replay >= 381 runs" in result.stdout


def test_one_bad_stable_pod_shows_false_rollbacks(history: tuple[str, float, float]) -> None:
    url, start, end = history
    result = backtest("-", url, start, end, "mixed", stdin=yaml.safe_dump(TEMPLATE))
    print(result.stdout, result.stderr)
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["false_rollbacks"] >= report["judged"] - 1 > 0
    assert report["per_metric"]["errors"]["failed"] > 0
    assert "raise spread: healthy pods differ by more than it allows" in report["verdict"]


def test_template_that_cannot_be_rewritten_is_refused(history: tuple[str, float, float]) -> None:
    url, start, end = history
    spec = json.loads(json.dumps(TEMPLATE))
    spec["spec"]["metrics"][0]["errors"]["requests"] = "sum(increase(http_requests_total[{{interval}}]))"
    result = backtest("-", url, start, end, "same", stdin=yaml.safe_dump(spec))
    assert result.returncode == 1
    assert result.stderr.startswith("siskin: analysis backtest: metric 'errors': cannot replay its requests query")
    assert "no `by (track)` grouping" in result.stderr


def test_unreachable_prometheus_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    now = time.time()
    result = siskin("analysis", "backtest", str(ROOT / "examples" / "analysistemplate.yaml"), "--prometheus", url,
                    "--from", "-30m", "--to", "now", "--name", "podinfo")
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(f"siskin: analysis backtest: cannot reach Prometheus at {url}:")
    assert "refused" in result.stderr.lower() and "check --prometheus" in result.stderr
    assert result.stdout == ""
    assert time.time() - now < 30
