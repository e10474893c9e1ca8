"""The workload simulator: what kubelets and the Deployment controller do, in small.

Without a cluster, somebody must turn Deployments into running programs, keep
their status honest and tell Prometheus where to scrape. This module does it
through the Kubernetes API over HTTP only, like a controller would, so the
operator cannot tell the sandbox from a cluster:

* every Deployment with ``spec.replicas > 0`` gets ONE demo service process
  (standing for all its replicas), configured by the pod template's env;
* a template change starts a new process and retires the old one once the new
  one answers ``/healthz`` (a rolling update); scale to 0 or delete stops it;
* ``/status`` is merge-patched with replica counts and the Available and
  Progressing conditions a real controller writes;
* scrape targets go to a Prometheus file_sd JSON file with the labels a
  ``kubernetes_sd`` pod job plus the usual relabelling would produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from siskin.sandbox.lifecycle import StartStop

logger = logging.getLogger(__name__)

DEPLOYMENTS_PATH = "/apis/apps/v1/deployments"
DEMO_APP_MODULE = "siskin.sandbox.demo_app"
BEHAVIOUR_VARIABLES = ("VERSION", "ERROR_RATE", "LATENCY_MS", "LATENCY_SIGMA")
# Pod labels that get a short, exact target label of their own (besides the labelmap form).
EXACT_LABEL_ALIASES: Mapping[str, str] = {
    "siskin.dev/track": "track",
    "siskin.dev/rollout": "rollout",
    "siskin.dev/revision": "revision",
}
_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the one Kubernetes uses for pod-template-hash


@dataclass(frozen=True)
class Endpoint:
    """A ready process serving a Deployment's pods, as a Service would see it."""

    url: str
    ready_replicas: int
    labels: Mapping[str, str]
    namespace: str = ""
    deployment: str = ""
    pod: str = ""
    pid: int = 0


class PodStartError(RuntimeError):
    """A demo service process exited or did not get healthy in time."""


def pod_template_hash(template: Mapping[str, Any]) -> str:
    """A stable 10-character hash of a pod template (like Kubernetes' pod-template-hash)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    characters = []
    for _ in range(10):
        number, index = divmod(number, len(_HASH_ALPHABET))
        characters.append(_HASH_ALPHABET[index])
    return "".join(characters)


def prometheus_label_name(kubernetes_label: str) -> str:
    """The label name kubernetes_sd + `labelmap: __meta_kubernetes_pod_label_(.+)` yields."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", kubernetes_label)
    return f"_{name}" if name[:1].isdigit() else name


def scrape_target_labels(
    namespace: str, deployment: str, pod: str, pod_labels: Mapping[str, str]
) -> dict[str, str]:
    """Target labels for one pod: labelmapped pod labels, namespace/deployment/pod, exact aliases."""
    labels = {prometheus_label_name(key): value for key, value in pod_labels.items()}
    labels.update({"namespace": namespace, "deployment": deployment, "pod": pod})
    for pod_label, alias in EXACT_LABEL_ALIASES.items():
        if pod_label in pod_labels:
            labels[alias] = pod_labels[pod_label]
    return labels


