"""A/A backtest: replay an AnalysisTemplate over stored history with both sides drawn from stable.

A template's false-rollback rate depends on the service's own noise (pod-to-pod
differences, bursts, scrape gaps) that no alpha can know about. Replaying the
template's own queries against the stable pods, split in two fixed halves that
play canary and baseline, shows how often it would have rolled back a release
that changed nothing, before it is trusted with a real one.

The replay runs the product's own ``look`` and ``advance`` through a
:class:`StablePodsProvider`, which rewrites each query from ``by (track)`` over
the canary/baseline tracks to ``by (pod)`` over ``track="stable"`` and sums each
half of the pods per timestamp. The rewrite is explicit: a query of any other
shape is refused with the metric's name rather than guessed at.

Each run folds a look at every window end, the way the operator's background
analysis does (a pass does not end it, any look that fails does), so a judge
whose failure is not sticky is replayed faithfully too. One range query per
metric query and run is made; the looks inside a run are served from it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from .provider import MetricsProvider, ProviderError, ProviderUnreachable, QueryError, TrackSeries
from .queries import QueryContext, TemplateError, metric_queries
from .run import AnalysisRunState, advance, look
from .template import (
    PLACEHOLDER_RE,
    AnalysisTemplate,
    AnalysisTemplateSpec,
    MetricSpec,
    parse_duration,
    validation_problem,
)

Z95 = 1.959963984540054
"""Two-sided 95% normal quantile, for the Wilson interval."""

DEFAULT_MIN_RUN_SECONDS = 600.0
POD_PREFIX = "pod:"
"""Prefix of the pod name in the ``track`` label the per-pod query sets (so an empty pod label is visible)."""

TOO_FEW_PODS = "A/A needs at least two stable pods; found {count}"
NO_STABLE_DATA = "no stable data: the requests queries returned no series for track=\"stable\""


class BacktestError(Exception):
    """The backtest cannot run; the message says what was wrong, where, and what to do."""


# ----------------------------------------------------------------------------- pure parts

_LAST_TIMESTAMP = 253402300799.0
"""9999-12-31T23:59:59Z."""
MAX_RUNS = 20_000
"""More runs than this is a typo in --from (a whole month of 10-minute runs is about 4,300)."""


def parse_time(text: str, now: float, flag: str = "time") -> float:
    """Unix seconds from RFC 3339 (``2026-01-02T03:04:05Z``), unix seconds, ``now``, ``-6h`` or ``now-90m``.

    ``flag`` names the option the text came from in error messages.
    """
    value = text.strip()
    relative = re.fullmatch(r"(?:now)?\s*-\s*(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", value)
    if value == "now":
        return now
    if relative is not None:
        units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
        return _in_range(now - float(relative.group(1)) * units[relative.group(2)], text, flag)
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return _in_range(float(value), text, flag)
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise BacktestError(
            f"{flag}: cannot read {text!r}: use RFC 3339 (2026-01-02T03:04:05Z), unix seconds, "
            "'now', or a relative time such as -6h or now-30m"
        ) from None
    if parsed.tzinfo is None:
        raise BacktestError(f"{flag}: {text!r} has no time zone: add Z for UTC or an offset such as +02:00")
    try:
        timestamp = parsed.timestamp()
    except (OverflowError, ValueError, OSError):
        timestamp = math.inf
    return _in_range(timestamp, text, flag)


def _in_range(timestamp: float, text: str, flag: str) -> float:
    if not 0.0 <= timestamp <= _LAST_TIMESTAMP:
        raise BacktestError(f"{flag}: {text!r} is before 1970 or after 9999; give a time within your history")
    return timestamp


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as ``1e-3`` as numbers, as the Kubernetes API does."""


Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def default_run_length(template: AnalysisTemplateSpec) -> float:
    """Three times the template's minDuration, and at least ten minutes."""
    return max(3 * template.min_duration_seconds, DEFAULT_MIN_RUN_SECONDS)


