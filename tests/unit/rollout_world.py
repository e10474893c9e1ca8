"""A tiny in-memory cluster for driving ``decide()`` through whole rollouts in unit tests.

Deployments become ready as soon as they are asked for (or after ``ready_delay``
ticks); traffic weights are whatever the last SetTraffic said. Every
``tick()`` feeds the world's state to ``decide()``, applies its actions and
keeps its status, exactly as the Kopf handlers do against a real API.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field
from typing import Any

from siskin.operator.actions import Action, EnsureWorkload, RecordEvent, SetTraffic
from siskin.operator.decide import AnalysisUpdate, Decision, Observations, UserRequests, Workload, decide
from siskin.operator.model import RolloutStatus, Track, parse_spec
from siskin.operator.traffic.base import TrafficPlan

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def pod_template(version: str, **env: str) -> dict[str, Any]:
    """A pod template running the demo image at ``version``."""
    variables = [{"name": "VERSION", "value": version}] + [{"name": k, "value": v} for k, v in env.items()]
    return {
        "metadata": {"labels": {"app": "shop"}},
        "spec": {"containers": [{"name": "app", "image": f"demo:{version}", "env": variables}]},
    }


def rollout_spec(version: str = "v1", steps: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A Rollout spec as a user writes it."""
    canary: dict[str, Any] = {"steps": steps if steps is not None else [{"setWeight": 20}, {"pause": {}}]}
    canary.update(extra.pop("canary", {}))
    spec = {
        "replicas": 4,
        "selector": {"matchLabels": {"app": "shop"}},
        "template": pod_template(version),
        "service": {"name": "shop", "port": 80, "targetPort": 8080},
        "strategy": {"canary": canary},
    }
    spec.update(extra)
    return spec


@dataclass
class World:
    """The cluster as ``decide()`` would observe it."""

    spec: dict[str, Any]
    status: RolloutStatus = field(default_factory=RolloutStatus)
    now: datetime.datetime = T0
    generation: int = 1
    workloads: dict[Track, Workload] = field(default_factory=dict)
    traffic: TrafficPlan | None = None
    analysis: dict[str, AnalysisUpdate] = field(default_factory=dict)
    requests: UserRequests = field(default_factory=UserRequests)
    ready_delay: int = 0
    events: list[RecordEvent] = field(default_factory=list)
    applied: list[Action] = field(default_factory=list)
    pending: dict[Track, int] = field(default_factory=dict)
    routing_error: str | None = None
    spec_problems: list[str] = field(default_factory=list)
    analysis_outcome: str | None = None  # when set, every running analysis reports this phase each tick
    preflight_problems: list[str] = field(default_factory=list)  # what trying the analysis queries finds

    def observe(self) -> Observations:
        status = self.status
        preflight = None
        if status.canary_revision and status.preflight_revision != status.canary_revision:
            preflight = list(self.preflight_problems)
        return Observations(
            now=self.now,
            generation=self.generation,
            workloads=dict(self.workloads),
            canary_weight_seen=None if self.traffic is None else self.traffic.canary_weight,
            routing_error=self.routing_error,
            spec_problems=list(self.spec_problems),
            analysis=dict(self.analysis),
            preflight_problems=preflight,
            requests=self.requests,
        )

    def decide(self) -> Decision:
        return decide(parse_spec(copy.deepcopy(self.spec)), self.status, self.observe())

    def tick(self, seconds: float = 2.0) -> Decision:
        """One reconcile: decide, apply, remember; then let time pass."""
        if self.analysis_outcome is not None:
            running = (("step", self.status.step_analysis), ("background", self.status.background_analysis))
            for kind, progress in running:
                for name in progress.templates if progress else []:
                    phase = self.analysis_outcome
                    self.analysis.setdefault(f"{kind}/{name}", AnalysisUpdate(phase, f"{name} {phase}", {}))  # type: ignore[arg-type]
        decision = self.decide()
        self.apply(decision.actions)
        self.status = decision.status
        self.analysis = {}
        self.now += datetime.timedelta(seconds=seconds)
        self._settle()
        return decision

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            self.applied.append(action)
            if isinstance(action, EnsureWorkload):
                current = self.workloads.get(action.track)
                ready = action.replicas if self.ready_delay == 0 else 0
                if current and current.revision == action.revision and current.replicas == action.replicas:
                    continue
                if current and current.revision == action.revision:
                    ready = min(current.ready_replicas, action.replicas) if self.ready_delay else action.replicas
                self.workloads[action.track] = Workload(action.revision, action.template, action.replicas, ready)
                if self.ready_delay:
                    self.pending[action.track] = self.ready_delay
            elif isinstance(action, SetTraffic):
                self.traffic = action.plan
            elif isinstance(action, RecordEvent):
                self.events.append(action)

    def _settle(self) -> None:
        for track in list(self.pending):
            self.pending[track] -= 1
            if self.pending[track] <= 0:
                del self.pending[track]
                w = self.workloads[track]
                self.workloads[track] = Workload(w.revision, w.template, w.replicas, w.replicas)

    def run_until(self, predicate: Any, limit: int = 200, seconds: float = 2.0) -> Decision:
        """Tick until ``predicate(world)`` holds; fail loudly when it never does."""
        for _ in range(limit):
            decision = self.tick(seconds)
            if predicate(self):
                return decision
        raise AssertionError(f"never reached: phase={self.status.phase} message={self.status.message}")

    def reasons(self) -> list[str]:
        return [event.reason for event in self.events]
