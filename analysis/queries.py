"""Turn a metric of an AnalysisTemplate into the PromQL strings to run.

Placeholders are filled here, in one place, so that an unknown placeholder or a
missing argument is reported by name before anything reaches Prometheus, and so
that the latency metric's generated queries match what a user would write.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .template import PLACEHOLDER_RE, AnalysisTemplateSpec, MetricSpec, parse_duration


class TemplateError(ValueError):
    """The template cannot be turned into queries (unknown placeholder, missing arg, bad threshold)."""


@dataclass(frozen=True)
class QueryContext:
    """What a query may refer to: the Rollout's namespace and name, and its arg overrides."""

    namespace: str
    name: str
    args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricQueries:
    """The PromQL for one metric.

    ``events`` counts bad events directly (errors metric); for a latency metric
    ``fast`` counts requests at or under the threshold bucket instead and the
    bad events are ``requests - fast``.
    """

    requests: str
    events: str | None = None
    fast: str | None = None


def resolve_args(template: AnalysisTemplateSpec, ctx: QueryContext) -> dict[str, str]:
    """Template defaults overridden by the Rollout's values; an arg with no value is an error."""
    declared = {arg.name: arg.value for arg in template.args}
    unknown = sorted(set(ctx.args) - set(declared))
    if unknown:
        raise TemplateError(f"the Rollout sets args {unknown} that the AnalysisTemplate does not declare")
    values: dict[str, str] = {}
    for name, default in declared.items():
        value = ctx.args.get(name, default)
        if value is None:
            raise TemplateError(f"arg {name!r} has no value: set it in the Rollout or give it a default")
        values[name] = value
    return values


def render(text: str, template: AnalysisTemplateSpec, ctx: QueryContext) -> str:
    """Fill ``{{namespace}}``, ``{{name}}``, ``{{interval}}`` and ``{{args.X}}`` in ``text``."""
    args = resolve_args(template, ctx)
    builtins = {"namespace": ctx.namespace, "name": ctx.name, "interval": template.interval}

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in builtins:
            return builtins[key]
        if key.startswith("args.") and key.removeprefix("args.") in args:
            return args[key.removeprefix("args.")]
        raise TemplateError(f"unknown placeholder {{{{{key}}}}}")

    return PLACEHOLDER_RE.sub(substitute, text)


def le_label_regex(threshold_seconds: float) -> str:
    """A regex matching the ways clients spell a bucket bound (Go prints ``1``, Python ``1.0``).

    It goes into a PromQL raw (backtick) string, where backslashes need no escaping.
    """
    spellings = {repr(threshold_seconds), format(threshold_seconds, "g"), f"{threshold_seconds:.17g}"}
    if threshold_seconds == int(threshold_seconds):
        spellings |= {str(int(threshold_seconds)), f"{int(threshold_seconds)}.0"}
    return "|".join(re.escape(spelling) for spelling in sorted(spellings))


def metric_queries(metric: MetricSpec, template: AnalysisTemplateSpec, ctx: QueryContext) -> MetricQueries:
    """The rendered queries for ``metric``."""
    if metric.errors is not None:
        return MetricQueries(
            requests=render(metric.errors.requests, template, ctx),
            events=render(metric.errors.events, template, ctx),
        )
    latency = metric.latency
    assert latency is not None
    selector = render(latency.selector, template, ctx).strip().strip(",")
    threshold = parse_duration(latency.threshold)
    sep = "," if selector else ""
    window = template.interval
    requests = f"sum by (track) (increase({latency.histogram}_count{{{selector}}}[{window}]))"
    fast = (
        f"sum by (track) (increase({latency.histogram}_bucket"
        f"{{{selector}{sep}le=~`{le_label_regex(threshold)}`}}[{window}]))"
    )
    return MetricQueries(requests=requests, fast=fast)
