"""The rollout state machine: ``decide(spec, status, observations) -> Decision``.

Pure: no I/O, no clock, no randomness. Everything it needs arrives in
:class:`Observations`; everything it wants done leaves as actions, and the
only memory is the returned status. Each call makes at most one step
transition, and the actions describe the desired state ("make it so"), so
running a decision twice — after a crash, a conflict or a restart — does
nothing twice.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Literal

from siskin.operator import conditions as cond
from siskin.operator.actions import Action, EnsureServices, EnsureWorkload, RecordEvent, SetTraffic
from siskin.operator.model import (
    AnalysisProgress,
    HistoryEntry,
    Phase,
    RolloutSpec,
    RolloutStatus,
    RunPhase,
    SpecError,
    Track,
    parse_duration,
    template_revision,
)
from siskin.operator.traffic import router_for
from siskin.operator.traffic.base import TrafficPlan

HISTORY_LIMIT = 10
DEFAULT_ANALYSIS_DURATION_S = 600.0



@dataclass(frozen=True)
class Workload:
    """What one track's Deployment runs now."""

    revision: str | None
    template: dict[str, Any] | None
    replicas: int
    ready_replicas: int

    def serves(self, revision: str | None, replicas: int) -> bool:
        """Runs ``revision`` with exactly ``replicas`` pods, all ready."""
        if replicas == 0:
            return self.replicas == 0
        return self.revision == revision and self.replicas == replicas and self.ready_replicas >= replicas


@dataclass(frozen=True)
class AnalysisUpdate:
    """The newest state of one analysis run, after folding this tick's look into it."""

    phase: RunPhase
    message: str
    state: dict[str, Any]


@dataclass(frozen=True)
class UserRequests:
    """Commands from the CLI, carried as annotations on the Rollout."""

    promote: str | None = None  # "<revision>:<stepIndex>@<nonce>" or "<revision>:full@<nonce>"
    abort: str | None = None  # "<revision>@<nonce>"
    retry: str | None = None  # "<revision>@<nonce>"


@dataclass(frozen=True)
class Observations:
    """Everything the handlers saw this tick."""

    now: datetime.datetime
    generation: int
    rollout_name: str = "ROLLOUT"
    workloads: dict[Track, Workload | None] = field(default_factory=dict)
    canary_weight_seen: int | None = None
    routing_error: str | None = None
    spec_problems: list[str] = field(default_factory=list)
    analysis: dict[str, AnalysisUpdate] = field(default_factory=dict)
    preflight_problems: list[str] | None = None  # None: the templates' queries were not tried this tick
    requests: UserRequests = field(default_factory=UserRequests)


@dataclass(frozen=True)
class Decision:
    """What to do and what to remember."""

    actions: list[Action]
    status: RolloutStatus


def decide(spec: RolloutSpec | SpecError, status: RolloutStatus, obs: Observations) -> Decision:
    """Next actions and status for one Rollout."""
    state = _Tick(status.model_copy(deep=True), obs)
    state.status.observed_generation = obs.generation
    if isinstance(spec, SpecError):
        return state.invalid(str(spec))
    if obs.spec_problems:
        return state.invalid(obs.spec_problems[0])
    cond.drop_condition(state.status, cond.REASON_INVALID_SPEC)
    return state.run(spec)


def analysis_key(kind: Literal["step", "background"], template: str) -> str:
    """The key of one analysis run in :attr:`Observations.analysis`."""
    return f"{kind}/{template}"


