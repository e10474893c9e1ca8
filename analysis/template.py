"""The AnalysisTemplate resource as typed models.

An AnalysisTemplate says *what* to measure (PromQL queries per track) and *how
strictly* to judge it (alpha, tolerance, limits). These models validate a
user's YAML before any query runs, so a typo or an impossible setting is
reported with its field path instead of surfacing later as a failed analysis.
The CRD in ``crds/analysistemplate.yaml`` mirrors them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

GROUP = "siskin.dev"
VERSION = "v1alpha1"
KIND = "AnalysisTemplate"
PLURAL = "analysistemplates"

DURATION_PATTERN = r"^[0-9]+(ms|s|m|h)$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# `{{ name }}`, `{{namespace}}`, `{{interval}}`, `{{args.service}}`; whitespace inside the braces is allowed.
PLACEHOLDER_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
BUILTIN_PLACEHOLDERS = frozenset({"namespace", "name", "interval"})
ARG_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
METRIC_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PROMETHEUS_METRIC_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``250ms``, ``10s``, ``5m`` or ``1h``."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: use a whole number with ms, s, m or h, e.g. '10s'")
    unit = match.group(1)
    return int(text[: -len(unit)]) * _UNIT_SECONDS[unit]


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


def _check_positive_duration(text: str) -> str:
    if parse_duration(text) <= 0:
        raise ValueError(f"duration {text!r} must be greater than zero")
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]
PositiveDuration = Annotated[str, AfterValidator(_check_positive_duration)]


class _Model(BaseModel):
    """Base: camelCase aliases as in the YAML, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, strict=True,
        allow_inf_nan=False,
    )


class TemplateArg(_Model):
    """A value a query refers to as ``{{args.NAME}}``; a Rollout may override it."""

    name: str = Field(pattern=ARG_NAME_PATTERN)
    value: str | None = None


class PrometheusSettings(_Model):
    """Where Prometheus is and how long one query may take."""

    address: str | None = Field(default=None, pattern=r"^https?://\S+$")
    timeout: PositiveDuration = "10s"


class ProviderSpec(_Model):
    """The metrics source; only Prometheus exists today."""

    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)


class ErrorsMetric(_Model):
    """Bad events among requests, both as PromQL aggregated ``by (track)``."""

    requests: str = Field(min_length=1)
    events: str = Field(min_length=1)


class LatencyMetric(_Model):
    """Requests slower than ``threshold``, read from a Prometheus histogram's buckets."""

    histogram: str = Field(pattern=PROMETHEUS_METRIC_PATTERN)
    selector: str = ""
    threshold: PositiveDuration


class MetricSpec(_Model):
    """One judged metric: exactly one of ``errors`` or ``latency``, plus its limits."""

    name: str = Field(pattern=METRIC_NAME_PATTERN, max_length=63)
    errors: ErrorsMetric | None = None
    latency: LatencyMetric | None = None
    tolerance: float = Field(default=1.0, ge=1.0, le=100.0)
    spread: float = Field(default=1.2, ge=1.0, le=10.0)
    max_ratio: float = Field(default=1.5, gt=1.0, le=100.0)
    pass_below_rate: float | None = Field(default=None, gt=0.0, lt=1.0)
    """Sequential judge: also pass once the canary's own event rate is shown below this (rare events)."""
    min_events: int = Field(default=20, ge=0)
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=0, ge=0)
    consecutive_error_limit: int = Field(default=4, ge=0)
    direction: Literal["increase", "decrease", "either"] = "increase"
    critical: bool = False
    weight: float = Field(default=1.0, gt=0.0, le=1000.0)
    group: str | None = Field(default=None, min_length=1, max_length=63)
    # Judge mannWhitney only (left unset for the sequential judge):
    nan_strategy: Literal["remove", "replace"] | None = None
    must_have_data: bool | None = None
    allowed_increase: float | None = Field(default=None, gt=0.0)
    allowed_decrease: float | None = Field(default=None, gt=0.0)
    effect_size: Literal["meanRatio", "cles"] | None = None

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> MetricSpec:
        kinds = [kind for kind in ("errors", "latency") if getattr(self, kind) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"metric {self.name!r} needs exactly one of 'errors' or 'latency' (found {kinds or 'none'})"
            )
        return self

    def query_texts(self) -> list[str]:
        """The user-written texts that may hold placeholders."""
        if self.errors is not None:
            return [self.errors.requests, self.errors.events]
        assert self.latency is not None
        return [self.latency.selector]


MANN_WHITNEY_METRIC_FIELDS = {
    "nan_strategy": "nanStrategy",
    "must_have_data": "mustHaveData",
    "allowed_increase": "allowedIncrease",
    "allowed_decrease": "allowedDecrease",
    "effect_size": "effectSize",
}


