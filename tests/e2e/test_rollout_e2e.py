"""The main job, end to end: the operator process promotes a healthy version and rolls back a bad one.

Everything is real except the cluster: the sandbox's API emulator, one demo HTTP service process
per pod, a real Prometheus scraping them, a load generator following the HTTPRoute's weights,
the user's ``kubectl`` applying ``crds/`` and ``examples/``, and ``python -m siskin operator``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from e2e.sandbox_fixtures import (
    KUBECTL,
    NAMESPACE,
    RunningSandbox,
    condition,
    install_crds,
    revision_of,
    running_sandbox,
)

from siskin.demo import packaged, with_version

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed"),
    pytest.mark.timeout(240),
]

ROLLOUT = "podinfo"
ROUTE = "podinfo"
ROLLOUT_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The sandbox with the CRDs, the operator, the examples applied, load on the route and v1 stable."""
    with running_sandbox(tmp_path_factory.mktemp("rollout-e2e")) as running:
        install_crds(running)
        running.start_operator()
        running.kubectl("apply", "-f", str(packaged("siskin.examples", "analysistemplate.yaml")),
                        "-f", str(packaged("siskin.examples", "httproute.yaml")),
                        "-f", str(packaged("siskin.examples", "rollout.yaml")))
        running.add_load(f"HTTPRoute {NAMESPACE}/{ROUTE}", rps=300, duration_s=600)
        running.wait_for_status(ROLLOUT, lambda s: s.get("phase") == "Healthy" and bool(s.get("stableRevision")),
                                90, "v1 to become stable")
        yield running


def example_rollout(version: str, environment: dict[str, str]) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(packaged("siskin.examples", "rollout.yaml").read_text())
    return with_version(manifest, version, environment)


def finished(revision: str) -> Any:
    """A status predicate: the revision has a Promoted or RolledBack history entry."""
    def predicate(status: dict[str, Any]) -> bool:
        return any(h.get("revision") == revision and h.get("outcome") in ("Promoted", "RolledBack")
                   for h in status.get("history") or [])
    return predicate


def outcome_of(status: dict[str, Any], revision: str) -> dict[str, Any]:
    return next(h for h in reversed(status["history"]) if h.get("revision") == revision
                and h.get("outcome") in ("Promoted", "RolledBack"))


def settled(cluster: RunningSandbox) -> dict[str, Any] | None:
    """Traffic all on stable and canary/baseline at zero pods (the operator moves traffic, then pods)."""
    weights = cluster.route_weights(ROUTE)
    replicas = {track: cluster.replicas(f"{ROLLOUT}-{track}") for track in ("canary", "baseline")}
    if weights.get(f"{ROUTE}-canary", 0) == 0 and not any(replicas.values()):
        return {"weights": weights, "replicas": replicas}
    return None


def test_healthy_version_is_promoted(cluster: RunningSandbox) -> None:
    manifest = example_rollout("v2", {"ERROR_RATE": "0.02", "LATENCY_MS": "40"})
    revision = revision_of(manifest)
    before = cluster.status(ROLLOUT)["stableRevision"]
    assert revision != before

    cluster.apply(manifest)
    status = cluster.wait_for_status(ROLLOUT, finished(revision), ROLLOUT_TIMEOUT_S, "v2 to finish")

    entry = outcome_of(status, revision)
    assert entry["outcome"] == "Promoted", f"v2 was not promoted: {entry}; status: {status}"
    cluster.wait_for(lambda: settled(cluster), 20, "traffic and pods to settle after the promotion")
    status = cluster.status(ROLLOUT)
    assert status["phase"] == "Healthy"
    assert status["stableRevision"] == revision
    assert status.get("canaryWeight", 0) == 0
    ready = condition(status, "Ready")
    assert ready is not None and ready["status"] == "True", status.get("conditions")

    stable = cluster.deployment(f"{ROLLOUT}-stable")
    assert stable is not None
    pod_template = stable["spec"]["template"]
    assert pod_template["metadata"]["labels"]["siskin.dev/revision"] == revision
    container = pod_template["spec"]["containers"][0]
    assert container["image"].endswith(":v2")
    assert {"name": "VERSION", "value": "v2"} in container["env"]
    assert stable["spec"]["replicas"] == manifest["spec"]["replicas"]
    assert int((stable.get("status") or {}).get("readyReplicas", 0)) == manifest["spec"]["replicas"]

    weights = cluster.route_weights(ROUTE)
    assert weights.get(f"{ROUTE}-canary", 0) == 0, weights
    assert weights.get(f"{ROUTE}-stable") == 100, weights
    assert cluster.replicas(f"{ROLLOUT}-canary") == 0
    assert cluster.replicas(f"{ROLLOUT}-baseline") == 0
    promoted = [e for e in cluster.events(ROLLOUT) if e.get("reason") == "RolloutPromoted"]
    assert promoted and revision in promoted[-1]["message"]