class _Tick:
    """One decision: the status being written and the actions being gathered."""

    def __init__(self, status: RolloutStatus, obs: Observations) -> None:
        self.status = status
        self.obs = obs
        self.now = obs.now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.actions: list[Action] = []
        self.previous_phase = status.phase
        self.previous_message = status.message
        self.steps_total = 0

    # ------------------------------------------------------------------ outcomes

    def done(self, phase: Phase, reason: str, message: str) -> Decision:
        if phase == "Paused" and self.previous_phase != "Paused":
            self.event("Normal", reason, message)
        self.status.phase = phase
        self.status.message = message
        index = self.status.current_step_index
        self.status.step = None
        if self.status.canary_revision is not None and index is not None and self.steps_total:
            self.status.step = f"{min(index + 1, self.steps_total)}/{self.steps_total}"
        cond.settle_conditions(self.status, reason, self.now)
        return Decision(self.actions, self.status)

    def handled(self, request: str | None) -> None:
        """Remember a request as acted on (or as stale): it never applies again."""
        if request and request not in self.status.handled_requests:
            self.status.handled_requests = [*self.status.handled_requests, request][-10:]

    def take_promote(self, revision: str, step: int | str) -> bool:
        """True, once, when the user asked to promote ``revision`` at ``step`` (an index or "full")."""
        request = self.obs.requests.promote
        if not request or request in self.status.handled_requests:
            return False
        target = request.split("@", 1)[0]
        if target != f"{revision}:{step}":
            return False
        self.handled(request)
        return True

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.actions.append(RecordEvent(type_, reason, message))

    def invalid(self, message: str) -> Decision:
        """Bad input: a condition and a message, no traffic change, nothing touched."""
        previous = cond.condition(self.status, cond.REASON_INVALID_SPEC)
        if previous is None or previous.message != message:
            self.event("Warning", cond.REASON_INVALID_SPEC, message)
        self.handled(self.obs.requests.promote)  # a promote for an invalid spec is not kept for later
        cond.set_condition(self.status, cond.REASON_INVALID_SPEC, True, cond.REASON_INVALID_SPEC, message, self.now)
        return self.done("Degraded", cond.REASON_INVALID_SPEC, f"invalid spec: {message}")

    def history(self, revision: str, outcome: Literal["Promoted", "RolledBack", "Superseded", "Deployed"],
                reason: str) -> None:
        entry = HistoryEntry(revision=revision, outcome=outcome, reason=reason, at=self.now)
        self.status.history = [*self.status.history, entry][-HISTORY_LIMIT:]

    # ------------------------------------------------------------------ workloads and traffic

    def workload(self, track: Track) -> Workload:
        return self.obs.workloads.get(track) or Workload(None, None, 0, 0)

    def stable_template(self, spec: RolloutSpec) -> dict[str, Any] | None:
        stable = self.workload("stable")
        if stable.revision == self.status.stable_revision and stable.template is not None:
            return stable.template
        if template_revision(_template_dict(spec)) == self.status.stable_revision:
            return _template_dict(spec)
        return None

    def ensure(self, spec: RolloutSpec, plan: TrafficPlan, stable_template: dict[str, Any]) -> None:
        """Desired Deployments for a plan: stable and baseline run the stable version."""
        stable_rev = self.status.stable_revision or ""
        canary = _template_dict(spec)
        self.actions.append(EnsureServices())
        self.actions.append(EnsureWorkload("stable", stable_rev, stable_template, plan.stable_replicas))
        self.actions.append(EnsureWorkload("canary", template_revision(canary), canary, plan.canary_replicas))
        self.actions.append(EnsureWorkload("baseline", stable_rev, stable_template, plan.baseline_replicas))

    def ready_for(self, spec: RolloutSpec, plan: TrafficPlan) -> bool:
        canary_rev = template_revision(_template_dict(spec))
        return (
            self.workload("stable").serves(self.status.stable_revision, plan.stable_replicas)
            and self.workload("canary").serves(canary_rev, plan.canary_replicas)
            and self.workload("baseline").serves(self.status.stable_revision, plan.baseline_replicas)
        )

    # ------------------------------------------------------------------ the flow

    def run(self, spec: RolloutSpec) -> Decision:
        self.steps_total = len(spec.strategy.canary.steps)
        revision = template_revision(_template_dict(spec))
        if self.status.stable_revision is None:
            return self.first_deploy(spec, revision)
        if revision == self.status.stable_revision:
            return self.steady(spec, revision)
        steps = spec.strategy.canary.steps
        promoting = (
            self.status.canary_revision == revision
            and (self.status.current_step_index or 0) >= len(steps)
            and self.workload("stable").revision == revision
        )
        if promoting:
            # The stable Deployment already carries the new version: the promotion is committed.
            return self.promote(spec, revision)
        stable_template = self.stable_template(spec)
        if stable_template is None:
            message = (
                f"the stable Deployment no longer runs revision {self.status.stable_revision}; "
                "Siskin cannot start a baseline or roll back to it. Restore it or re-apply the stable template"
            )
            return self.done("Degraded", cond.REASON_ABORTED, message)
        if self.status.aborted_revision == revision:
            return self.hold_aborted(spec, revision, stable_template)
        if self.status.canary_revision != revision:
            self.start_canary(revision)
        abort = self.obs.requests.abort
        if abort and abort.startswith(f"{revision}@") and abort not in self.status.handled_requests:
            self.handled(abort)
            return self.abort(spec, revision, stable_template, cond.REASON_ABORTED, "aborted by the user")
        if self.obs.routing_error:
            return self.routing_failed(spec, stable_template)
        if _uses_analysis(spec) and self.status.preflight_revision != revision:
            return self.preflight(spec, revision, stable_template)
        return self.step(spec, revision, stable_template)

    def preflight(self, spec: RolloutSpec, revision: str, stable_template: dict[str, Any]) -> Decision:
        """Before the canary gets traffic, every analysis query must run: a broken one stops here."""
        problems = self.obs.preflight_problems
        if problems is None:
            plan = router_for(spec).plan(0, spec.replicas, False)
            self.ensure(spec, plan, stable_template)
            return self.done("Progressing", cond.REASON_PROGRESSING,
                             f"revision {revision}: checking the analysis queries before moving traffic")
        if problems:
            message = f"{problems[0]}; fix the AnalysisTemplate, the canary waits with no traffic"
            previous = cond.condition(self.status, cond.REASON_ANALYSIS_ERROR)
            if previous is None or previous.message != message:
                self.event("Warning", cond.REASON_ANALYSIS_ERROR, message)
            cond.set_condition(self.status, cond.REASON_ANALYSIS_ERROR, True, cond.REASON_ANALYSIS_ERROR,
                               message, self.now)
            plan = router_for(spec).plan(0, spec.replicas, False)
            self.actions.append(SetTraffic(plan))
            self.ensure(spec, plan, stable_template)
            return self.done("Degraded", cond.REASON_ANALYSIS_ERROR, message)
        cond.drop_condition(self.status, cond.REASON_ANALYSIS_ERROR)
        self.status.preflight_revision = revision
        return self.step(spec, revision, stable_template)

    def first_deploy(self, spec: RolloutSpec, revision: str) -> Decision:
        template = _template_dict(spec)
        plan = router_for(spec).plan(0, spec.replicas, False)
        self.actions.append(EnsureServices())
        self.actions.append(EnsureWorkload("stable", revision, template, spec.replicas))
        if self.obs.routing_error:
            return self.done("Degraded", cond.REASON_ROUTING, f"traffic routing failed: {self.obs.routing_error}")
        stable = self.workload("stable")
        if not stable.serves(revision, spec.replicas):
            return self.done(
                "Progressing", cond.REASON_DEPLOYING,
                f"deploying revision {revision}: {stable.ready_replicas}/{spec.replicas} pods ready",
            )
        self.actions.append(SetTraffic(plan))
        self.status.stable_revision = revision
        self.status.canary_weight = 0
        self.history(revision, "Deployed", "first revision, deployed without a canary")
        self.event("Normal", "Deployed", f"revision {revision} is stable with {spec.replicas} pods")
        return self.done("Healthy", cond.REASON_STABLE, f"revision {revision} is stable")

    def steady(self, spec: RolloutSpec, revision: str) -> Decision:
        """The spec is the stable version: no canary; clean up any canary left behind."""
        template = _template_dict(spec)
        if self.status.canary_revision is not None:
            self.history(self.status.canary_revision, "Superseded", "the template went back to the stable revision")
            self.event("Normal", "CanaryDiscarded",
                       f"template is back at stable revision {revision}; canary {self.status.canary_revision} removed")
        self.clear_canary()
        self.status.aborted_revision = None
        self.status.abort_reason = None
        plan = router_for(spec).plan(0, spec.replicas, False)
        self.actions.append(SetTraffic(plan))
        self.ensure(spec, plan, template)
        stable = self.workload("stable")
        if not stable.serves(revision, spec.replicas):
            return self.done("Progressing", cond.REASON_DEPLOYING,
                             f"scaling stable revision {revision}: {stable.ready_replicas}/{spec.replicas} pods ready")
        return self.done("Healthy", cond.REASON_STABLE, f"revision {revision} is stable")

    def clear_canary(self) -> None:
        self.status.canary_revision = None
        self.status.preflight_revision = None
        cond.drop_condition(self.status, cond.REASON_ANALYSIS_ERROR)
        self.status.current_step_index = None
        self.status.step_started_at = None
        self.status.canary_weight = 0
        self.status.step_analysis = None
        self.status.background_analysis = None
        self.status.verdict = None

    def start_canary(self, revision: str) -> None:
        previous = self.status.canary_revision
        if previous is not None:
            self.history(previous, "Superseded", f"replaced by revision {revision} before it finished")
            self.event("Normal", "CanarySuperseded", f"canary {previous} replaced by {revision}; restarting at step 0")
        self.clear_canary()
        self.handled(self.obs.requests.promote)  # a promote from before this attempt never applies to it
        self.status.canary_revision = revision
        self.status.current_step_index = 0
        self.status.step_started_at = self.now
        self.event("Normal", "CanaryStarted",
                   f"rolling out revision {revision} beside stable {self.status.stable_revision}")

    def next_step(self, spec: RolloutSpec, why: str) -> None:
        index = (self.status.current_step_index or 0) + 1
        self.status.current_step_index = index
        self.status.step_started_at = self.now
        total = len(spec.strategy.canary.steps)
        self.event("Normal", "StepCompleted", f"step {index}/{total} done: {why}")
        if index >= total:
            self.event("Normal", "Promoting", f"all {total} steps done; promoting {self.status.canary_revision}")

    def abort(self, spec: RolloutSpec, revision: str, stable_template: dict[str, Any], reason: str,
              why: str) -> Decision:
        self.status.aborted_revision = revision
        self.status.abort_reason = why
        self.status.verdict = {cond.REASON_ANALYSIS_FAILED: "Fail", cond.REASON_ANALYSIS_ERROR: "Error"}.get(
            reason, "Aborted")
        self.history(revision, "RolledBack", why)
        self.event("Warning", reason, f"rolled back revision {revision}: {why}")
        self.status.canary_weight = 0
        return self.hold_aborted(spec, revision, stable_template, reason)

    def hold_aborted(self, spec: RolloutSpec, revision: str, stable_template: dict[str, Any],
                     reason: str | None = None) -> Decision:
        retry = self.obs.requests.retry
        self.handled(self.obs.requests.promote)  # nothing to promote while rolled back
        if retry and retry.startswith(f"{revision}@") and retry not in self.status.handled_requests:
            self.handled(retry)
            self.status.aborted_revision = None
            self.status.abort_reason = None
            self.status.canary_revision = None
            self.start_canary(revision)
            return self.step(spec, revision, stable_template)
        plan = router_for(spec).plan(0, spec.replicas, False)
        # Traffic first, then pods: never send requests to pods being removed.
        self.actions.append(SetTraffic(plan))
        self.ensure(spec, plan, stable_template)
        self.status.canary_weight = 0
        why = self.status.abort_reason or "aborted"
        stable = self.workload("stable")
        where = f"traffic is back on stable revision {self.status.stable_revision}"
        if not stable.serves(self.status.stable_revision, spec.replicas):
            where += f" ({stable.ready_replicas}/{spec.replicas} pods ready)"
        message = (f"revision {revision} rolled back: {why}; {where}. Apply a new template, "
                   f"or run `siskin retry` to try this one again")
        return self.done("Degraded", reason or _abort_reason_of(self.status), message)

    def routing_failed(self, spec: RolloutSpec, stable_template: dict[str, Any]) -> Decision:
        """The router cannot steer: keep pods as they are and wait for the user to fix the route."""
        plan = router_for(spec).plan(self.status.canary_weight, spec.replicas, spec.strategy.canary.baseline)
        self.ensure(spec, plan, stable_template)
        message = f"traffic routing failed: {self.obs.routing_error}"
        if message != self.previous_message:
            self.event("Warning", cond.REASON_ROUTING, message)
        return self.done("Degraded", cond.REASON_ROUTING, message)

    # ------------------------------------------------------------------ steps

    def step(self, spec: RolloutSpec, revision: str, stable_template: dict[str, Any]) -> Decision:
        steps = spec.strategy.canary.steps
        index = self.status.current_step_index or 0
        router = router_for(spec)
        baseline = spec.strategy.canary.baseline
        current = router.plan(self.status.canary_weight, spec.replicas, baseline)

        background = self.background(spec, index)
        if background is not None:
            return self.abort(spec, revision, stable_template, *background)

        if index < len(steps) and self.take_promote(revision, "full"):
            self.status.current_step_index = len(steps) - 1
            self.next_step(spec, "full promotion requested by the user")
            index = len(steps)
        if index >= len(steps):
            return self.start_promotion(spec, revision, stable_template, current)

        step = steps[index]
        label = f"step {index + 1}/{len(steps)}"
        if step.set_weight is not None:
            return self.set_weight(spec, revision, stable_template, step.set_weight, label)

        self.ensure(spec, current, stable_template)
        self.actions.append(SetTraffic(current))
        elapsed = self.elapsed()

        if step.pause is not None:
            if step.pause.duration is None:
                if self.take_promote(revision, index):
                    self.next_step(spec, "promoted by the user")
                    return self.done("Progressing", cond.REASON_PROGRESSING, f"{label}: promoted, continuing")
                return self.done("Paused", cond.REASON_PAUSED,
                                 f"{label}: paused at weight {self.status.canary_weight}; "
                                 f"run `siskin promote {self.obs.rollout_name}` to continue")
            left = parse_duration(step.pause.duration) - elapsed
            if left <= 0 or self.take_promote(revision, index):
                self.next_step(spec, f"paused {step.pause.duration}")
                return self.done("Progressing", cond.REASON_PROGRESSING, f"{label}: pause over")
            return self.done("Progressing", cond.REASON_PROGRESSING,
                             f"{label}: pausing {step.pause.duration} at weight {self.status.canary_weight} "
                             f"({left:.0f}s left)")

        assert step.analysis is not None
        return self.step_analysis(spec, revision, stable_template, index, label)

    def elapsed(self) -> float:
        if self.status.step_started_at is None:
            return 0.0
        started = datetime.datetime.strptime(self.status.step_started_at, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
        return (self.obs.now - started).total_seconds()

    def set_weight(self, spec: RolloutSpec, revision: str, stable_template: dict[str, Any], weight: int,
                   label: str) -> Decision:
        router = router_for(spec)
        baseline = spec.strategy.canary.baseline
        target = router.plan(weight, spec.replicas, baseline)
        current = router.plan(self.status.canary_weight, spec.replicas, baseline)
        if weight < self.status.canary_weight:
            # Going down: move the traffic first, then shrink the pods.
            self.actions.append(SetTraffic(target))
            self.status.canary_weight = weight
            self.ensure(spec, target, stable_template)
        else:
            # Going up: grow the pods first, move the traffic once they are ready.
            self.ensure(spec, target, stable_template)
            if not self.ready_for(spec, target):
                self.actions.append(SetTraffic(current))
                if self.elapsed() > spec.progress_deadline_seconds:
                    why = (f"{label}: canary pods not ready within progressDeadlineSeconds "
                           f"({spec.progress_deadline_seconds}s)")
                    return self.abort(spec, revision, stable_template, cond.REASON_DEADLINE, why)
                canary = self.workload("canary")
                return self.done("Progressing", cond.REASON_PROGRESSING,
                                 f"{label}: waiting for canary pods ({canary.ready_replicas}/"
                                 f"{target.canary_replicas} ready) before weight {weight}")
            self.actions.append(SetTraffic(target))
            self.status.canary_weight = weight
        seen = self.obs.canary_weight_seen
        if seen is not None and seen != target.canary_weight:
            return self.done("Progressing", cond.REASON_PROGRESSING,
                             f"{label}: router shows weight {seen}, setting {weight}")
        self.next_step(spec, f"weight {weight}")
        return self.done("Progressing", cond.REASON_PROGRESSING, f"{label}: canary weight {weight}")

    def step_analysis(self, spec: RolloutSpec, revision: str, stable_template: dict[str, Any], index: int,
                      label: str) -> Decision:
        step = spec.strategy.canary.steps[index]
        assert step.analysis is not None
        names = [ref.template_name for ref in step.analysis.templates]
        progress = self.status.step_analysis
        if progress is None or progress.step_index != index:
            duration = parse_duration(step.analysis.duration) if step.analysis.duration else DEFAULT_ANALYSIS_DURATION_S
            self.status.step_analysis = AnalysisProgress(
                step_index=index, templates=names, started_at=self.now, duration_seconds=duration
            )
            self.status.verdict = "Running"
            self.event("Normal", "AnalysisStarted", f"{label}: analysis {', '.join(names)} started")
            return self.done("Progressing", cond.REASON_PROGRESSING, f"{label}: analysis {', '.join(names)} started")
        phase, message = self.fold(progress, "step")
        self.status.verdict = _verdict_text(phase)
        if phase in ("Running", "Inconclusive") and self.take_promote(revision, index):
            self.next_step(spec, f"analysis {phase.lower()}, skipped by the user")
            return self.done("Progressing", cond.REASON_PROGRESSING, f"{label}: analysis skipped by the user")
        if phase in ("Failed", "Error"):
            reason = cond.REASON_ANALYSIS_FAILED if phase == "Failed" else cond.REASON_ANALYSIS_ERROR
            return self.abort(spec, revision, stable_template, reason, f"analysis {phase.lower()}: {message}")
        if phase == "Successful":
            self.event("Normal", "AnalysisPassed", f"{label}: {message}")
            self.next_step(spec, "analysis passed")
            return self.done("Progressing", cond.REASON_PROGRESSING, f"{label}: analysis passed: {message}")
        if phase == "Inconclusive":
            return self.done("Paused", cond.REASON_INCONCLUSIVE,
                             f"{label}: analysis inconclusive: {message}; run `siskin promote "
                             f"{self.obs.rollout_name}` to go on or `siskin abort {self.obs.rollout_name}` "
                             "to roll back")
        return self.done("Progressing", cond.REASON_PROGRESSING, f"{label}: analysis running: {message}")

    def fold(self, progress: AnalysisProgress, kind: Literal["step", "background"]) -> tuple[RunPhase, str]:
        """Take this tick's run states into ``progress``; the worst phase and its message."""
        for name in progress.templates:
            update = self.obs.analysis.get(analysis_key(kind, name))
            if update is not None:
                progress.runs[name] = {"phase": update.phase, "message": update.message, "state": update.state}
        phases: list[tuple[int, RunPhase, str]] = []
        for name in progress.templates:
            run = progress.runs.get(name)
            phase: RunPhase = run["phase"] if run else "Running"
            message = run["message"] if run else "waiting for the first look"
            phases.append((_SEVERITY[phase], phase, f"{name}: {message}" if len(progress.templates) > 1 else message))
        if all(p[1] == "Successful" for p in phases):
            progress.phase, progress.message = "Successful", "; ".join(p[2] for p in phases)
        else:
            worst = max(phases, key=lambda p: p[0])
            progress.phase, progress.message = worst[1], worst[2]
        return progress.phase, progress.message

    def background(self, spec: RolloutSpec, index: int) -> tuple[str, str] | None:
        """Run the background analysis; a reason and message when it demands a rollback."""
        config = spec.strategy.canary.analysis
        if config is None or index < config.starting_step:
            return None
        names = [ref.template_name for ref in config.templates]
        progress = self.status.background_analysis
        if progress is None:
            duration = parse_duration(config.duration) if config.duration else None
            self.status.background_analysis = AnalysisProgress(
                templates=names, started_at=self.now, duration_seconds=duration
            )
            self.event("Normal", "AnalysisStarted", f"background analysis {', '.join(names)} started")
            return None
        phase, message = self.fold(progress, "background")
        if phase == "Failed":
            return cond.REASON_ANALYSIS_FAILED, f"background analysis failed: {message}"
        if phase == "Error":
            return cond.REASON_ANALYSIS_ERROR, f"background analysis errored: {message}"
        return None

    def start_promotion(self, spec: RolloutSpec, revision: str, stable_template: dict[str, Any],
                        current: TrafficPlan) -> Decision:
        """After the last step: wait for the background analysis, then give the stable Deployment the new version."""
        background = self.status.background_analysis
        steps = len(spec.strategy.canary.steps)
        if background is not None and background.phase != "Successful" and not self.take_promote(revision, steps):
            self.ensure(spec, current, stable_template)
            self.actions.append(SetTraffic(current))
            waiting = f"all steps done; waiting for the background analysis to pass ({background.message})"
            if background.phase == "Inconclusive":
                return self.done("Paused", cond.REASON_INCONCLUSIVE,
                                 waiting + f"; run `siskin promote {self.obs.rollout_name}` to promote anyway")
            return self.done("Progressing", cond.REASON_PROGRESSING, waiting)
        return self.promote(spec, revision)

    def promote(self, spec: RolloutSpec, revision: str) -> Decision:
        """The stable Deployment runs the new version; once it is ready, traffic returns to it."""
        template = _template_dict(spec)
        router = router_for(spec)
        current = router.plan(self.status.canary_weight, spec.replicas, spec.strategy.canary.baseline)
        self.actions.append(EnsureServices())
        self.actions.append(EnsureWorkload("stable", revision, template, spec.replicas))
        stable = self.workload("stable")
        if not stable.serves(revision, spec.replicas):
            self.actions.append(EnsureWorkload("canary", revision, template, current.canary_replicas))
            self.actions.append(SetTraffic(current))
            return self.done("Progressing", cond.REASON_PROGRESSING,
                             f"promoting {revision}: stable {stable.ready_replicas}/{spec.replicas} pods ready")
        # Traffic first, then pods: never send requests to pods being removed.
        self.actions.insert(0, SetTraffic(router.plan(0, spec.replicas, False)))
        self.actions.append(EnsureWorkload("canary", revision, template, 0))
        self.actions.append(EnsureWorkload("baseline", revision, template, 0))
        previous = self.status.stable_revision
        self.history(revision, "Promoted", f"replaced {previous}")
        self.event("Normal", cond.REASON_PROMOTED, f"revision {revision} promoted to stable (was {previous})")
        self.status.stable_revision = revision
        self.clear_canary()
        self.status.verdict = "Promoted"
        return self.done("Healthy", cond.REASON_PROMOTED, f"revision {revision} promoted and stable")


_SEVERITY: dict[RunPhase, int] = {"Successful": 0, "Running": 1, "Inconclusive": 2, "Error": 3, "Failed": 4}


_VERDICT_TEXT: dict[RunPhase, str] = {
    "Successful": "Pass", "Failed": "Fail", "Error": "Error", "Inconclusive": "Inconclusive", "Running": "Running",
}


def _verdict_text(phase: RunPhase) -> str:
    return _VERDICT_TEXT[phase]


def _abort_reason_of(status: RolloutStatus) -> str:
    degraded = cond.condition(status, "Degraded")
    if degraded is not None and degraded.status == "True":
        return str(degraded.reason)
    return cond.REASON_ABORTED


def _uses_analysis(spec: RolloutSpec) -> bool:
    canary = spec.strategy.canary
    return canary.analysis is not None or any(step.analysis is not None for step in canary.steps)


def _template_dict(spec: RolloutSpec) -> dict[str, Any]:
    template: dict[str, Any] = spec.template.model_dump(mode="json", exclude_none=True)
    return template
