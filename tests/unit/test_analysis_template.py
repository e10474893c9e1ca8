"""AnalysisTemplate validation, query rendering, and the CRD schema staying in step with the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from siskin.analysis.queries import QueryContext, TemplateError, le_label_regex, metric_queries, render
from siskin.analysis.template import AnalysisTemplate, AnalysisTemplateSpec, parse_duration

ROOT = Path(__file__).resolve().parents[2]
ERRORS = {"requests": "sum by (track) (x[{{interval}}])", "events": "sum by (track) (y[{{interval}}])"}


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"metrics": [{"name": "errors", "errors": dict(ERRORS)}]}
    base.update(overrides)
    return base


def test_example_parses_and_renders() -> None:
    template = AnalysisTemplate.model_validate(yaml.safe_load((ROOT / "examples/analysistemplate.yaml").read_text()))
    assert [m.name for m in template.spec.metrics] == ["errors", "latency"]
    queries = [metric_queries(m, template.spec, QueryContext("shop", "podinfo")) for m in template.spec.metrics]
    assert 'namespace="shop",rollout="podinfo"' in queries[0].requests
    assert queries[0].events is not None and "[10s]" in queries[0].events
    assert queries[1].fast is not None and "0\\.075`" in queries[1].fast
    assert queries[1].requests.startswith("sum by (track) (increase(http_request_duration_seconds_count{")


def test_defaults_and_durations() -> None:
    template = AnalysisTemplateSpec.model_validate(spec())
    assert (template.alpha, template.interval_seconds, template.min_duration_seconds) == (0.01, 10.0, 60.0)
    assert [parse_duration(t) for t in ("250ms", "10s", "5m", "1h")] == [0.25, 10, 300, 3600]
    with pytest.raises(ValueError, match="invalid duration '10'"):
        parse_duration("10")


@pytest.mark.parametrize(
    ("change", "message", "location"),
    [
        ({"alhpa": 0.01}, "Extra inputs are not permitted", ("alhpa",)),
        ({"alpha": 0.6}, "less than or equal to 0.5", ("alpha",)),
        ({"alpha": 0}, "greater than 0", ("alpha",)),
        ({"interval": "10"}, "invalid duration", ("interval",)),
        ({"judge": "kayenta"}, "'sequential'", ("judge",)),
        ({"metrics": []}, "at least 1 item", ("metrics",)),
        ({"metrics": [{"name": "e", "errors": dict(ERRORS), "tolerence": 1.2}]}, "Extra inputs", ("metrics", 0)),
        ({"metrics": [{"name": "e"}]}, "exactly one of 'errors' or 'latency'", ("metrics", 0)),
        ({"metrics": [{"name": "e", "errors": {"requests": "x", "events": "{{nmae}}"}}]}, "{{nmae}}", ("metrics",)),
        ({"metrics": [{"name": "e", "errors": {"requests": "{{args.svc}}", "events": "y"}}]}, "'svc'", ("metrics",)),
    ],
)
def test_mistakes_are_reported_with_their_path(change: dict[str, Any], message: str, location: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        AnalysisTemplateSpec.model_validate(spec(**change))
    error = caught.value.errors()[0]
    assert message in str(caught.value)
    assert tuple(error["loc"][: len(location)]) == location or error["loc"] == ()


def test_args_defaults_overrides_and_missing_values() -> None:
    template = AnalysisTemplateSpec.model_validate(
        spec(args=[{"name": "svc", "value": "podinfo"}, {"name": "env"}])
    )
    with pytest.raises(TemplateError, match="arg 'env' has no value"):
        render("{{args.svc}}", template, QueryContext("ns", "r"))
    ctx = QueryContext("ns", "r", {"env": "prod"})
    assert render("{{ args.svc }}/{{args.env}}/{{name}}/{{namespace}}/{{interval}}", template, ctx) == (
        "podinfo/prod/r/ns/10s"
    )
    with pytest.raises(TemplateError, match="does not declare"):
        render("x", template, QueryContext("ns", "r", {"typo": "1"}))


def test_le_spellings() -> None:
    assert le_label_regex(0.25) == r"0\.25"
    assert set(le_label_regex(1.0).split("|")) == {"1", r"1\.0"}


def _schema_fields(schema: dict[str, Any]) -> set[str]:
    return set(schema.get("properties", {}))


def test_crd_mirrors_the_models() -> None:
    crd = yaml.safe_load((ROOT / "crds/analysistemplate.yaml").read_text())
    assert crd["spec"]["group"] == "siskin.dev"
    assert crd["spec"]["names"]["shortNames"] == ["at"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    model_fields = {f.alias or n for n, f in AnalysisTemplateSpec.model_fields.items()}
    assert _schema_fields(spec_schema) == model_fields
    metric_schema = spec_schema["properties"]["metrics"]["items"]
    from siskin.analysis.template import LatencyMetric, MetricSpec

    assert _schema_fields(metric_schema) == {f.alias or n for n, f in MetricSpec.model_fields.items()}
    assert _schema_fields(metric_schema["properties"]["latency"]) == {
        f.alias or n for n, f in LatencyMetric.model_fields.items()
    }
    assert spec_schema["properties"]["alpha"]["maximum"] == 0.5
    assert spec_schema["properties"]["judge"]["enum"] == ["sequential", "mannWhitney"]
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Judge", "Metrics", "Age"} <= columns


def test_judge_specific_fields_are_named_when_misplaced() -> None:
    from pydantic import ValidationError

    base = {"metrics": [{"name": "errors", "errors": {"requests": "a", "events": "b"}}]}
    with pytest.raises(ValidationError, match=r"spec.metrics\[0\].nanStrategy \(metric 'errors'\) applies only to"):
        AnalysisTemplateSpec.model_validate({"metrics": [{**base["metrics"][0], "nanStrategy": "replace"}]})
    with pytest.raises(ValidationError, match=r"passBelowRate \(metric 'errors'\) applies only to judge: seq"):
        AnalysisTemplateSpec.model_validate(
            {**base, "judge": "mannWhitney", "metrics": [{**base["metrics"][0], "passBelowRate": 0.001}]}
        )
    with pytest.raises(ValidationError, match=r"spec.metrics\[0\].passBelowRate \(metric 'errors'\) applies only to "
                       r"direction: increase .*; remove it or set direction: increase"):
        AnalysisTemplateSpec.model_validate(
            {"metrics": [{**base["metrics"][0], "passBelowRate": 0.001, "direction": "either"}]}
        )
    with pytest.raises(ValidationError, match=r"spec\.confidence applies only to judge: mannWhitney"):
        AnalysisTemplateSpec.model_validate({**base, "confidence": 0.9})
    with pytest.raises(ValidationError, match=r"spec\.groups\.latency: no metric has group"):
        AnalysisTemplateSpec.model_validate({**base, "groups": {"latency": 10}})
    with pytest.raises(ValidationError, match=r"spec.metrics\[0\].spread 2 \(metric 'errors'\) is not below its "
                       r"maxRatio 1.5: .*; lower spread or raise maxRatio"):
        AnalysisTemplateSpec.model_validate({"metrics": [{**base["metrics"][0], "spread": 2.0}]})
    with pytest.raises(ValidationError, match=r"Input should be a finite number"):
        AnalysisTemplateSpec.model_validate({"metrics": [{**base["metrics"][0], "tolerance": float("nan")}]})
    with pytest.raises(ValidationError, match=r"marginal 90 is above pass 80"):
        AnalysisTemplateSpec.model_validate({**base, "scoreThresholds": {"pass": 80, "marginal": 90}})
    spec = AnalysisTemplateSpec.model_validate(
        {**base, "judge": "mannWhitney", "groups": {"default": 100}, "scoreThresholds": {"pass": 90}}
    )
    assert spec.mann_whitney_confidence == 0.98 and spec.score_thresholds.pass_ == 90
    assert spec.score_thresholds.marginal == 75 and spec.metrics[0].direction == "increase"


def test_group_weights_that_cannot_reach_100_are_refused() -> None:
    metrics = [{"name": "errors", "errors": dict(ERRORS), "group": "x"},
               {"name": "latency", "errors": dict(ERRORS), "group": "x"}]
    with pytest.raises(ValueError, match="add up to 30; make them add up to 100"):
        AnalysisTemplateSpec.model_validate(spec(metrics=metrics, groups={"x": 30}))
    assert AnalysisTemplateSpec.model_validate(spec(metrics=metrics, groups={"x": 100})).groups == {"x": 100}
    metrics[1]["group"] = "y"
    assert AnalysisTemplateSpec.model_validate(spec(metrics=metrics, groups={"x": 30})).groups == {"x": 30}
