"""What the decision core asks the world to do; each action is idempotent ("make it so")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from siskin.operator.model import Track
from siskin.operator.traffic.base import TrafficPlan


@dataclass(frozen=True)
class EnsureWorkload:
    """The track's Deployment runs ``template`` (named ``revision``) with ``replicas`` pods."""

    track: Track
    revision: str
    template: dict[str, Any]
    replicas: int


@dataclass(frozen=True)
class EnsureServices:
    """The Rollout's Services exist: the main one and one per track."""


@dataclass(frozen=True)
class SetTraffic:
    """The traffic router sends each track its share of ``plan``."""

    plan: TrafficPlan


@dataclass(frozen=True)
class RecordEvent:
    """A Kubernetes Event on the Rollout, for a transition a user should see."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = EnsureWorkload | EnsureServices | SetTraffic | RecordEvent
