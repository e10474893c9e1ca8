"""Gather what ``decide()`` needs: workloads, routing, templates, analysis looks, user requests.

Reads only, with one exception that is still a read: querying the metrics
provider for an analysis look. The folding of a look into the run state is the
pure ``siskin.analysis.run.advance``; this module calls it so that
``decide()`` receives finished run states.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError
from siskin.analysis.provider import MetricsProvider, ProviderError
from siskin.analysis.queries import QueryContext, TemplateError, metric_queries
from siskin.analysis.run import AnalysisRunState, advance, look
from siskin.analysis.template import AnalysisTemplateSpec, validation_problem
from siskin.operator.decide import AnalysisUpdate, Observations, UserRequests, Workload, analysis_key
from siskin.operator.kube import ANALYSIS_TEMPLATES, DEPLOYMENTS, KubeAPI
from siskin.operator.model import TRACKS, AnalysisProgress, RolloutSpec, RolloutStatus, SpecError
from siskin.operator.naming import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    LABEL_REVISION,
    SISKIN_LABELS,
    deployment_name,
)
from siskin.operator.traffic import router_for
from siskin.operator.traffic.base import RolloutRef
from siskin.operator.traffic.gateway_api import RouteNotReady

log = logging.getLogger(__name__)

ProviderFactory = Callable[[AnalysisTemplateSpec], MetricsProvider]


@dataclass(frozen=True)
class RolloutObject:
    """The parts of a Rollout object the operator works from."""

    namespace: str
    name: str
    generation: int
    annotations: dict[str, str]
    spec: RolloutSpec | SpecError
    status: RolloutStatus

    @property
    def ref(self) -> RolloutRef:
        assert isinstance(self.spec, RolloutSpec)
        return RolloutRef(self.namespace, self.name, self.spec)


def observe(
    kube: KubeAPI,
    rollout: RolloutObject,
    now: datetime.datetime,
    provider_for: ProviderFactory,
) -> Observations:
    """Everything ``decide()`` needs to know about one Rollout now."""
    requests = UserRequests(
        promote=rollout.annotations.get(ANNOTATION_PROMOTE),
        abort=rollout.annotations.get(ANNOTATION_ABORT),
        retry=rollout.annotations.get(ANNOTATION_RETRY),
    )
    if isinstance(rollout.spec, SpecError):
        return Observations(now=now, generation=rollout.generation, rollout_name=rollout.name, requests=requests)
    spec = rollout.spec
    workloads = {track: observe_workload(kube, rollout.namespace, deployment_name(rollout.name, track))
                 for track in TRACKS}
    templates, problems = resolve_templates(kube, rollout.namespace, spec)
    weight_seen: int | None = None
    routing_error: str | None = None
    try:
        weight_seen = router_for(spec).observed_canary_weight(kube, rollout.ref)
    except RouteNotReady as exc:
        routing_error = str(exc)
    analysis = {} if problems else look_at_analyses(rollout, templates, now, provider_for)
    status = rollout.status
    preflight: list[str] | None = None
    if not problems and status.canary_revision and status.preflight_revision != status.canary_revision:
        preflight = preflight_queries(rollout, templates, now, provider_for)
    return Observations(
        now=now,
        generation=rollout.generation,
        rollout_name=rollout.name,
        workloads=workloads,
        canary_weight_seen=weight_seen,
        routing_error=routing_error,
        spec_problems=problems,
        analysis=analysis,
        preflight_problems=preflight,
        requests=requests,
    )


def observe_workload(kube: KubeAPI, namespace: str, name: str) -> Workload | None:
    """A Deployment as the decision core sees it: revision, user template, desired and ready pods."""
    deployment = kube.get(DEPLOYMENTS, namespace, name)
    if deployment is None:
        return None
    template = dict(deployment.get("spec", {}).get("template") or {})
    labels = dict(template.get("metadata", {}).get("labels") or {})
    revision = labels.get(LABEL_REVISION)
    user_labels = {k: v for k, v in labels.items() if k not in SISKIN_LABELS}
    user_template = {**template, "metadata": {**template.get("metadata", {}), "labels": user_labels}}
    if not user_template["metadata"]["labels"]:
        user_template["metadata"].pop("labels")
    status = deployment.get("status") or {}
    replicas = int(deployment.get("spec", {}).get("replicas", 1))
    current = int(status.get("observedGeneration", 0)) >= int(deployment["metadata"].get("generation", 1))
    ready = int(status.get("availableReplicas", 0)) if current else 0
    if current and int(status.get("updatedReplicas", replicas)) < replicas:
        ready = min(ready, int(status.get("updatedReplicas", 0)))
    return Workload(revision=revision, template=user_template, replicas=replicas, ready_replicas=ready)


def template_references(spec: RolloutSpec) -> list[tuple[str, str]]:
    """(field path, template name) of every AnalysisTemplate the spec refers to."""
    refs: list[tuple[str, str]] = []
    canary = spec.strategy.canary
    if canary.analysis is not None:
        for i, ref in enumerate(canary.analysis.templates):
            refs.append((f"spec.strategy.canary.analysis.templates[{i}].templateName", ref.template_name))
    for s, step in enumerate(canary.steps):
        if step.analysis is not None:
            for i, ref in enumerate(step.analysis.templates):
                refs.append((f"spec.strategy.canary.steps[{s}].analysis.templates[{i}].templateName",
                             ref.template_name))
    return refs


def resolve_templates(
    kube: KubeAPI, namespace: str, spec: RolloutSpec
) -> tuple[dict[str, AnalysisTemplateSpec], list[str]]:
    """The referenced AnalysisTemplates by name, and a message for each missing or invalid one."""
    templates: dict[str, AnalysisTemplateSpec] = {}
    problems: list[str] = []
    for field, name in template_references(spec):
        if name in templates:
            continue
        body = kube.get(ANALYSIS_TEMPLATES, namespace, name)
        if body is None:
            problems.append(f"{field}: AnalysisTemplate {namespace}/{name} not found; create it or fix the name")
            continue
        try:
            templates[name] = AnalysisTemplateSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            problems.append(f"AnalysisTemplate {namespace}/{name}: {validation_problem(exc)}")
    return templates, problems


def look_at_analyses(
    rollout: RolloutObject,
    templates: dict[str, AnalysisTemplateSpec],
    now: datetime.datetime,
    provider_for: ProviderFactory,
) -> dict[str, AnalysisUpdate]:
    """Look at every running analysis whose next window has closed, and fold the look in."""
    assert isinstance(rollout.spec, RolloutSpec)
    status = rollout.status
    updates: dict[str, AnalysisUpdate] = {}
    runs: list[tuple[Literal["step", "background"], AnalysisProgress, list[Any]]] = []
    canary = rollout.spec.strategy.canary
    if status.step_analysis is not None and status.step_analysis.step_index == status.current_step_index:
        index = status.step_analysis.step_index
        step = canary.steps[index] if index is not None and index < len(canary.steps) else None
        runs.append(("step", status.step_analysis, list(step.analysis.args) if step and step.analysis else []))
    if status.background_analysis is not None and canary.analysis is not None:
        runs.append(("background", status.background_analysis, list(canary.analysis.args)))
    for kind, progress, args in runs:
        started = _timestamp(progress.started_at)
        deadline = progress.duration_seconds is not None and now.timestamp() >= started + progress.duration_seconds
        context = QueryContext(namespace=rollout.namespace, name=rollout.name,
                               args={arg.name: arg.value for arg in args})
        for name in progress.templates:
            template = templates.get(name)
            if template is None:
                continue
            previous_run = progress.runs.get(name) or {}
            previous = (AnalysisRunState.model_validate(previous_run["state"])
                        if previous_run.get("state") else None)
            if previous is not None and previous.done:
                if not (kind == "background" and previous.phase == "Successful"):
                    continue
                # Background analysis watches until promotion: a pass so far does not end it.
                previous = previous.model_copy(update={"phase": "Running"})
            due = previous is None or previous.last_look_at is None or (
                now.timestamp() - previous.last_look_at >= template.interval_seconds
            )
            if not due and not deadline:
                continue
            provider = provider_for(template)
            try:
                seen = look(template, provider, context, started, now.timestamp())
            finally:
                close = getattr(provider, "close", None)
                if close is not None:
                    close()
            state = advance(previous, seen, template, deadline_reached=deadline)
            updates[analysis_key(kind, name)] = AnalysisUpdate(
                phase=state.phase, message=state.message, state=state.model_dump(mode="json", by_alias=True)
            )
    return updates


def _timestamp(text: str) -> float:
    parsed = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def preflight_queries(
    rollout: RolloutObject,
    templates: dict[str, AnalysisTemplateSpec],
    now: datetime.datetime,
    provider_for: ProviderFactory,
) -> list[str]:
    """Run every query of every referenced template once, before any traffic moves to the canary.

    A query Prometheus refuses, an argument that does not resolve, or an unreachable
    Prometheus is found here, while the canary still has no traffic, rather than
    rolling back a canary that may be fine. Empty results are expected (no canary yet).
    """
    assert isinstance(rollout.spec, RolloutSpec)
    args = {arg.name: arg.value for arg in _all_args(rollout.spec)}
    context = QueryContext(namespace=rollout.namespace, name=rollout.name, args=args)
    problems: list[str] = []
    end = now.timestamp()
    for name, template in templates.items():
        provider = provider_for(template)
        try:
            for metric in template.metrics:
                try:
                    queries = metric_queries(metric, template, context)
                except TemplateError as exc:
                    problems.append(f"AnalysisTemplate {rollout.namespace}/{name} metric {metric.name}: {exc}")
                    continue
                for role, query in (("requests", queries.requests), ("events", queries.events),
                                    ("slow requests", queries.fast)):
                    if query is None:
                        continue
                    try:
                        provider.range_by_track(query, end - 4 * template.interval_seconds, end,
                                                template.interval_seconds)
                    except ProviderError as exc:
                        problems.append(f"AnalysisTemplate {rollout.namespace}/{name} metric {metric.name} "
                                        f"({role} query): {exc}")
                        break
        finally:
            close = getattr(provider, "close", None)
            if close is not None:
                close()
    return problems


def _all_args(spec: RolloutSpec) -> list[Any]:
    canary = spec.strategy.canary
    args = list(canary.analysis.args) if canary.analysis is not None else []
    for step in canary.steps:
        if step.analysis is not None:
            args += step.analysis.args
    return args
