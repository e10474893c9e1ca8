"""The Rollout resource as typed data: its spec as the user wrote it, its status as the operator keeps it.

The models mirror ``crds/rollout.yaml``; a test checks that the two agree on
every example. Parsing never raises to the caller: :func:`parse_spec` returns
either a spec or a :class:`SpecError` naming the field and the problem, so a
bad manifest becomes a status condition rather than a crash.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from siskin.analysis.template import first_problem

GROUP = "siskin.dev"
VERSION = "v1alpha1"
PLURAL = "rollouts"
KIND = "Rollout"

DURATION_PATTERN = r"^[0-9]+(ms|s|m|h)$"
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Track = Literal["stable", "canary", "baseline"]
TRACKS: tuple[Track, ...] = ("stable", "canary", "baseline")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``5m``, ``1h`` or ``250ms``."""
    match = re.fullmatch(r"([0-9]+)(ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration; write it like 30s, 5m, 1h or 250ms")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


class _Model(BaseModel):
    """Base: camelCase on the wire, typos rejected with their path."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid", strict=True)


class _Status(BaseModel):
    """Base for status: camelCase on the wire; fields we do not know are kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


def _check_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


class LabelSelector(_Model):
    match_labels: dict[str, str] = Field(min_length=1)


class Arg(_Model):
    name: str
    value: str


class TemplateRef(_Model):
    template_name: str = Field(min_length=1)


class AnalysisRef(_Model):
    """Which AnalysisTemplates to run, with argument values."""

    templates: list[TemplateRef] = Field(min_length=1)
    args: list[Arg] = Field(default_factory=list)
    duration: str | None = None

    _duration = field_validator("duration")(_check_duration)


class BackgroundAnalysis(AnalysisRef):
    starting_step: int = Field(default=0, ge=0)


class Pause(_Model):
    duration: str | None = None

    _duration = field_validator("duration")(_check_duration)


class Step(BaseModel):
    """One canary step; exactly one of its fields is set."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid", strict=True)

    set_weight: int | None = Field(default=None, ge=0, le=100)
    pause: Pause | None = None
    analysis: AnalysisRef | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a step must be an object such as {setWeight: 20}")
        known = ("setWeight", "pause", "analysis")
        unknown = [key for key in data if key not in known]
        if unknown:
            raise ValueError(f"unknown step {unknown[0]!r}; a step is one of {', '.join(known)}")
        if len(data) != 1:
            raise ValueError(f"a step holds exactly one of {', '.join(known)}; this one holds {len(data)}")
        return data

    @property
    def kind(self) -> str:
        """The step's kind as written in YAML (``setWeight``, ``pause``, ``analysis``)."""
        if self.set_weight is not None:
            return "setWeight"
        if self.pause is not None:
            return "pause"
        return "analysis"


class GatewayAPIRouting(_Model):
    http_route: str = Field(min_length=1)


class TrafficRouting(_Model):
    gateway_api: GatewayAPIRouting | None = Field(default=None, alias="gatewayAPI")


class CanaryStrategy(_Model):
    steps: list[Step] = Field(default_factory=list)
    traffic_routing: TrafficRouting | None = None
    analysis: BackgroundAnalysis | None = None
    baseline: bool = True

    @model_validator(mode="after")
    def _starting_step_exists(self) -> CanaryStrategy:
        if self.analysis is not None and self.analysis.starting_step > len(self.steps):
            raise ValueError(
                f"analysis.startingStep {self.analysis.starting_step} is past the last step "
                f"({len(self.steps)} steps)"
            )
        return self


class Strategy(_Model):
    canary: CanaryStrategy


class ServiceSpec(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)
    port: int = Field(default=80, ge=1, le=65535)
    target_port: int = Field(default=8080, ge=1, le=65535)


class PodTemplate(BaseModel):
    """A pod template; its ``spec`` is passed to Kubernetes untouched."""

    model_config = ConfigDict(extra="allow")

    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: dict[str, Any]

    @field_validator("spec")
    @classmethod
    def _has_containers(cls, spec: dict[str, Any]) -> dict[str, Any]:
        containers = spec.get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("the pod template needs at least one container in spec.containers")
        return spec


class RolloutSpec(_Model):
    replicas: int = Field(default=1, ge=0, le=1000)
    selector: LabelSelector
    template: PodTemplate
    service: ServiceSpec
    strategy: Strategy
    progress_deadline_seconds: int = Field(default=600, ge=1)

    @model_validator(mode="after")
    def _selector_matches_template(self) -> RolloutSpec:
        labels = self.template.metadata.get("labels") or {}
        for key, value in self.selector.match_labels.items():
            if labels.get(key) != value:
                raise ValueError(
                    f"selector.matchLabels {key}={value} does not match template.metadata.labels; "
                    "the pod template must carry every selector label"
                )
        return self


class SpecError(BaseModel):
    """Why a spec could not be used: the field path and the problem."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def parse_spec(raw: dict[str, Any] | None) -> RolloutSpec | SpecError:
    """Validate a Rollout's spec; the first problem comes back as a :class:`SpecError`."""
    try:
        return RolloutSpec.model_validate(raw or {})
    except ValidationError as exc:
        field, message = first_problem(exc)
        return SpecError(field=field, message=message)


def template_revision(template: dict[str, Any]) -> str:
    """A short stable hash of a pod template: the revision that names a version."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------- status

Phase = Literal["Progressing", "Paused", "Healthy", "Degraded"]
RunPhase = Literal["Running", "Successful", "Failed", "Inconclusive", "Error"]


class Condition(_Status):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class AnalysisProgress(_Status):
    """One running or finished analysis (a step's or the background one)."""

    step_index: int | None = None
    templates: list[str]
    started_at: str
    duration_seconds: float | None = None
    runs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    phase: RunPhase = "Running"
    message: str = ""


class HistoryEntry(_Status):
    revision: str
    outcome: Literal["Promoted", "RolledBack", "Superseded", "Deployed"]
    reason: str = ""
    at: str


class RolloutStatus(_Status):
    observed_generation: int | None = None
    phase: Phase | None = None
    message: str = ""
    stable_revision: str | None = None
    canary_revision: str | None = None
    preflight_revision: str | None = None
    current_step_index: int | None = None
    step: str | None = None
    step_started_at: str | None = None
    canary_weight: int = 0
    verdict: str | None = None
    aborted_revision: str | None = None
    abort_reason: str | None = None
    handled_requests: list[str] = Field(default_factory=list)
    step_analysis: AnalysisProgress | None = None
    background_analysis: AnalysisProgress | None = None
    conditions: list[Condition] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        """The status as JSON for a patch, camelCase, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