def slice_runs(start: float, end: float, run_seconds: float) -> list[tuple[float, float]]:
    """Consecutive non-overlapping ``(start, end)`` runs of ``run_seconds`` inside ``[start, end]``.

    Runs begin on whole seconds (the product anchors windows there); a tail
    shorter than a run is not replayed.
    """
    if run_seconds <= 0:
        raise ValueError(f"run length must be positive, got {run_seconds}")
    first = float(math.ceil(start))
    count = max(0, math.floor((end - first) / run_seconds + 1e-9))
    return [(first + k * run_seconds, first + (k + 1) * run_seconds) for k in range(count)]


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; ``(0, 1)`` with no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def runs_needed(alpha: float, z: float = Z95) -> int:
    """How many runs without a false rollback bring the upper 95% Wilson bound down to ``alpha``."""
    return math.ceil(z * z * (1 - alpha) / alpha - 1e-9)


@dataclass(frozen=True)
class PodSplit:
    """Stable pods in the pseudo canary and pseudo baseline halves, and the one left out of an odd count."""

    canary: tuple[str, ...]
    baseline: tuple[str, ...]
    left_out: tuple[str, ...] = ()

    @property
    def pods(self) -> tuple[str, ...]:
        """Every pod, in either half or left out, sorted."""
        return tuple(sorted(self.canary + self.baseline + self.left_out))

    def half_of(self, pod: str) -> str | None:
        """``canary``, ``baseline``, or ``None`` for a pod in neither half."""
        if pod in self.canary:
            return "canary"
        if pod in self.baseline:
            return "baseline"
        return None


def split_pods(pods: Iterable[str]) -> PodSplit:
    """Sorted pod names alternate canary, baseline, canary, ...; with an odd count the last one sits out.

    Equal halves keep the judge's sample-ratio check (it expects a 50% share)
    from marking every run invalid; the split depends only on the names.
    """
    ordered = sorted(set(pods))
    left_out: tuple[str, ...] = ()
    if len(ordered) % 2:
        left_out = (ordered.pop(),)
    return PodSplit(canary=tuple(ordered[0::2]), baseline=tuple(ordered[1::2]), left_out=left_out)


def sum_halves(series_by_pod: Mapping[str, Sequence[tuple[float, float]]], split: PodSplit) -> TrackSeries:
    """Per-timestamp sums over each half's pods, as a canary/baseline :data:`TrackSeries`.

    A half with no sample at a timestamp has no point there (so the window is
    skipped rather than read as zero); NaN propagates and is skipped downstream.
    """
    sums: dict[str, dict[int, tuple[float, float]]] = {"canary": {}, "baseline": {}}
    for pod, points in series_by_pod.items():
        half = split.half_of(pod)
        if half is None:
            continue
        for timestamp, value in points:
            key = round(timestamp * 1000)
            _, total = sums[half].get(key, (timestamp, 0.0))
            sums[half][key] = (timestamp, total + value)
    return {half: sorted(points.values()) for half, points in sums.items() if points}


_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING_RE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", re.IGNORECASE)
_BLOCK_RE = re.compile(r"\{[^{}]*\}")
_MATCHER_RE = re.compile(
    r"\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*(?:,|$)"
)
_TRACKS = frozenset({"canary", "baseline"})
EXPECTED_SHAPE = 'sum by (track) (increase(METRIC{...,track=~"canary|baseline"}[{{interval}}]))'


def _mask_strings(query: str) -> str:
    """``query`` with the inside of every string literal blanked, so structure can be searched by position."""
    return _STRING_RE.sub(lambda m: m.group(0)[0] + "_" * (len(m.group(0)) - 2) + m.group(0)[-1], query)


