"""Status conditions, kstatus-compatible: derived from the phase, set in one place.

``Ready`` is what Argo CD and Flux read for health; ``Progressing``,
``Healthy`` and ``Degraded`` say why; ``InvalidSpec`` and ``AnalysisError``
appear while the user has something to fix. A condition keeps its
``lastTransitionTime`` while its status does not change.
"""

from __future__ import annotations

from siskin.operator.model import Condition, RolloutStatus

# Reasons, as constants so that tests and docs name the same thing.
REASON_DEPLOYING = "Deploying"
REASON_STABLE = "StableRunning"
REASON_PROGRESSING = "RolloutProgressing"
REASON_PAUSED = "RolloutPaused"
REASON_INCONCLUSIVE = "InconclusiveAnalysis"
REASON_PROMOTED = "RolloutPromoted"
REASON_ABORTED = "RolloutAborted"
REASON_ANALYSIS_FAILED = "AnalysisFailed"
REASON_ANALYSIS_ERROR = "AnalysisError"
REASON_DEADLINE = "ProgressDeadlineExceeded"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_ROUTING = "TrafficRoutingError"


def set_condition(
    status: RolloutStatus, type_: str, value: bool, reason: str, message: str, now: str
) -> None:
    """Set one condition, keeping its transition time when its status is unchanged."""
    text = "True" if value else "False"
    existing = condition(status, type_)
    since = existing.last_transition_time if existing is not None and existing.status == text else now
    updated = Condition(type=type_, status=text, reason=reason, message=message, last_transition_time=since,
                        observed_generation=status.observed_generation)
    status.conditions = [updated if c.type == type_ else c for c in status.conditions]
    if existing is None:
        status.conditions.append(updated)


def drop_condition(status: RolloutStatus, type_: str) -> None:
    """Remove a condition that no longer applies (InvalidSpec once the spec is fixed)."""
    status.conditions = [c for c in status.conditions if c.type != type_]


def condition(status: RolloutStatus, type_: str) -> Condition | None:
    """The condition of that type, if any."""
    return next((c for c in status.conditions if c.type == type_), None)


def settle_conditions(status: RolloutStatus, reason: str, now: str) -> None:
    """Ready / Progressing / Healthy / Degraded from the phase, the message and ``reason``."""
    phase = status.phase
    message = status.message
    set_condition(status, "Ready", phase == "Healthy", reason, message, now)
    set_condition(status, "Progressing", phase in ("Progressing", "Paused"), reason, message, now)
    set_condition(status, "Degraded", phase == "Degraded", reason, message, now)
    set_condition(status, "Healthy", phase != "Degraded", reason, message, now)
