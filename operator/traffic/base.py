"""The one small interface every traffic router implements.

A router has two halves: :meth:`TrafficRouter.plan` is pure (weights and pod
counts for a canary weight, used by the decision core) and the other methods
talk to Kubernetes through a :class:`~siskin.operator.kube.KubeAPI`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from siskin.operator.kube import KubeAPI
    from siskin.operator.model import RolloutSpec


@dataclass(frozen=True)
class TrafficPlan:
    """Traffic shares in percent and pod counts per track for one canary weight."""

    canary_weight: int
    baseline_weight: int
    stable_weight: int
    stable_replicas: int
    canary_replicas: int
    baseline_replicas: int


@dataclass(frozen=True)
class RolloutRef:
    """Where a Rollout lives and what it routes: enough for a router to act."""

    namespace: str
    name: str
    spec: RolloutSpec


class TrafficRouter(Protocol):
    """Shifts traffic between the stable, canary and baseline tracks."""

    name: str

    def plan(self, weight: int, replicas: int, baseline: bool) -> TrafficPlan:
        """Shares and pod counts for ``weight`` percent on the canary (pure)."""
        ...

    def set_weights(self, kube: KubeAPI, rollout: RolloutRef, plan: TrafficPlan) -> None:
        """Make the routing objects send each track its share (idempotent)."""
        ...

    def observed_canary_weight(self, kube: KubeAPI, rollout: RolloutRef) -> int | None:
        """The canary weight the routing objects carry now; None when the router cannot tell."""
        ...

    def release(self, kube: KubeAPI, rollout: RolloutRef) -> None:
        """The Rollout is being deleted: leave the routing objects sending everything to stable."""
        ...


def baseline_share(weight: int, baseline: bool) -> int:
    """The baseline gets the canary's share while there is room for it."""
    return min(weight, 100 - weight) if baseline else 0


def pods_for_share(replicas: int, share: int) -> int:
    """Pods for ``share`` percent of ``replicas``, at least one for any non-zero share."""
    if share <= 0 or replicas <= 0:
        return 0
    return max(1, math.ceil(replicas * share / 100))