def _track_values(op: str, quoted: str) -> set[str] | None:
    """The tracks a canary/baseline matcher selects, or ``None`` when it is not such a matcher."""
    value = quoted[1:-1]
    if op == "=":
        return {value} if value in _TRACKS else None
    if op != "=~":
        return None
    inner = value.removeprefix("^").removesuffix("$")
    if inner.startswith("(") and inner.endswith(")"):
        inner = inner[1:-1]
    alternatives = set(inner.split("|"))
    return alternatives if alternatives <= _TRACKS else None


def rewrite_query(query: str, metric: str, role: str, pod_label: str = "pod") -> str:
    """``query`` over the stable pods: ``by (track)`` -> ``by (<pod_label>)``, track matcher -> ``track="stable"``.

    Raises :class:`BacktestError` naming ``metric`` and ``role`` when the query
    is not of the shape the rewrite understands.
    """

    def refuse(problem: str) -> BacktestError:
        return BacktestError(
            f"metric {metric!r}: cannot replay its {role} query as A/A: {problem}. "
            f"The backtest rewrites queries of the shape {EXPECTED_SHAPE}; query: {query}"
        )

    masked = _mask_strings(query)
    edits: list[tuple[int, int, str]] = []
    groupings = 0
    for match in _GROUPING_RE.finditer(masked):
        keyword = match.group(1)
        labels = [label.strip() for label in match.group(2).split(",") if label.strip()]
        if "track" not in labels:
            continue
        if keyword.lower() != "by" or labels != ["track"]:
            raise refuse(f"it groups with `{match.group(0)}`; only `by (track)` can be rewritten")
        edits.append((match.start(), match.end(), f"{keyword} ({pod_label})"))
        groupings += 1
    if groupings == 0:
        raise refuse("it has no `by (track)` grouping")

    blocks = list(_BLOCK_RE.finditer(masked))
    if not blocks:
        raise refuse('it has no label matchers; expected a track matcher such as track=~"canary|baseline"')
    for block in blocks:
        content_start = block.start() + 1
        content = query[content_start : block.end() - 1]
        matchers = list(_MATCHER_RE.finditer(content))
        if "".join(m.group(0) for m in matchers).strip() != content.strip():
            raise refuse(f"cannot read the label matchers in {{{content}}}")
        track = [m for m in matchers if m.group("name") == "track"]
        if len(track) != 1:
            found = "no track matcher" if not track else f"{len(track)} track matchers"
            raise refuse(f'the selector {{{content}}} has {found}; expected one such as track=~"canary|baseline"')
        matcher = track[0]
        if _track_values(matcher.group("op"), matcher.group("value")) is None:
            text = f"track{matcher.group('op')}{matcher.group('value')}"
            raise refuse(
                f'its matcher {text} does not select canary and/or baseline; expected track=~"canary|baseline"'
            )
        start = content_start + matcher.start("name")
        end = content_start + matcher.end("value")
        edits.append((start, end, 'track="stable"'))

    rewritten = query
    for start, end, text in sorted(edits, reverse=True):
        rewritten = rewritten[:start] + text + rewritten[end:]
    return rewritten


def per_pod_query(query: str, metric: str, role: str, pod_label: str = "pod") -> str:
    """The rewritten query, with each pod's name copied into ``track`` (prefixed) so any provider reads it."""
    rewritten = rewrite_query(query, metric, role, pod_label)
    return f'label_replace({rewritten}, "track", "{POD_PREFIX}$1", "{pod_label}", "(.*)")'


def metric_rewrites(
    template: AnalysisTemplateSpec, ctx: QueryContext, pod_label: str = "pod"
) -> dict[str, dict[str, str]]:
    """Per metric: ``{role: rendered query}`` for every query the product will run, checked to be rewritable."""
    result: dict[str, dict[str, str]] = {}
    for metric in template.metrics:
        try:
            queries = metric_queries(metric, template, ctx)
        except TemplateError as exc:
            raise BacktestError(f"metric {metric.name!r}: {exc}") from None
        roles = {
            name: value for name, value in dataclasses.asdict(queries).items() if isinstance(value, str)
        }
        for role, query in roles.items():
            per_pod_query(query, metric.name, _role_text(metric, role), pod_label)
        result[metric.name] = roles
    return result


