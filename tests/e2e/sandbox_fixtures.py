"""A whole sandbox (API emulator, simulated pods, real Prometheus, load) with the real operator process.

The sandbox runs on its own event loop in a background thread, so tests stay plain
synchronous code that calls ``kubectl`` and reads objects over the Kubernetes API the
way a user would. The operator is ``python -m siskin operator``, a separate process
that knows the sandbox only through its kubeconfig and Prometheus URL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from siskin.operator.kube import DEPLOYMENTS, EVENTS, HTTP_ROUTES, ROLLOUTS, KubeAPI
from siskin.operator.model import template_revision
from siskin.sandbox.cluster import Sandbox

from siskin.demo import packaged

KUBECTL = shutil.which("kubectl")
NAMESPACE = "default"
T = TypeVar("T")


@dataclasses.dataclass
class RunningSandbox:
    """A started sandbox, its operator process, and the calls tests make on them."""

    sandbox: Sandbox
    loop: asyncio.AbstractEventLoop
    state_dir: Path
    env: dict[str, str]
    kube: KubeAPI
    operator: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ acting like a user

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the sandbox; fail with its output when ``check`` and it exits non-zero."""
        assert KUBECTL is not None
        result = subprocess.run([KUBECTL, *args], input=stdin, env=self.env, capture_output=True, text=True,
                                timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): "
                                 f"{result.stdout}{result.stderr}")
        return result

    def apply(self, *manifests: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` of the given manifests."""
        text = "---\n".join(yaml.safe_dump(m, sort_keys=False) for m in manifests)
        return self.kubectl("apply", "-f", "-", stdin=text, check=check)

    def add_load(self, target: str, rps: float, duration_s: float = 900.0) -> None:
        """Start a load generator on ``target`` (``HTTPRoute ns/name`` or ``Service ns/name``)."""
        future = asyncio.run_coroutine_threadsafe(self.sandbox.add_load(target, rps=rps, duration_s=duration_s),
                                                  self.loop)
        future.result(timeout=30)

    def start_operator(self) -> None:
        """``python -m siskin operator`` against the sandbox, logging to the state dir."""
        log = (self.state_dir / "operator.log").open("wb")
        env = {**self.env, "SISKIN_PROMETHEUS_URL": self.sandbox.prometheus_url, "SISKIN_RECONCILE_SECONDS": "1"}
        self.operator = subprocess.Popen([sys.executable, "-m", "siskin", "operator"], env=env, stdout=log,
                                         stderr=subprocess.STDOUT)

    def stop_operator(self) -> None:
        if self.operator is None:
            return
        self.operator.terminate()
        try:
            self.operator.wait(15)
        except subprocess.TimeoutExpired:
            self.operator.kill()
            self.operator.wait(5)

    def operator_log(self, lines: int = 40) -> str:
        path = self.state_dir / "operator.log"
        if not path.exists():
            return "(no operator log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------ reading like a user

    def rollout(self, name: str) -> dict[str, Any]:
        return self.kube.get(ROLLOUTS, NAMESPACE, name) or {}

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.rollout(name).get("status") or {})

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.kube.get(DEPLOYMENTS, NAMESPACE, name)

    def replicas(self, name: str) -> int:
        """Desired replicas of a Deployment; 0 when it does not exist."""
        deployment = self.deployment(name)
        return 0 if deployment is None else int(deployment.get("spec", {}).get("replicas", 1))

    def route_weights(self, route: str) -> dict[str, int]:
        """Backend Service name -> weight, from the HTTPRoute's first rule."""
        body = self.kube.get(HTTP_ROUTES, NAMESPACE, route) or {}
        refs = ((body.get("spec") or {}).get("rules") or [{}])[0].get("backendRefs") or []
        return {str(ref["name"]): int(ref.get("weight", 1)) for ref in refs}

    def events(self, name: str) -> list[dict[str, Any]]:
        """Events whose involved object is the Rollout ``name``."""
        return [e for e in self.kube.list(EVENTS, NAMESPACE)
                if (e.get("involvedObject") or {}).get("name") == name
                and (e.get("involvedObject") or {}).get("kind") == "Rollout"]

    def wait_for(self, probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.5) -> T:
        """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the operator's log."""
        deadline = time.monotonic() + timeout_s
        last: T | None = None
        while time.monotonic() < deadline:
            if self.operator is not None and self.operator.poll() is not None:
                raise AssertionError(f"the operator exited ({self.operator.returncode}):\n{self.operator_log()}")
            last = probe()
            if last:
                return last
            time.sleep(interval_s)
        raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; last: {last!r}\n"
                             f"operator log:\n{self.operator_log()}")

    def wait_for_status(self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout_s: float,
                        what: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.status(name)
            return status if predicate(status) else None

        try:
            return self.wait_for(probe, timeout_s, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast status of {name}: {self.status(name)}") from None


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The condition of ``type_`` in a status, if any."""
    for item in status.get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return None


def revision_of(manifest: dict[str, Any]) -> str:
    """The revision the operator names a Rollout manifest's pod template by."""
    return template_revision(manifest["spec"]["template"])


def install_crds(running: RunningSandbox) -> None:
    running.kubectl("apply", "-f", str(packaged("siskin.crds", "rollout.yaml")),
                    "-f", str(packaged("siskin.crds", "analysistemplate.yaml")))


@contextlib.contextmanager
def running_sandbox(state_dir: Path) -> Iterator[RunningSandbox]:
    """Start a sandbox in a background thread; stop it (and any operator started on it) afterwards."""
    started: concurrent.futures.Future[Sandbox] = concurrent.futures.Future()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with Sandbox(state_dir=state_dir) as sandbox:
                started.set_result(sandbox)
                await stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    def run() -> None:
        with contextlib.suppress(BaseException):
            loop.run_until_complete(serve())

    thread = threading.Thread(target=run, name="sandbox", daemon=True)
    thread.start()
    sandbox = started.result(timeout=90)
    env = {**os.environ, "KUBECONFIG": str(sandbox.kubeconfig_path), "KUBECACHEDIR": str(state_dir / "kubecache")}
    running = RunningSandbox(sandbox=sandbox, loop=loop, state_dir=state_dir, env=env,
                             kube=KubeAPI(kubeconfig=str(sandbox.kubeconfig_path)))
    try:
        yield running
    finally:
        running.stop_operator()
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=60)
        loop.close()
