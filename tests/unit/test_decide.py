"""The rollout state machine, driven through whole rollouts in an in-memory world."""

from __future__ import annotations

import copy
import datetime

import pytest
from rollout_world import World, pod_template, rollout_spec
from siskin.operator.actions import EnsureWorkload, SetTraffic
from siskin.operator.decide import AnalysisUpdate, UserRequests, analysis_key
from siskin.operator.model import RolloutStatus, template_revision

ANALYSIS_STEPS = [
    {"setWeight": 20},
    {"analysis": {"templates": [{"templateName": "red"}], "duration": "2m"}},
    {"setWeight": 50},
    {"pause": {"duration": "30s"}},
]


def deployed(spec: dict | None = None, **kw: object) -> World:
    """A world whose first revision is already stable."""
    world = World(spec or rollout_spec("v1"), **kw)  # type: ignore[arg-type]
    world.run_until(lambda w: w.status.phase == "Healthy")
    return world


def new_version(world: World, version: str, **env: str) -> str:
    world.spec["template"] = pod_template(version, **env)
    world.generation += 1
    return template_revision(world.spec["template"])


def condition(world: World, type_: str) -> tuple[str, str]:
    found = next(c for c in world.status.conditions if c.type == type_)
    return found.status, found.reason


# ----------------------------------------------------------------------------- first deploy and steady state


def test_first_revision_becomes_stable_without_a_canary() -> None:
    world = deployed()
    assert world.status.stable_revision == template_revision(pod_template("v1"))
    assert world.status.canary_revision is None
    assert world.workloads["stable"].replicas == 4
    assert "canary" not in world.workloads or world.workloads["canary"].replicas == 0
    assert condition(world, "Ready") == ("True", "StableRunning")
    assert world.status.history[-1].outcome == "Deployed"


def test_first_revision_waits_for_its_pods() -> None:
    world = World(rollout_spec("v1"), ready_delay=3)
    world.tick()
    assert world.status.phase == "Progressing"
    assert "0/4 pods ready" in world.status.message
    world.run_until(lambda w: w.status.phase == "Healthy")


# ----------------------------------------------------------------------------- steps


def test_set_weight_grows_pods_before_moving_traffic() -> None:
    world = deployed(ready_delay=2)
    new_version(world, "v2")
    world.tick()  # canary started
    decision = world.tick()  # setWeight 20: pods requested, not ready yet
    canary = [a for a in decision.actions if isinstance(a, EnsureWorkload) and a.track == "canary"]
    assert canary and canary[0].replicas == 1
    traffic = [a for a in decision.actions if isinstance(a, SetTraffic)]
    assert all(t.plan.canary_weight == 0 for t in traffic)
    assert "waiting for canary pods" in world.status.message
    world.run_until(lambda w: w.status.canary_weight == 20)
    assert world.traffic is not None and world.traffic.canary_weight > 0


def test_indefinite_pause_waits_for_promote_of_that_step() -> None:
    world = deployed()
    revision = new_version(world, "v2")
    world.run_until(lambda w: w.status.phase == "Paused")
    assert world.status.current_step_index == 1
    assert "siskin promote" in world.status.message
    for _ in range(5):
        world.tick()
    assert world.status.phase == "Paused"
    world.requests = UserRequests(promote=f"{revision}:0")  # a stale promote for another step
    world.tick()
    assert world.status.phase == "Paused"
    world.requests = UserRequests(promote=f"{revision}:1")
    world.run_until(lambda w: w.status.phase == "Healthy")
    assert world.status.stable_revision == revision
    assert world.status.history[-1].outcome == "Promoted"


def test_timed_pause_continues_after_its_duration() -> None:
    world = deployed(rollout_spec("v1", steps=[{"setWeight": 10}, {"pause": {"duration": "30s"}}]))
    new_version(world, "v2")
    world.run_until(lambda w: w.status.current_step_index == 1)
    start = world.now
    world.run_until(lambda w: w.status.phase == "Healthy", seconds=5)
    assert (world.now - start).total_seconds() >= 30
    assert "RolloutPromoted" in world.reasons()


