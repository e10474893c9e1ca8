"""Object lifecycle rules of the API emulator: create, update, delete, finalizers, garbage collection.

All methods are synchronous: the emulator runs on one event loop, so each write
is atomic with respect to other requests and to watch streams.
"""

from __future__ import annotations

import copy
import datetime
import secrets
import uuid
from typing import Any

from siskin.sandbox import apiserver_errors as errors
from siskin.sandbox import apiserver_schema as schema
from siskin.sandbox.apiserver_resources import ResourceRegistry, ResourceType
from siskin.sandbox.apiserver_store import ObjectKey, ObjectStore

JsonDict = dict[str, Any]
CRD_GROUP = "apiextensions.k8s.io"
IMMUTABLE_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "generation", "name", "namespace")


def now_rfc3339() -> str:
    """The current time as Kubernetes writes timestamps (UTC, seconds, ``Z``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_key(resource_type: ResourceType, namespace: str | None, name: str) -> ObjectKey:
    """The storage key of an object (namespace ignored for cluster-scoped types)."""
    scoped_namespace = (namespace or "") if resource_type.namespaced else ""
    return (resource_type.group, resource_type.plural, scoped_namespace, name)


def _spec_content(obj: JsonDict, resource_type: ResourceType) -> JsonDict:
    """What counts for metadata.generation: everything but metadata (and status, if a subresource)."""
    ignored = {"metadata", "apiVersion", "kind"} | ({"status"} if resource_type.has_status else set())
    return {key: value for key, value in obj.items() if key not in ignored}


def _comparable(obj: JsonDict) -> JsonDict:
    result = dict(obj)
    result["metadata"] = {key: value for key, value in obj.get("metadata", {}).items()
                          if key not in ("resourceVersion", "managedFields")}
    return result


class ObjectWriter:
    """Applies writes to the store the way kube-apiserver (plus its controllers) would."""

    def __init__(self, registry: ResourceRegistry, store: ObjectStore) -> None:
        self.registry = registry
        self.store = store
        self._orphaning: set[str] = set()  # uids whose pending deletion asked to orphan dependents

    # -- create ---------------------------------------------------------------------------------

    def create(self, resource_type: ResourceType, namespace: str | None, body: JsonDict,
               strict_fields: bool = False, dry_run: bool = False) -> tuple[JsonDict, list[str]]:
        """Create an object; return it and the warnings (pruned unknown fields)."""
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        obj = copy.deepcopy(body)
        metadata: JsonDict = obj.setdefault("metadata", {})
        namespace = self._creation_namespace(resource_type, namespace, metadata)
        name = metadata.get("name") or self._generated_name(metadata)
        key = object_key(resource_type, namespace, name)
        if self.store.get(key) is not None:
            raise errors.already_exists(resource_type, name)
        if resource_type.has_status:
            obj.pop("status", None)
        obj["apiVersion"], obj["kind"] = resource_type.group_version, resource_type.kind
        obj, warnings = self._conform(resource_type, name, obj, strict_fields)
        metadata = obj["metadata"]
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            metadata.pop(field, None)
        metadata.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        if resource_type.namespaced:
            metadata["namespace"] = namespace
        self._builtin_defaults(resource_type, obj)
        if dry_run:
            metadata["resourceVersion"] = str(self.store.revision)
            return obj, warnings
        metadata["resourceVersion"] = self.store.next_revision()
        self.store.put(key, obj, "ADDED")
        self._after_write(resource_type, obj)
        return obj, warnings

    def _creation_namespace(self, resource_type: ResourceType, namespace: str | None,
                            metadata: JsonDict) -> str | None:
        if not resource_type.namespaced:
            metadata.pop("namespace", None)
            return None
        body_namespace = metadata.get("namespace")
        if namespace and body_namespace and body_namespace != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                     "on the request")
        namespace = namespace or body_namespace
        if not namespace:
            raise errors.bad_request("a namespace is required to create a namespaced object")
        self.require_namespace(namespace)
        return str(namespace)

    def require_namespace(self, namespace: str) -> None:
        """Raise 404 unless the namespace exists."""
        if self.store.get(("", "namespaces", "", namespace)) is None:
            raise errors.namespace_not_found(namespace)

    @staticmethod
    def _generated_name(metadata: JsonDict) -> str:
        prefix = metadata.get("generateName")
        if not prefix:
            raise errors.ApiError(status=422, reason="Invalid",
                                  message="metadata.name: Required value: name or generateName is required")
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        return str(prefix) + "".join(secrets.choice(alphabet) for _ in range(5))

    def _conform(self, resource_type: ResourceType, name: str, obj: JsonDict,
                 strict_fields: bool) -> tuple[JsonDict, list[str]]:
        """Default, prune and validate a custom resource against its CRD schema."""
        if resource_type.schema is None:
            return obj, []
        defaulted = schema.apply_defaults(obj, resource_type.schema)
        unknown: list[str] = []
        pruned = schema.prune(defaulted, resource_type.schema, unknown=unknown, root=True)
        if unknown and strict_fields:
            listing = ", ".join(f'unknown field "{path}"' for path in unknown)
            raise errors.bad_request(f"strict decoding error: {listing}")
        field_errors = schema.validate(pruned, resource_type.schema, root=True)
        if field_errors:
            raise errors.invalid(resource_type, name, field_errors)
        return pruned, [f'unknown field "{path}"' for path in unknown]

    def _builtin_defaults(self, resource_type: ResourceType, obj: JsonDict) -> None:
        if resource_type.kind == "Namespace":
            obj["status"] = {"phase": "Active"}
        elif resource_type.kind == "Service":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("clusterIP", f"10.96.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}")
        elif resource_type.kind == "Deployment":
            obj.setdefault("spec", {}).setdefault("replicas", 1)
        elif resource_type.kind == "CustomResourceDefinition":
            obj["status"] = self._crd_status(obj)

    @staticmethod
    def _crd_status(crd: JsonDict) -> JsonDict:
        spec = crd.get("spec", {})
        stamp = now_rfc3339()
        conditions = [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": stamp},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": stamp},
        ]
        names = dict(spec.get("names", {}))
        names.setdefault("singular", str(names.get("kind", "")).lower())
        names.setdefault("listKind", f"{names.get('kind', '')}List")
        return {"conditions": conditions, "acceptedNames": names,
                "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")]}

    def _after_write(self, resource_type: ResourceType, obj: JsonDict) -> None:
        if resource_type.group == CRD_GROUP and resource_type.plural == "customresourcedefinitions":
            self.registry.register_crd(obj["metadata"]["name"], obj)

    # -- update ---------------------------------------------------------------------------------

    def update(self, resource_type: ResourceType, current: JsonDict, candidate: Any, subresource: str | None,
               strict_fields: bool = False, dry_run: bool = False) -> tuple[JsonDict, list[str]]:
        """Replace an object (or only its status); enforce resourceVersion preconditions and generation."""
        if not isinstance(candidate, dict):
            raise errors.bad_request("the request body must be a JSON object")
        name = current["metadata"]["name"]
        wanted_version = (candidate.get("metadata") or {}).get("resourceVersion")
        if wanted_version and wanted_version != current["metadata"]["resourceVersion"]:
            raise errors.conflict(resource_type, name)
        new = self._merge_by_subresource(resource_type, current, candidate, subresource)
        new, warnings = self._conform(resource_type, name, new, strict_fields and subresource is None)
        if resource_type.kind == "CustomResourceDefinition":
            new["status"] = self._crd_status(new)
        if _comparable(new) == _comparable(current):
            return current, warnings  # a no-op write keeps the resourceVersion, like the real server
        if _spec_content(new, resource_type) != _spec_content(current, resource_type):
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if dry_run:
            return new, warnings
        key = object_key(resource_type, current["metadata"].get("namespace"), name)
        new["metadata"]["resourceVersion"] = self.store.next_revision()
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(resource_type, key, new)
            return new, warnings
        self.store.put(key, new, "MODIFIED")
        self._after_write(resource_type, new)
        return new, warnings

    @staticmethod
    def _merge_by_subresource(resource_type: ResourceType, current: JsonDict, candidate: JsonDict,
                              subresource: str | None) -> JsonDict:
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in candidate:
                new["status"] = copy.deepcopy(candidate["status"])
            else:
                new.pop("status", None)
            return new
        new = copy.deepcopy(candidate)
        new["apiVersion"], new["kind"] = resource_type.group_version, resource_type.kind
        metadata: JsonDict = new.setdefault("metadata", {})
        for field in IMMUTABLE_METADATA:
            if field in current["metadata"]:
                metadata[field] = current["metadata"][field]
            else:
                metadata.pop(field, None)
        if current["metadata"].get("deletionTimestamp"):
            # Once deleting, finalizers may only be removed, never added.
            metadata["finalizers"] = [f for f in metadata.get("finalizers") or []
                                      if f in (current["metadata"].get("finalizers") or [])]
        if resource_type.has_status:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        return new

    # -- delete ---------------------------------------------------------------------------------

    def delete(self, resource_type: ResourceType, current: JsonDict, options: JsonDict,
               dry_run: bool = False) -> JsonDict:
        """Delete an object: mark it if finalizers remain, else remove it and collect its dependents."""
        metadata = current["metadata"]
        preconditions = options.get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            if preconditions.get(field) and preconditions[field] != metadata.get(field):
                raise errors.conflict(resource_type, metadata["name"])
        if dry_run:
            return current
        if (options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents")) and metadata.get("uid"):
            self._orphaning.add(metadata["uid"])
        key = object_key(resource_type, metadata.get("namespace"), metadata["name"])
        if metadata.get("finalizers"):
            if metadata.get("deletionTimestamp"):
                return current
            marked = copy.deepcopy(current)
            marked["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0,
                                      resourceVersion=self.store.next_revision())
            self.store.put(key, marked, "MODIFIED")
            return marked
        final = copy.deepcopy(current)
        final["metadata"]["resourceVersion"] = self.store.next_revision()
        self._remove(resource_type, key, final)
        return final

    def _remove(self, resource_type: ResourceType, key: ObjectKey, final: JsonDict) -> None:
        self.store.remove(key, final)
        uid = final["metadata"].get("uid", "")
        if resource_type.kind == "CustomResourceDefinition":
            self._drop_custom_objects(final)
            self.registry.unregister_crd(final["metadata"]["name"])
        if resource_type.kind == "Namespace" and not resource_type.group:
            self._drop_namespace_content(final["metadata"]["name"])
        self._collect_dependents(uid, orphan=uid in self._orphaning)
        self._orphaning.discard(uid)

    def _drop_custom_objects(self, crd: JsonDict) -> None:
        spec = crd.get("spec", {})
        type_key = (spec.get("group", ""), spec.get("names", {}).get("plural", ""))
        for key, obj in list(self.store.objects.items()):
            if key[:2] == type_key:
                self._force_remove(key, obj)

    def _drop_namespace_content(self, namespace: str) -> None:
        for key, obj in list(self.store.objects.items()):
            if key[2] == namespace:
                self._force_remove(key, obj)

    def _force_remove(self, key: ObjectKey, obj: JsonDict) -> None:
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = self.store.next_revision()
        self.store.remove(key, final)

    def _collect_dependents(self, owner_uid: str, orphan: bool) -> None:
        """Background garbage collection: delete (or orphan) objects owned by a removed owner."""
        if not owner_uid:
            return
        for key, obj in list(self.store.objects.items()):
            references = obj["metadata"].get("ownerReferences") or []
            if not any(reference.get("uid") == owner_uid for reference in references):
                continue
            dependent_type = self._type_of(key, obj)
            if dependent_type is None or self.store.get(key) is not obj:
                continue
            if orphan:
                kept = [reference for reference in references if reference.get("uid") != owner_uid]
                orphaned = copy.deepcopy(obj)
                orphaned["metadata"]["ownerReferences"] = kept
                if not kept:
                    orphaned["metadata"].pop("ownerReferences")
                self.update(dependent_type, obj, orphaned, None)
            else:
                self.delete(dependent_type, obj, {})

    def _type_of(self, key: ObjectKey, obj: JsonDict) -> ResourceType | None:
        for resource_type in self.registry.all():
            if (resource_type.group, resource_type.plural) == key[:2]:
                return resource_type
        return self.registry.find_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
