"""Resource types known to the API emulator and the discovery documents built from them.

Built-in types are declared here; custom types are derived from stored
CustomResourceDefinitions, so discovery changes the moment a CRD is created or deleted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

JsonDict = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """One served group/version/plural with what discovery, tables and validation need."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    scale_paths: JsonDict | None = None  # specReplicasPath, statusReplicasPath, labelSelectorPath
    printer_columns: tuple[JsonDict, ...] = ()
    schema: JsonDict | None = None  # openAPIV3Schema for custom resources
    from_crd: bool = False

    @property
    def group_version(self) -> str:
        """The apiVersion of objects of this type, e.g. ``apps/v1`` or ``v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        """The kind of list responses, e.g. ``DeploymentList``."""
        return f"{self.kind}List"

    @property
    def qualified_kind(self) -> str:
        """The kind as the real server names it in error messages, e.g. ``Rollout.siskin.dev``."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def qualified_resource(self) -> str:
        """The resource as named in NotFound messages, e.g. ``rollouts.siskin.dev``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def base_path(self, namespace: str | None) -> str:
        """The collection URL path of this type in a namespace (or cluster-wide)."""
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def discovery_entries(self) -> list[JsonDict]:
        """APIResource entries for an APIResourceList (the resource and its subresources)."""
        main: JsonDict = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        entries = [main]
        if self.has_status:
            entries.append({"name": f"{self.plural}/status", "singularName": "", "namespaced": self.namespaced,
                            "kind": self.kind, "verbs": list(SUBRESOURCE_VERBS)})
        if self.scale_paths is not None:
            entries.append({"name": f"{self.plural}/scale", "singularName": "", "namespaced": self.namespaced,
                            "group": "autoscaling", "version": "v1", "kind": "Scale",
                            "verbs": list(SUBRESOURCE_VERBS)})
        return entries


def _builtin(group: str, version: str, plural: str, kind: str, namespaced: bool = True,
             **extra: Any) -> ResourceType:
    return ResourceType(group=group, version=version, plural=plural, singular=kind.lower(), kind=kind,
                        namespaced=namespaced, **extra)


DEPLOYMENT_SCALE_PATHS: JsonDict = {
    "specReplicasPath": ".spec.replicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.selector",
}

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",), has_status=True),
    _builtin("", "v1", "services", "Service", short_names=("svc",), categories=("all",), has_status=True),
    _builtin("", "v1", "events", "Event", short_names=("ev",)),
    _builtin("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    _builtin("", "v1", "secrets", "Secret"),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _builtin("", "v1", "pods", "Pod", short_names=("po",), categories=("all",), has_status=True),
    _builtin("apps", "v1", "deployments", "Deployment", short_names=("deploy",), categories=("all",),
             has_status=True, scale_paths=DEPLOYMENT_SCALE_PATHS),
    _builtin("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), categories=("all",),
             has_status=True),
    _builtin("events.k8s.io", "v1", "events", "Event", short_names=("ev",)),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    _builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False, short_names=("crd", "crds"), categories=("api-extensions",), has_status=True),
)


def types_from_crd(crd: JsonDict) -> list[ResourceType]:
    """Derive the served resource types (one per served version) from a CRD object."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    plural = names.get("plural", "")
    kind = names.get("kind", "")
    result: list[ResourceType] = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        scale = subresources.get("scale")
        result.append(ResourceType(
            group=spec.get("group", ""),
            version=version.get("name", ""),
            plural=plural,
            singular=names.get("singular") or kind.lower(),
            kind=kind,
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            has_status="status" in subresources,
            scale_paths=dict(scale) if isinstance(scale, dict) else None,
            printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            from_crd=True,
        ))
    return result


class ResourceRegistry:
    """The set of served resource types, keyed by (group, version, plural)."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_keys: dict[str, list[tuple[str, str, str]]] = {}
        for resource_type in BUILTIN_TYPES:
            self._types[(resource_type.group, resource_type.version, resource_type.plural)] = resource_type

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The served type for a URL's group/version/plural, or None."""
        return self._types.get((group, version, plural))

    def find_kind(self, api_version: str, kind: str) -> ResourceType | None:
        """The served type for an apiVersion and kind (as written in manifests), or None."""
        for resource_type in self._types.values():
            if resource_type.group_version == api_version and resource_type.kind == kind:
                return resource_type
        return None

    def all(self) -> list[ResourceType]:
        """All served types."""
        return list(self._types.values())

    def register_crd(self, crd_name: str, crd: JsonDict) -> None:
        """Serve (or re-serve, after an update) the resource types defined by a CRD."""
        self.unregister_crd(crd_name)
        keys: list[tuple[str, str, str]] = []
        for resource_type in types_from_crd(crd):
            key = (resource_type.group, resource_type.version, resource_type.plural)
            self._types[key] = resource_type
            keys.append(key)
        self._crd_keys[crd_name] = keys

    def unregister_crd(self, crd_name: str) -> None:
        """Stop serving the resource types of a deleted CRD."""
        for key in self._crd_keys.pop(crd_name, []):
            self._types.pop(key, None)

    def group_versions(self, group: str) -> list[str]:
        """The served versions of a group, preferred (first declared) first."""
        versions: list[str] = []
        for resource_type in self._types.values():
            if resource_type.group == group and resource_type.version not in versions:
                versions.append(resource_type.version)
        return versions

    def groups(self) -> list[str]:
        """All served non-core API groups."""
        names: list[str] = []
        for resource_type in self._types.values():
            if resource_type.group and resource_type.group not in names:
                names.append(resource_type.group)
        return names

    def api_group(self, group: str) -> JsonDict:
        """An APIGroup discovery document (without apiVersion/kind)."""
        versions = [{"groupVersion": f"{group}/{version}", "version": version}
                    for version in self.group_versions(group)]
        return {"name": group, "versions": versions, "preferredVersion": versions[0]}

    def api_group_list(self) -> JsonDict:
        """The /apis discovery document."""
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self.api_group(group) for group in self.groups()]}

    def api_resource_list(self, group: str, version: str) -> JsonDict | None:
        """The /apis/<group>/<version> (or /api/v1) discovery document, None if not served."""
        served = [t for t in self._types.values() if t.group == group and t.version == version]
        if not served:
            return None
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [entry for t in served for entry in t.discovery_entries()],
        }
