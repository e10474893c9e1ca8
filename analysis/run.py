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
  never becomes Successful;
- a Fail of a ``critical`` metric fails the run at once, whatever its
  ``failureLimit``; the message names the metric and the look's score.

Judge ``mannWhitney`` follows Spinnaker's deployed semantics instead of the
per-metric limits: every look is scored (Kayenta's weighted sum, see
:mod:`siskin.analysis.mannwhitney`) once it covers ``minDuration`` and at least
``MIN_WINDOWS_FOR_PASS`` windows; a scored look below ``scoreThresholds.marginal``
fails the run; at the deadline the last score >= ``scoreThresholds.pass`` makes
it Successful, anything else Inconclusive. Where Kayenta would pass without
evidence, Siskin does not: Successful also needs at least one metric whose
latest verdict is Pass (a Pass needs windows with traffic and ``minEvents``). A look with an Error verdict is not
scored (a failed query is not evidence); ``consecutiveErrorLimit`` still applies.
Every look's score is kept in the state (for the sequential judge it is
informational).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .mannwhitney import MannWhitneySettings, ScoredMetric, ScoreResult, judge_windows, score
from .provider import CANARY_AND_BASELINE, MetricsProvider, ProviderError, TrackSeries
from .queries import MetricQueries, QueryContext, TemplateError, metric_queries
from .sequential import MIN_WINDOWS_FOR_PASS, JudgeSettings, judge
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
    score: float | None = None
    """The latest look's score 0-100 (mannWhitney: the latest scored look's)."""

    @property
    def done(self) -> bool:
        """True once the run has a final phase."""
        return self.phase in TERMINAL_PHASES


def _event_noun(metric: MetricSpec) -> str:
    """What a metric counts, as the verdict's reason names it."""
    if metric.errors is not None:
        return "errors"
    assert metric.latency is not None
    return f"slower than {metric.latency.threshold}"


def judge_settings(template: AnalysisTemplateSpec, metric: MetricSpec) -> JudgeSettings:
    """The judge's settings for ``metric``: alpha split over all metrics of the template."""
    return JudgeSettings(
        alpha=template.alpha,
        metric_count=len(template.metrics),
        tolerance=metric.tolerance,
        spread=metric.spread,
        max_ratio=metric.max_ratio,
        pass_below_rate=metric.pass_below_rate,
        min_events=metric.min_events,
        min_duration_seconds=template.min_duration_seconds,
        event_noun=_event_noun(metric),
        direction=metric.direction,
    )


def mann_whitney_settings(template: AnalysisTemplateSpec, metric: MetricSpec) -> MannWhitneySettings:
    """The Kayenta-compatible judge's settings for ``metric``."""
    return MannWhitneySettings(
        confidence=template.mann_whitney_confidence,
        direction=metric.direction,
        allowed_increase=metric.allowed_increase,
        allowed_decrease=metric.allowed_decrease,
        effect_measure=metric.effect_size or "meanRatio",
        nan_strategy=metric.nan_strategy or "remove",
        must_have_data=bool(metric.must_have_data),
        critical=metric.critical,
        interval_seconds=template.interval_seconds,
        min_duration_seconds=template.min_duration_seconds,
        min_events=metric.min_events,
        event_noun=_event_noun(metric),
    )


def scored_metrics(template: AnalysisTemplateSpec) -> list[ScoredMetric]:
    """The template's metrics as the scorer sees them."""
    return [ScoredMetric(m.name, m.group, m.weight, m.critical) for m in template.metrics]


def look_score(verdicts: list[MetricVerdict], template: AnalysisTemplateSpec) -> ScoreResult:
    """Kayenta's score of one look's verdicts (Pass/Fail/Inconclusive/Error count as Pass/High/NoData/NoData)."""
    thresholds = template.score_thresholds
    return score(
        {v.name: v for v in verdicts}, scored_metrics(template),
        pass_threshold=thresholds.pass_, marginal_threshold=thresholds.marginal, group_weights=template.groups,
    )


def judged(look: AnalysisLook, template: AnalysisTemplateSpec) -> bool:
    """True when the look covers ``minDuration`` and at least ``MIN_WINDOWS_FOR_PASS`` windows."""
    interval = template.interval_seconds
    count = math.floor((look.at - math.floor(look.started_at)) / interval + 1e-9)
    return count >= MIN_WINDOWS_FOR_PASS and count * interval >= template.min_duration_seconds


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
        if template.judge == "mannWhitney":
            return _measure(metric, queries, provider, ends, interval, mann_whitney_settings(template, metric))
        return _measure(metric, queries, provider, ends, interval, settings)
    except ProviderError as exc:
        return MetricVerdict.error(metric.name, str(exc))


