"""Kopf handlers: one reconcile loop per Rollout, woken by changes and by a short timer.

Thin on purpose: read the Rollout, observe, ``decide()``, write the status, apply
the actions. The status is written first (with the resourceVersion read, so a
concurrent change makes the write fail and nothing happens); the actions that
follow are "make it so" and are asserted again on every pass, so a crash
between the two loses nothing and repeats nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import kopf
from siskin.analysis.prometheus import PrometheusProvider
from siskin.analysis.provider import MetricsProvider
from siskin.analysis.template import AnalysisTemplateSpec, parse_duration
from siskin.operator.actions import RecordEvent
from siskin.operator.actuate import Owner, apply_actions, record_event
from siskin.operator.decide import decide
from siskin.operator.kube import ROLLOUTS, KubeAPI, KubeError
from siskin.operator.model import GROUP, PLURAL, VERSION, RolloutSpec, RolloutStatus, parse_spec
from siskin.operator.observe import RolloutObject, observe
from siskin.operator.traffic import router_for
from siskin.operator.traffic.base import RolloutRef
from siskin.operator.traffic.gateway_api import RouteNotReady

log = logging.getLogger("siskin.operator")

DEFAULT_PROMETHEUS_URL = "http://prometheus.monitoring.svc:9090"


@dataclass
class OperatorConfig:
    """Settings read from the environment (the CLI and the Helm chart set them)."""

    prometheus_url: str = field(default_factory=lambda: os.environ.get("SISKIN_PROMETHEUS_URL", DEFAULT_PROMETHEUS_URL))
    interval_seconds: float = field(default_factory=lambda: float(os.environ.get("SISKIN_RECONCILE_SECONDS", "2")))

    def provider_for(self, template: AnalysisTemplateSpec) -> MetricsProvider:
        """The metrics provider an AnalysisTemplate asks for."""
        settings = template.provider.prometheus
        return PrometheusProvider(settings.address or self.prometheus_url,
                                  timeout_seconds=parse_duration(settings.timeout))


def reconcile(kube: KubeAPI, config: OperatorConfig, namespace: str, name: str) -> None:
    """One pass over one Rollout."""
    body = kube.get(ROLLOUTS, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    metadata = body["metadata"]
    try:
        status = RolloutStatus.model_validate(body.get("status") or {})
    except ValueError:
        log.warning("Rollout %s/%s has a status Siskin cannot read; starting from an empty one", namespace, name)
        status = RolloutStatus()
    rollout = RolloutObject(
        namespace=namespace,
        name=name,
        generation=int(metadata.get("generation", 1)),
        annotations=dict(metadata.get("annotations") or {}),
        spec=parse_spec(body.get("spec")),
        status=status,
    )
    now = datetime.datetime.now(datetime.UTC)
    observations = observe(kube, rollout, now, config.provider_for)
    decision = decide(rollout.spec, rollout.status, observations)
    if decision.status != rollout.status:
        wire = {**body, "status": decision.status.to_wire()}
        try:
            kube.replace(ROLLOUTS, namespace, name, wire, subresource="status")
        except KubeError as exc:
            if exc.status == 409:
                log.debug("Rollout %s/%s changed meanwhile; deciding again", namespace, name)
                return
            raise
    uid = str(metadata.get("uid", ""))
    if not isinstance(rollout.spec, RolloutSpec):
        # An invalid spec touches nothing: only its events go out.
        for action in decision.actions:
            if isinstance(action, RecordEvent):
                record_event(kube, namespace, name, uid, action)
        return
    try:
        apply_actions(kube, Owner(namespace, name, uid, rollout.spec), decision.actions)
    except RouteNotReady as exc:
        log.warning("Rollout %s/%s: %s", namespace, name, exc)


# ----------------------------------------------------------------------------- Kopf wiring


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Quiet Kopf's own events (Siskin posts its own) and connect to the API."""
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 60
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    memo["kube"] = KubeAPI()
    memo["config"] = OperatorConfig()


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def release_traffic(spec: Any, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """Before a Rollout goes, its route stops pointing at the canary and baseline Services."""
    parsed = parse_spec(dict(spec))
    if isinstance(parsed, RolloutSpec) and namespace is not None:
        rollout = RolloutRef(namespace, name, parsed)
        await asyncio.to_thread(router_for(parsed).release, memo["kube"], rollout)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def wake_up(memo: Any, **_: Any) -> None:
    """Any change to a Rollout wakes its loop at once instead of at the next tick."""
    wake = memo.get("wake")
    if isinstance(wake, asyncio.Event):
        wake.set()


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def run_rollout(*, name: str, namespace: str | None, stopped: Any, memo: Any, **_: Any) -> None:
    """The reconcile loop of one Rollout, for as long as it exists.

    The loop itself is async and holds no thread; each pass borrows a worker thread only while it
    talks to the API and Prometheus, so any number of Rollouts share a small pool.
    """
    assert namespace is not None  # Rollouts are namespaced
    wake = asyncio.Event()
    memo["wake"] = wake
    kube: KubeAPI = memo["kube"]
    config: OperatorConfig = memo["config"]
    while not stopped:
        try:
            await asyncio.to_thread(reconcile, kube, config, namespace, name)
        except KubeError as exc:
            log.warning("Rollout %s/%s: Kubernetes API said %s; retrying", namespace, name, exc)
        except Exception:
            log.exception("Rollout %s/%s: reconcile failed; retrying", namespace, name)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), config.interval_seconds)
        wake.clear()
