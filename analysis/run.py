"""An analysis run: look at the metrics now, and fold each look into the run's state.

``look`` is the only function here with I/O (through the provider it is given);
``advance`` is pure and idempotent, so the operator can store its result in the
Rollout's status, crash, restart and call it again with the same look without
counting anything twice.

Counting rules (Argo Rollouts semantics: a limit is exceeded when count > limit):

- a Fail look adds to ``failures``; ``failures > failureLimit`` -> run Failed;
- an Error look adds to ``consecutiveErrors`` (any other verdict resets it);
  ``consecutiveErrors > consecutiveErrorLimit`` -> run Error;
- an Inconclusive look because of a sample-ratio mismatch adds to
  ``inconclusives``; ``inconclusives > inconclusiveLimit`` -> run Inconclusive.
  An Inconclusive look that only lacks evidence is the normal state of a
  sequential test and is not counted;
- every metric Pass in the same look -> Successful;
- at the deadline, a run that is not Successful becomes Inconclusive: no data
  never becomes Successful.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .provider import CANARY_AND_BASELINE, MetricsProvider, ProviderError, TrackSeries
from .queries import MetricQueries, QueryContext, TemplateError, metric_queries
from .sequential import JudgeSettings, judge
from .template import AnalysisTemplateSpec, MetricSpec
from .verdict import MetricVerdict
from .windows import build_windows, window_ends

RunPhase = Literal["Running", "Successful", "Failed", "Inconclusive", "Error"]
TERMINAL_PHASES: frozenset[str] = frozenset({"Successful", "Failed", "Inconclusive", "Error"})


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class AnalysisLook(_Camel):
    """One look at every metric of a template: the verdicts at time ``at``."""

    at: float
    started_at: float
    verdicts: list[MetricVerdict]


class MetricRunStatus(_Camel):
    """A metric's latest verdict and its counters over the run."""

    name: str
    latest: MetricVerdict | None = None
    failures: int = 0
    inconclusives: int = 0
    consecutive_errors: int = 0


class AnalysisRunState(_Camel):
    """The state of an analysis run, stored in the Rollout's status."""

    phase: RunPhase = "Running"
    message: str = ""
    metrics: list[MetricRunStatus] = Field(default_factory=list)
    look_count: int = 0
    last_look_at: float | None = None

    @property
    def done(self) -> bool:
        """True once the run has a final phase."""
        return self.phase in TERMINAL_PHASES


def judge_settings(template: AnalysisTemplateSpec, metric: MetricSpec) -> JudgeSettings:
    """The judge's settings for ``metric``: alpha split over all metrics of the template."""
    noun = "errors" if metric.errors is not None else f"slower than {metric.latency.threshold}"  # type: ignore[union-attr]
    return JudgeSettings(
        alpha=template.alpha,
        metric_count=len(template.metrics),
        tolerance=metric.tolerance,
        max_ratio=metric.max_ratio,
        min_events=metric.min_events,
        min_duration_seconds=template.min_duration_seconds,
        event_noun=noun,
    )


def look(
    template: AnalysisTemplateSpec,
    provider: MetricsProvider,
    ctx: QueryContext,
    started_at: float,
    now: float,
) -> AnalysisLook:
    """Query every metric over the whole run so far and judge it; one verdict per metric.

    Windows are ``(anchor + (k-1) * interval, anchor + k * interval]`` with
    ``anchor = floor(started_at)``, so successive looks see the same windows and
    the e-process continues across them.
    """
    interval = template.interval_seconds
    anchor = float(math.floor(started_at))
    count = math.floor((now - anchor) / interval + 1e-9)
    ends = window_ends(anchor + interval, interval, count) if count >= 1 else []
    verdicts = [
        _look_at_metric(metric, template, provider, ctx, ends, interval) for metric in template.metrics
    ]
    return AnalysisLook(at=now, started_at=started_at, verdicts=verdicts)


def _look_at_metric(
    metric: MetricSpec,
    template: AnalysisTemplateSpec,
    provider: MetricsProvider,
    ctx: QueryContext,
    ends: list[float],
    interval: float,
) -> MetricVerdict:
    settings = judge_settings(template, metric)
    try:
        queries = metric_queries(metric, template, ctx)
    except TemplateError as exc:
        return MetricVerdict.error(metric.name, f"template: {exc}")
    if not ends:
        return MetricVerdict(
            name=metric.name,
            verdict="Inconclusive",
            reason=f"first {template.interval} window not complete yet",
            threshold=settings.threshold,
        )
    try:
        return _measure(metric, queries, provider, ends, interval, settings)
    except ProviderError as exc:
        return MetricVerdict.error(metric.name, str(exc))