def test_bad_version_is_rolled_back(cluster: RunningSandbox) -> None:
    stable_before = cluster.status(ROLLOUT)["stableRevision"]
    manifest = example_rollout("v3", {"ERROR_RATE": "0.07", "LATENCY_MS": "140"})
    revision = revision_of(manifest)

    cluster.apply(manifest)
    status = cluster.wait_for_status(ROLLOUT, finished(revision), ROLLOUT_TIMEOUT_S, "v3 to finish")

    entry = outcome_of(status, revision)
    assert entry["outcome"] == "RolledBack", f"v3 was not rolled back: {entry}; status: {status}"
    cluster.wait_for(lambda: settled(cluster), 20, "traffic and pods to settle after the rollback")
    status = cluster.status(ROLLOUT)
    assert status["phase"] == "Degraded"
    assert status["stableRevision"] == stable_before, "a rolled back version must not become stable"
    assert status.get("abortedRevision") == revision
    degraded = condition(status, "Degraded")
    assert degraded is not None and degraded["status"] == "True", status.get("conditions")
    assert degraded["reason"] == "AnalysisFailed", degraded
    failing = [name for name in ("errors", "latency") if f"{name}:" in degraded["message"]]
    assert failing, f"the Degraded message names no failing metric: {degraded['message']!r}"
    assert any(name in (status.get("abortReason") or "") for name in failing)

    weights = cluster.route_weights(ROUTE)
    assert weights.get(f"{ROUTE}-canary", 0) == 0, weights
    assert weights.get(f"{ROUTE}-stable") == 100, weights
    assert cluster.replicas(f"{ROLLOUT}-canary") == 0
    assert cluster.replicas(f"{ROLLOUT}-baseline") == 0
    stable = cluster.deployment(f"{ROLLOUT}-stable")
    assert stable is not None
    assert stable["spec"]["template"]["metadata"]["labels"]["siskin.dev/revision"] == stable_before
    assert stable["spec"]["replicas"] == manifest["spec"]["replicas"]

    warnings = [e for e in cluster.events(ROLLOUT)
                if e.get("type") == "Warning" and e.get("reason") == "AnalysisFailed"]
    assert warnings, [(e.get("type"), e.get("reason")) for e in cluster.events(ROLLOUT)]
    assert revision in warnings[-1]["message"]
    assert any(name in warnings[-1]["message"] for name in failing)


def test_kubectl_shows_the_phase(cluster: RunningSandbox) -> None:
    """``kubectl get rollouts`` prints the phase the status holds."""
    output = cluster.kubectl("get", "rollouts", ROLLOUT).stdout
    header, row = output.splitlines()[:2]
    assert header.split()[:2] == ["NAME", "PHASE"], header
    assert row.split()[:2] == [ROLLOUT, cluster.status(ROLLOUT)["phase"]], output


def test_kubectl_shows_step_weight_and_verdict(cluster: RunningSandbox) -> None:
    """The printer columns a user reads: PHASE, STEP, WEIGHT, VERDICT, AGE."""
    header = cluster.kubectl("get", "rollouts", ROLLOUT).stdout.splitlines()[0]
    assert header.split() == ["NAME", "PHASE", "STEP", "WEIGHT", "VERDICT", "AGE"]


def test_deleting_the_rollout_leaves_the_route_on_stable_and_removes_what_it_owned(cluster: RunningSandbox) -> None:
    """Runs last in this module: the Rollout goes, its route no longer names canary or baseline."""
    cluster.kubectl("delete", "rollout", ROLLOUT, "--wait=true", "--timeout=60s")
    weights = cluster.wait_for(
        lambda: cluster.route_weights(ROLLOUT) if f"{ROLLOUT}-canary" not in cluster.route_weights(ROLLOUT) else None,
        30, "the HTTPRoute to drop the canary backend")
    assert weights == {f"{ROLLOUT}-stable": 100}
    cluster.wait_for(lambda: all(cluster.deployment(f"{ROLLOUT}-{track}") is None
                                 for track in ("stable", "canary", "baseline")) or None,
                     30, "the Rollout's Deployments to be deleted")
