"""The CLI steers a Rollout the way the operator expects: annotations keyed by revision and step."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from apiserver_fixtures import ThreadedAPIServer, apiserver  # noqa: F401
from siskin.operator.kube import ROLLOUTS, KubeAPI

ROOT = pathlib.Path(__file__).resolve().parents[2]


def siskin(server: ThreadedAPIServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "siskin", *args], env=server.env(), capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def kube(apiserver: ThreadedAPIServer) -> KubeAPI:  # noqa: F811
    server = apiserver
    server.kubectl("apply", "-f", str(ROOT / "crds" / "rollout.yaml"))
    server.kubectl("apply", "-f", str(ROOT / "examples" / "rollout.yaml"))
    return KubeAPI(kubeconfig=str(server.kubeconfig))


def set_status(kube: KubeAPI, **status: object) -> None:
    body = kube.get(ROLLOUTS, "default", "podinfo")
    assert body is not None
    kube.replace(ROLLOUTS, "default", "podinfo", {**body, "status": status}, subresource="status")


def annotations(kube: KubeAPI) -> dict[str, str]:
    body = kube.get(ROLLOUTS, "default", "podinfo") or {}
    return dict(body["metadata"].get("annotations") or {})


def test_promote_names_the_canary_revision_and_current_step(apiserver: ThreadedAPIServer,  # noqa: F811
                                                            kube: KubeAPI) -> None:
    set_status(kube, phase="Paused", canaryRevision="abc123", currentStepIndex=3)
    result = siskin(apiserver, "promote", "podinfo")
    assert result.returncode == 0, result.stderr
    assert annotations(kube)["siskin.dev/promote"].startswith("abc123:3@")
    assert "at step 4/4" in result.stdout
    assert siskin(apiserver, "promote", "podinfo", "--full").returncode == 0
    assert annotations(kube)["siskin.dev/promote"].startswith("abc123:full@")


def test_promote_refuses_what_it_cannot_do(apiserver: ThreadedAPIServer, kube: KubeAPI) -> None:  # noqa: F811
    set_status(kube, phase="Progressing", canaryRevision="abc123", currentStepIndex=0)
    at_set_weight = siskin(apiserver, "promote", "podinfo")
    assert at_set_weight.returncode == 1 and "completes by itself" in at_set_weight.stderr
    set_status(kube, phase="Degraded", canaryRevision="abc123", abortedRevision="abc123", currentStepIndex=1)
    rolled_back = siskin(apiserver, "promote", "podinfo")
    assert rolled_back.returncode == 1 and "siskin retry podinfo" in rolled_back.stderr
    assert "siskin.dev/promote" not in annotations(kube)


def test_abort_then_retry_replaces_the_abort_request(apiserver: ThreadedAPIServer,  # noqa: F811
                                                     kube: KubeAPI) -> None:
    set_status(kube, phase="Progressing", canaryRevision="abc123", currentStepIndex=1)
    assert siskin(apiserver, "abort", "podinfo").returncode == 0
    assert annotations(kube)["siskin.dev/abort"].startswith("abc123@")
    set_status(kube, phase="Degraded", abortedRevision="abc123")
    assert siskin(apiserver, "retry", "podinfo").returncode == 0
    after = annotations(kube)
    assert after["siskin.dev/retry"].startswith("abc123@") and "siskin.dev/abort" not in after


def test_steering_without_a_canary_says_why(apiserver: ThreadedAPIServer, kube: KubeAPI) -> None:  # noqa: F811
    set_status(kube, phase="Healthy", stableRevision="abc123")
    result = siskin(apiserver, "promote", "podinfo")
    assert result.returncode == 1
    assert "has no canary in progress" in result.stderr and "Traceback" not in result.stderr
    missing = siskin(apiserver, "status", "nope")
    assert missing.returncode == 1 and "Rollout default/nope not found" in missing.stderr


def test_get_and_status_show_phase_and_figures(apiserver: ThreadedAPIServer, kube: KubeAPI) -> None:  # noqa: F811
    verdict = {"name": "errors", "verdict": "Fail", "reason": "canary 7% vs baseline 2%", "canaryRate": 0.07,
               "baselineRate": 0.02, "canaryRequests": 900, "baselineRequests": 910, "ratioEstimate": 3.5,
               "ratioLow": 2.4, "ratioHigh": 5.2, "eValue": 412.0, "threshold": 200.0}
    set_status(kube, phase="Degraded", canaryWeight=0, currentStepIndex=1, verdict="Fail",
               message="revision abc rolled back", stepAnalysis={
                   "stepIndex": 1, "templates": ["red"], "startedAt": "2026-01-01T00:00:00Z",
                   "runs": {"red": {"phase": "Failed", "state": {"metrics": [{"name": "errors", "latest": verdict}]}}}})
    listing = siskin(apiserver, "get")
    assert listing.returncode == 0 and "podinfo" in listing.stdout and "Degraded" in listing.stdout
    status = siskin(apiserver, "status", "podinfo")
    assert status.returncode == 0, status.stderr
    assert "red/errors: Fail" in status.stdout and "ratio 3.50 [2.4, 5.2]" in status.stdout
    shown = yaml.safe_load(apiserver.kubectl("get", "rollout", "podinfo", "-o", "yaml").stdout)
    assert shown["status"]["verdict"] == "Fail"