def test_promotion_moves_stable_to_new_version_then_traffic_then_scales_canary_down() -> None:
    world = deployed(rollout_spec("v1", steps=[{"setWeight": 50}]))
    revision = new_version(world, "v2")
    world.run_until(lambda w: w.status.phase == "Healthy")
    assert world.workloads["stable"].revision == revision
    assert world.workloads["canary"].replicas == 0
    assert world.workloads["baseline"].replicas == 0
    assert world.traffic is not None and world.traffic.stable_weight == 100
    assert condition(world, "Ready") == ("True", "RolloutPromoted")


def test_promote_full_skips_remaining_steps() -> None:
    world = deployed(rollout_spec("v1", steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]))
    revision = new_version(world, "v2")
    world.run_until(lambda w: w.status.phase == "Paused")
    world.requests = UserRequests(promote=f"{revision}:full")
    world.run_until(lambda w: w.status.phase == "Healthy", limit=20)
    assert world.status.stable_revision == revision


# ----------------------------------------------------------------------------- analysis


def analysis_world() -> tuple[World, str]:
    world = deployed(rollout_spec("v1", steps=ANALYSIS_STEPS))
    revision = new_version(world, "v2")
    world.run_until(lambda w: w.status.step_analysis is not None)
    return world, revision


def look(phase: str, message: str) -> dict[str, AnalysisUpdate]:
    return {analysis_key("step", "red"): AnalysisUpdate(phase, message, {"phase": phase})}  # type: ignore[arg-type]


def test_failed_analysis_rolls_back_to_stable() -> None:
    world, revision = analysis_world()
    assert world.status.verdict == "Running"
    world.analysis = look("Running", "errors Inconclusive")
    world.tick()
    assert world.status.phase == "Progressing"
    world.analysis = look("Failed", "errors: canary 7.0% vs baseline 2.0%")
    world.tick()
    assert world.status.phase == "Degraded"
    assert world.status.aborted_revision == revision
    assert "errors: canary 7.0% vs baseline 2.0%" in world.status.message
    assert condition(world, "Degraded") == ("True", "AnalysisFailed")
    assert condition(world, "Ready")[0] == "False"
    assert world.traffic is not None and world.traffic.canary_weight == 0 and world.traffic.stable_weight == 100
    assert world.workloads["canary"].replicas == 0 and world.workloads["baseline"].replicas == 0
    assert world.status.history[-1].outcome == "RolledBack"
    # It stays rolled back: more ticks change nothing and emit no new events.
    events = len(world.events)
    for _ in range(5):
        world.tick()
    assert world.status.phase == "Degraded" and len(world.events) == events


def test_rollback_moves_traffic_before_scaling_down() -> None:
    world, _ = analysis_world()
    world.analysis = look("Failed", "errors worse")
    decision = world.tick()
    kinds = [type(a).__name__ for a in decision.actions]
    first_traffic = kinds.index("SetTraffic")
    scale_downs = [i for i, a in enumerate(decision.actions)
                   if isinstance(a, EnsureWorkload) and a.track == "canary" and a.replicas == 0]
    assert scale_downs and first_traffic < scale_downs[0]


def test_analysis_error_rolls_back_with_its_own_reason() -> None:
    world, _ = analysis_world()
    world.analysis = look("Error", "errors: Prometheus unreachable")
    world.tick()
    assert condition(world, "Degraded") == ("True", "AnalysisError")


def test_successful_analysis_moves_on() -> None:
    world, revision = analysis_world()
    world.analysis = look("Successful", "errors Pass")
    world.tick()
    assert world.status.current_step_index == 2
    world.run_until(lambda w: w.status.phase == "Healthy", seconds=5)
    assert world.status.stable_revision == revision


def test_inconclusive_analysis_pauses_until_promoted() -> None:
    world, revision = analysis_world()
    world.analysis = look("Inconclusive", "errors: too few requests")
    world.tick()
    assert world.status.phase == "Paused"
    assert condition(world, "Progressing") == ("True", "InconclusiveAnalysis")
    world.requests = UserRequests(promote=f"{revision}:1")
    world.tick()
    assert world.status.current_step_index == 2


