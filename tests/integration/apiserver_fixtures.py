"""Fixtures that run the API emulator in a background thread, so tests may block on kubectl or Kopf."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import pathlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from siskin.sandbox.apiserver import SandboxAPIServer, serve_apiserver, write_kubeconfig

KUBECTL = shutil.which("kubectl")

ROLLOUT_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "rollouts.siskin.dev"},
    "spec": {
        "group": "siskin.dev",
        "scope": "Namespaced",
        "names": {"plural": "rollouts", "singular": "rollout", "kind": "Rollout", "listKind": "RolloutList",
                  "shortNames": ["ro"], "categories": ["siskin"]},
        "versions": [{
            "name": "v1alpha1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["service"],
                        "properties": {
                            "replicas": {"type": "integer", "minimum": 0, "maximum": 100, "default": 1},
                            "service": {"type": "string", "pattern": "^[a-z][a-z0-9-]*$"},
                            "strategy": {"type": "string", "enum": ["canary", "blueGreen"]},
                            "template": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    },
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }},
        }],
    },
}


def rollout(name: str, replicas: int = 3, **spec: Any) -> dict[str, Any]:
    """A Rollout manifest for the test CRD."""
    return {"apiVersion": "siskin.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "service": name, **spec}}


@dataclasses.dataclass
class ThreadedAPIServer:
    """An emulator serving from its own thread and event loop."""

    url: str
    emulator: SandboxAPIServer
    kubeconfig: pathlib.Path
    loop: asyncio.AbstractEventLoop

    def call(self, function: Any, *args: Any) -> Any:
        """Run a plain function on the emulator's loop (for thread-safe state access)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function(*args))
            except Exception as error:
                future.set_exception(error)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=10)

    def env(self) -> dict[str, str]:
        """Environment for kubectl/Kopf subprocesses pointing at this emulator."""
        cache = self.kubeconfig.parent / "cache"
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(cache)}

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against the emulator."""
        if KUBECTL is None:
            pytest.skip("kubectl is not installed on this machine")
        result = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, env=self.env(),
                                timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result


@pytest.fixture
def apiserver(tmp_path: pathlib.Path) -> Iterator[ThreadedAPIServer]:
    """A fresh emulator on a free port, with a kubeconfig in tmp_path."""
    started: concurrent.futures.Future[ThreadedAPIServer] = concurrent.futures.Future()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with serve_apiserver() as running:
            kubeconfig = tmp_path / "kubeconfig"
            write_kubeconfig(kubeconfig, running.url)
            started.set_result(ThreadedAPIServer(running.url, running.emulator, kubeconfig, loop))
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    server = started.result(timeout=10)
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
