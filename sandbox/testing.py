"""Helpers for tests that drive the sandbox over the Kubernetes API.

Tests talk HTTP to an API server exactly as the operator does; these helpers
start one (the sandbox's own emulator, or kmock's stock emulator where that is
not available) and wrap the few calls tests make again and again.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
from siskin.sandbox import gateway_api

T = TypeVar("T")


@contextlib.asynccontextmanager
async def api_server() -> AsyncIterator[str]:
    """Serve a Kubernetes API emulator on a loopback port; yields its base URL.

    The sandbox's own emulator is used; ``SISKIN_TEST_API=kmock`` picks kmock's stock one.
    """
    apiserver = None
    if os.environ.get("SISKIN_TEST_API", "sandbox") != "kmock":
        with contextlib.suppress(ImportError):
            apiserver = importlib.import_module("siskin.sandbox.apiserver")
    if apiserver is not None and hasattr(apiserver, "serve_apiserver"):
        async with apiserver.serve_apiserver() as running, aiohttp.ClientSession() as session:
            api_url = str(running.url).rstrip("/")
            await gateway_api.install_httproute_crd(session, api_url)
            yield api_url
        return
    import kmock  # the stock emulator: enough for Deployments, Services and HTTPRoutes

    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        yield str(server.url).rstrip("/")


def deployment_manifest(
    namespace: str,
    name: str,
    replicas: int = 1,
    environment: Mapping[str, str] | None = None,
    pod_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An apps/v1 Deployment running the demo service with the given env and labels."""
    labels = dict(pod_labels or {"app": name})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "siskin/demo-app",
                            "env": [{"name": key, "value": value} for key, value in (environment or {}).items()],
                        }
                    ]
                },
            },
        },
    }


def resource_path(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    """The REST path of a namespaced collection or object."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


async def ensure_namespace(session: aiohttp.ClientSession, api_url: str, namespace: str) -> None:
    """Create a Namespace unless it exists."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    async with session.post(f"{api_url}/api/v1/namespaces", json=body) as reply:
        if reply.status >= 400 and reply.status != 409:
            raise RuntimeError(f"creating namespace {namespace}: {reply.status} {await reply.text()}")


async def create(session: aiohttp.ClientSession, api_url: str, plural: str, body: Mapping[str, Any]) -> None:
    """POST an object (creating its namespace if missing); raise with the server's answer when it refuses."""
    metadata = body["metadata"]
    url = api_url + resource_path(body["apiVersion"], plural, metadata["namespace"])
    for attempt in range(2):
        async with session.post(url, json=body) as reply:
            if reply.status < 400:
                return
            answer = await reply.text()
            if attempt == 0 and reply.status == 404 and '"namespaces"' in answer:
                await ensure_namespace(session, api_url, metadata["namespace"])
                continue
            raise RuntimeError(f"creating {plural} {metadata['name']}: {reply.status} {answer}")


async def merge_patch(
    session: aiohttp.ClientSession,
    api_url: str,
    api_version: str,
    plural: str,
    namespace: str,
    name: str,
    patch: Mapping[str, Any],
) -> None:
    """Merge-patch an object."""
    url = api_url + resource_path(api_version, plural, namespace, name)
    async with session.patch(url, json=patch, headers={"Content-Type": "application/merge-patch+json"}) as reply:
        if reply.status >= 400:
            raise RuntimeError(f"patching {plural} {namespace}/{name}: {reply.status} {await reply.text()}")


async def get(
    session: aiohttp.ClientSession, api_url: str, api_version: str, plural: str, namespace: str, name: str
) -> dict[str, Any]:
    """GET an object."""
    async with session.get(api_url + resource_path(api_version, plural, namespace, name)) as reply:
        reply.raise_for_status()
        body: dict[str, Any] = await reply.json(content_type=None)
        return body


async def delete(
    session: aiohttp.ClientSession, api_url: str, api_version: str, plural: str, namespace: str, name: str
) -> None:
    """DELETE an object."""
    async with session.delete(api_url + resource_path(api_version, plural, namespace, name)) as reply:
        reply.raise_for_status()


async def wait_for(
    probe: Callable[[], Awaitable[T | None]],
    timeout_s: float = 15.0,
    interval_s: float = 0.1,
    what: str = "it",
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")
