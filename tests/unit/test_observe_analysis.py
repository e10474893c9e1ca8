"""Looking at running analyses: when a look is due, and background analysis watching until promotion."""

from __future__ import annotations

import datetime
from typing import Any

from rollout_world import rollout_spec
from siskin.analysis.run import AnalysisRunState
from siskin.analysis.template import AnalysisTemplateSpec
from siskin.operator.model import AnalysisProgress, RolloutStatus, parse_spec
from siskin.operator.observe import RolloutObject, look_at_analyses

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
TEMPLATE = AnalysisTemplateSpec.model_validate({
    "interval": "10s", "minDuration": "30s",
    "metrics": [{"name": "errors", "errors": {
        "requests": 'sum by (track) (increase(http_requests_total{track=~"canary|baseline"}[{{interval}}]))',
        "events": 'sum by (track) (increase(http_requests_total{track=~"canary|baseline",code=~"5.."}[{{interval}}]))',
    }}],
})


class CountsProvider:
    """Prometheus as the judge sees it: per-window request and error counts per track."""

    def __init__(self, canary_error_rate: float, baseline_error_rate: float, rps: float = 50.0) -> None:
        self.rates = {"canary": canary_error_rate, "baseline": baseline_error_rate}
        self.rps = rps

    def range_by_track(self, query: str, start: float, end: float, step_seconds: float) -> dict[str, Any]:
        errors = "5.." in query
        points = int((end - start) // step_seconds) + 1
        return {track: [(start + i * step_seconds, self.rps * step_seconds * (rate if errors else 1.0))
                        for i in range(points)] for track, rate in self.rates.items()}


def background_rollout(state: AnalysisRunState) -> RolloutObject:
    spec = parse_spec(rollout_spec("v1", canary={"analysis": {"templates": [{"templateName": "red"}]}}))
    started = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    progress = AnalysisProgress(templates=["red"], started_at=started,
                                runs={"red": {"phase": state.phase, "message": state.message,
                                              "state": state.model_dump(mode="json", by_alias=True)}})
    status = RolloutStatus(canary_revision="abc", current_step_index=1, background_analysis=progress)
    return RolloutObject("default", "shop", 1, {}, spec, status)


def test_background_analysis_keeps_watching_after_it_passed() -> None:
    passed = AnalysisRunState(phase="Successful", message="errors Pass", look_count=6,
                              last_look_at=(T0 + datetime.timedelta(seconds=60)).timestamp())
    rollout = background_rollout(passed)
    now = T0 + datetime.timedelta(seconds=120)
    updates = look_at_analyses(rollout, {"red": TEMPLATE}, now, lambda _t: CountsProvider(0.30, 0.01))
    assert updates["background/red"].phase == "Failed", updates


def test_a_look_is_not_repeated_within_one_interval() -> None:
    recent = AnalysisRunState(phase="Running", look_count=3,
                              last_look_at=(T0 + datetime.timedelta(seconds=115)).timestamp())
    rollout = background_rollout(recent)
    now = T0 + datetime.timedelta(seconds=120)
    assert look_at_analyses(rollout, {"red": TEMPLATE}, now, lambda _t: CountsProvider(0.30, 0.01)) == {}