def test_user_abort_rolls_back_and_retry_starts_over() -> None:
    world = deployed()
    revision = new_version(world, "v2")
    world.run_until(lambda w: w.status.phase == "Paused")
    world.requests = UserRequests(abort=f"{revision}@1")
    world.tick()
    assert world.status.phase == "Degraded" and world.status.aborted_revision == revision
    world.requests = UserRequests(abort=f"{revision}@1", retry=f"{revision}@2")
    world.tick()
    assert world.status.aborted_revision is None
    world.run_until(lambda w: w.status.phase == "Paused")
    assert world.status.current_step_index == 1


# ----------------------------------------------------------------------------- spec changes


def test_new_template_mid_rollout_restarts_from_step_zero() -> None:
    world = deployed()
    first = new_version(world, "v2")
    world.run_until(lambda w: w.status.phase == "Paused")
    second = new_version(world, "v3")
    world.tick()
    assert world.status.canary_revision == second
    assert world.status.current_step_index == 0
    assert world.status.history[-1].revision == first and world.status.history[-1].outcome == "Superseded"
    world.run_until(lambda w: w.status.phase == "Paused")
    assert world.workloads["canary"].revision == second


def test_reverting_the_template_to_stable_discards_the_canary() -> None:
    world = deployed()
    stable = world.status.stable_revision
    new_version(world, "v2")
    world.run_until(lambda w: w.status.phase == "Paused")
    world.spec["template"] = pod_template("v1")
    world.run_until(lambda w: w.status.phase == "Healthy")
    assert world.status.stable_revision == stable
    assert world.workloads["canary"].replicas == 0


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s["strategy"]["canary"]["steps"].__setitem__(0, {"setWeight": 150}), "steps[0].setWeight"),
        (lambda s: s["strategy"]["canary"]["steps"].__setitem__(0, {"setWieght": 20}), "steps[0]"),
        (lambda s: s.pop("selector"), "spec.selector"),
        (lambda s: s["strategy"]["canary"]["steps"].__setitem__(1, {"pause": {"duration": "soon"}}), "duration"),
    ],
)
def test_invalid_spec_sets_condition_and_touches_nothing(mutate, field) -> None:  # type: ignore[no-untyped-def]
    world = deployed()
    before = copy.deepcopy(world.workloads), world.traffic
    new_version(world, "v2")
    mutate(world.spec)
    decision = world.tick()
    assert decision.actions and all(type(a).__name__ == "RecordEvent" for a in decision.actions)
    assert (world.workloads, world.traffic) == before
    assert world.status.phase == "Degraded"
    invalid = next(c for c in world.status.conditions if c.type == "InvalidSpec")
    assert invalid.status == "True" and field in invalid.message
    # The event is not repeated on every tick.
    world.tick()
    assert world.reasons().count("InvalidSpec") == 1


def test_missing_template_is_reported_as_invalid_spec() -> None:
    world = deployed()
    new_version(world, "v2")
    world.spec_problems = ["spec.strategy.canary.steps[1].analysis.templates[0]: AnalysisTemplate default/red missing"]
    world.tick()
    invalid = next(c for c in world.status.conditions if c.type == "InvalidSpec")
    assert "AnalysisTemplate default/red missing" in invalid.message
    world.spec_problems = []
    world.tick()
    assert not [c for c in world.status.conditions if c.type == "InvalidSpec"]


def test_routing_error_holds_traffic_where_it_is() -> None:
    world = deployed()
    new_version(world, "v2")
    world.run_until(lambda w: w.status.phase == "Paused")
    weight = world.traffic.canary_weight if world.traffic else None
    world.routing_error = "HTTPRoute default/shop does not exist; create it"
    decision = world.tick()
    assert not [a for a in decision.actions if isinstance(a, SetTraffic)]
    assert world.status.phase == "Degraded" and "HTTPRoute default/shop" in world.status.message
    assert world.traffic is not None and world.traffic.canary_weight == weight


def test_progress_deadline_aborts_when_canary_never_gets_ready() -> None:
    world = deployed(rollout_spec("v1", progressDeadlineSeconds=60))
    new_version(world, "v2")
    world.ready_delay = 10_000
    world.run_until(lambda w: w.status.phase == "Degraded", seconds=10)
    assert condition(world, "Degraded") == ("True", "ProgressDeadlineExceeded")


# ----------------------------------------------------------------------------- restarts