def _role_text(metric: MetricSpec, role: str) -> str:
    if metric.latency is not None:
        return {"requests": "histogram count", "fast": "histogram bucket"}.get(role, role) + " (from latency.selector)"
    return role


# ----------------------------------------------------------------------------- the provider


class StablePodsProvider:
    """A :class:`MetricsProvider` answering the template's queries from stable pods split in two halves.

    ``queries`` maps every rendered query the product may send to its per-pod
    form. Results are fetched once per query up to ``fetch_until`` and sliced
    for shorter looks.
    """

    def __init__(self, inner: MetricsProvider, queries: Mapping[str, str], fetch_until: float) -> None:
        """Wrap ``inner`` (any MetricsProvider); ``set_split`` must be called before the first look."""
        self.inner = inner
        self.queries = dict(queries)
        self.fetch_until = fetch_until
        self.split: PodSplit | None = None
        self._cache: dict[tuple[str, int, int], tuple[float, dict[str, list[tuple[float, float]]]]] = {}

    def pods(self, query: str, start: float, step_seconds: float) -> dict[str, list[tuple[float, float]]]:
        """Per-pod series of ``query`` from ``start`` to ``fetch_until``; raises ProviderError as the inner one does."""
        key = (query, round(start * 1000), round(step_seconds * 1000))
        if key not in self._cache:
            pod_query = self.queries.get(query)
            if pod_query is None:
                raise QueryError(f"the backtest has no stable-pods form of this query: {query}")
            end = max(self.fetch_until, start)
            raw = self.inner.range_by_track(pod_query, start, end, step_seconds)
            by_pod = {track.removeprefix(POD_PREFIX): points for track, points in raw.items()}
            self._cache[key] = (end, by_pod)
        return self._cache[key][1]

    def range_by_track(self, query: str, start: float, end: float, step_seconds: float) -> TrackSeries:
        """The two halves' sums of ``query`` over ``[start, end]``."""
        if self.split is None:
            raise QueryError("the backtest has not split the stable pods yet")
        key = (query, round(start * 1000), round(step_seconds * 1000))
        if key in self._cache and end > self._cache[key][0]:
            del self._cache[key]
        by_pod = self.pods(query, start, step_seconds)
        limit = end + 1e-6
        sliced = {pod: [p for p in points if p[0] <= limit] for pod, points in by_pod.items()}
        return sum_halves(sliced, self.split)


# ----------------------------------------------------------------------------- replay


@dataclass
class RunResult:
    """One replayed run: its phase (or why it was skipped) and what each metric ended with."""

    start: float
    end: float
    phase: str
    message: str = ""
    split: PodSplit | None = None
    failed_metrics: list[str] = field(default_factory=list)
    metric_verdicts: dict[str, str] = field(default_factory=dict)
    metric_e_values: dict[str, float] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        """True when the run could not be replayed at all."""
        return self.phase == "Skipped"


