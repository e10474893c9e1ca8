"""The workload simulator against an API emulator over HTTP and a real Prometheus."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from siskin.sandbox import prometheus, testing
from siskin.sandbox.workloads import Endpoint, WorkloadSimulator

NAMESPACE = "shop"
POD_LABELS = {
    "app": "web",
    "app.kubernetes.io/name": "web",
    "siskin.dev/track": "stable",
    "siskin.dev/rollout": "web",
    "siskin.dev/revision": "rev1",
}


def process_exists(pid: int) -> bool:
    """True if `pid` runs and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def descendants(pid: int) -> list[int]:
    """Pids of all processes below `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


async def deployment_status(session: aiohttp.ClientSession, api_url: str, name: str) -> dict[str, Any]:
    body = await testing.get(session, api_url, "apps/v1", "deployments", NAMESPACE, name)
    status: dict[str, Any] = body.get("status") or {}
    return status


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


async def test_deployment_runs_is_scraped_updates_and_scales_to_zero(tmp_path: Path) -> None:
    async with (
        testing.api_server() as api_url,
        prometheus.PrometheusServer(sd_file=tmp_path / "targets.json", scrape_interval_s=0.5) as prom,
        WorkloadSimulator(api_url, prom.sd_file, log_dir=tmp_path / "logs") as simulator,
        aiohttp.ClientSession() as session,
    ):
        manifest = testing.deployment_manifest(
            NAMESPACE,
            "web",
            replicas=2,
            environment={"VERSION": "v1", "LATENCY_MS": "2"},
            pod_labels=POD_LABELS,
        )
        await testing.create(session, api_url, "deployments", manifest)

        async def available() -> dict[str, Any] | None:
            status = await deployment_status(session, api_url, "web")
            return status if status.get("availableReplicas") == 2 else None

        status = await testing.wait_for(available, what="web to become available")
        assert status["readyReplicas"] == status["updatedReplicas"] == status["replicas"] == 2
        assert condition(status, "Available")["status"] == "True"
        assert condition(status, "Progressing")["reason"] == "NewReplicaSetAvailable"

        [endpoint] = simulator.endpoints_for_selector(NAMESPACE, {"app": "web", "siskin.dev/track": "stable"})
        assert endpoint.ready_replicas == 2
        assert simulator.endpoints_for_selector(NAMESPACE, {"app": "other"}) == []
        assert simulator.endpoints_for_selector("elsewhere", {"app": "web"}) == []
        for _ in range(5):
            async with session.get(endpoint.url + "/") as reply:
                assert reply.status == 200
                assert reply.headers["X-Version"] == "v1"

        async def scraped() -> list[dict[str, Any]] | None:
            result = await prom.query('http_requests_total{code="200",track="stable"} > 0')
            return result or None

        [series] = await testing.wait_for(scraped, timeout_s=15, what="Prometheus to scrape the demo service")
        labels = series["metric"]
        assert isinstance(labels, dict)
        assert labels["namespace"] == NAMESPACE and labels["deployment"] == "web"
        assert labels["pod"] == endpoint.pod and endpoint.pod.startswith("web-")
        assert labels["rollout"] == "web" and labels["revision"] == "rev1"
        assert labels["app_kubernetes_io_name"] == "web" and labels["siskin_dev_track"] == "stable"
        assert labels["pod_template_hash"] == endpoint.pod.removeprefix("web-")

        # A template change replaces the process (new one ready before the old one goes).
        changed = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "siskin/demo-app",
                                "env": [{"name": "VERSION", "value": "v2"}],
                            }
                        ]
                    }
                }
            }
        }
        await testing.merge_patch(session, api_url, "apps/v1", "deployments", NAMESPACE, "web", changed)

        async def replaced() -> Endpoint | None:
            found = simulator.endpoints_for_selector(NAMESPACE, {"app": "web"})
            return found[0] if found and found[0].pid != endpoint.pid else None

        new_endpoint = await testing.wait_for(replaced, what="a new process for the new template")
        async with session.get(new_endpoint.url + "/") as reply:
            assert reply.headers["X-Version"] == "v2"
        assert new_endpoint.pod != endpoint.pod
        await testing.wait_for(
            lambda: _async(not process_exists(endpoint.pid)), what="the old process to stop"
        )
        status = await testing.wait_for(available, what="web to settle on the new template")
        assert status["updatedReplicas"] == 2

        # Scale to zero: the process stops and the status says 0.
        await testing.merge_patch(
            session, api_url, "apps/v1", "deployments", NAMESPACE, "web", {"spec": {"replicas": 0}}
        )

        async def scaled_down() -> dict[str, Any] | None:
            status = await deployment_status(session, api_url, "web")
            return status if status.get("replicas") == 0 and status.get("readyReplicas") == 0 else None

        status = await testing.wait_for(scaled_down, what="web to scale to zero")
        assert status["availableReplicas"] == 0
        await testing.wait_for(
            lambda: _async(not process_exists(new_endpoint.pid)), what="the process to stop"
        )
        assert simulator.endpoints() == []
        assert "127.0.0.1" not in prom.sd_file.read_text()


async def _async(value: bool) -> bool:
    return value


async def test_bad_environment_is_reported_in_status(tmp_path: Path) -> None:
    async with (
        testing.api_server() as api_url,
        WorkloadSimulator(api_url, tmp_path / "targets.json", log_dir=tmp_path) as simulator,
        aiohttp.ClientSession() as session,
    ):
        manifest = testing.deployment_manifest(NAMESPACE, "broken", environment={"ERROR_RATE": "lots"})
        await testing.create(session, api_url, "deployments", manifest)

        async def failed() -> dict[str, Any] | None:
            progressing = condition(await deployment_status(session, api_url, "broken"), "Progressing")
            return progressing if progressing.get("reason") == "ProgressDeadlineExceeded" else None

        progressing = await testing.wait_for(failed, what="the failure to show in status")
        assert progressing["status"] == "False"
        assert "ERROR_RATE='lots'" in progressing["message"]
        assert simulator.endpoints() == []
        assert "ERROR_RATE" in (simulator.failure(NAMESPACE, "broken") or "")

        # Deleting the Deployment forgets it.
        await testing.delete(session, api_url, "apps/v1", "deployments", NAMESPACE, "broken")
        await testing.wait_for(
            lambda: _async(simulator.failure(NAMESPACE, "broken") is None), what="forgetting"
        )


SIMULATOR_CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from siskin.sandbox.prometheus import PrometheusServer
    from siskin.sandbox.workloads import WorkloadSimulator

    async def main() -> None:
        work = Path(sys.argv[2])
        async with PrometheusServer(sd_file=work / "targets.json", work_root=work) as prom:
            async with WorkloadSimulator(sys.argv[1], prom.sd_file, log_dir=work):
                print("ready", flush=True)
                await asyncio.sleep(3600)

    asyncio.run(main())
""")


