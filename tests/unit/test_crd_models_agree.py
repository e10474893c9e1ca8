"""The CRDs in ``crds/`` and the pydantic models accept and reject the same manifests.

A manifest passes the CRD when the sandbox API emulator's own structural-schema code
(defaulting, strict pruning, validation: ``siskin.sandbox.apiserver_schema``) accepts it and
the few rules kube-apiserver also enforces that that code does not evaluate —
``minProperties``/``maxProperties``, the one CEL rule in ``x-kubernetes-validations`` and
``x-kubernetes-list-map-keys`` uniqueness — hold. It passes the model when
``siskin.operator.model.parse_spec`` (Rollout) or ``siskin.analysis.template.AnalysisTemplate``
accepts it. Some problems cannot be (or deliberately are not) caught by a schema: those the
CRD lets through to the operator, which reports them as an ``InvalidSpec`` condition naming
the field; they are listed in ``LET_THROUGH`` with the reason.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from siskin.analysis.template import AnalysisTemplate
from siskin.operator.model import RolloutSpec, SpecError, parse_spec
from siskin.sandbox import apiserver_schema

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
Manifest = dict[str, Any]
Mutation = Callable[[Manifest], None]

# The CEL rules the CRDs use, evaluated here as kube-apiserver would.
CEL_RULES: dict[str, Callable[[Any], bool]] = {
    "has(self.errors) != has(self.latency)": lambda obj: ("errors" in obj) != ("latency" in obj),
}


def crd_schema(kind: str) -> dict[str, Any]:
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"no CRD for {kind} in {CRDS}")


def _server_side_extras(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Errors for the schema rules the emulator's validator does not evaluate."""
    problems: list[str] = []
    if isinstance(value, dict):
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            problems.append(f"{path}: should have at least {schema['minProperties']} properties")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            problems.append(f"{path}: should have at most {schema['maxProperties']} properties")
        for rule in schema.get("x-kubernetes-validations") or []:
            check = CEL_RULES.get(rule["rule"])
            assert check is not None, f"teach this test the CEL rule {rule['rule']!r}"
            if not check(value):
                problems.append(f"{path}: {rule.get('message', rule['rule'])}")
        properties = schema.get("properties") or {}
        for key, item in value.items():
            if key in properties:
                problems += _server_side_extras(item, properties[key], f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
            if len(seen) != len(set(seen)):
                problems.append(f"{path}: Duplicate value for list-map-keys {keys}")
        for index, item in enumerate(value):
            problems += _server_side_extras(item, schema["items"], f"{path}[{index}]")
    return problems


def crd_problems(manifest: Manifest) -> list[str]:
    """Why the API server would refuse the manifest (empty when it accepts it), strict field validation on."""
    schema = crd_schema(manifest["kind"])
    defaulted = apiserver_schema.apply_defaults(manifest, schema)
    unknown: list[str] = []
    pruned = apiserver_schema.prune(defaulted, schema, unknown=unknown, root=True)
    problems = [f'unknown field "{path}"' for path in unknown]
    problems += [error.message() for error in apiserver_schema.validate(pruned, schema, root=True)]
    return problems + _server_side_extras(pruned, schema, "")


def model_problem(manifest: Manifest) -> str | None:
    """Why the operator's model refuses the manifest (None when it accepts it)."""
    if manifest["kind"] == "Rollout":
        parsed = parse_spec(manifest.get("spec"))
        return str(parsed) if isinstance(parsed, SpecError) else None
    try:
        AnalysisTemplate.model_validate(manifest)
    except ValidationError as exc:
        return str(exc.errors(include_url=False)[0])
    return None


def examples() -> dict[str, Manifest]:
    found = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("apiVersion", "").startswith("siskin.dev/"):
                found[f"{path.name}:{document['kind']}"] = document
    return found


def example(kind: str) -> Manifest:
    return copy.deepcopy(next(m for m in examples().values() if m["kind"] == kind))


# --------------------------------------------------------------------------- mutations


def rollout_spec(manifest: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]
    return spec


def steps(manifest: Manifest) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = manifest["spec"]["strategy"]["canary"]["steps"]
    return result


def set_step(index: int, step: dict[str, Any]) -> Mutation:
    return lambda m: steps(m).__setitem__(index, step)


def set_in(path: str, value: Any) -> Mutation:
    """Set ``spec.a.b`` (dots; ``[n]`` for list items) to ``value``."""
    def mutate(manifest: Manifest) -> None:
        target: Any = manifest
        parts = path.replace("[", ".[").split(".")
        for part in parts[:-1]:
            target = target[int(part[1:-1])] if part.startswith("[") else target.setdefault(part, {})
        last = parts[-1]
        if last.startswith("["):
            target[int(last[1:-1])] = value
        else:
            target[last] = value
    return mutate


def drop(path: str) -> Mutation:
    def mutate(manifest: Manifest) -> None:
        target: Any = manifest
        parts = path.split(".")
        for part in parts[:-1]:
            target = target[part]
        del target[parts[-1]]
    return mutate


ANALYSIS_STEP = 1  # examples/rollout.yaml: setWeight, analysis, setWeight, pause
METRIC = "spec.metrics[0]"

BAD_ROLLOUTS: dict[str, Mutation] = {
    "negative replicas": set_in("spec.replicas", -1),
    "too many replicas": set_in("spec.replicas", 1001),
    "replicas as a string": set_in("spec.replicas", "3"),
    "weight over 100": set_step(0, {"setWeight": 150}),
    "negative weight": set_step(0, {"setWeight": -5}),
    "fractional weight": set_step(0, {"setWeight": 12.5}),
    "weight as a string": set_step(0, {"setWeight": "20"}),
    "pause duration in words": set_step(3, {"pause": {"duration": "10 seconds"}}),
    "unknown field in a pause": set_step(3, {"pause": {"duration": "10s", "until": "later"}}),
    "two kinds in one step": set_step(0, {"setWeight": 20, "pause": {}}),
    "empty step": set_step(0, {}),
    "analysis step without templates": set_step(ANALYSIS_STEP, {"analysis": {"duration": "2m"}}),
    "analysis step with no template": set_step(ANALYSIS_STEP, {"analysis": {"templates": []}}),
    "empty templateName": set_step(ANALYSIS_STEP, {"analysis": {"templates": [{"templateName": ""}]}}),
    "analysis duration in words": set_step(ANALYSIS_STEP, {"analysis": {"templates": [{"templateName": "red"}],
                                                                         "duration": "2 minutes"}}),
    "typo inside an analysis step": set_step(ANALYSIS_STEP, {"analysis": {"templates": [{"templateName": "red"}],
                                                                           "durration": "2m"}}),
    "arg without a value": set_step(ANALYSIS_STEP, {"analysis": {"templates": [{"templateName": "red"}],
                                                                  "args": [{"name": "service"}]}}),
    "no selector": drop("spec.selector"),
    "empty matchLabels": set_in("spec.selector.matchLabels", {}),
    "no template": drop("spec.template"),
    "no containers": set_in("spec.template.spec.containers", []),
    "pod spec without containers": set_in("spec.template.spec", {"restartPolicy": "Always"}),
    "no service": drop("spec.service"),
    "service name with capitals": set_in("spec.service.name", "Pod_Info"),
    "service name too long": set_in("spec.service.name", "p" * 51),
    "service port 0": set_in("spec.service.port", 0),
    "target port too high": set_in("spec.service.targetPort", 70000),
    "no strategy": drop("spec.strategy"),
    "strategy without canary": set_in("spec.strategy", {}),
    "steps not a list": set_in("spec.strategy.canary.steps", {"setWeight": 20}),
    "empty httpRoute": set_in("spec.strategy.canary.trafficRouting.gatewayAPI.httpRoute", ""),
    "gatewayAPI without httpRoute": set_in("spec.strategy.canary.trafficRouting.gatewayAPI", {}),
    "baseline not a boolean": set_in("spec.strategy.canary.baseline", "yes"),
    "background analysis without templates": set_in("spec.strategy.canary.analysis", {"startingStep": 1}),
    "negative startingStep": set_in("spec.strategy.canary.analysis",
                                    {"templates": [{"templateName": "red"}], "startingStep": -1}),
    "progressDeadlineSeconds 0": set_in("spec.progressDeadlineSeconds", 0),
    "misspelt spec field": set_in("spec.replica", 3),
    "snake_case spec field": set_in("spec.progress_deadline_seconds", 30),
}

BAD_TEMPLATES: dict[str, Mutation] = {
    "no metrics": drop("spec.metrics"),
    "empty metrics": set_in("spec.metrics", []),
    "metric with errors and latency": lambda m: m["spec"]["metrics"][0].update(
        latency={"histogram": "http_request_duration_seconds", "threshold": "75ms"}),
    "metric with neither errors nor latency": lambda m: m["spec"]["metrics"][0].pop("errors"),
    "two metrics with one name": lambda m: m["spec"]["metrics"].__setitem__(1, {**m["spec"]["metrics"][1],
                                                                                 "name": "errors"}),
    "metric name with capitals": set_in(f"{METRIC}.name", "Errors"),
    "errors without events": lambda m: m["spec"]["metrics"][0]["errors"].pop("events"),
    "empty requests query": set_in(f"{METRIC}.errors.requests", ""),
    "alpha 0": set_in("spec.alpha", 0),
    "alpha over 0.5": set_in("spec.alpha", 0.6),
    "alpha as a string": set_in("spec.alpha", "0.01"),
    "interval in words": set_in("spec.interval", "10 seconds"),
    "minDuration without a unit": set_in("spec.minDuration", "30"),
    "unknown judge": set_in("spec.judge", "kayenta"),
    "tolerance under 1": set_in(f"{METRIC}.tolerance", 0.5),
    "spread under 1": set_in(f"{METRIC}.spread", 0.9),
    "spread over 10": set_in(f"{METRIC}.spread", 11),
    "passBelowRate 0": set_in(f"{METRIC}.passBelowRate", 0),
    "passBelowRate 1": set_in(f"{METRIC}.passBelowRate", 1),
    "maxRatio 1": set_in(f"{METRIC}.maxRatio", 1),
    "negative minEvents": set_in(f"{METRIC}.minEvents", -1),
    "negative failureLimit": set_in(f"{METRIC}.failureLimit", -1),
    "latency threshold without a unit": set_in("spec.metrics[1].latency.threshold", "75"),
    "histogram name with a dash": set_in("spec.metrics[1].latency.histogram", "http-duration"),
    "latency without histogram": lambda m: m["spec"]["metrics"][1]["latency"].pop("histogram"),
    "address without a scheme": set_in("spec.provider.prometheus.address", "prometheus:9090"),
    "timeout in words": set_in("spec.provider.prometheus.timeout", "ten seconds"),
    "arg name starting with a digit": set_in("spec.args", [{"name": "1service", "value": "x"}]),
    "two args with one name": set_in("spec.args", [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]),
    "misspelt field": set_in("spec.alpah", 0.01),
    "unknown provider": set_in("spec.provider", {"datadog": {}}),
    "unknown direction": set_in(f"{METRIC}.direction", "up"),
    "weight 0": set_in(f"{METRIC}.weight", 0),
    "negative weight": set_in(f"{METRIC}.weight", -1),
    "critical as a string": set_in(f"{METRIC}.critical", "yes"),
    "empty group": set_in(f"{METRIC}.group", ""),
    "unknown nanStrategy": lambda m: (set_in("spec.judge", "mannWhitney")(m),
                                      set_in(f"{METRIC}.nanStrategy", "drop")(m)),
    "unknown effectSize": lambda m: (set_in("spec.judge", "mannWhitney")(m),
                                     set_in(f"{METRIC}.effectSize", "cohenD")(m)),
    "allowedIncrease 0": lambda m: (set_in("spec.judge", "mannWhitney")(m),
                                    set_in(f"{METRIC}.allowedIncrease", 0)(m)),
    "confidence 1": lambda m: (set_in("spec.judge", "mannWhitney")(m), set_in("spec.confidence", 1)(m)),
    "pass threshold over 100": set_in("spec.scoreThresholds", {"pass": 101}),
    "negative marginal threshold": set_in("spec.scoreThresholds", {"marginal": -1}),
    "unknown score threshold": set_in("spec.scoreThresholds", {"fail": 10}),
    "group weight over 100": lambda m: (set_in(f"{METRIC}.group", "errors")(m),
                                        set_in("spec.groups", {"errors": 150})(m)),
    "group weight as a string": lambda m: (set_in(f"{METRIC}.group", "errors")(m),
                                           set_in("spec.groups", {"errors": "50"})(m)),
}

# Problems the CRD lets through on purpose: the operator names them in an InvalidSpec condition.
LET_THROUGH: dict[str, tuple[str, Mutation, str]] = {
    "unknown step kind": (
        "Rollout", set_step(0, {"setWieght": 20}),
        "steps preserve unknown fields so that the operator can name the unknown step and list the valid kinds",
    ),
    "selector not matching the pod labels": (
        "Rollout", set_in("spec.selector.matchLabels", {"app": "other"}),
        "a cross-field rule; the operator says which selector label the template lacks",
    ),
    "background analysis starting past the last step": (
        "Rollout", set_in("spec.strategy.canary.analysis", {"templates": [{"templateName": "red"}],
                                                             "startingStep": 9}),
        "depends on the number of steps; the operator names startingStep and the step count",
    ),
    "query with an unknown placeholder": (
        "AnalysisTemplate", set_in(f"{METRIC}.errors.requests", "sum by (track) (up{job=\"{{job}}\"})"),
        "placeholders live inside query strings; the operator names the metric and the placeholder",
    ),
    "query with an undeclared arg": (
        "AnalysisTemplate", set_in(f"{METRIC}.errors.requests", "sum by (track) (up{job=\"{{args.job}}\"})"),
        "args are declared elsewhere in the spec; the operator names the missing arg",
    ),
    "zero interval": (
        "AnalysisTemplate", set_in("spec.interval", "0s"),
        "the duration pattern admits 0s; the model needs a positive window and the operator names the field",
    ),
    "Mann-Whitney field under the sequential judge": (
        "AnalysisTemplate", set_in(f"{METRIC}.nanStrategy", "replace"),
        "depends on spec.judge; the operator names the metric's field and the judge it needs",
    ),
    "confidence under the sequential judge": (
        "AnalysisTemplate", set_in("spec.confidence", 0.95),
        "depends on spec.judge; the operator names spec.confidence",
    ),
    "marginal above pass": (
        "AnalysisTemplate", set_in("spec.scoreThresholds", {"pass": 80, "marginal": 90}),
        "compares two fields; the operator names both thresholds",
    ),
    "weight for a group no metric has": (
        "AnalysisTemplate", set_in("spec.groups", {"latncy": 50}),
        "groups are named by the metrics; the operator names the unknown group",
    ),
    "group weights over 100 in total": (
        "AnalysisTemplate", lambda m: (set_in(f"{METRIC}.group", "errors")(m),
                                       set_in("spec.metrics[1].group", "latency")(m),
                                       set_in("spec.groups", {"errors": 60, "latency": 60})(m)),
        "a sum over a map; the operator names spec.groups and the total",
    ),
}

def _declare_arg(manifest: Manifest) -> None:
    manifest["spec"]["args"] = [{"name": "job", "value": "podinfo"}]
    manifest["spec"]["metrics"][0]["errors"]["requests"] = 'sum by (track) (up{job="{{ args.job }}"})'


# Manifests a user may write that both must accept (besides the examples).
GOOD_VARIANTS: dict[str, tuple[str, Mutation]] = {
    "replica-ratio routing": ("Rollout", drop("spec.strategy.canary.trafficRouting")),
    "pause without a duration": ("Rollout", set_step(3, {"pause": {}})),
    "no baseline": ("Rollout", set_in("spec.strategy.canary.baseline", False)),
    "background analysis": ("Rollout", set_in("spec.strategy.canary.analysis",
                                              {"templates": [{"templateName": "red"}], "startingStep": 2,
                                               "args": [{"name": "service", "value": "podinfo"}]})),
    "zero replicas": ("Rollout", set_in("spec.replicas", 0)),
    "no steps": ("Rollout", set_in("spec.strategy.canary.steps", [])),
    "declared arg": ("AnalysisTemplate", lambda m: _declare_arg(m)),
    "explicit address": ("AnalysisTemplate", set_in("spec.provider.prometheus.address", "http://127.0.0.1:9090")),
    "spread, tolerance and passBelowRate": ("AnalysisTemplate", lambda m: m["spec"]["metrics"][0].update(
        spread=1.0, tolerance=1.1, passBelowRate=0.001)),
    "direction, critical, weight and group": ("AnalysisTemplate", lambda m: m["spec"]["metrics"][0].update(
        direction="either", critical=True, weight=2.5, group="errors")),
    "mannWhitney judge with Kayenta's settings": ("AnalysisTemplate", lambda m: (
        m["spec"].update(judge="mannWhitney", confidence=0.95, scoreThresholds={"pass": 90, "marginal": 50},
                         groups={"errors": 70}),
        m["spec"]["metrics"][0].update(group="errors", nanStrategy="replace", mustHaveData=True,
                                       allowedIncrease=1.1, allowedDecrease=0.9, effectSize="meanRatio"),
        m["spec"]["metrics"][1].update(effectSize="cles", allowedIncrease=0.6, direction="either"))),
}


def mutated(kind: str, mutation: Mutation) -> Manifest:
    manifest = example(kind)
    mutation(manifest)
    return manifest


# --------------------------------------------------------------------------- tests


def test_every_siskin_example_is_checked() -> None:
    assert {m["kind"] for m in examples().values()} == {"Rollout", "AnalysisTemplate"}


@pytest.mark.parametrize("name", sorted(examples()))
def test_examples_pass_both(name: str) -> None:
    manifest = examples()[name]
    assert crd_problems(manifest) == []
    assert model_problem(manifest) is None


@pytest.mark.parametrize("name", sorted(GOOD_VARIANTS))
def test_good_variants_pass_both(name: str) -> None:
    manifest = mutated(*GOOD_VARIANTS[name])
    assert crd_problems(manifest) == []
    assert model_problem(manifest) is None


# The model's pydantic fields are in lax mode: it converts what the API server refuses.
_LAX = pytest.mark.xfail(strict=True, reason=(
    "model mismatch: siskin.operator.model uses pydantic's lax mode and populate_by_name, so it accepts "
    "what the CRD refuses (numbers as strings, 12.5 -> rejected but '20' -> 20, 'yes' -> True, snake_case "
    "field names). Harmless behind a real API server, which refuses these first, but the two do not agree"))
_LAX_ROLLOUT_CASES: set[str] = set()
_LAX_TEMPLATE_CASES: set[str] = set()


@pytest.mark.parametrize("name", [pytest.param(n, marks=_LAX) if n in _LAX_ROLLOUT_CASES else n
                                  for n in sorted(BAD_ROLLOUTS)])
def test_bad_rollouts_fail_both(name: str) -> None:
    manifest = mutated("Rollout", BAD_ROLLOUTS[name])
    assert crd_problems(manifest), "the CRD accepts it"
    assert model_problem(manifest) is not None, "the model accepts it"


@pytest.mark.parametrize("name", [pytest.param(n, marks=_LAX) if n in _LAX_TEMPLATE_CASES else n
                                  for n in sorted(BAD_TEMPLATES)])
def test_bad_templates_fail_both(name: str) -> None:
    manifest = mutated("AnalysisTemplate", BAD_TEMPLATES[name])
    assert crd_problems(manifest), "the CRD accepts it"
    assert model_problem(manifest) is not None, "the model accepts it"


@pytest.mark.parametrize("name", sorted(LET_THROUGH))
def test_let_through_cases_reach_the_operator_and_are_named(name: str) -> None:
    kind, mutation, _why = LET_THROUGH[name]
    manifest = mutated(kind, mutation)
    assert crd_problems(manifest) == [], "the CRD now rejects it: move the case to the bad lists"
    problem = model_problem(manifest)
    assert problem is not None, "the model accepts it too: the operator would run it"


def test_unknown_step_kind_is_named_with_the_valid_kinds() -> None:
    manifest = mutated("Rollout", set_step(0, {"setWieght": 20}))
    problem = model_problem(manifest)
    assert problem is not None
    assert problem.startswith("spec.strategy.canary.steps[0]")
    assert "setWieght" in problem
    assert all(kind in problem for kind in ("setWeight", "pause", "analysis")), problem


def test_crd_rejection_names_the_field() -> None:
    problems = crd_problems(mutated("Rollout", set_step(0, {"setWeight": 150})))
    assert any(p.startswith("spec.strategy.canary.steps[0].setWeight: Invalid value: 150") for p in problems), problems


def test_crd_defaults_are_the_model_defaults() -> None:
    """A minimal manifest means the same whether the API server or the model fills in the defaults."""
    rollout = {"apiVersion": "siskin.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "x"}, "spec": {
        "selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "app"}]}},
        "service": {"name": "x"},
        "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
    }}
    by_model = parse_spec(rollout["spec"])
    by_server = parse_spec(apiserver_schema.apply_defaults(rollout, crd_schema("Rollout"))["spec"])
    assert isinstance(by_model, RolloutSpec) and isinstance(by_server, RolloutSpec)
    assert by_model == by_server

    template = {"apiVersion": "siskin.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "t"},
                "spec": {"metrics": [{"name": "errors", "errors": {"requests": "a", "events": "b"}}]}}
    defaulted = apiserver_schema.apply_defaults(template, crd_schema("AnalysisTemplate"))
    assert AnalysisTemplate.model_validate(template) == AnalysisTemplate.model_validate(defaulted)


@pytest.mark.parametrize("name", ["two kinds in one step", "empty step", "empty matchLabels"])
def test_the_emulator_alone_enforces_min_and_max_properties(name: str) -> None:
    manifest = mutated("Rollout", BAD_ROLLOUTS[name])
    schema = crd_schema("Rollout")
    pruned = apiserver_schema.prune(apiserver_schema.apply_defaults(manifest, schema), schema, root=True)
    assert apiserver_schema.validate(pruned, schema, root=True), "the emulator accepts it"