@dataclass
class BacktestReport:
    """Everything the backtest found; ``summary`` is the JSON form."""

    template_name: str
    template: AnalysisTemplateSpec
    start: float
    end: float
    run_seconds: float
    runs: list[RunResult]
    notes: list[str] = field(default_factory=list)

    def count(self, phase: str) -> int:
        """Runs that ended in ``phase``."""
        return sum(run.phase == phase for run in self.runs)

    @property
    def judged(self) -> int:
        """Runs that could have rolled back: not skipped and not Error."""
        return sum(run.phase in ("Successful", "Failed", "Inconclusive") for run in self.runs)

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson interval of the false-rollback rate."""
        return wilson_interval(self.count("Failed"), self.judged)

    @property
    def trusted(self) -> bool:
        """The upper 95% bound of the false-rollback rate is at most the template's alpha."""
        return self.judged > 0 and self.interval[1] <= self.template.alpha

    def verdict(self) -> str:
        """One line: trusted or not, and what to do."""
        alpha = self.template.alpha
        failed, judged = self.count("Failed"), self.judged
        upper = self.interval[1]
        counts = f"{failed} of {judged} runs rolled back"
        if self.trusted:
            return f"trusted: upper 95% bound {_pct(upper)} <= alpha {_pct(alpha)} ({counts})"
        head = f"NOT trusted: upper 95% bound {_pct(upper)} > alpha {_pct(alpha)} ({counts}; "
        if judged and failed / judged > alpha:
            return head + "raise spread: healthy pods differ by more than it allows; or look for one bad pod)"
        needed = runs_needed(alpha)
        hours = needed * self.run_seconds / 3600
        return head + f"too few runs to show it: replay >= {needed} runs, about {hours:.1f}h of history)"

    def per_metric(self) -> dict[str, dict[str, Any]]:
        """Per metric: runs it failed, and its last verdict's kinds over the runs."""
        table: dict[str, dict[str, Any]] = {}
        for metric in self.template.metrics:
            verdicts = Counter(run.metric_verdicts.get(metric.name, "") for run in self.runs if not run.skipped)
            e_values = [run.metric_e_values[metric.name] for run in self.runs if metric.name in run.metric_e_values]
            table[metric.name] = {
                "failed": sum(metric.name in run.failed_metrics for run in self.runs),
                "pass": verdicts["Pass"],
                "inconclusive": verdicts["Inconclusive"],
                "error": verdicts["Error"],
                "max_e_value": max(e_values) if e_values else None,
            }
        return table

    def summary(self) -> dict[str, Any]:
        """The report as one JSON-ready dict."""
        low, high = self.interval
        failed, judged = self.count("Failed"), self.judged
        skip_reasons = Counter(run.message for run in self.runs if run.skipped)
        return {
            "template": self.template_name,
            "judge": self.template.judge,
            "alpha": self.template.alpha,
            "from": _iso(self.start),
            "to": _iso(self.end),
            "run_length_s": self.run_seconds,
            "runs": len(self.runs),
            "judged": judged,
            "false_rollbacks": failed,
            "false_rollback_rate": failed / judged if judged else None,
            "false_rollback_lower95": low,
            "false_rollback_upper95": high,
            "passed": self.count("Successful"),
            "inconclusive": self.count("Inconclusive"),
            "error": self.count("Error"),
            "skipped": self.count("Skipped"),
            "skip_reasons": dict(skip_reasons),
            "per_metric": self.per_metric(),
            "trusted": self.trusted,
            "verdict": self.verdict(),
            "notes": self.notes,
            "run_details": [
                {
                    "start": _iso(run.start),
                    "phase": run.phase,
                    "message": run.message if run.phase != "Successful" else "",
                    "canary_pods": list(run.split.canary) if run.split else [],
                    "baseline_pods": list(run.split.baseline) if run.split else [],
                    "left_out": list(run.split.left_out) if run.split else [],
                }
                for run in self.runs
            ],
        }


