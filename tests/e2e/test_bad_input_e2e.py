"""Bad input, end to end: what a user sees when a manifest, a template or Prometheus is wrong.

The API rejects what the CRD can rule out; the operator process reports what only it can
(unknown step kinds, missing templates) as an ``InvalidSpec`` condition and touches nothing;
an analysis that cannot measure errors and, past its limit, rolls the canary back — it never
passes. A broken Rollout does not stop the operator from serving the others.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e.sandbox_fixtures import (
    KUBECTL,
    NAMESPACE,
    RunningSandbox,
    condition,
    install_crds,
    revision_of,
    running_sandbox,
)
from siskin.operator.kube import SERVICES

from siskin import demo

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed"),
    pytest.mark.timeout(240),
]

VALID_STEP_KINDS = ("setWeight", "pause", "analysis")
REQUESTS_QUERY = ('sum by (track) (increase(http_requests_total{namespace="{{namespace}}",rollout="{{name}}",'
                  'track=~"canary|baseline"}[{{interval}}]))')
EVENTS_QUERY = ('sum by (track) (increase(http_requests_total{namespace="{{namespace}}",rollout="{{name}}",'
                'track=~"canary|baseline",code=~"5.."}[{{interval}}]))')


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The sandbox with the CRDs installed and the operator running."""
    with running_sandbox(tmp_path_factory.mktemp("bad-input-e2e")) as running:
        install_crds(running)
        running.start_operator()
        yield running


@pytest.fixture
def cleanup(cluster: RunningSandbox) -> Iterator[list[str]]:
    """Names of Rollouts a test created; deleted afterwards so each test starts with few Rollouts."""
    names: list[str] = []
    yield names
    if names:
        cluster.kubectl("delete", "rollouts", *names, "--ignore-not-found", "--wait=true", "--timeout=30s",
                        check=False)


