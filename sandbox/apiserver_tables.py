"""Server-side printing: ``meta.k8s.io/v1`` Tables that ``kubectl get`` asks for.

Custom resources print their CRD's additionalPrinterColumns (simple JSONPath);
a few built-ins print the columns kubectl users expect.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from siskin.sandbox.apiserver_resources import ResourceType

JsonDict = dict[str, Any]

_TOKEN = re.compile(r"""\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\*\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*["']([^"']*)["']\)\]""")
AGE_COLUMN: JsonDict = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

BUILTIN_COLUMNS: dict[str, tuple[JsonDict, ...]] = {
    "Deployment": (
        {"name": "Ready", "type": "string", "jsonPath": "__ready__"},
        {"name": "Up-to-date", "type": "integer", "jsonPath": ".status.updatedReplicas", "default": 0},
        {"name": "Available", "type": "integer", "jsonPath": ".status.availableReplicas", "default": 0},
        AGE_COLUMN,
    ),
    "Namespace": ({"name": "Status", "type": "string", "jsonPath": ".status.phase"}, AGE_COLUMN),
    "Service": (
        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
        {"name": "Cluster-IP", "type": "string", "jsonPath": ".spec.clusterIP"},
        AGE_COLUMN,
    ),
    "Event": (
        {"name": "Last Seen", "type": "date", "jsonPath": "__event_time__"},
        {"name": "Type", "type": "string", "jsonPath": ".type"},
        {"name": "Reason", "type": "string", "jsonPath": ".reason"},
        {"name": "Object", "type": "string", "jsonPath": "__involved__"},
        {"name": "Message", "type": "string", "jsonPath": ".message"},
    ),
    "CustomResourceDefinition": ({"name": "Created At", "type": "string", "jsonPath": ".metadata.creationTimestamp"},),
}


def jsonpath_values(obj: Any, expression: str) -> list[Any]:
    """Evaluate a simple JSONPath (``.a.b``, ``[0]``, ``[*]``, ``[?(@.type=="Ready")]``) to all matches."""
    expression = expression.strip()
    if expression.startswith("{") and expression.endswith("}"):
        expression = expression[1:-1]
    expression = expression.removeprefix("$")
    nodes: list[Any] = [obj]
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            return []
        position = match.end()
        nodes = _step(nodes, match)
    return nodes


def _step(nodes: list[Any], match: re.Match[str]) -> list[Any]:
    field, index, filter_field, filter_value = match.groups()
    result: list[Any] = []
    for node in nodes:
        if field is not None:
            if isinstance(node, dict) and field in node:
                result.append(node[field])
        elif index is not None:
            if isinstance(node, list) and int(index) < len(node):
                result.append(node[int(index)])
        elif filter_field is not None:
            if isinstance(node, list):
                result.extend(item for item in node
                              if str(_dotted(item, filter_field)) == filter_value)
        elif isinstance(node, list):
            result.extend(node)
    return result


def _dotted(node: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def human_age(timestamp: str, now: datetime.datetime | None = None) -> str:
    """Render an RFC 3339 timestamp as an age the way kubectl does (``5s``, ``3m12s``, ``2d``)."""
    try:
        moment = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    now = now or datetime.datetime.now(datetime.UTC)
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return "0s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def columns_for(resource_type: ResourceType) -> list[JsonDict]:
    """The printed columns (after Name) of a type."""
    if resource_type.from_crd:
        return list(resource_type.printer_columns) or [AGE_COLUMN]
    return list(BUILTIN_COLUMNS.get(resource_type.kind, (AGE_COLUMN,)))


def _special_cell(obj: JsonDict, marker: str) -> Any:
    if marker == "__ready__":
        status = obj.get("status") or {}
        return f"{status.get('readyReplicas', 0)}/{(obj.get('spec') or {}).get('replicas', 1)}"
    if marker == "__event_time__":
        return obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def cell_value(obj: JsonDict, column: JsonDict) -> Any:
    """One table cell: the column's JSONPath value, typed; dates as ages."""
    path = column.get("jsonPath", "")
    values = [_special_cell(obj, path)] if path.startswith("__") else jsonpath_values(obj, path)
    if not values or values[0] is None:
        return column.get("default")
    value = values[0]
    column_type = column.get("type", "string")
    if column_type == "date":
        return human_age(str(value))
    if column_type in ("integer", "number", "boolean") and not isinstance(value, dict | list):
        return value
    if isinstance(value, dict | list):
        return str(value)
    return str(value) if not isinstance(value, bool) else ("true" if value else "false")


def _row_object(obj: JsonDict, include_object: str) -> JsonDict | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def render_table(resource_type: ResourceType, objects: list[JsonDict], resource_version: str,
                 include_object: str = "PartialObjectMetadata") -> JsonDict:
    """A meta.k8s.io/v1 Table of objects, ready to send to kubectl."""
    columns = columns_for(resource_type)
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    definitions += [{"name": column.get("name", ""), "type": column.get("type", "string"),
                     "format": column.get("format", ""), "description": column.get("description", ""),
                     "priority": column.get("priority", 0)} for column in columns]
    rows = []
    for obj in objects:
        row: JsonDict = {"cells": [obj["metadata"].get("name")] + [cell_value(obj, column) for column in columns]}
        row_object = _row_object(obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}