def replay_run(
    template: AnalysisTemplateSpec,
    inner: MetricsProvider,
    ctx: QueryContext,
    rewrites: Mapping[str, Mapping[str, str]],
    run: tuple[float, float],
    pod_label: str = "pod",
) -> RunResult:
    """Replay one run: split the stable pods seen by the requests queries, then fold a look per window.

    Raises :class:`BacktestError` when Prometheus cannot be reached or refuses a
    rewritten query (every run would fail the same way).
    """
    start, end = run
    interval = template.interval_seconds
    count = math.floor((end - start) / interval + 1e-9)
    ends = [start + k * interval for k in range(1, count + 1)]
    per_pod = {
        query: per_pod_query(query, metric, _role_text(_metric(template, metric), role), pod_label)
        for metric, roles in rewrites.items()
        for role, query in roles.items()
    }
    provider = StablePodsProvider(inner, per_pod, fetch_until=ends[-1] if ends else end)
    if not ends:
        return RunResult(start, end, "Skipped", f"run shorter than one {template.interval} window")
    pods: set[str] = set()
    for metric, roles in rewrites.items():
        try:
            found = provider.pods(roles["requests"], ends[0], interval)
        except ProviderUnreachable as exc:
            raise BacktestError(f"{exc}; check --prometheus and that Prometheus is running") from None
        except ProviderError as exc:
            raise BacktestError(
                f"metric {metric!r}: Prometheus refused the stable-pods form of its requests query: {exc}; "
                f"query: {per_pod[roles['requests']]}"
            ) from None
        live = {pod for pod, points in found.items() if points}
        if "" in live:
            raise BacktestError(
                f"metric {metric!r}: stable series have no {pod_label!r} label, so the pods cannot be split; "
                "pass --pod-label with the label your scrape config puts pod names in"
            )
        pods |= live
    if not pods:
        return RunResult(start, end, "Skipped", NO_STABLE_DATA)
    if len(pods) < 2:
        return RunResult(start, end, "Skipped", TOO_FEW_PODS.format(count=len(pods)), split=split_pods(pods))
    provider.split = split_pods(pods)
    return _fold(template, provider, ctx, start, ends)


def _fold(
    template: AnalysisTemplateSpec, provider: StablePodsProvider, ctx: QueryContext, start: float, ends: list[float]
) -> RunResult:
    state: AnalysisRunState | None = None
    failed: set[str] = set()
    e_values: dict[str, float] = {}
    limits = {metric.name: metric.failure_limit for metric in template.metrics}
    for index, at in enumerate(ends, 1):
        seen = look(template, provider, ctx, start, at)
        for verdict in seen.verdicts:
            if verdict.e_value is not None:
                e_values[verdict.name] = max(e_values.get(verdict.name, 0.0), verdict.e_value)
        state = advance(state, seen, template, deadline_reached=index == len(ends))
        failed |= {s.name for s in state.metrics if s.failures > limits.get(s.name, 0)}
        if state.phase == "Successful" and index < len(ends):
            state = state.model_copy(update={"phase": "Running"})  # background analysis: a pass does not end it
        elif state.done:
            break
    assert state is not None
    verdicts: dict[str, str] = {s.name: s.latest.verdict if s.latest else "Error" for s in state.metrics}
    return RunResult(
        start, ends[-1], state.phase, state.message, provider.split,
        failed_metrics=sorted(failed), metric_verdicts=verdicts, metric_e_values=e_values,
    )


def _metric(template: AnalysisTemplateSpec, name: str) -> MetricSpec:
    return next(metric for metric in template.metrics if metric.name == name)


