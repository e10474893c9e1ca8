"""Traffic routers: one module per router behind :class:`~siskin.operator.traffic.base.TrafficRouter`."""

from __future__ import annotations

from siskin.operator.model import RolloutSpec
from siskin.operator.traffic.base import TrafficRouter
from siskin.operator.traffic.gateway_api import GatewayAPIRouter
from siskin.operator.traffic.replica_ratio import ReplicaRatioRouter


def router_for(spec: RolloutSpec) -> TrafficRouter:
    """The router a Rollout's ``strategy.canary.trafficRouting`` asks for (replica ratio when unset)."""
    routing = spec.strategy.canary.traffic_routing
    if routing is not None and routing.gateway_api is not None:
        return GatewayAPIRouter()
    return ReplicaRatioRouter()
