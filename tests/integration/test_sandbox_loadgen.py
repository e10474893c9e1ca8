"""The load generator splits real requests by HTTPRoute weights and by ready replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from siskin.sandbox import testing
from siskin.sandbox.loadgen import LoadGenerator, LoadTarget, is_loopback_url
from siskin.sandbox.workloads import WorkloadSimulator

NAMESPACE = "shop"


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def http_route(weights: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [{"backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in weights.items()]}],
        },
    }


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[str, WorkloadSimulator, aiohttp.ClientSession]]:
    """API + simulator with web-stable (3 replicas) and web-canary (1 replica), a Service for each and one for both."""
    async with (
        testing.api_server() as api_url,
        WorkloadSimulator(api_url, tmp_path / "targets.json", log_dir=tmp_path) as simulator,
        aiohttp.ClientSession() as session,
    ):
        for track, replicas in (("stable", 3), ("canary", 1)):
            labels = {"app": "web", "siskin.dev/track": track}
            manifest = testing.deployment_manifest(
                NAMESPACE, f"web-{track}", replicas, {"VERSION": track, "LATENCY_MS": "1"}, labels
            )
            await testing.create(session, api_url, "deployments", manifest)
            await testing.create(session, api_url, "services", service(f"web-{track}", labels))
        await testing.create(session, api_url, "services", service("web", {"app": "web"}))

        async def both_ready() -> bool:
            return len(simulator.endpoints_for_selector(NAMESPACE, {"app": "web"})) == 2

        await testing.wait_for(both_ready, what="both Deployments to run")
        yield api_url, simulator, session


def share(counts: dict[str, int], service_name: str) -> float:
    return counts.get(service_name, 0) / max(sum(counts.values()), 1)


async def test_httproute_weights_split_the_load_and_changes_apply(
    cluster: tuple[str, WorkloadSimulator, aiohttp.ClientSession],
) -> None:
    api_url, simulator, session = cluster
    await testing.create(session, api_url, "httproutes", http_route({"web-stable": 80, "web-canary": 20}))
    load = LoadGenerator(
        api_url, "HTTPRoute shop/web", simulator.endpoints_for_selector, rps=400, duration_s=30, seed=7
    )
    async with load:
        await testing.wait_for(lambda: _async(load.arrivals >= 2000), what="2000 requests", interval_s=0.05)
        first = load.sent_by_service()
        assert abs(share(first, "web-canary") - 0.20) < 0.04, first

        await testing.merge_patch(
            session,
            api_url,
            "gateway.networking.k8s.io/v1",
            "httproutes",
            NAMESPACE,
            "web",
            {
                "spec": {
                    "rules": [
                        {
                            "backendRefs": [
                                {"name": "web-stable", "port": 80, "weight": 50},
                                {"name": "web-canary", "port": 80, "weight": 50},
                            ]
                        }
                    ]
                }
            },
        )
        await asyncio.sleep(1.2)  # > refresh interval: the new weights are in force
        before = load.sent_by_service()
        await testing.wait_for(lambda: _async(load.arrivals >= 4000), what="2000 more requests", interval_s=0.05)
        after = load.sent_by_service()
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    assert abs(share(delta, "web-canary") - 0.50) < 0.05, delta
    assert load.dropped == 0
    for stats in load.stats.values():
        assert stats.failures == 0 and stats.unroutable == 0
        assert stats.responses_by_code.keys() <= {200}
    assert load.achieved_rps > 300


async def test_service_splits_by_ready_replicas_and_stops_by_itself(
    cluster: tuple[str, WorkloadSimulator, aiohttp.ClientSession],
) -> None:
    api_url, simulator, _ = cluster
    load = LoadGenerator(
        api_url,
        LoadTarget("Service", NAMESPACE, "web"),
        simulator.endpoints_for_selector,
        rps=400,
        duration_s=20,
        max_requests=1600,
        seed=11,
    )
    async with load:
        await asyncio.wait_for(load.wait(), timeout=15)
        assert load.done
    by_pod = {key.pod: stats.sent for key, stats in load.stats.items()}
    canary = sum(sent for pod, sent in by_pod.items() if pod.startswith("web-canary-"))
    assert load.arrivals == 1600
    assert abs(canary / 1600 - 0.25) < 0.04, by_pod  # 1 of 4 ready replicas


async def test_missing_backend_counts_as_unroutable(
    cluster: tuple[str, WorkloadSimulator, aiohttp.ClientSession],
) -> None:
    api_url, simulator, session = cluster
    await testing.create(session, api_url, "httproutes", http_route({"web-stable": 1, "nowhere": 1}))
    load = LoadGenerator(
        api_url, "HTTPRoute shop/web", simulator.endpoints_for_selector, rps=300, max_requests=300, seed=3
    )
    async with load:
        await asyncio.wait_for(load.wait(), timeout=10)
    unroutable = sum(stats.unroutable for key, stats in load.stats.items() if key.service == "nowhere")
    assert 90 < unroutable < 210
    assert load.stats[next(k for k in load.stats if k.service == "web-stable")].sent == 300 - unroutable


def test_targets_parse_and_only_loopback_is_allowed() -> None:
    assert LoadTarget.parse("HTTPRoute ns/route") == LoadTarget("HTTPRoute", "ns", "route")
    assert str(LoadTarget.parse("Service ns/svc")) == "Service ns/svc"
    with pytest.raises(ValueError, match="HTTPRoute NAMESPACE/NAME"):
        LoadTarget.parse("Ingress ns/x")
    assert is_loopback_url("http://127.0.0.1:8080/") and is_loopback_url("http://localhost/")
    assert not is_loopback_url("http://10.0.0.1/")


async def _async(value: bool) -> bool:
    return value