def _measure(
    metric: MetricSpec,
    queries: MetricQueries,
    provider: MetricsProvider,
    ends: list[float],
    interval: float,
    settings: JudgeSettings | MannWhitneySettings,
) -> MetricVerdict:
    start, end = ends[0], ends[-1]
    requests = provider.range_by_track(queries.requests, start, end, interval)
    missing = [track for track in CANARY_AND_BASELINE if not requests.get(track)]
    if missing:
        return MetricVerdict.error(
            metric.name,
            f"requests query returned no data for track {' and '.join(missing)}: check that the metric name in "
            f"the query exists and that the pods are running and scraped; query: {queries.requests}",
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
    if isinstance(settings, MannWhitneySettings):
        return judge_windows(
            metric.name, window_set.windows, settings, expected_windows=window_set.expected,
            empty_windows=window_set.skipped.get("no traffic", 0), window_note=note,
        )
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
        return _apply_deadline(current, template) if deadline_reached else current

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
    verdicts_now = [s.latest for s in statuses if s.latest is not None]
    scored = look_score(verdicts_now, template)
    if template.judge == "mannWhitney":
        counted = judged(look, template) and not any(v.verdict == "Error" for v in verdicts_now)
        run_score = scored.score if counted else current.score
        phase, message = _decide_mann_whitney(
            statuses, template, deadline_reached, scored if counted else None, run_score
        )
    else:
        run_score = scored.score
        phase, message = _decide(statuses, template, deadline_reached, scored.score)
    return AnalysisRunState(
        phase=phase, message=message, metrics=statuses, look_count=current.look_count + 1,
        last_look_at=look.at, score=run_score,
    )


def _critical_failures(statuses: list[MetricRunStatus], template: AnalysisTemplateSpec) -> list[MetricRunStatus]:
    critical = {metric.name for metric in template.metrics if metric.critical}
    return [s for s in statuses if s.name in critical and s.latest is not None and s.latest.verdict == "Fail"]


def _measurement_errors(statuses: list[MetricRunStatus], limits: dict[str, MetricSpec]) -> str:
    """Reasons of the metrics that could not be measured more looks in a row than allowed ("" when none)."""
    return "; ".join(
        f"{_reason(s)} ({s.consecutive_errors} looks in a row could not measure, "
        f"limit {limits[s.name].consecutive_error_limit})"
        for s in statuses
        if s.consecutive_errors > limits[s.name].consecutive_error_limit
    )


def _score_text(value: float | None) -> str:
    return "no score yet" if value is None else f"score {value:g}"


def _decide(
    statuses: list[MetricRunStatus], template: AnalysisTemplateSpec, deadline_reached: bool, score_now: float
) -> tuple[RunPhase, str]:
    limits = {metric.name: metric for metric in template.metrics}

    def reasons(selected: list[MetricRunStatus], suffix: str = "") -> str:
        return "; ".join(_reason(s) + suffix for s in selected)

    critical = _critical_failures(statuses, template)
    if critical:
        return "Failed", f"critical metric failed: {reasons(critical)}; {_score_text(score_now)}"
    failed = [s for s in statuses if s.failures > limits[s.name].failure_limit]
    if failed:
        return "Failed", reasons(failed)
    errored = _measurement_errors(statuses, limits)
    if errored:
        return "Error", errored
    invalid = [s for s in statuses if s.inconclusives > limits[s.name].inconclusive_limit]
    if invalid:
        return "Inconclusive", reasons(invalid)
    if statuses and all(s.latest is not None and s.latest.verdict == "Pass" for s in statuses):
        return "Successful", "all metrics passed: " + reasons(statuses)
    pending = [s for s in statuses if s.latest is None or s.latest.verdict != "Pass"]
    if deadline_reached:
        return "Inconclusive", "deadline reached without a verdict: " + reasons(pending)
    return "Running", reasons(pending)


def _decide_mann_whitney(
    statuses: list[MetricRunStatus],
    template: AnalysisTemplateSpec,
    deadline_reached: bool,
    scored: ScoreResult | None,
    run_score: float | None,
) -> tuple[RunPhase, str]:
    limits = {metric.name: metric for metric in template.metrics}
    thresholds = template.score_thresholds
    errored = _measurement_errors(statuses, limits)
    if errored:
        return "Error", errored
    critical = _critical_failures(statuses, template)
    if critical:
        named = "; ".join(_reason(s) for s in critical)
        return "Failed", f"critical metric failed: {named}; {_score_text(scored.score if scored else run_score)}"
    not_passing = [s for s in statuses if s.latest is None or s.latest.verdict != "Pass"]
    detail = "; ".join(_reason(s) for s in not_passing) or "all metrics pass"
    if scored is not None and scored.score < thresholds.marginal:
        return "Failed", f"{scored.reason}: {detail}"
    if deadline_reached:
        return _mann_whitney_deadline(statuses, template, run_score, detail)
    if scored is None:
        return "Running", f"not scored this look ({_score_text(run_score)} so far): {detail}"
    return "Running", f"{scored.reason}: {detail}"


def _mann_whitney_deadline(
    statuses: list[MetricRunStatus], template: AnalysisTemplateSpec, run_score: float | None, detail: str
) -> tuple[RunPhase, str]:
    pass_at = template.score_thresholds.pass_
    evidence = any(s.latest is not None and s.latest.verdict == "Pass" for s in statuses)
    if run_score is not None and run_score >= pass_at and evidence:
        return "Successful", f"{_score_text(run_score)} >= pass {pass_at:g} at the deadline"
    if run_score is not None and run_score >= pass_at:
        return "Inconclusive", (
            f"deadline reached with {_score_text(run_score)} but no metric passed on evidence: {detail}"
        )
    return "Inconclusive", f"deadline reached with {_score_text(run_score)}, pass needs {pass_at:g}: {detail}"


def _apply_deadline(state: AnalysisRunState, template: AnalysisTemplateSpec) -> AnalysisRunState:
    if template.judge == "mannWhitney":
        detail = "; ".join(_reason(s) for s in state.metrics if s.latest is None or s.latest.verdict != "Pass")
        phase, message = _mann_whitney_deadline(state.metrics, template, state.score, detail or "all metrics pass")
        return state.model_copy(update={"phase": phase, "message": message})
    if all(s.latest is not None and s.latest.verdict == "Pass" for s in state.metrics):
        return state
    pending = [s for s in state.metrics if s.latest is None or s.latest.verdict != "Pass"]
    message = "deadline reached without a verdict: " + "; ".join(_reason(s) for s in pending)
    return state.model_copy(update={"phase": "Inconclusive", "message": message})


def _reason(status: MetricRunStatus) -> str:
    return f"{status.name}: {status.latest.reason if status.latest else 'no verdict yet'}"
