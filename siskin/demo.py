"""``siskin demo``: the main job end to end on the embedded sandbox.

Starts the sandbox (API emulator, simulated workloads, a real Prometheus, load),
installs the CRDs and the examples with the user's own ``kubectl``, runs the
operator as its own process, makes v1 stable, then rolls out v2 (healthy) and
v3 (more errors, slower) while showing live progress, and ends with a summary.
It exits 0 only when v2 was promoted and v3 rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import importlib.resources
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from siskin.display import metric_lines, progress_line, table

NAMESPACE = "default"
ROLLOUT = "podinfo"
ROLLOUT_TIMEOUT_S = 300.0

# The versions rolled out after v1: their environment drives the demo service.
VERSIONS: list[tuple[str, dict[str, str], str]] = [
    ("v2", {"ERROR_RATE": "0.02", "LATENCY_MS": "40"}, "Promoted"),
    ("v3", {"ERROR_RATE": "0.07", "LATENCY_MS": "140"}, "RolledBack"),
]


@dataclass
class Outcome:
    """How one version's rollout ended."""

    version: str
    expected: str
    outcome: str = "Timeout"
    seconds: float = 0.0
    reason: str = ""
    checks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome == self.expected and not self.checks

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": self.version, "outcome": self.outcome, "seconds": round(self.seconds, 1)}
        if self.reason:
            data["reason"] = self.reason
        if self.checks:
            data["failedChecks"] = self.checks
        return data


def packaged(package: str, name: str) -> Path:
    """A YAML file shipped inside the siskin package (crds, examples)."""
    return Path(str(importlib.resources.files(package).joinpath(name)))


