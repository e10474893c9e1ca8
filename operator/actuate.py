"""Carry out the decision core's actions against the Kubernetes API, idempotently.

Each function reads the object, compares it with what is wanted and writes only
the difference, so applying the same action twice changes nothing the second time.
Templates are compared by their revision label (a hash of the user's template),
never field by field: a real API server adds defaults to pod templates.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Any

from siskin.operator.actions import Action, EnsureServices, EnsureWorkload, RecordEvent, SetTraffic
from siskin.operator.kube import DEPLOYMENTS, EVENTS, SERVICES, KubeAPI
from siskin.operator.model import GROUP, KIND, TRACKS, VERSION, RolloutSpec, Track
from siskin.operator.naming import LABEL_REVISION, LABEL_ROLLOUT, LABEL_TRACK, deployment_name, service_name
from siskin.operator.traffic import router_for
from siskin.operator.traffic.base import RolloutRef

log = logging.getLogger(__name__)

MANAGED_BY = {"app.kubernetes.io/managed-by": "siskin"}


@dataclass(frozen=True)
class Owner:
    """The Rollout that owns what the actions create."""

    namespace: str
    name: str
    uid: str
    spec: RolloutSpec

    def reference(self) -> dict[str, Any]:
        """An ownerReference so that deleting the Rollout deletes its Deployments and Services."""
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}


def apply_actions(kube: KubeAPI, owner: Owner, actions: list[Action]) -> None:
    """Apply actions in order."""
    for action in actions:
        if isinstance(action, EnsureWorkload):
            ensure_workload(kube, owner, action)
        elif isinstance(action, EnsureServices):
            ensure_services(kube, owner)
        elif isinstance(action, SetTraffic):
            router_for(owner.spec).set_weights(kube, RolloutRef(owner.namespace, owner.name, owner.spec), action.plan)
        elif isinstance(action, RecordEvent):
            record_event(kube, owner.namespace, owner.name, owner.uid, action)


def track_labels(owner: Owner, track: Track) -> dict[str, str]:
    """Labels that select one track's pods."""
    return {**owner.spec.selector.match_labels, LABEL_ROLLOUT: owner.name, LABEL_TRACK: track}


def desired_deployment(owner: Owner, action: EnsureWorkload) -> dict[str, Any]:
    """The Deployment one track should be."""
    template = dict(action.template)
    metadata = dict(template.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **track_labels(owner, action.track),
                          LABEL_REVISION: action.revision}
    template["metadata"] = metadata
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(owner.name, action.track),
            "namespace": owner.namespace,
            "labels": {**MANAGED_BY, LABEL_ROLLOUT: owner.name, LABEL_TRACK: action.track},
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "replicas": action.replicas,
            "selector": {"matchLabels": track_labels(owner, action.track)},
            "template": template,
        },
    }


def ensure_workload(kube: KubeAPI, owner: Owner, action: EnsureWorkload) -> None:
    """Create the track's Deployment, or update its template and size when they differ."""
    name = deployment_name(owner.name, action.track)
    existing = kube.get(DEPLOYMENTS, owner.namespace, name)
    if existing is None:
        if action.replicas == 0:
            return  # nothing to scale down
        kube.create(DEPLOYMENTS, owner.namespace, desired_deployment(owner, action))
        log.info("created Deployment %s/%s (%s, %d pods)", owner.namespace, name, action.revision, action.replicas)
        return
    spec = existing.get("spec", {})
    labels = spec.get("template", {}).get("metadata", {}).get("labels") or {}
    same_template = labels.get(LABEL_REVISION) == action.revision
    if action.replicas == 0 and spec.get("replicas", 1) == 0:
        return  # scaled down; the template of a scaled-down track does not matter
    if same_template and spec.get("replicas") == action.replicas:
        return
    wanted = desired_deployment(owner, action)
    if same_template:
        kube.patch(DEPLOYMENTS, owner.namespace, name, {"spec": {"replicas": action.replicas}})
    else:
        body = {**existing, "spec": {**spec, **wanted["spec"]}}
        kube.replace(DEPLOYMENTS, owner.namespace, name, body)
    log.info("updated Deployment %s/%s (%s, %d pods)", owner.namespace, name, action.revision, action.replicas)


def desired_services(owner: Owner) -> list[dict[str, Any]]:
    """The main Service (all pods) and one Service per track."""
    port = owner.spec.service
    ports = [{"name": "http", "port": port.port, "targetPort": port.target_port, "protocol": "TCP"}]
    main_selector = {**owner.spec.selector.match_labels, LABEL_ROLLOUT: owner.name}
    services = [(owner.spec.service.name, main_selector)]
    services += [(service_name(owner.spec, track), track_labels(owner, track)) for track in TRACKS]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": owner.namespace,
                         "labels": {**MANAGED_BY, LABEL_ROLLOUT: owner.name}, "ownerReferences": [owner.reference()]},
            "spec": {"selector": selector, "ports": ports},
        }
        for name, selector in services
    ]


def ensure_services(kube: KubeAPI, owner: Owner) -> None:
    """Create missing Services; fix selectors and ports that drifted."""
    for wanted in desired_services(owner):
        name = wanted["metadata"]["name"]
        existing = kube.get(SERVICES, owner.namespace, name)
        if existing is None:
            kube.create(SERVICES, owner.namespace, wanted)
            continue
        spec = existing.get("spec", {})
        ports = [{k: p.get(k) for k in ("name", "port", "targetPort", "protocol")} for p in spec.get("ports") or []]
        if spec.get("selector") != wanted["spec"]["selector"] or ports != wanted["spec"]["ports"]:
            kube.patch(SERVICES, owner.namespace, name, {"spec": wanted["spec"]})


def record_event(kube: KubeAPI, namespace: str, name: str, uid: str, action: RecordEvent) -> None:
    """A core/v1 Event on the Rollout (``kubectl describe rollout`` and ``kubectl get events`` show it)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kube.create(EVENTS, namespace, {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": name,
                           "namespace": namespace, "uid": uid},
        "reason": action.reason,
        "message": action.message[:1024],
        "type": action.type,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": {"component": "siskin"},
        "reportingComponent": "siskin",
    })