def test_restart_at_any_tick_repeats_no_transition() -> None:
    """A restart before or after writing status never makes the same transition twice."""
    world = deployed(rollout_spec("v1", steps=ANALYSIS_STEPS))
    new_version(world, "v2")
    for tick in range(60):
        if world.status.step_analysis is not None and world.status.current_step_index == 1:
            world.analysis = look("Successful", "errors Pass")
        observations = world.observe()
        first = world.decide()
        again = world.decide()  # restarted before anything was written: the same decision
        assert (first.actions, first.status) == (again.actions, again.status), f"tick {tick}"
        # Restarted after the status was written but before the world moved: deciding again from the
        # new status on the same observations must not repeat any transition.
        from siskin.operator.decide import decide
        from siskin.operator.model import parse_spec
        replay = decide(parse_spec(copy.deepcopy(world.spec)), first.status, observations)
        repeated = [a for a in replay.actions if type(a).__name__ == "RecordEvent" and a in first.actions]
        assert not repeated, f"tick {tick}: {repeated}"
        assert len(replay.status.history) == len(first.status.history), f"tick {tick}"
        world.apply(first.actions)
        world.status = first.status
        world.analysis = {}
        world.now += datetime.timedelta(seconds=5)
        if world.status.phase == "Healthy" and tick > 3:
            break
    assert world.status.phase == "Healthy"
    assert [h.outcome for h in world.status.history] == ["Deployed", "Promoted"]


@pytest.mark.parametrize("stop_at_step", [0, 1, 2, 3, 4])
def test_resume_from_status_written_by_a_previous_operator(stop_at_step: int) -> None:
    world = deployed(rollout_spec("v1", steps=ANALYSIS_STEPS))
    world.analysis_outcome = "Successful"
    new_version(world, "v2")
    world.run_until(lambda w: (w.status.current_step_index or 0) >= stop_at_step, seconds=5)
    # A new operator process: only the status (as JSON on the Rollout) survives.
    world.status = RolloutStatus.model_validate(world.status.to_wire())
    transitions = [e.reason for e in world.events]
    for _ in range(100):
        if world.status.step_analysis is not None:
            world.analysis = look("Successful", "errors Pass")
        world.tick(5)
        if world.status.phase == "Healthy":
            break
    assert world.status.phase == "Healthy"
    started = transitions.count("CanaryStarted") + [e.reason for e in world.events[len(transitions):]].count(
        "CanaryStarted")
    assert started == 1
    assert [h.outcome for h in world.status.history].count("Promoted") == 1


# ----------------------------------------------------------------------------- background analysis


def background_world(starting_step: int = 1) -> tuple[World, str]:
    background = {"analysis": {"templates": [{"templateName": "bg"}], "startingStep": starting_step}}
    world = deployed(rollout_spec("v1", steps=[{"setWeight": 20}, {"pause": {"duration": "20s"}}, {"setWeight": 40}],
                                  canary=background))
    return world, new_version(world, "v2")


def background_look(phase: str, message: str) -> dict[str, AnalysisUpdate]:
    return {analysis_key("background", "bg"): AnalysisUpdate(phase, message, {})}  # type: ignore[arg-type]


def test_background_analysis_starts_at_its_step_and_fails_the_rollout() -> None:
    world, revision = background_world(starting_step=1)
    world.tick()
    assert world.status.background_analysis is None  # step 0 is before startingStep
    world.run_until(lambda w: w.status.background_analysis is not None)
    assert world.status.current_step_index == 1
    world.analysis = background_look("Failed", "errors: canary 9% vs baseline 2%")
    world.tick()
    assert world.status.phase == "Degraded" and world.status.aborted_revision == revision
    assert "background analysis failed: errors: canary 9% vs baseline 2%" in world.status.message


def test_promotion_waits_for_the_background_analysis_to_pass() -> None:
    world, revision = background_world(starting_step=0)
    world.run_until(lambda w: (w.status.current_step_index or 0) >= 3, seconds=5)
    for _ in range(5):
        world.tick(5)
    assert world.status.stable_revision != revision
    assert "waiting for the background analysis" in world.status.message
    world.analysis = background_look("Successful", "errors Pass")
    world.run_until(lambda w: w.status.phase == "Healthy")
    assert world.status.stable_revision == revision