def run_demo(json_output: bool = False, rps: float = 300.0, judge: str = "sequential") -> int:
    """Run the demo; 0 when both outcomes are as expected."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("siskin demo: kubectl is missing; install it (Debian/Ubuntu: apt-get install -y kubernetes-client) "
              "or run `make demo`, which does.", file=sys.stderr)
        return 1
    started = time.monotonic()
    state_dir = Path(tempfile.mkdtemp(prefix="siskin-demo-"))
    try:
        outcomes = asyncio.run(_demo(kubectl, rps, judge, state_dir))
    except DemoError as exc:
        print(f"siskin demo: {exc} (operator log: {state_dir / 'operator.log'})", file=sys.stderr)
        return 1
    print()
    print(table(["VERSION", "EXPECTED", "OUTCOME", "SECONDS", "REASON"],
                [[o.version, o.expected, o.outcome, f"{o.seconds:.0f}", o.reason or "-"] for o in outcomes]))
    for outcome in outcomes:
        for check in outcome.checks:
            print(f"  {outcome.version}: check failed: {check}")
    ok = all(o.ok for o in outcomes)
    print(f"\ndemo {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f}s")
    if ok:
        shutil.rmtree(state_dir, ignore_errors=True)
    else:
        print(f"the sandbox's state and the operator log are kept in {state_dir}")
    if json_output:
        print(json.dumps({"rollouts": [o.as_json() for o in outcomes]}))
    return 0 if ok else 1


class DemoError(Exception):
    """The demo could not run (as opposed to a rollout with an unexpected outcome)."""


async def _demo(kubectl: str, rps: float, judge: str, state_dir: Path) -> list[Outcome]:
    from siskin.sandbox.cluster import Sandbox

    print(f"starting the sandbox (state in {state_dir}) ...", flush=True)
    async with Sandbox(state_dir=state_dir) as sandbox:
        os.environ["KUBECONFIG"] = str(sandbox.kubeconfig_path)
        env = {**os.environ, "KUBECACHEDIR": str(state_dir / "kubecache")}
        print(f"  API {sandbox.api_url}   Prometheus {sandbox.prometheus_url}")
        await _kubectl(kubectl, env, "apply", "-f", str(packaged("siskin.crds", "rollout.yaml")),
                       "-f", str(packaged("siskin.crds", "analysistemplate.yaml")))
        operator = await _start_operator(env, sandbox.prometheus_url, state_dir)
        try:
            template = yaml.safe_load(packaged("siskin.examples", "analysistemplate.yaml").read_text())
            template["spec"]["judge"] = judge
            template_path = state_dir / "analysistemplate.yaml"
            template_path.write_text(yaml.safe_dump(template, sort_keys=False))
            print(f"judge: {judge}")
            await _kubectl(kubectl, env, "apply", "-f", str(template_path),
                           "-f", str(packaged("siskin.examples", "httproute.yaml")),
                           "-f", str(packaged("siskin.examples", "rollout.yaml")))
            await sandbox.add_load(f"HTTPRoute {NAMESPACE}/{ROLLOUT}", rps=rps, duration_s=ROLLOUT_TIMEOUT_S * 3)
            print("v1: first revision, deployed without a canary ...", flush=True)
            await _wait_for(lambda s: s.get("phase") == "Healthy" and bool(s.get("stableRevision")), 90, operator)
            print("v1: stable")
            outcomes = []
            for version, environment, expected in VERSIONS:
                outcomes.append(await _roll_out(kubectl, env, state_dir, version, environment, expected, operator))
            await _kubectl(kubectl, env, "get", "rollouts")
            return outcomes
        finally:
            operator.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(operator.wait(), 15)
            if operator.returncode is None:
                operator.kill()


async def _kubectl(kubectl: str, env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(kubectl, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    text = output.decode()
    print("$ kubectl " + " ".join(a if "/" not in a else Path(a).name for a in args))
    print("  " + text.strip().replace("\n", "\n  "))
    if process.returncode != 0:
        raise DemoError(f"kubectl {' '.join(args)} failed: {text.strip()}")
    return text


async def _start_operator(env: dict[str, str], prometheus_url: str, state_dir: Path) -> asyncio.subprocess.Process:
    log = (state_dir / "operator.log").open("wb")
    operator_env = {**env, "SISKIN_PROMETHEUS_URL": prometheus_url, "SISKIN_RECONCILE_SECONDS": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "siskin", "operator", env=operator_env, stdout=log, stderr=log
    )
    print(f"operator started (pid {process.pid}, log {state_dir / 'operator.log'})")
    return process


def _read_rollout() -> dict[str, Any] | None:
    from siskin.operator.kube import ROLLOUTS

    body: dict[str, Any] | None = _kube().get(ROLLOUTS, NAMESPACE, ROLLOUT)
    return body


@functools.cache
def _kube() -> Any:
    """The demo's own API client, on the sandbox's kubeconfig (one per process)."""
    from siskin.operator.kube import KubeAPI

    return KubeAPI(kubeconfig=os.environ["KUBECONFIG"])


async def _status() -> dict[str, Any]:
    body = await asyncio.to_thread(_read_rollout)
    return dict((body or {}).get("status") or {})


async def _wait_for(predicate: Any, timeout_s: float, operator: asyncio.subprocess.Process) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if operator.returncode is not None:
            raise DemoError(f"the operator exited with code {operator.returncode}; see its log")
        status = await _status()
        if predicate(status):
            return status
        await asyncio.sleep(1)
    raise DemoError(f"timed out after {timeout_s:.0f}s; last status: {await _status()}")


async def _roll_out(kubectl: str, env: dict[str, str], state_dir: Path, version: str, environment: dict[str, str],
                    expected: str, operator: asyncio.subprocess.Process) -> Outcome:
    manifest = yaml.safe_load(packaged("siskin.examples", "rollout.yaml").read_text())
    manifest = with_version(manifest, version, environment)
    path = state_dir / f"rollout-{version}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    before = await _status()
    history_before = len(before.get("history") or [])
    print(f"\n{version}: {', '.join(f'{k}={v}' for k, v in environment.items())} (expected: {expected})")
    started = time.monotonic()
    await _kubectl(kubectl, env, "apply", "-f", str(path))
    result = Outcome(version=version, expected=expected)
    steps = len(manifest["spec"]["strategy"]["canary"]["steps"])
    last = ""
    while time.monotonic() - started < ROLLOUT_TIMEOUT_S:
        if operator.returncode is not None:
            raise DemoError(f"the operator exited with code {operator.returncode}; see {state_dir / 'operator.log'}")
        status = await _status()
        line = progress_line(status, steps)
        figures = metric_lines(status)
        # A change of state or a new look is news; a pause counting down is not.
        shown = "|".join([str(status.get(k)) for k in ("phase", "currentStepIndex", "canaryWeight", "verdict")]
                         + figures)
        if shown != last:
            print(f"[{time.monotonic() - started:5.0f}s] {line}", flush=True)
            for figure in figures:
                print(f"         {figure}", flush=True)
            last = shown
        finished = [h for h in (status.get("history") or [])[history_before:]
                    if h.get("outcome") in ("Promoted", "RolledBack")]
        if finished:
            result.outcome = finished[-1]["outcome"]
            result.reason = status.get("abortReason") or "" if result.outcome == "RolledBack" else ""
            result.seconds = time.monotonic() - started
            await asyncio.sleep(3)  # let the operator settle traffic and pods
            result.checks = await asyncio.to_thread(_check_outcome, result.outcome)
            return result
        await asyncio.sleep(1)
    result.seconds = time.monotonic() - started
    return result


def with_version(manifest: dict[str, Any], version: str, environment: dict[str, str]) -> dict[str, Any]:
    """The example Rollout running ``version`` with the given environment."""
    manifest = copy.deepcopy(manifest)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["image"] = container["image"].rsplit(":", 1)[0] + f":{version}"
    values = {**{e["name"]: e.get("value", "") for e in container.get("env", [])}, **environment, "VERSION": version}
    container["env"] = [{"name": k, "value": v} for k, v in values.items()]
    return manifest


def _check_outcome(outcome: str) -> list[str]:
    """What a user would check with kubectl after the outcome: traffic, pods and status."""
    from siskin.operator.kube import DEPLOYMENTS, HTTP_ROUTES, ROLLOUTS

    kube = _kube()
    problems = []
    route = kube.get(HTTP_ROUTES, NAMESPACE, ROLLOUT) or {}
    refs = (route.get("spec", {}).get("rules") or [{}])[0].get("backendRefs") or []
    canary_weight = sum(int(r.get("weight", 0)) for r in refs if r.get("name", "").endswith("-canary"))
    if canary_weight != 0:
        problems.append(f"HTTPRoute still sends weight {canary_weight} to the canary")
    for track in ("canary", "baseline"):
        deployment = kube.get(DEPLOYMENTS, NAMESPACE, f"{ROLLOUT}-{track}") or {}
        replicas = deployment.get("spec", {}).get("replicas", 0)
        if replicas:
            problems.append(f"Deployment {ROLLOUT}-{track} still has {replicas} replicas")
    status = (kube.get(ROLLOUTS, NAMESPACE, ROLLOUT) or {}).get("status") or {}
    wanted_phase = "Healthy" if outcome == "Promoted" else "Degraded"
    if status.get("phase") != wanted_phase:
        problems.append(f"phase is {status.get('phase')}, expected {wanted_phase}")
    if outcome == "RolledBack":
        reason = status.get("abortReason") or ""
        if not any(name in reason for name in ("errors", "latency")):
            problems.append(f"the rollback reason names no metric: {reason!r}")
    return problems
