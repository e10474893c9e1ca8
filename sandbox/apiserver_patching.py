"""PATCH semantics of the Kubernetes API: JSON merge patch, JSON patch, strategic merge patch.

Pure functions over JSON-like values; the emulator maps content types to them.
"""

from __future__ import annotations

import copy
from typing import Any

# Lists of named items that a strategic merge patch merges by key instead of replacing.
STRATEGIC_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "tolerations": "key",
    "ownerReferences": "uid",
}
# Service ports are keyed by port number, container ports by containerPort.
SERVICE_PORT_KEY = "port"


class PatchError(ValueError):
    """A patch that cannot be applied (bad document or failed JSON-patch operation)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch: dicts merge recursively, null deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch: merge-patch semantics, but named lists merge item by item."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):  # directives like $patch/$retainKeys: not emulated beyond ignoring
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list) and key in STRATEGIC_MERGE_KEYS:
            result[key] = _merge_named_list(result[key], value, _merge_key(key, value))
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _merge_key(field: str, items: list[Any]) -> str:
    if field == "ports" and items and isinstance(items[0], dict) and "containerPort" not in items[0]:
        return SERVICE_PORT_KEY
    return STRATEGIC_MERGE_KEYS[field]


def _merge_named_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            result.append(copy.deepcopy(item))
            continue
        index = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]),
                     None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def json_patch(target: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    document = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"invalid JSON patch operation: {operation!r}")
        document = _apply_operation(document, operation)
    return document


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _resolve(document: Any, tokens: list[str]) -> Any:
    node = document
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise PatchError(f"path not found: /{'/'.join(tokens)}")
    return node


def _apply_operation(document: Any, operation: dict[str, Any]) -> Any:
    op = operation["op"]
    tokens = _pointer(operation["path"])
    if op == "test":
        if _resolve(document, tokens) != operation.get("value"):
            raise PatchError(f"test operation failed at {operation['path']}")
        return document
    if op in ("move", "copy"):
        source_tokens = _pointer(operation.get("from", ""))
        value = copy.deepcopy(_resolve(document, source_tokens))
        if op == "move":
            document = _remove(document, source_tokens)
        return _add(document, tokens, value)
    if op == "remove":
        return _remove(document, tokens)
    if op == "add":
        return _add(document, tokens, copy.deepcopy(operation.get("value")))
    if op == "replace":
        _resolve(document, tokens)  # must exist
        document = _remove(document, tokens)
        return _add(document, tokens, copy.deepcopy(operation.get("value")))
    raise PatchError(f"unknown JSON patch operation: {op!r}")


def _add(document: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(document, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise PatchError(f"invalid array index: {last!r}")
    else:
        raise PatchError(f"cannot add to a scalar at /{'/'.join(tokens)}")
    return document


def _remove(document: Any, tokens: list[str]) -> Any:
    if not tokens:
        return None
    parent = _resolve(document, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise PatchError(f"path not found: /{'/'.join(tokens)}")
    return document