def test_inconclusive_background_analysis_pauses_before_promotion() -> None:
    world, revision = background_world(starting_step=0)
    world.run_until(lambda w: (w.status.current_step_index or 0) >= 3, seconds=5)
    world.analysis = background_look("Inconclusive", "errors: too few requests")
    world.tick()
    assert world.status.phase == "Paused"
    world.requests = UserRequests(promote=f"{revision}:3")
    world.run_until(lambda w: w.status.phase == "Healthy")


# ----------------------------------------------------------------------------- stale requests


def test_promote_full_while_rolled_back_does_not_apply_after_retry() -> None:
    world = deployed()
    revision = new_version(world, "v2")
    world.run_until(lambda w: w.status.phase == "Paused")
    world.requests = UserRequests(abort=f"{revision}@1")
    world.tick()
    world.requests = UserRequests(abort=f"{revision}@1", promote=f"{revision}:full")
    world.tick()
    assert world.status.phase == "Degraded"
    world.requests = UserRequests(abort=f"{revision}@1", promote=f"{revision}:full@2", retry=f"{revision}@3")
    world.run_until(lambda w: w.status.phase == "Paused")
    assert world.status.stable_revision != revision and world.status.current_step_index == 1


def test_promote_from_an_earlier_attempt_is_not_reused() -> None:
    world = deployed()
    stable = world.spec["template"]
    revision = new_version(world, "v2")
    world.run_until(lambda w: w.status.phase == "Paused")
    world.spec["template"] = stable  # reverted before the promote was seen
    world.tick()
    world.requests = UserRequests(promote=f"{revision}:1@1")
    world.run_until(lambda w: w.status.phase == "Healthy")
    world.spec["template"] = pod_template("v2")  # the same revision, applied again
    world.run_until(lambda w: w.status.phase == "Paused")
    for _ in range(3):
        world.tick()
    assert world.status.phase == "Paused" and world.status.stable_revision != revision
    world.requests = UserRequests(promote=f"{revision}:1@2")  # a new promote for this attempt works
    world.run_until(lambda w: w.status.phase == "Healthy")
    assert world.status.stable_revision == revision


def test_promote_skips_a_running_analysis() -> None:
    world, revision = analysis_world()
    world.analysis = look("Running", "errors Inconclusive")
    world.tick()
    world.requests = UserRequests(promote=f"{revision}:1@1")
    world.tick()
    assert world.status.current_step_index == 2
    assert "skipped by the user" in world.events[-1].message


def test_pausing_is_an_event_once_and_the_step_is_shown_one_based() -> None:
    world = deployed()
    new_version(world, "v2")
    world.run_until(lambda w: w.status.phase == "Paused")
    for _ in range(3):
        world.tick()
    assert world.reasons().count("RolloutPaused") == 1
    assert world.status.step == "2/2" and world.status.current_step_index == 1


def test_broken_analysis_query_stops_the_canary_before_any_traffic() -> None:
    world = deployed(rollout_spec("v1", steps=ANALYSIS_STEPS))
    world.preflight_problems = ["AnalysisTemplate default/red metric errors (requests query): bad_data: parse error"]
    new_version(world, "v2")
    for _ in range(5):
        world.tick()
    assert world.status.phase == "Degraded"
    assert condition(world, "AnalysisError") == ("True", "AnalysisError")
    assert "parse error" in world.status.message and "no traffic" in world.status.message
    assert world.traffic is not None and world.traffic.canary_weight == 0
    assert world.workloads.get("canary") is None or world.workloads["canary"].replicas == 0
    assert world.reasons().count("AnalysisError") == 1
    world.preflight_problems = []  # the template was fixed
    world.run_until(lambda w: w.status.step_analysis is not None)
    assert not [c for c in world.status.conditions if c.type == "AnalysisError"]
    assert world.status.canary_weight == 20


def test_reverting_a_canary_held_by_a_broken_query_clears_the_analysis_error() -> None:
    world = deployed(rollout_spec("v1", steps=ANALYSIS_STEPS))
    world.preflight_problems = ["AnalysisTemplate default/red metric errors (requests query): parse error"]
    stable = world.spec["template"]
    new_version(world, "v2")
    world.run_until(lambda w: w.status.phase == "Degraded")
    world.spec["template"] = stable
    world.run_until(lambda w: w.status.phase == "Healthy")
    assert not [c for c in world.status.conditions if c.type == "AnalysisError"]