def rollout(name: str, version: str = "v1", steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A small replica-ratio Rollout of the demo service."""
    return {
        "apiVersion": "siskin.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": f"ghcr.io/siskin-dev/demo-app:{version}",
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "VERSION", "value": version}, {"name": "ERROR_RATE", "value": "0.01"},
                            {"name": "LATENCY_MS", "value": "20"}],
                }]},
            },
            "service": {"name": name, "port": 80, "targetPort": 8080},
            "strategy": {"canary": {"steps": steps if steps is not None else [{"setWeight": 50},
                                                                               {"pause": {"duration": "2s"}}]}},
        },
    }


def with_version(manifest: dict[str, Any], version: str) -> dict[str, Any]:
    """The same small Rollout running another version (a template change starts a canary)."""
    return demo.with_version(manifest, version, {})


def analysis_steps(template: str) -> list[dict[str, Any]]:
    return [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": template}], "duration": "30s"}}]


def template(name: str, requests: str = REQUESTS_QUERY, address: str | None = None) -> dict[str, Any]:
    """A quick AnalysisTemplate (5s windows, rollback after two looks in a row that cannot measure)."""
    prometheus: dict[str, Any] = {"timeout": "3s"}
    if address is not None:
        prometheus["address"] = address
    return {
        "apiVersion": "siskin.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "provider": {"prometheus": prometheus},
            "interval": "5s",
            "minDuration": "10s",
            "metrics": [{"name": "errors", "errors": {"requests": requests, "events": EVENTS_QUERY},
                         "consecutiveErrorLimit": 1}],
        },
    }


def make_stable(cluster: RunningSandbox, manifest: dict[str, Any]) -> str:
    """Apply a first revision and wait until it is stable; its revision."""
    cluster.apply(manifest)
    name = manifest["metadata"]["name"]
    status = cluster.wait_for_status(name, lambda s: s.get("phase") == "Healthy" and bool(s.get("stableRevision")),
                                     60, f"{name} v1 to become stable")
    return str(status["stableRevision"])


def invalid_spec(status: dict[str, Any]) -> bool:
    found = condition(status, "InvalidSpec")
    return found is not None and found["status"] == "True"


def deployments_of(cluster: RunningSandbox, name: str) -> dict[str, dict[str, Any]]:
    """The Rollout's track Deployments that exist, by track."""
    found = {track: cluster.deployment(f"{name}-{track}") for track in ("stable", "canary", "baseline")}
    return {track: body for track, body in found.items() if body is not None}




# --------------------------------------------------------------------------- rejected by the API


def test_weight_over_100_is_rejected_by_the_api(cluster: RunningSandbox) -> None:
    manifest = rollout("too-heavy", steps=[{"setWeight": 150}])
    result = cluster.apply(manifest, check=False)
    printed = result.stdout + result.stderr
    assert result.returncode != 0, printed
    assert "spec.strategy.canary.steps[0].setWeight" in printed
    assert "150" in printed
    assert cluster.rollout("too-heavy") == {}, "a rejected Rollout must not be stored"


# --------------------------------------------------------------------------- named by the operator


def test_unknown_step_kind_is_named_and_touches_nothing(cluster: RunningSandbox, cleanup: list[str]) -> None:
    cleanup.extend(["typo-new"])
    manifest = rollout("typo-new", steps=[{"setWieght": 20}])
    cluster.apply(manifest)

    status = cluster.wait_for_status("typo-new", invalid_spec, 30, "an InvalidSpec condition")
    message = str(condition(status, "InvalidSpec")["message"])  # type: ignore[index]
    assert "spec.strategy.canary.steps[0]" in message
    assert "setWieght" in message
    assert all(kind in message for kind in VALID_STEP_KINDS), message
    assert status["phase"] == "Degraded"
    assert "setWieght" in status.get("message", "")
    time.sleep(3)  # a few reconcile ticks: still nothing may appear
    assert deployments_of(cluster, "typo-new") == {}
    assert cluster.kube.get(SERVICES, NAMESPACE, "typo-new") is None, "no Service may be created for it"
    warnings = [e for e in cluster.events("typo-new") if e.get("type") == "Warning"]
    assert any(e.get("reason") == "InvalidSpec" and "setWieght" in e.get("message", "") for e in warnings)


def test_unknown_step_with_a_new_template_keeps_stable_serving(cluster: RunningSandbox, cleanup: list[str]) -> None:
    cleanup.extend(["typo-stable"])
    manifest = rollout("typo-stable")
    stable_revision = make_stable(cluster, manifest)
    changed = with_version(manifest, "v2")
    changed["spec"]["strategy"]["canary"]["steps"] = [{"setWieght": 20}, {"pause": {"duration": "2s"}}]
    cluster.apply(changed)

    status = cluster.wait_for_status("typo-stable", invalid_spec, 30, "an InvalidSpec condition")
    message = str(condition(status, "InvalidSpec")["message"])  # type: ignore[index]
    assert "steps[0]" in message and "setWieght" in message, message
    assert status["phase"] == "Degraded"
    time.sleep(3)
    status = cluster.status("typo-stable")
    assert status["stableRevision"] == stable_revision
    assert not status.get("canaryRevision"), status
    tracks = deployments_of(cluster, "typo-stable")
    assert set(tracks) <= {"stable", "baseline"} or tracks["canary"]["spec"]["replicas"] == 0, tracks
    stable = tracks["stable"]
    assert stable["spec"]["template"]["metadata"]["labels"]["siskin.dev/revision"] == stable_revision
    assert stable["spec"]["replicas"] == 2
    assert int((stable.get("status") or {}).get("readyReplicas", 0)) == 2
    assert "baseline" not in tracks or tracks["baseline"]["spec"]["replicas"] == 0


def test_missing_template_is_named_and_fixing_it_lets_the_rollout_proceed(cluster: RunningSandbox,
                                                                           cleanup: list[str]) -> None:
    cleanup.extend(["orphan"])
    manifest = rollout("orphan", steps=analysis_steps("orphan-red"))
    cluster.apply(manifest)

    status = cluster.wait_for_status("orphan", invalid_spec, 30, "an InvalidSpec condition")
    message = str(condition(status, "InvalidSpec")["message"])  # type: ignore[index]
    assert "templateName" in message and "orphan-red" in message, message
    assert "not found" in message
    assert status["phase"] == "Degraded"

    cluster.apply(template("orphan-red"))
    status = cluster.wait_for_status("orphan", lambda s: not invalid_spec(s) and s.get("phase") == "Healthy",
                                     60, "the rollout to proceed once the template exists")
    assert status["stableRevision"] == revision_of(manifest)
    cleared = condition(status, "InvalidSpec")
    assert cleared is None or cleared["status"] == "False", cleared
    assert deployments_of(cluster, "orphan")["stable"]["spec"]["replicas"] == 2


# --------------------------------------------------------------------------- analyses that cannot measure








def held_before_traffic(cluster: RunningSandbox, name: str, stable_revision: str) -> dict[str, Any]:
    """Wait until the new revision is held by the query check; assert nothing moved to the canary."""
    status = cluster.wait_for_status(
        name, lambda s: (condition(s, "AnalysisError") or {}).get("status") == "True", 60,
        f"{name}: the analysis queries to be refused before traffic moves")
    assert status["phase"] == "Degraded", status
    assert status.get("canaryWeight", 0) == 0, status
    assert status.get("stableRevision") == stable_revision
    assert cluster.replicas(f"{name}-canary") == 0 and cluster.replicas(f"{name}-baseline") == 0
    assert "stepAnalysis" not in status, status  # no analysis ran, so nothing could pass
    warnings = [e for e in cluster.events(name) if e.get("type") == "Warning" and e.get("reason") == "AnalysisError"]
    assert warnings, cluster.events(name)
    return status


def test_broken_promql_holds_the_canary_without_traffic_until_fixed(cluster: RunningSandbox,
                                                                    cleanup: list[str]) -> None:
    cleanup.extend(["badquery"])
    broken = REQUESTS_QUERY.removesuffix(")")  # an unclosed parenthesis
    cluster.apply(template("broken-query", requests=broken))
    manifest = rollout("badquery", steps=analysis_steps("broken-query"))
    stable_revision = make_stable(cluster, manifest)
    cluster.add_load(f"Service {NAMESPACE}/badquery", rps=50, duration_s=120)
    cluster.apply(with_version(manifest, "v2"))

    status = held_before_traffic(cluster, "badquery", stable_revision)
    message = condition(status, "AnalysisError")["message"]  # type: ignore[index]
    # Prometheus' own words, with the metric and the query that failed.
    assert "parse error" in message and "bad_data" in message, message
    assert "metric errors (requests query)" in message, message

    cluster.apply(template("broken-query"))  # fixed
    fixed = cluster.wait_for_status("badquery", lambda s: s.get("canaryWeight") == 50, 60,
                                    "badquery to move traffic once the query is fixed")
    assert condition(fixed, "AnalysisError") is None, fixed["conditions"]


def test_unreachable_prometheus_holds_the_canary_without_traffic(cluster: RunningSandbox,
                                                                 cleanup: list[str]) -> None:
    cleanup.extend(["noprom"])
    cluster.apply(template("nowhere", address="http://127.0.0.1:1"))
    manifest = rollout("noprom", steps=analysis_steps("nowhere"))
    stable_revision = make_stable(cluster, manifest)
    cluster.apply(with_version(manifest, "v2"))

    status = held_before_traffic(cluster, "noprom", stable_revision)
    message = condition(status, "AnalysisError")["message"]  # type: ignore[index]
    assert "127.0.0.1:1" in message and "no traffic" in message, message
    assert not [h for h in status.get("history") or [] if h.get("outcome") == "Promoted"
                and h.get("revision") != stable_revision]


def test_a_healthy_rollout_progresses_while_another_is_broken(cluster: RunningSandbox, cleanup: list[str]) -> None:
    cleanup.extend(["still-broken", "healthy"])
    broken = rollout("still-broken", steps=[{"setWieght": 20}])
    cluster.apply(broken)
    cluster.wait_for_status("still-broken", invalid_spec, 30, "the broken Rollout's InvalidSpec condition")

    manifest = rollout("healthy")
    make_stable(cluster, manifest)
    changed = with_version(manifest, "v2")
    revision = revision_of(changed)
    cluster.apply(changed)
    status = cluster.wait_for_status(
        "healthy", lambda s: any(h.get("revision") == revision and h.get("outcome") == "Promoted"
                                 for h in s.get("history") or []), 60, "the healthy Rollout to be promoted")
    assert status["stableRevision"] == revision
    assert invalid_spec(cluster.status("still-broken")), "the broken Rollout must stay reported as broken"
    assert deployments_of(cluster, "still-broken") == {}


def sync_handler_workers() -> int:
    """Threads in Kopf's executor for sync handlers: Python's ThreadPoolExecutor default on this machine."""
    return min(32, (os.cpu_count() or 1) + 4)


def test_the_operator_serves_more_rollouts_than_it_has_worker_threads(cluster: RunningSandbox,
                                                                       cleanup: list[str]) -> None:
    names = [f"many-{index}" for index in range(sync_handler_workers() + 1)]
    # More Rollouts than Kopf has threads for sync handlers: each loop may hold a thread only per pass.
    cleanup.extend(names)
    manifests = []
    for name in names:
        manifest = rollout(name)
        manifest["spec"]["replicas"] = 1
        manifests.append(manifest)
    cluster.apply(*manifests)

    def all_stable() -> bool:
        return all(cluster.status(name).get("stableRevision") for name in names)

    try:
        cluster.wait_for(all_stable, 25, f"all {len(names)} Rollouts to be deployed", interval_s=1)
    except AssertionError:
        never = [name for name in names if not cluster.status(name)]
        raise AssertionError(f"Rollouts never reconciled: {never}") from None
