"""The OpenAPI v3 documents kubectl downloads before apply/create.

kubectl looks for the ``fieldValidation`` query parameter on the PATCH operation
of a kind; when it is there, kubectl leaves validation to the server (which this
emulator does with the CRD schemas) instead of downloading the protobuf v2 spec.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from siskin.sandbox.apiserver_resources import ResourceRegistry, ResourceType

JsonDict = dict[str, Any]

_QUERY_PARAMETERS = ("fieldValidation", "fieldManager", "dryRun", "force")


def _group_version_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _served_group_versions(registry: ResourceRegistry) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for resource_type in registry.all():
        pair = (resource_type.group, resource_type.version)
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def openapi_v3_root(registry: ResourceRegistry) -> JsonDict:
    """The /openapi/v3 index: one entry per served group-version, with a content hash."""
    paths: JsonDict = {}
    for group, version in _served_group_versions(registry):
        document = openapi_v3_group_version(registry, group, version)
        digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32].upper()
        relative = _group_version_path(group, version)
        paths[relative] = {"serverRelativeURL": f"/openapi/v3/{relative}?hash={digest}"}
    return {"paths": paths}


def _schema_name(resource_type: ResourceType) -> str:
    reversed_group = ".".join(reversed(resource_type.group.split("."))) if resource_type.group else "io.k8s.api.core"
    return f"{reversed_group}.{resource_type.version}.{resource_type.kind}"


def _operation(resource_type: ResourceType, action: str) -> JsonDict:
    return {
        "operationId": f"{action}{resource_type.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": resource_type.group, "version": resource_type.version,
                                            "kind": resource_type.kind},
        "parameters": [{"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                       for name in _QUERY_PARAMETERS],
        "responses": {"200": {"description": "OK", "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{_schema_name(resource_type)}"}}}}},
    }


def openapi_v3_group_version(registry: ResourceRegistry, group: str, version: str) -> JsonDict:
    """The OpenAPI v3 document of one group-version: item paths with GVK-tagged operations."""
    paths: JsonDict = {}
    schemas: JsonDict = {}
    for resource_type in registry.all():
        if (resource_type.group, resource_type.version) != (group, version):
            continue
        item_path = resource_type.base_path("{namespace}") + "/{name}"
        collection_path = resource_type.base_path("{namespace}")
        paths[item_path] = {action: _operation(resource_type, verb) for action, verb in
                            (("get", "get"), ("put", "put"), ("patch", "patch"), ("delete", "delete"))}
        paths[collection_path] = {"get": _operation(resource_type, "list"), "post": _operation(resource_type, "post")}
        schema: JsonDict = dict(resource_type.schema or {"type": "object",
                                                         "x-kubernetes-preserve-unknown-fields": True})
        schema["x-kubernetes-group-version-kind"] = [
            {"group": resource_type.group, "version": resource_type.version, "kind": resource_type.kind}]
        schemas[_schema_name(resource_type)] = schema
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": schemas}}
