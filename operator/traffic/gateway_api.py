"""Gateway API routing: the weights of an ``HTTPRoute``'s backendRefs.

The user owns the HTTPRoute (its parents, hostnames, matches); Siskin owns the
backendRefs of every rule that points at the Rollout's Services, and sets them
to the stable, canary and baseline Services with their shares.
"""

from __future__ import annotations

from typing import Any

from siskin.operator.kube import HTTP_ROUTES, KubeAPI
from siskin.operator.model import Track
from siskin.operator.naming import service_name
from siskin.operator.traffic.base import RolloutRef, TrafficPlan, baseline_share, pods_for_share


class RouteNotReady(Exception):
    """The HTTPRoute is missing or points nowhere Siskin can steer."""


class GatewayAPIRouter:
    """Weights on an HTTPRoute; the stable track keeps its full size until promotion."""

    name = "gatewayAPI"

    def plan(self, weight: int, replicas: int, baseline: bool) -> TrafficPlan:
        """Exact shares; canary and baseline pods sized for their shares."""
        weight = max(0, min(weight, 100))
        baseline_weight = baseline_share(weight, baseline)
        return TrafficPlan(
            canary_weight=weight,
            baseline_weight=baseline_weight,
            stable_weight=100 - weight - baseline_weight,
            stable_replicas=replicas,
            canary_replicas=pods_for_share(replicas, weight),
            baseline_replicas=pods_for_share(replicas, baseline_weight),
        )

    def set_weights(self, kube: KubeAPI, rollout: RolloutRef, plan: TrafficPlan) -> None:
        """Rewrite the backendRefs of the rules that route to this Rollout (only when they differ)."""
        self._set_backend_refs(kube, rollout, _backend_refs(rollout, plan))

    def release(self, kube: KubeAPI, rollout: RolloutRef) -> None:
        """Leave the route as a user first writes it: everything to the stable Service, no canary refs."""
        try:
            stable_only = [{"name": service_name(rollout.spec, "stable"), "port": rollout.spec.service.port,
                            "weight": 100}]
            self._set_backend_refs(kube, rollout, stable_only)
        except RouteNotReady:
            pass  # no route, or none of its rules is ours: nothing to undo

    def _set_backend_refs(self, kube: KubeAPI, rollout: RolloutRef, wanted: list[dict[str, Any]]) -> None:
        route = self._route(kube, rollout)
        rules = route.get("spec", {}).get("rules") or []
        ours = [index for index, rule in enumerate(rules) if _routes_to_rollout(rule, rollout)]
        if not ours:
            raise RouteNotReady(
                f"HTTPRoute {rollout.namespace}/{_route_name(rollout)} has no rule with a backendRef to "
                f"Service {rollout.spec.service.name} or {service_name(rollout.spec, 'stable')}; "
                "add one so that Siskin can steer its weights"
            )
        if all(rules[index].get("backendRefs") == wanted for index in ours):
            return
        new_rules = [dict(rule, backendRefs=wanted) if index in ours else rule for index, rule in enumerate(rules)]
        kube.patch(HTTP_ROUTES, rollout.namespace, _route_name(rollout), {"spec": {"rules": new_rules}})

    def observed_canary_weight(self, kube: KubeAPI, rollout: RolloutRef) -> int | None:
        """The canary's percentage of the summed weights of the first rule routing to this Rollout."""
        route = self._route(kube, rollout)
        for rule in route.get("spec", {}).get("rules") or []:
            if not _routes_to_rollout(rule, rollout):
                continue
            refs = rule.get("backendRefs") or []
            total = sum(int(ref.get("weight", 1)) for ref in refs)
            canary_service = service_name(rollout.spec, "canary")
            canary = sum(int(ref.get("weight", 1)) for ref in refs if ref.get("name") == canary_service)
            return round(100 * canary / total) if total else 0
        return None

    def _route(self, kube: KubeAPI, rollout: RolloutRef) -> dict[str, Any]:
        route = kube.get(HTTP_ROUTES, rollout.namespace, _route_name(rollout))
        if route is None:
            raise RouteNotReady(
                f"HTTPRoute {rollout.namespace}/{_route_name(rollout)} named in "
                "spec.strategy.canary.trafficRouting.gatewayAPI.httpRoute does not exist; create it"
            )
        return dict(route)


def _route_name(rollout: RolloutRef) -> str:
    routing = rollout.spec.strategy.canary.traffic_routing
    assert routing is not None and routing.gateway_api is not None
    return str(routing.gateway_api.http_route)


def _routes_to_rollout(rule: dict[str, Any], rollout: RolloutRef) -> bool:
    tracks: tuple[Track, ...] = ("stable", "canary", "baseline")
    names = {rollout.spec.service.name} | {service_name(rollout.spec, track) for track in tracks}
    return any(ref.get("name") in names for ref in rule.get("backendRefs") or [])


def _backend_refs(rollout: RolloutRef, plan: TrafficPlan) -> list[dict[str, Any]]:
    port = rollout.spec.service.port
    return [
        {"name": service_name(rollout.spec, "stable"), "port": port, "weight": plan.stable_weight},
        {"name": service_name(rollout.spec, "canary"), "port": port, "weight": plan.canary_weight},
        {"name": service_name(rollout.spec, "baseline"), "port": port, "weight": plan.baseline_weight},
    ]
