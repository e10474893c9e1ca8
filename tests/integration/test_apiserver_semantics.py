"""API semantics clients rely on: conflicts, status subresource, generation, selectors, watches, GC, faults."""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import httpx
import kubernetes

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from apiserver_fixtures import ROLLOUT_CRD, ThreadedAPIServer, apiserver, rollout

__all__ = ["apiserver"]
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
ROLLOUTS = "/apis/siskin.dev/v1alpha1/namespaces/default/rollouts"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
MERGE = {"Content-Type": "application/merge-patch+json"}


def _client(server: ThreadedAPIServer) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=10)
    assert client.post(CRDS, json=ROLLOUT_CRD).status_code == 201
    return client


def _watch(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    with client.stream("GET", path, params={"watch": "true", "timeoutSeconds": "1", **params}) as response:
        return [json.loads(line) for line in response.iter_lines() if line.strip()]


def test_crd_is_discovered_and_established(apiserver: ThreadedAPIServer) -> None:
    client = _client(apiserver)
    resources = client.get("/apis/siskin.dev/v1alpha1").json()["resources"]
    assert {r["name"] for r in resources} == {"rollouts", "rollouts/status"}
    assert resources[0]["kind"] == "Rollout" and resources[0]["shortNames"] == ["ro"]
    crd = client.get(f"{CRDS}/rollouts.siskin.dev").json()
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]} == {
        "Established": "True", "NamesAccepted": "True"}
    assert crd["status"]["acceptedNames"]["listKind"] == "RolloutList"
    assert client.delete(f"{CRDS}/rollouts.siskin.dev").status_code == 200
    gone = client.get(ROLLOUTS)
    assert gone.status_code == 404 and gone.json()["reason"] == "NotFound"


def test_create_conflicts_and_stale_resource_versions(apiserver: ThreadedAPIServer) -> None:
    client = _client(apiserver)
    created = client.post(ROLLOUTS, json=rollout("a")).json()
    assert created["metadata"]["uid"] and created["metadata"]["creationTimestamp"]
    duplicate = client.post(ROLLOUTS, json=rollout("a"))
    assert duplicate.status_code == 409 and duplicate.json()["reason"] == "AlreadyExists"

    stale = dict(created, spec={**created["spec"], "replicas": 9})
    assert client.put(f"{ROLLOUTS}/a", json=stale).status_code == 200
    conflict = client.put(f"{ROLLOUTS}/a", json=stale)
    assert conflict.status_code == 409 and conflict.json()["reason"] == "Conflict"
    patch = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"replicas": 2}}
    assert client.patch(f"{ROLLOUTS}/a", json=patch, headers=MERGE).status_code == 409

    missing = client.get(f"{ROLLOUTS}/nope").json()
    assert missing["reason"] == "NotFound" and missing["details"] == {
        "name": "nope", "group": "siskin.dev", "kind": "rollouts"}
    assert client.get("/api/v1/namespaces/absent/configmaps/x").status_code == 404
    assert client.get("/apis/nothing.example/v1/things").status_code == 404


def test_status_subresource_isolation_and_generation(apiserver: ThreadedAPIServer) -> None:
    client = _client(apiserver)
    created = client.post(ROLLOUTS, json={**rollout("s"), "status": {"phase": "Ignored"}}).json()
    assert "status" not in created and created["metadata"]["generation"] == 1

    status = client.patch(f"{ROLLOUTS}/s/status", json={"spec": {"replicas": 50}, "status": {"phase": "Ready"}},
                          headers=MERGE).json()
    assert status["status"] == {"phase": "Ready"}
    assert status["spec"]["replicas"] == 3 and status["metadata"]["generation"] == 1

    main = client.patch(f"{ROLLOUTS}/s", json={"spec": {"replicas": 4}, "status": {"phase": "Hacked"}},
                        headers=MERGE).json()
    assert main["status"] == {"phase": "Ready"} and main["metadata"]["generation"] == 2
    labels = client.patch(f"{ROLLOUTS}/s", json={"metadata": {"labels": {"x": "y"}}}, headers=MERGE).json()
    assert labels["metadata"]["generation"] == 2
    assert int(labels["metadata"]["resourceVersion"]) > int(main["metadata"]["resourceVersion"])


