"""Replica-ratio routing (no mesh): the Service spreads requests over all pods,
so each track's share of traffic is its share of pods."""

from __future__ import annotations

from siskin.operator.kube import KubeAPI
from siskin.operator.traffic.base import RolloutRef, TrafficPlan, baseline_share, pods_for_share


class ReplicaRatioRouter:
    """Shares follow pod counts; there is nothing to patch."""

    name = "replicaRatio"

    def plan(self, weight: int, replicas: int, baseline: bool) -> TrafficPlan:
        """Pods per track so that each track's pod share is close to its traffic share."""
        if weight >= 100:
            return TrafficPlan(100, 0, 0, 0, max(replicas, 1), 0)
        canary_pods = pods_for_share(replicas, weight)
        baseline_pods = pods_for_share(replicas, baseline_share(weight, baseline))
        stable_pods = max(replicas - canary_pods - baseline_pods, 1 if replicas > 0 else 0)
        total = stable_pods + canary_pods + baseline_pods
        if total == 0:
            return TrafficPlan(0, 0, 100, 0, 0, 0)
        canary_share = round(100 * canary_pods / total)
        baseline_pct = round(100 * baseline_pods / total)
        return TrafficPlan(
            canary_weight=canary_share,
            baseline_weight=baseline_pct,
            stable_weight=100 - canary_share - baseline_pct,
            stable_replicas=stable_pods,
            canary_replicas=canary_pods,
            baseline_replicas=baseline_pods,
        )

    def set_weights(self, kube: KubeAPI, rollout: RolloutRef, plan: TrafficPlan) -> None:
        """Nothing to do: the pod counts are the routing."""

    def observed_canary_weight(self, kube: KubeAPI, rollout: RolloutRef) -> int | None:
        """Not observable apart from the pods; the decision core checks the pods instead."""
        return None

    def release(self, kube: KubeAPI, rollout: RolloutRef) -> None:
        """Nothing to undo: the Services go with the Rollout."""
