"""Traffic plans of every router: shares add up, canary and baseline get pods for their shares."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from siskin.operator.traffic.base import TrafficRouter
from siskin.operator.traffic.gateway_api import GatewayAPIRouter
from siskin.operator.traffic.replica_ratio import ReplicaRatioRouter

ROUTERS: list[TrafficRouter] = [ReplicaRatioRouter(), GatewayAPIRouter()]


@pytest.mark.parametrize("router", ROUTERS, ids=lambda r: r.name)
@given(weight=st.integers(0, 100), replicas=st.integers(1, 50), baseline=st.booleans())
def test_shares_add_up_and_tracks_with_traffic_have_pods(router: TrafficRouter, weight: int, replicas: int,
                                                         baseline: bool) -> None:
    plan = router.plan(weight, replicas, baseline)
    assert plan.canary_weight + plan.baseline_weight + plan.stable_weight == 100
    assert min(plan.canary_weight, plan.baseline_weight, plan.stable_weight) >= 0
    assert (plan.canary_replicas > 0) == (plan.canary_weight > 0)
    assert (plan.baseline_replicas > 0) == (plan.baseline_weight > 0)
    if plan.stable_weight > 0:
        assert plan.stable_replicas > 0
    if not baseline:
        assert plan.baseline_weight == 0 and plan.baseline_replicas == 0


@given(weight=st.integers(1, 49), replicas=st.integers(1, 50))
def test_baseline_matches_the_canary_while_there_is_room(weight: int, replicas: int) -> None:
    for router in ROUTERS:
        plan = router.plan(weight, replicas, True)
        assert plan.baseline_replicas == plan.canary_replicas
        assert plan.baseline_weight == plan.canary_weight


def test_gateway_weights_are_exact_and_stable_keeps_its_size() -> None:
    plan = GatewayAPIRouter().plan(25, 4, True)
    assert (plan.stable_weight, plan.canary_weight, plan.baseline_weight) == (50, 25, 25)
    assert (plan.stable_replicas, plan.canary_replicas, plan.baseline_replicas) == (4, 1, 1)


def test_replica_ratio_follows_pod_counts() -> None:
    plan = ReplicaRatioRouter().plan(20, 10, False)
    assert (plan.stable_replicas, plan.canary_replicas) == (8, 2)
    assert plan.canary_weight == 20
    full = ReplicaRatioRouter().plan(100, 10, True)
    assert (full.stable_replicas, full.canary_replicas, full.baseline_replicas) == (0, 10, 0)
