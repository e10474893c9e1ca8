"""The real kubectl against the API emulator: apply, get with printer columns, validation, delete."""

from __future__ import annotations

import json
import pathlib
import sys
import time

import httpx
import pytest
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from apiserver_fixtures import KUBECTL, ROLLOUT_CRD, ThreadedAPIServer, apiserver, rollout

__all__ = ["apiserver"]
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "nginx:1",
                                                   "env": [{"name": "A", "value": "1"}]}]}}},
}


def _apply(server: ThreadedAPIServer, manifest: dict[str, object], *flags: str) -> str:
    return server.kubectl("apply", *flags, "-f", "-", stdin=yaml.safe_dump(manifest)).stdout


def _wait_until_listed(server: ThreadedAPIServer, plural: str) -> None:
    deadline = time.monotonic() + 10
    while server.kubectl("get", plural, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{plural} never became available"
        time.sleep(0.2)


def test_apply_get_delete_round_trip_shows_printer_columns(apiserver: ThreadedAPIServer) -> None:
    assert "created" in _apply(apiserver, ROLLOUT_CRD)
    assert "rollout.siskin.dev/demo created" in _apply(apiserver, rollout("demo", replicas=3))
    status = {"status": {"phase": "Progressing", "conditions": [{"type": "Ready", "status": "True"}]}}
    response = httpx.patch(f"{apiserver.url}/apis/siskin.dev/v1alpha1/namespaces/default/rollouts/demo/status",
                           json=status, headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 200

    lines = apiserver.kubectl("get", "rollouts").stdout.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "REPLICAS", "READY", "AGE"]
    assert lines[1].split()[:4] == ["demo", "Progressing", "3", "True"]
    assert lines[1].split()[4].endswith("s")  # an age, not a timestamp

    assert "configured" in _apply(apiserver, rollout("demo", replicas=5))
    fetched = json.loads(apiserver.kubectl("get", "ro", "demo", "-o", "json").stdout)
    assert fetched["spec"]["replicas"] == 5
    assert fetched["metadata"]["generation"] == 2
    assert fetched["status"]["phase"] == "Progressing"
    assert yaml.safe_load(apiserver.kubectl("get", "rollouts", "-o", "yaml").stdout)["kind"] == "List"

    manifest = yaml.safe_dump(rollout("demo", replicas=5))
    assert "deleted" in apiserver.kubectl("delete", "-f", "-", stdin=manifest).stdout
    assert "No resources found" in apiserver.kubectl("get", "rollouts").stderr


def test_schema_violation_is_rejected_naming_the_field(apiserver: ThreadedAPIServer) -> None:
    _apply(apiserver, ROLLOUT_CRD)
    result = apiserver.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(rollout("bad", replicas=150)),
                               check=False)
    assert result.returncode != 0
    assert ("spec.replicas: Invalid value: 150: spec.replicas in body should be less than or equal to 100"
            in result.stderr)

    response = httpx.post(f"{apiserver.url}/apis/siskin.dev/v1alpha1/namespaces/default/rollouts",
                          json=rollout("x", replicas=150))
    assert response.status_code == 422
    assert response.json()["reason"] == "Invalid"
    assert response.json()["message"] == ('Rollout.siskin.dev "x" is invalid: spec.replicas: Invalid value: 150: '
                                          "spec.replicas in body should be less than or equal to 100")


def test_unknown_fields_fail_strict_kubectl_apply(apiserver: ThreadedAPIServer) -> None:
    _apply(apiserver, ROLLOUT_CRD)
    result = apiserver.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(rollout("x", bogus=1)), check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.bogus"' in result.stderr


def test_server_side_apply_and_describe(apiserver: ThreadedAPIServer) -> None:
    _apply(apiserver, ROLLOUT_CRD)
    assert "serverside-applied" in _apply(apiserver, rollout("ssa"), "--server-side")
    assert "serverside-applied" in _apply(apiserver, rollout("ssa", replicas=7), "--server-side")
    assert "Replicas:  7" in apiserver.kubectl("describe", "rollout", "ssa").stdout


def test_deployments_apply_scale_and_events(apiserver: ThreadedAPIServer) -> None:
    assert "created" in _apply(apiserver, DEPLOYMENT)
    updated = json.loads(json.dumps(DEPLOYMENT))
    updated["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    assert "configured" in _apply(apiserver, updated)
    apiserver.kubectl("scale", "deployment", "web", "--replicas=4")
    lines = apiserver.kubectl("get", "deploy").stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "READY"]
    assert lines[1].split()[:2] == ["web", "0/4"]
    deployment = json.loads(apiserver.kubectl("get", "deploy", "web", "-o", "json").stdout)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:2" and container["env"] == [{"name": "A", "value": "1"}]

    event = {"metadata": {"name": "web.1"}, "type": "Normal", "reason": "Scaled", "message": "to 4",
             "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default"}}
    assert httpx.post(f"{apiserver.url}/api/v1/namespaces/default/events", json=event).status_code == 201
    events = apiserver.kubectl("get", "events").stdout
    assert "Scaled" in events and "deployment/web" in events