def container_environment(template: Mapping[str, Any]) -> dict[str, str]:
    """name/value env pairs of the template's first container (valueFrom is not simulated)."""
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        return {}
    environment: dict[str, str] = {}
    for variable in containers[0].get("env") or []:
        if "name" in variable and "value" in variable:
            environment[str(variable["name"])] = str(variable["value"])
    return environment


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodProcess:
    """One demo service process standing for all replicas of one Deployment revision."""

    def __init__(
        self,
        namespace: str,
        deployment: str,
        template_hash: str,
        environment: Mapping[str, str],
        pod_labels: Mapping[str, str],
        log_dir: Path,
    ) -> None:
        self.namespace = namespace
        self.deployment = deployment
        self.template_hash = template_hash
        self.pod = f"{deployment}-{template_hash}"
        self.pod_labels = dict(pod_labels)
        self.environment = dict(environment)
        self.log_file = log_dir / f"{namespace}_{self.pod}.log"
        self._port_file = log_dir / f".{namespace}_{self.pod}_{os.getpid()}_{id(self)}.port"
        self.port: int | None = None
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT of the running process."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.returncode is None

    async def start(self, session: aiohttp.ClientSession, timeout_s: float = 20.0) -> None:
        """Launch and wait until /healthz answers; raise PodStartError with the log tail if not."""
        child_environment = {k: v for k, v in os.environ.items() if k not in BEHAVIOUR_VARIABLES}
        child_environment.update(self.environment)
        child_environment["PYTHONUNBUFFERED"] = "1"
        self._port_file.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            DEMO_APP_MODULE,
            "--port",
            "0",
            "--port-file",
            str(self._port_file),
            "--parent-pid",
            str(os.getpid()),
        ]
        with open(self.log_file, "ab") as log:
            log.write(f"--- {_now()} starting {self.pod} env={self.environment}\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=child_environment
            )
        try:
            await self._wait_healthy(session, timeout_s)
        except BaseException:
            await self.stop()
            raise
        finally:
            self._port_file.unlink(missing_ok=True)

    async def _wait_healthy(self, session: aiohttp.ClientSession, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise PodStartError(
                    f"{self.namespace}/{self.pod} exited with status {self.process.returncode}: "
                    f"{self.log_tail()} (full log: {self.log_file})"
                )
            if self.port is None:
                with contextlib.suppress(FileNotFoundError, ValueError):
                    self.port = int(self._port_file.read_text().strip())
            if self.port is not None:
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(
                        f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=1)
                    ) as reply:
                        if reply.status == 200:
                            return
            await asyncio.sleep(0.05)
        raise PodStartError(
            f"{self.namespace}/{self.pod} did not answer /healthz within {timeout_s:.0f}s; "
            f"see {self.log_file}"
        )

    def log_tail(self, lines: int = 3) -> str:
        """The last lines of the process log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])

    async def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; always reaps the process."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


@dataclass
class _DeploymentState:
    """What the simulator knows and runs for one Deployment."""

    namespace: str
    name: str
    latest: dict[str, Any]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    serving: PodProcess | None = None
    task: asyncio.Task[None] | None = None
    failure: str | None = None


class WorkloadSimulator(StartStop):
    """Runs one demo process per Deployment and keeps status and scrape targets honest.

    Use as ``async with WorkloadSimulator(api_url, sd_file) as simulator``.
    """

    def __init__(
        self,
        api_url: str,
        sd_file: Path,
        log_dir: Path | None = None,
        poll_interval_s: float = 0.3,
        drain_s: float = 0.7,
        start_timeout_s: float = 20.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.sd_file = Path(sd_file)
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="siskin-pods-"))
        self.poll_interval_s = poll_interval_s
        self.drain_s = drain_s
        self.start_timeout_s = start_timeout_s
        self._deployments: dict[tuple[str, str], _DeploymentState] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task[None] | None = None
        self._published: str | None = None

    # ----------------------------------------------------------------- public API

    async def start(self) -> None:
        """Begin watching Deployments (returns at once)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._publish_targets()
        self._poller = asyncio.create_task(self._poll_forever(), name="siskin-workloads-poller")

    async def stop(self) -> None:
        """Stop watching and stop every process this simulator started."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        tasks = [state.task for state in self._deployments.values() if state.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(state.serving.stop() for state in self._deployments.values() if state.serving))
        for retiring in list(self._retiring):
            retiring.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        self._deployments.clear()
        self._publish_targets()
        if self._session is not None:
            await self._session.close()
            self._session = None


    def endpoints(self) -> list[Endpoint]:
        """Every ready process, one per Deployment."""
        result = []
        for state in self._deployments.values():
            pod = state.serving
            if pod is None or not pod.alive or pod.process is None:
                continue
            replicas = int((state.latest.get("spec") or {}).get("replicas", 1) or 0)
            result.append(
                Endpoint(
                    url=pod.url,
                    ready_replicas=replicas,
                    labels=dict(pod.pod_labels),
                    namespace=state.namespace,
                    deployment=state.name,
                    pod=pod.pod,
                    pid=pod.process.pid,
                )
            )
        return result

    def endpoints_for_selector(self, namespace: str, selector: Mapping[str, str]) -> list[Endpoint]:
        """Ready endpoints in `namespace` whose pod labels match every selector pair (empty → none)."""
        if not selector:
            return []
        return [
            endpoint
            for endpoint in self.endpoints()
            if endpoint.namespace == namespace
            and all(endpoint.labels.get(key) == value for key, value in selector.items())
        ]

    def failure(self, namespace: str, name: str) -> str | None:
        """Why the Deployment's process could not start, if it could not."""
        state = self._deployments.get((namespace, name))
        return state.failure if state else None

    # ----------------------------------------------------------------- watching

    async def _poll_forever(self) -> None:
        warned = False
        while True:
            try:
                items = await self._list_deployments()
                warned = False
            except (TimeoutError, aiohttp.ClientError, ValueError) as error:
                if not warned:
                    logger.warning(
                        "cannot list Deployments at %s%s: %s; retrying", self.api_url, DEPLOYMENTS_PATH, error
                    )
                    warned = True
            else:
                self._dispatch(items)
            await asyncio.sleep(self.poll_interval_s)

    async def _list_deployments(self) -> list[dict[str, Any]]:
        assert self._session is not None
        async with self._session.get(f"{self.api_url}{DEPLOYMENTS_PATH}") as reply:
            if reply.status == 404:  # an empty emulator may not know the resource yet
                return []
            reply.raise_for_status()
            body = await reply.json(content_type=None)
        items: list[dict[str, Any]] = body.get("items") or []
        return items

    def _dispatch(self, items: list[dict[str, Any]]) -> None:
        seen: set[tuple[str, str]] = set()
        for deployment in items:
            metadata = deployment.get("metadata") or {}
            key = (metadata.get("namespace") or "default", metadata.get("name") or "")
            if not key[1] or metadata.get("deletionTimestamp"):
                continue
            seen.add(key)
            state = self._deployments.get(key)
            if state is None:
                state = _DeploymentState(namespace=key[0], name=key[1], latest=deployment)
                self._deployments[key] = state
                state.task = asyncio.create_task(self._run_deployment(state), name=f"siskin-deploy-{key}")
            state.latest = deployment
            state.wake.set()
        for key in list(self._deployments):
            if key not in seen:
                self._forget(key)

    def _forget(self, key: tuple[str, str]) -> None:
        state = self._deployments.pop(key)
        if state.task is not None:
            state.task.cancel()
        if state.serving is not None:
            self._retire(state.serving, drain_s=0.0)
            state.serving = None
        self._publish_targets()

    # ----------------------------------------------------------------- converging

    async def _run_deployment(self, state: _DeploymentState) -> None:
        """Converge one Deployment forever: right process running, status written."""
        backoff_s = 0.5
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(state.wake.wait(), timeout=1.0)
                state.wake.clear()
                try:
                    started_ok = await self._converge(state)
                except (TimeoutError, aiohttp.ClientError) as error:
                    logger.warning(
                        "Deployment %s/%s: API error %s; retrying", state.namespace, state.name, error
                    )
                    started_ok = True
                if started_ok:
                    backoff_s = 0.5
                else:  # like CrashLoopBackOff
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, 10.0)
                    state.wake.set()
        finally:
            if state.serving is not None:
                self._retire(state.serving, drain_s=0.0)
                state.serving = None

    async def _converge(self, state: _DeploymentState) -> bool:
        """One convergence step; False when a new process failed to start."""
        deployment = state.latest
        spec = deployment.get("spec") or {}
        replicas = int(spec.get("replicas", 1) or 0)
        template = spec.get("template") or {}
        template_hash = pod_template_hash(template)
        if state.serving is not None and not state.serving.alive:
            logger.warning("pod %s/%s died: %s", state.namespace, state.serving.pod, state.serving.log_tail())
            state.failure = f"process exited: {state.serving.log_tail()}"
            state.serving = None
            self._publish_targets()

        if replicas <= 0:
            if state.serving is not None:
                self._retire(state.serving, drain_s=0.0)
                state.serving = None
                self._publish_targets()
            state.failure = None
            await self._write_status(state, deployment, template_hash, 0, ready=0, updated=0)
            return True

        if state.serving is not None and state.serving.template_hash == template_hash:
            state.failure = None
            await self._write_status(
                state, deployment, template_hash, replicas, ready=replicas, updated=replicas
            )
            return True

        old_ready = replicas if state.serving is not None else 0
        await self._write_status(
            state,
            deployment,
            template_hash,
            replicas,
            ready=old_ready,
            updated=0,
            progressing_reason="ReplicaSetUpdated",
        )
        pod_labels = dict((template.get("metadata") or {}).get("labels") or {})
        pod_labels["pod-template-hash"] = template_hash
        new_pod = PodProcess(
            state.namespace,
            state.name,
            template_hash,
            container_environment(template),
            pod_labels,
            self.log_dir,
        )
        assert self._session is not None
        try:
            await new_pod.start(self._session, self.start_timeout_s)
        except PodStartError as error:
            logger.warning("%s", error)
            state.failure = str(error)
            await self._write_status(
                state,
                deployment,
                template_hash,
                replicas,
                ready=old_ready,
                updated=0,
                progressing_reason="ProgressDeadlineExceeded",
            )
            return False
        old_pod, state.serving = state.serving, new_pod
        state.failure = None
        self._publish_targets()
        if old_pod is not None:
            self._retire(old_pod, drain_s=self.drain_s)
        state.wake.set()  # write the settled status at once
        return True

    def _retire(self, pod: PodProcess, drain_s: float) -> None:
        """Stop `pod` after `drain_s` (in-flight requests finish; routing moved on already)."""

        async def retire() -> None:
            try:
                await asyncio.sleep(drain_s)
            finally:
                await asyncio.shield(pod.stop())

        task = asyncio.create_task(retire(), name=f"siskin-retire-{pod.pod}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    # ----------------------------------------------------------------- status

    async def _write_status(
        self,
        state: _DeploymentState,
        deployment: dict[str, Any],
        template_hash: str,
        replicas: int,
        ready: int,
        updated: int,
        progressing_reason: str | None = None,
    ) -> None:
        """Merge-patch /status when it differs from what the API already holds."""
        replica_set = f"{state.name}-{template_hash}"
        available = ready >= replicas
        if progressing_reason is None:
            progressing_reason = "NewReplicaSetAvailable" if ready >= replicas else "ReplicaSetUpdated"
        progressing_messages = {
            "NewReplicaSetAvailable": f'ReplicaSet "{replica_set}" has successfully progressed.',
            "ReplicaSetUpdated": f'ReplicaSet "{replica_set}" is progressing.',
            "ProgressDeadlineExceeded": (
                f'ReplicaSet "{replica_set}" has timed out progressing: {state.failure}'
            ),
        }
        wanted_conditions = [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "False" if progressing_reason == "ProgressDeadlineExceeded" else "True",
                "reason": progressing_reason,
                "message": progressing_messages[progressing_reason],
            },
        ]
        wanted: dict[str, Any] = {
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(replicas - ready, 0),
        }
        generation = (deployment.get("metadata") or {}).get("generation")
        if generation is not None:
            wanted["observedGeneration"] = generation
        current = deployment.get("status") or {}
        current_conditions = {
            c.get("type"): c for c in current.get("conditions") or [] if isinstance(c, dict)
        }
        same_numbers = all(current.get(key) == value for key, value in wanted.items())
        same_conditions = all(
            all(current_conditions.get(c["type"], {}).get(k) == c[k] for k in ("status", "reason", "message"))
            for c in wanted_conditions
        )
        if same_numbers and same_conditions:
            return
        now = _now()
        for condition in wanted_conditions:
            previous = current_conditions.get(condition["type"], {})
            unchanged = previous.get("status") == condition["status"]
            condition["lastTransitionTime"] = previous.get("lastTransitionTime", now) if unchanged else now
            condition["lastUpdateTime"] = now
        wanted["conditions"] = wanted_conditions
        assert self._session is not None
        url = f"{self.api_url}/apis/apps/v1/namespaces/{state.namespace}/deployments/{state.name}/status"
        async with self._session.patch(
            url, data=json.dumps({"status": wanted}), headers={"Content-Type": "application/merge-patch+json"}
        ) as reply:
            if reply.status == 404:
                return  # deleted meanwhile; the next poll forgets it
            if reply.status >= 400:
                logger.warning("PATCH %s failed: %s %s", url, reply.status, (await reply.text())[:300])
                return
            body = await reply.json(content_type=None)
        if isinstance(body, dict) and body.get("status") is not None:
            state.latest = body  # so the next comparison sees what we wrote

    # ----------------------------------------------------------------- targets

    def _publish_targets(self) -> None:
        """Rewrite the file_sd JSON (atomically) when the set of serving processes changed."""
        groups = []
        for state in sorted(self._deployments.values(), key=lambda s: (s.namespace, s.name)):
            pod = state.serving
            if pod is None or pod.port is None or not pod.alive:
                continue
            groups.append(
                {
                    "targets": [f"127.0.0.1:{pod.port}"],
                    "labels": scrape_target_labels(state.namespace, state.name, pod.pod, pod.pod_labels),
                }
            )
        text = json.dumps(groups, indent=1, sort_keys=True) + "\n"
        if text == self._published:
            return
        self.sd_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.sd_file.with_name(f".{self.sd_file.name}.tmp")
        temporary.write_text(text)
        temporary.replace(self.sd_file)
        self._published = text
