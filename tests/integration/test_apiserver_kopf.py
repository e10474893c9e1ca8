"""A real Kopf operator process against the API emulator: create/update/delete handlers, status, events."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from apiserver_fixtures import KUBECTL, ROLLOUT_CRD, ThreadedAPIServer, apiserver, rollout

__all__ = ["apiserver"]
ROLLOUTS = "/apis/siskin.dev/v1alpha1/namespaces/default/rollouts"

OPERATOR_SOURCE = '''
import kopf

@kopf.on.startup()
def configure(settings, **_):
    settings.posting.level = 0
    settings.watching.server_timeout = 30

@kopf.on.create("siskin.dev", "v1alpha1", "rollouts")
def created(spec, patch, body, **_):
    kopf.info(body, reason="Created", message=f"replicas={spec.get('replicas')}")
    patch.status["phase"] = "Progressing"
    patch.status["conditions"] = [{"type": "Ready", "status": "True"}]

@kopf.on.update("siskin.dev", "v1alpha1", "rollouts", field="spec.replicas")
def updated(new, patch, body, **_):
    kopf.info(body, reason="Scaled", message=f"replicas={new}")
    patch.status["phase"] = f"Scaled{new}"

@kopf.on.delete("siskin.dev", "v1alpha1", "rollouts")
def deleted(body, **_):
    kopf.info(body, reason="Deleting", message="cleaned up")
'''


def _eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


@pytest.fixture
def kopf_operator(apiserver: ThreadedAPIServer, tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A `kopf run --standalone -A` subprocess; yields its log file."""
    module = tmp_path / "operator_under_test.py"
    module.write_text(OPERATOR_SOURCE)
    log = tmp_path / "kopf.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "-A", "--verbose", str(module)],
            stdout=log_file, stderr=subprocess.STDOUT, env=apiserver.env())
        try:
            yield log
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_kopf_handles_create_update_delete(apiserver: ThreadedAPIServer, kopf_operator: pathlib.Path) -> None:
    client = httpx.Client(base_url=apiserver.url, timeout=10)
    assert client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=ROLLOUT_CRD).is_success
    if KUBECTL is not None:
        apiserver.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(rollout("demo", replicas=3)))
    else:
        assert client.post(ROLLOUTS, json=rollout("demo", replicas=3)).is_success

    def phase() -> str | None:
        return client.get(f"{ROLLOUTS}/demo").json().get("status", {}).get("phase")

    assert _eventually(lambda: phase() == "Progressing", timeout=30)
    body = client.get(f"{ROLLOUTS}/demo").json()
    assert body["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
    assert body["status"]["conditions"] == [{"type": "Ready", "status": "True"}]

    client.patch(f"{ROLLOUTS}/demo", json={"spec": {"replicas": 4}},
                 headers={"Content-Type": "application/merge-patch+json"})
    assert _eventually(lambda: phase() == "Scaled4")

    def reasons() -> set[str]:
        events = client.get("/api/v1/namespaces/default/events",
                            params={"fieldSelector": "involvedObject.name=demo"}).json()["items"]
        return {event["reason"] for event in events}

    assert _eventually(lambda: {"Created", "Scaled"} <= reasons())

    client.delete(f"{ROLLOUTS}/demo")
    assert _eventually(lambda: client.get(f"{ROLLOUTS}/demo").status_code == 404)
    assert "Deleting" in reasons()
    log = kopf_operator.read_text()
    assert "Handler 'deleted' succeeded" in log
    assert "Traceback" not in log