def test_label_and_field_selectors(apiserver: ThreadedAPIServer) -> None:
    client = httpx.Client(base_url=apiserver.url, timeout=10)
    for name, labels in (("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "db", "env": "prod"}),
                         ("c", {"tier": "web"})):
        client.post(CONFIGMAPS, json={"metadata": {"name": name, "labels": labels}})

    def names(**params: str) -> list[str]:
        body = client.get(CONFIGMAPS, params=params).json()
        assert body["kind"] == "ConfigMapList" and body["metadata"]["resourceVersion"]
        return [item["metadata"]["name"] for item in body["items"]]

    assert names(labelSelector="tier=web") == ["a", "c"]
    assert names(labelSelector="tier==web,env=prod") == ["a"]
    assert names(labelSelector="tier!=web") == ["b"]
    assert names(labelSelector="tier in (db, web),env") == ["a", "b"]
    assert names(labelSelector="tier notin (web)") == ["b"]
    assert names(labelSelector="!env") == ["c"]
    assert names(fieldSelector="metadata.name=b") == ["b"]
    assert names(fieldSelector="metadata.namespace=default", labelSelector="env") == ["a", "b"]
    all_namespaces = client.get("/api/v1/configmaps").json()["items"]
    assert len(all_namespaces) == 3
    assert client.get(CONFIGMAPS, params={"labelSelector": "a in"}).status_code == 400


def test_watch_resumes_from_resource_version(apiserver: ThreadedAPIServer) -> None:
    client = _client(apiserver)
    client.post(ROLLOUTS, json=rollout("w1"))
    listed = client.get(ROLLOUTS).json()
    client.post(ROLLOUTS, json=rollout("w2"))
    client.patch(f"{ROLLOUTS}/w1", json={"spec": {"replicas": 8}}, headers=MERGE)
    client.delete(f"{ROLLOUTS}/w2")

    events = _watch(client, ROLLOUTS, resourceVersion=listed["metadata"]["resourceVersion"])
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w2")]
    initial = _watch(client, ROLLOUTS, labelSelector="app=w1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in initial] == [("ADDED", "w1")]

    apiserver.call(setattr, apiserver.emulator.store, "history_limit", 2)
    for index in range(4):
        client.post(CONFIGMAPS, json={"metadata": {"name": f"cm{index}"}})
    expired = _watch(client, ROLLOUTS, resourceVersion=listed["metadata"]["resourceVersion"])
    assert expired[0]["type"] == "ERROR" and expired[0]["object"]["code"] == 410


def test_finalizers_and_owner_garbage_collection(apiserver: ThreadedAPIServer) -> None:
    client = _client(apiserver)
    owner = client.post(ROLLOUTS, json={**rollout("owner"), "metadata": {
        "name": "owner", "finalizers": ["siskin.dev/cleanup"]}}).json()
    reference = {"apiVersion": "siskin.dev/v1alpha1", "kind": "Rollout", "name": "owner",
                 "uid": owner["metadata"]["uid"]}
    client.post(CONFIGMAPS, json={"metadata": {"name": "child", "ownerReferences": [reference]}})

    marked = client.request("DELETE", f"{ROLLOUTS}/owner", json={"propagationPolicy": "Background"}).json()
    assert marked["metadata"]["deletionTimestamp"]
    assert client.get(f"{ROLLOUTS}/owner").status_code == 200
    assert client.get(f"{CONFIGMAPS}/child").status_code == 200

    client.patch(f"{ROLLOUTS}/owner", json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert client.get(f"{ROLLOUTS}/owner").status_code == 404
    assert client.get(f"{CONFIGMAPS}/child").status_code == 404


def test_patch_content_types(apiserver: ThreadedAPIServer) -> None:
    client = _client(apiserver)
    client.post(ROLLOUTS, json=rollout("p", strategy="canary"))
    json_patch = [{"op": "replace", "path": "/spec/replicas", "value": 6},
                  {"op": "remove", "path": "/spec/strategy"}]
    patched = client.patch(f"{ROLLOUTS}/p", json=json_patch,
                           headers={"Content-Type": "application/json-patch+json"}).json()
    assert patched["spec"] == {"replicas": 6, "service": "p"}
    strategic = client.patch(f"{ROLLOUTS}/p", json={"spec": {"replicas": 1}},
                             headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert strategic.status_code == 415

    deployment = {"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "a:1"}, {"name": "sidecar", "image": "s:1"}]}}}}
    client.post("/apis/apps/v1/namespaces/default/deployments", json=deployment)
    smp = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a:2"}]}}}}
    merged = client.patch("/apis/apps/v1/namespaces/default/deployments/d", json=smp,
                          headers={"Content-Type": "application/strategic-merge-patch+json"}).json()
    assert [c["image"] for c in merged["spec"]["template"]["spec"]["containers"]] == ["a:2", "s:1"]


def test_injected_faults_fail_matching_requests(apiserver: ThreadedAPIServer) -> None:
    client = httpx.Client(base_url=apiserver.url, timeout=10)
    client.post(CONFIGMAPS, json={"metadata": {"name": "f"}})
    fault = apiserver.call(lambda: apiserver.emulator.inject_fault(method="PATCH", plural="configmaps",
                                                                   status=500, times=1))
    first = client.patch(f"{CONFIGMAPS}/f", json={"data": {"a": "1"}}, headers=MERGE)
    assert first.status_code == 500 and first.json()["kind"] == "Status"
    assert client.patch(f"{CONFIGMAPS}/f", json={"data": {"a": "1"}}, headers=MERGE).status_code == 200
    assert fault.hits == 1


def test_kubernetes_client_scale_and_watch(apiserver: ThreadedAPIServer) -> None:
    kubernetes.config.load_kube_config(str(apiserver.kubeconfig))
    apps = kubernetes.client.AppsV1Api()
    template = {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    apps.create_namespaced_deployment("default", {"metadata": {"name": "d", "labels": {"app": "d"}}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "d"}}, "template": template}})
    apps.patch_namespaced_deployment_scale("d", "default", {"spec": {"replicas": 5}})
    assert apps.read_namespaced_deployment_scale("d", "default").spec.replicas == 5
    assert apps.list_namespaced_deployment("default", label_selector="app=d").items[0].spec.replicas == 5
    watched = [(event["type"], event["object"].metadata.name) for event in kubernetes.watch.Watch().stream(
        apps.list_namespaced_deployment, "default", timeout_seconds=1)]
    assert watched == [("ADDED", "d")]