class ScoreThresholds(_Model):
    """Score (0-100) at or above which a look passes, and below which it fails (Kayenta's classifier)."""

    pass_: float = Field(default=95.0, ge=0.0, le=100.0, alias="pass")
    marginal: float = Field(default=75.0, ge=0.0, le=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> ScoreThresholds:
        if self.marginal > self.pass_:
            raise ValueError(f"marginal {self.marginal:g} is above pass {self.pass_:g}")
        return self


class AnalysisTemplateSpec(_Model):
    """What to measure and how strictly; ``spec`` of an AnalysisTemplate."""

    args: list[TemplateArg] = Field(default_factory=list)
    provider: ProviderSpec = Field(default_factory=ProviderSpec)
    judge: Literal["sequential", "mannWhitney"] = "sequential"
    alpha: float = Field(default=0.01, gt=0.0, le=0.5)
    confidence: float | None = Field(default=None, ge=0.5, lt=1.0)
    """Judge mannWhitney: confidence of the shift's interval (Kayenta: 0.98)."""
    score_thresholds: ScoreThresholds = Field(default_factory=ScoreThresholds)
    groups: dict[str, float] | None = None
    """Weights (percent) of metric groups; groups left out share what remains of 100."""
    interval: PositiveDuration = "10s"
    min_duration: Duration = "60s"
    metrics: list[MetricSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisTemplateSpec:
        _unique([m.name for m in self.metrics], "metric")
        _unique([a.name for a in self.args], "arg")
        declared = {a.name for a in self.args}
        self._check_judge_fields()
        for metric in self.metrics:
            for text in metric.query_texts():
                for placeholder in PLACEHOLDER_RE.findall(text):
                    _check_placeholder(placeholder, declared, metric.name)
        return self

    def _check_judge_fields(self) -> None:
        for index, metric in enumerate(self.metrics):
            if self.judge == "sequential" and metric.spread >= metric.max_ratio:
                raise ValueError(
                    f"spec.metrics[{index}].spread {metric.spread:g} (metric {metric.name!r}) is not below its "
                    f"maxRatio {metric.max_ratio:g}: a canary between them could neither pass nor fail; lower "
                    "spread or raise maxRatio"
                )
            if metric.pass_below_rate is None:
                continue
            where = f"spec.metrics[{index}].passBelowRate (metric {metric.name!r})"
            if self.judge == "mannWhitney":
                raise ValueError(f"{where} applies only to judge: sequential; remove it")
            if metric.direction != "increase":
                raise ValueError(
                    f"{where} applies only to direction: increase (a low canary rate says nothing about "
                    f"direction {metric.direction}); remove it or set direction: increase"
                )
        if self.judge != "mannWhitney":
            if self.confidence is not None:
                raise ValueError("spec.confidence applies only to judge: mannWhitney")
            for index, metric in enumerate(self.metrics):
                for field, alias in MANN_WHITNEY_METRIC_FIELDS.items():
                    if getattr(metric, field) is not None:
                        raise ValueError(
                            f"spec.metrics[{index}].{alias} (metric {metric.name!r}) applies only to "
                            "judge: mannWhitney"
                        )
        if self.groups:
            used = {m.group or "default" for m in self.metrics}
            for name, weight in self.groups.items():
                if name not in used:
                    raise ValueError(f"spec.groups.{name}: no metric has group {name!r} (used: {sorted(used)})")
                if not 0.0 <= weight <= 100.0:
                    raise ValueError(f"spec.groups.{name}: weight {weight:g} must be between 0 and 100")
            total = sum(self.groups.values())
            if total > 100.0:
                raise ValueError(f"spec.groups: weights add up to {total:g}, more than 100")
            if used <= set(self.groups) and abs(total - 100.0) > 1e-9:
                # Every group is weighted, so nothing takes the rest: the score could never reach 100.
                raise ValueError(
                    f"spec.groups: every group has a weight and they add up to {total:g}; make them add up "
                    "to 100, or leave a group out so that it takes the rest"
                )

    @property
    def mann_whitney_confidence(self) -> float:
        """Confidence of the Mann-Whitney interval (0.98 unless set)."""
        return 0.98 if self.confidence is None else self.confidence

    @property
    def interval_seconds(self) -> float:
        """The window length in seconds."""
        return parse_duration(self.interval)

    @property
    def min_duration_seconds(self) -> float:
        """Analysed time needed before a PASS, in seconds."""
        return parse_duration(self.min_duration)


class AnalysisTemplate(_Model):
    """A whole AnalysisTemplate object as found in YAML or the Kubernetes API."""

    api_version: Literal["siskin.dev/v1alpha1"] = "siskin.dev/v1alpha1"
    kind: Literal["AnalysisTemplate"] = "AnalysisTemplate"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: AnalysisTemplateSpec


def first_problem(exc: ValidationError, root: str = "spec") -> tuple[str, str]:
    """``(path, message)`` of the first problem pydantic found, in the manifest's own terms.

    ``root`` names what was validated; pydantic's internal location parts
    (``function-after``, ``list[...]``) are left out of the path.
    """
    first = exc.errors(include_url=False)[0]
    path = root
    for part in first["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith(("function-", "list[", "dict[")):
            path += f".{part}"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "is required"
    elif first["type"] == "extra_forbidden":
        message = "is not a known field (check the spelling)"
    elif first["type"] in ("model_type", "model_attributes_type", "dict_type"):
        message = "should be a mapping of fields (key: value)"
    return path.lstrip("."), message


def validation_problem(exc: ValidationError, root: str = "spec") -> str:
    """``path: message`` for the first problem; a validator's message that names its own field is not prefixed."""
    where, message = first_problem(exc, root)
    where = where or "the template"
    if message.startswith(where + ".") or message.startswith(where + ":"):
        return message
    return f"{where}: {message}"


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} name {name!r} is used twice; names must be unique")
        seen.add(name)


def _check_placeholder(placeholder: str, declared_args: set[str], metric: str) -> None:
    if placeholder in BUILTIN_PLACEHOLDERS:
        return
    if placeholder.startswith("args."):
        arg = placeholder.removeprefix("args.")
        if arg not in declared_args:
            raise ValueError(
                f"metric {metric!r} refers to {{{{args.{arg}}}}} but spec.args declares no arg {arg!r}"
            )
        return
    raise ValueError(
        f"metric {metric!r} uses unknown placeholder {{{{{placeholder}}}}}; "
        "known: {{namespace}}, {{name}}, {{interval}}, {{args.NAME}}"
    )
