"""Names and labels of the objects a Rollout owns, in one place."""

from __future__ import annotations

from siskin.operator.model import RolloutSpec, Track

LABEL_ROLLOUT = "siskin.dev/rollout"
LABEL_TRACK = "siskin.dev/track"
LABEL_REVISION = "siskin.dev/revision"
SISKIN_LABELS = (LABEL_ROLLOUT, LABEL_TRACK, LABEL_REVISION)

ANNOTATION_PROMOTE = "siskin.dev/promote"
ANNOTATION_ABORT = "siskin.dev/abort"
ANNOTATION_RETRY = "siskin.dev/retry"


def deployment_name(rollout_name: str, track: Track) -> str:
    """``<rollout>-stable``, ``<rollout>-canary`` or ``<rollout>-baseline``."""
    return f"{rollout_name}-{track}"


def service_name(spec: RolloutSpec, track: Track) -> str:
    """The Service selecting one track's pods: ``<service>-<track>``."""
    return f"{spec.service.name}-{track}"