def _measure(
    metric: MetricSpec,
    queries: MetricQueries,
    provider: MetricsProvider,
    ends: list[float],
    interval: float,
    settings: JudgeSettings,
) -> MetricVerdict:
    start, end = ends[0], ends[-1]
    requests = provider.range_by_track(queries.requests, start, end, interval)
    missing = [track for track in CANARY_AND_BASELINE if not requests.get(track)]
    if missing:
        return MetricVerdict.error(
            metric.name,
            f"requests query returned no data for track {' and '.join(missing)}: "
            f"is the {' and '.join(missing)} running and scraped? query: {queries.requests}",
        )
    events: TrackSeries | None = None
    fast: TrackSeries | None = None
    if queries.events is not None:
        events = provider.range_by_track(queries.events, start, end, interval)
    else:
        assert queries.fast is not None and metric.latency is not None
        fast = provider.range_by_track(queries.fast, start, end, interval)
        if not any(fast.get(track) for track in CANARY_AND_BASELINE):
            return MetricVerdict.error(
                metric.name,
                f"histogram {metric.latency.histogram} has no bucket le={metric.latency.threshold} "
                "(threshold must be one of the histogram's bucket boundaries)",
            )
    window_set = build_windows(ends, interval, requests, events=events, fast=fast)
    note = window_set.summary() if window_set.skipped or window_set.clipped else ""
    return judge(metric.name, window_set.windows, settings, window_note=note)


def advance(
    state: AnalysisRunState | None,
    look: AnalysisLook,
    template: AnalysisTemplateSpec,
    *,
    deadline_reached: bool,
) -> AnalysisRunState:
    """Fold ``look`` into ``state``; pure, and a no-op for a look already folded (except for the deadline)."""
    current = state if state is not None else AnalysisRunState(
        metrics=[MetricRunStatus(name=m.name) for m in template.metrics]
    )
    if current.done:
        return current
    if current.last_look_at is not None and look.at <= current.last_look_at:
        return _apply_deadline(current) if deadline_reached else current

    previous = {status.name: status for status in current.metrics}
    verdicts = {verdict.name: verdict for verdict in look.verdicts}
    statuses: list[MetricRunStatus] = []
    for metric in template.metrics:
        before = previous.get(metric.name) or MetricRunStatus(name=metric.name)
        verdict = verdicts.get(metric.name) or MetricVerdict.error(metric.name, "no verdict in the look")
        srm_inconclusive = verdict.verdict == "Inconclusive" and verdict.sample_ratio_mismatch
        statuses.append(
            MetricRunStatus(
                name=metric.name,
                latest=verdict,
                failures=before.failures + (verdict.verdict == "Fail"),
                inconclusives=before.inconclusives + srm_inconclusive,
                consecutive_errors=before.consecutive_errors + 1 if verdict.verdict == "Error" else 0,
            )
        )
    folded = AnalysisRunState(
        metrics=statuses, look_count=current.look_count + 1, last_look_at=look.at
    )
    phase, message = _decide(statuses, template, deadline_reached)
    return folded.model_copy(update={"phase": phase, "message": message})


def _decide(
    statuses: list[MetricRunStatus], template: AnalysisTemplateSpec, deadline_reached: bool
) -> tuple[RunPhase, str]:
    limits = {metric.name: metric for metric in template.metrics}

    def reasons(selected: list[MetricRunStatus], suffix: str = "") -> str:
        return "; ".join(_reason(s) + suffix for s in selected)

    failed = [s for s in statuses if s.failures > limits[s.name].failure_limit]
    if failed:
        return "Failed", reasons(failed)
    errored = [s for s in statuses if s.consecutive_errors > limits[s.name].consecutive_error_limit]
    if errored:
        return "Error", "; ".join(
            f"{_reason(s)} ({s.consecutive_errors} looks in a row could not measure, "
            f"limit {limits[s.name].consecutive_error_limit})"
            for s in errored
        )
    invalid = [s for s in statuses if s.inconclusives > limits[s.name].inconclusive_limit]
    if invalid:
        return "Inconclusive", reasons(invalid)
    if statuses and all(s.latest is not None and s.latest.verdict == "Pass" for s in statuses):
        return "Successful", "all metrics passed: " + reasons(statuses)
    pending = [s for s in statuses if s.latest is None or s.latest.verdict != "Pass"]
    if deadline_reached:
        return "Inconclusive", "deadline reached without a verdict: " + reasons(pending)
    return "Running", reasons(pending)


def _apply_deadline(state: AnalysisRunState) -> AnalysisRunState:
    if all(s.latest is not None and s.latest.verdict == "Pass" for s in state.metrics):
        return state
    pending = [s for s in state.metrics if s.latest is None or s.latest.verdict != "Pass"]
    message = "deadline reached without a verdict: " + "; ".join(_reason(s) for s in pending)
    return state.model_copy(update={"phase": "Inconclusive", "message": message})


def _reason(status: MetricRunStatus) -> str:
    return f"{status.name}: {status.latest.reason if status.latest else 'no verdict yet'}"