def backtest(
    template: AnalysisTemplateSpec,
    inner: MetricsProvider,
    ctx: QueryContext,
    start: float,
    end: float,
    run_seconds: float,
    *,
    template_name: str = "",
    pod_label: str = "pod",
) -> BacktestReport:
    """Replay ``template`` A/A over ``[start, end]`` in runs of ``run_seconds`` against ``inner``."""
    if end <= start:
        raise BacktestError(f"--to ({_iso(end)}) is not after --from ({_iso(start)}): give an earlier --from")
    if run_seconds < template.interval_seconds:
        raise BacktestError(
            f"--run-length {run_seconds:g}s is shorter than the template's interval {template.interval}: "
            "a run needs at least one window"
        )
    runs = slice_runs(start, end, run_seconds)
    if not runs:
        raise BacktestError(
            f"the range {_iso(start)} .. {_iso(end)} ({end - start:g}s) is shorter than one run "
            f"({run_seconds:g}s): give an earlier --from or a shorter --run-length"
        )
    rewrites = metric_rewrites(template, ctx, pod_label)
    notes: list[str] = []
    windows = math.floor(run_seconds / template.interval_seconds + 1e-9)
    if windows * template.interval_seconds < template.min_duration_seconds:
        notes.append(
            f"runs hold {windows} windows of {template.interval}, less than minDuration {template.min_duration}: "
            "no run can pass, so only failures are meaningful"
        )
    results = [replay_run(template, inner, ctx, rewrites, run, pod_label) for run in runs]
    tail = end - runs[-1][1]
    if tail >= 1:
        notes.append(f"the last {tail:g}s of the range are shorter than a run and were not replayed")
    report = BacktestReport(template_name, template, start, end, run_seconds, results, notes)
    if report.count("Skipped") == len(results):
        reasons = Counter(run.message for run in results)
        seen = sorted({pod for run in results if run.split for pod in run.split.pods})
        detail = "; ".join(f"{reason} ({count} of {len(results)} runs)" for reason, count in reasons.most_common())
        if seen:
            hint = (
                f"stable pods seen: {', '.join(seen)}; scale stable to two or more pods, "
                "or replay a range when it had them"
            )
        else:
            hint = (
                "check --namespace/--name/--arg, the range, and that the stable pods are scraped "
                f"with track=\"stable\" and a {pod_label!r} label"
            )
        raise BacktestError(f"no run between {_iso(start)} and {_iso(end)} could be replayed: {detail}; {hint}")
    return report


# ----------------------------------------------------------------------------- template, text, command


def load_template(text: str, source: str) -> tuple[str, AnalysisTemplateSpec]:
    """The name and spec of the one AnalysisTemplate in YAML ``text`` (a whole object, or just its spec)."""
    try:
        documents = [doc for doc in yaml.load_all(text, Loader=Yaml12Loader) if doc is not None]
    except yaml.YAMLError as exc:
        raise BacktestError(f"{source} is not valid YAML: {exc}") from None
    templates = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == "AnalysisTemplate"]
    if not templates and len(documents) == 1 and isinstance(documents[0], dict) and "metrics" in documents[0]:
        templates = [{"spec": documents[0]}]
    if len(templates) != 1:
        raise BacktestError(
            f"{source} holds {len(templates)} AnalysisTemplates; give a file with exactly one "
            "(kind: AnalysisTemplate, or just its spec)"
        )
    try:
        parsed = AnalysisTemplate.model_validate(templates[0])
    except ValidationError as exc:
        raise BacktestError(f"{source}: {validation_problem(exc, root='')}") from None
    return str(parsed.metadata.get("name") or source), parsed.spec


def check_context(template: AnalysisTemplateSpec, ctx: QueryContext) -> None:
    """Refuse to run when a query uses ``{{name}}`` or ``{{namespace}}`` that was not given."""
    used = {
        placeholder
        for metric in template.metrics
        for text in metric.query_texts()
        for placeholder in PLACEHOLDER_RE.findall(text)
    }
    if "name" in used and not ctx.name:
        raise BacktestError("the template's queries use {{name}}: pass --name with the Rollout's name")
    if "namespace" in used and not ctx.namespace:
        raise BacktestError("the template's queries use {{namespace}}: pass --namespace with the Rollout's namespace")


