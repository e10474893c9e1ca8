"""The assembled sandbox: kubeconfig, HTTPRoute CRD, load visible in Prometheus, up/down."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from siskin.sandbox import cluster, testing

NAMESPACE = "demo"


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


async def test_sandbox_serves_routes_runs_pods_and_prometheus_sees_the_split(tmp_path: Path) -> None:
    async with cluster.Sandbox(tmp_path / "state", scrape_interval_s=0.5) as sandbox, aiohttp.ClientSession() as s:
        kubeconfig = yaml.safe_load(sandbox.kubeconfig_path.read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"] == sandbox.api_url
        state = cluster.read_state(sandbox.state_file)
        assert state is not None and state.prometheus_url == sandbox.prometheus_url

        for track in ("stable", "canary"):
            labels = {"app": "web", "siskin.dev/track": track, "siskin.dev/rollout": "web"}
            manifest = testing.deployment_manifest(NAMESPACE, f"web-{track}", 1, {"LATENCY_MS": "1"}, labels)
            await testing.create(s, sandbox.api_url, "deployments", manifest)
            service: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"web-{track}", "namespace": NAMESPACE},
                "spec": {"selector": labels, "ports": [{"port": 80}]},
            }
            await testing.create(s, sandbox.api_url, "services", service)
        route = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": NAMESPACE},
            "spec": {
                "parentRefs": [{"name": "gateway"}],
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "web-stable", "port": 80, "weight": 75},
                            {"name": "web-canary", "port": 80, "weight": 25},
                        ]
                    }
                ],
            },
        }
        await testing.create(s, sandbox.api_url, "httproutes", route)

        async def both_running() -> bool:
            return len(sandbox.simulator.endpoints()) == 2

        await testing.wait_for(both_running, what="both Deployments to run")
        load = await sandbox.add_load("HTTPRoute demo/web", rps=300, max_requests=900, seed=5)
        await asyncio.wait_for(load.wait(), timeout=10)

        async def all_scraped() -> dict[str, float] | None:
            result = await sandbox.prometheus.query('sum by (track) (http_requests_total{rollout="web"})')
            totals = {str(r["metric"]["track"]): float(r["value"][1]) for r in result}
            return totals if sum(totals.values()) >= 900 else None

        totals = await testing.wait_for(all_scraped, what="Prometheus to count all requests by track")
        assert totals["stable"] + totals["canary"] == 900
        assert abs(totals["canary"] / 900 - 0.25) < 0.05, totals
    assert not sandbox.state_file.exists()


async def test_up_runs_detached_and_down_leaves_nothing_behind(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    loop = asyncio.get_running_loop()
    loads = [cluster.parse_load(f"Service {NAMESPACE}/app@50")]
    info = await loop.run_in_executor(None, lambda: cluster.sandbox_up(state_dir, loads=loads))
    try:
        assert cluster.running_sandbox(state_dir) == info
        assert Path(info.kubeconfig_path).exists()
        async with aiohttp.ClientSession() as session:
            await testing.create(session, info.api_url, "deployments", testing.deployment_manifest(NAMESPACE, "app"))

            async def available() -> bool:
                body = await testing.get(session, info.api_url, "apps/v1", "deployments", NAMESPACE, "app")
                return bool((body.get("status") or {}).get("availableReplicas") == 1)

            await testing.wait_for(available, what="the detached sandbox to run the Deployment")
            service = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "app", "namespace": NAMESPACE},
                "spec": {"selector": {"app": "app"}},
            }
            await testing.create(session, info.api_url, "services", service)

            async def loaded() -> bool:  # the load started with the sandbox reaches the new Service
                query = {"query": f'sum(http_requests_total{{namespace="{NAMESPACE}"}})'}
                async with session.get(f"{info.prometheus_url}/api/v1/query", params=query) as reply:
                    result = (await reply.json())["data"]["result"]
                return bool(result) and float(result[0]["value"][1]) > 0

            await testing.wait_for(loaded, what="the sandbox's own load to show in Prometheus")
        children = children_of(info.pid)
        assert len(children) >= 2  # Prometheus and the demo service
        assert await loop.run_in_executor(None, cluster.sandbox_up, state_dir) == info  # idempotent
    finally:
        stopped = await loop.run_in_executor(None, cluster.sandbox_down, state_dir)
    assert stopped
    assert not process_alive(info.pid)
    leftovers = [pid for pid in children if process_alive(pid)]
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert leftovers == []
    assert cluster.running_sandbox(state_dir) is None
    assert not await loop.run_in_executor(None, cluster.sandbox_down, state_dir)


async def test_kill_9_of_a_detached_sandbox_leaves_no_orphans(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    loop = asyncio.get_running_loop()
    info = await loop.run_in_executor(None, cluster.sandbox_up, state_dir)
    try:
        async with aiohttp.ClientSession() as session:
            await testing.create(session, info.api_url, "deployments", testing.deployment_manifest(NAMESPACE, "app"))

            async def two_children() -> bool:
                return len(children_of(info.pid)) >= 2

            await testing.wait_for(two_children, what="Prometheus and a demo service under the sandbox")
        children = children_of(info.pid)
        os.kill(info.pid, signal.SIGKILL)

        async def all_gone() -> bool:
            return not any(process_alive(pid) for pid in [info.pid, *children])

        await testing.wait_for(all_gone, timeout_s=5, what="the sandbox's children to die with it")
        assert cluster.running_sandbox(state_dir) is None
    finally:
        await loop.run_in_executor(None, cluster.sandbox_down, state_dir)