async def test_kill_9_of_the_simulator_leaves_no_orphans(tmp_path: Path) -> None:
    async with testing.api_server() as api_url, aiohttp.ClientSession() as session:
        child = subprocess.Popen(
            [sys.executable, "-c", SIMULATOR_CHILD, api_url, str(tmp_path)], stdout=subprocess.PIPE
        )
        try:
            assert child.stdout is not None
            line = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
            assert line.strip() == b"ready"
            await testing.create(
                session, api_url, "deployments", testing.deployment_manifest(NAMESPACE, "orphan")
            )

            async def available() -> bool:
                return (await deployment_status(session, api_url, "orphan")).get("availableReplicas") == 1

            await testing.wait_for(available, what="the child's simulator to start the process")
            below = descendants(child.pid)
            assert len(below) >= 2, "expected a Prometheus and a demo service under the simulator"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(process_exists(pid) for pid in below):
            await asyncio.sleep(0.1)
        survivors = [pid for pid in below if process_exists(pid)]
        for pid in survivors:  # clean up before failing
            os.kill(pid, signal.SIGKILL)
        assert survivors == []


@pytest.fixture(autouse=True)
def _no_behaviour_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VERSION", "ERROR_RATE", "LATENCY_MS", "LATENCY_SIGMA"):
        monkeypatch.delenv(name, raising=False)