def format_report(report: BacktestReport) -> str:
    """The human-readable report (without the JSON line)."""
    summary = report.summary()
    template = report.template
    low, high = report.interval
    failed, judged = report.count("Failed"), report.judged
    rate = _pct(failed / judged) if judged else "n/a"
    lines = [
        f"A/A backtest of AnalysisTemplate {report.template_name} "
        f"(judge {template.judge}, alpha {_pct(template.alpha)}, interval {template.interval})",
        f"range {summary['from']} .. {summary['to']}: {len(report.runs)} runs of {report.run_seconds:g}s, "
        "stable pods split in two halves by sorted name",
        f"runs: {judged} judged, {summary['passed']} passed, {summary['inconclusive']} inconclusive, "
        f"{summary['error']} error, {summary['skipped']} skipped",
        f"false rollbacks: {failed} of {judged} ({rate}, 95% CI {_pct(low)} - {_pct(high)})",
        "per metric:",
    ]
    width = max(len(name) for name in summary["per_metric"])
    for name, row in summary["per_metric"].items():
        e_value = "n/a" if row["max_e_value"] is None else f"{row['max_e_value']:.3g}"
        lines.append(
            f"  {name:<{width}}  failed {row['failed']}  pass {row['pass']}  inconclusive {row['inconclusive']}  "
            f"error {row['error']}  max e-value {e_value}"
        )
    if summary["skip_reasons"]:
        lines.append("skipped runs:")
        lines += [f"  {count} x {reason}" for reason, count in summary["skip_reasons"].items()]
    shown = [run for run in report.runs if run.phase in ("Failed", "Error")][:10]
    if shown:
        lines.append("failed and error runs:")
        lines += [f"  {_iso(run.start)} {run.phase}: {run.message}" for run in shown]
    lines += [f"note: {note}" for note in report.notes]
    lines.append(report.verdict())
    return "\n".join(lines)


def backtest_command(
    template_path: str,
    *,
    prometheus: str | None,
    start: str,
    end: str,
    namespace: str,
    name: str,
    args: Sequence[str],
    run_length: str | None,
    pod_label: str = "pod",
    json_output: bool = False,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    now: float | None = None,
) -> int:
    """``siskin analysis backtest``: 0 when trusted, 3 when not; raises BacktestError for unusable input."""
    from .prometheus import PrometheusProvider

    out = out or sys.stdout
    if template_path == "-":
        text, source = (stdin or sys.stdin).read(), "stdin"
    else:
        try:
            with open(template_path, encoding="utf-8") as handle:
                text, source = handle.read(), template_path
        except OSError as exc:
            raise BacktestError(f"cannot read template {template_path}: {exc.strerror}") from None
    template_name, template = load_template(text, source)
    overrides: dict[str, str] = {}
    for item in args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BacktestError(f"--arg {item!r} is not K=V, e.g. --arg service=podinfo")
        overrides[key] = value
    ctx = QueryContext(namespace=namespace, name=name, args=overrides)
    check_context(template, ctx)
    address = prometheus or template.provider.prometheus.address
    if not address:
        raise BacktestError("no Prometheus: pass --prometheus URL (the template names no provider address)")
    clock = datetime.now(UTC).timestamp() if now is None else now
    first, last = parse_time(start, clock, "--from"), parse_time(end, clock, "--to")
    if last > clock + 1:
        raise BacktestError(f"--to {end} is in the future ({_iso(last)}); use --to now or an earlier time")
    try:
        run_seconds = default_run_length(template) if run_length is None else parse_duration(run_length)
    except ValueError as exc:
        raise BacktestError(f"--run-length: {exc}") from None
    if (last - first) / run_seconds > MAX_RUNS:
        raise BacktestError(
            f"--from/--to span {(last - first) / run_seconds:.0f} runs of {run_seconds:g}s, more than {MAX_RUNS}; "
            "narrow the range or raise --run-length"
        )
    provider = PrometheusProvider(address, timeout_seconds=parse_duration(template.provider.prometheus.timeout))
    try:
        report = backtest(template, provider, ctx, first, last, run_seconds,
                          template_name=template_name, pod_label=pod_label)
    finally:
        provider.close()
    print(format_report(report), file=out)
    if json_output:
        print(json.dumps(report.summary(), separators=(",", ":")), file=out)
    return 0 if report.trusted else 3


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pct(value: float) -> str:
    percent = value * 100
    return f"{percent:.1f}%" if percent >= 1 or percent == 0 else f"{percent:.2g}%"
