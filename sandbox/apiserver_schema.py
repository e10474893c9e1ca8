"""Structural-schema handling of custom resources: defaulting, pruning and validation.

Follows what kube-apiserver does with a CRD's openAPIV3Schema, and words the
errors the way it does (``spec.replicas: Invalid value: 150: ...``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from typing import Any

JsonDict = dict[str, Any]
ROOT_FIELDS = ("apiVersion", "kind", "metadata")


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One invalid field, as a Status cause."""

    field: str
    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported
    detail: str

    def message(self) -> str:
        """The line the real server prints: ``<field>: <detail>``."""
        return f"{self.field}: {self.detail}"


def render_value(value: Any) -> str:
    """Show a value the way Go's %v-ish error formatting does in Invalid value messages."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"))


def apply_defaults(value: Any, schema: JsonDict) -> Any:
    """Fill in ``default`` values of missing properties, recursively (returns a new value)."""
    if isinstance(value, dict):
        result = dict(value)
        properties: JsonDict = schema.get("properties") or {}
        for key, subschema in properties.items():
            if key not in result and "default" in subschema:
                result[key] = copy.deepcopy(subschema["default"])
            if key in result:
                result[key] = apply_defaults(result[key], subschema)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in result:
                if key not in properties:
                    result[key] = apply_defaults(result[key], additional)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def prune(value: Any, schema: JsonDict, path: str = "", unknown: list[str] | None = None,
          root: bool = False) -> Any:
    """Drop fields the schema does not declare (unless preserved); collect their paths in ``unknown``."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        return value
    if isinstance(value, dict):
        properties: JsonDict = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        result: JsonDict = {}
        for key, item in value.items():
            child_path = f"{path}.{key}" if path else key
            if root and key in ROOT_FIELDS:
                result[key] = item
            elif key in properties:
                result[key] = prune(item, properties[key], child_path, unknown)
            elif isinstance(additional, dict):
                result[key] = prune(item, additional, child_path, unknown)
            elif additional is True or preserve:
                result[key] = item
            elif unknown is not None:
                unknown.append(child_path)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"], f"{path}[{index}]", unknown) for index, item in enumerate(value)]
    return value


def validate(value: Any, schema: JsonDict, path: str = "", root: bool = False) -> list[FieldError]:
    """Check a value against a structural schema; return the field errors found (empty if valid)."""
    if value is None:
        if schema.get("nullable"):
            return []
        return [FieldError(path, "FieldValueInvalid",
                           f"Invalid value: \"null\": {path} in body must be of type {schema.get('type')}: \"null\"")]
    type_error = _check_type(value, schema, path)
    if type_error is not None:
        return [type_error]
    errors: list[FieldError] = []
    errors.extend(_check_enum(value, schema, path))
    errors.extend(_check_bounds(value, schema, path))
    errors.extend(_check_string(value, schema, path))
    if isinstance(value, dict):
        errors.extend(_check_object(value, schema, path, root))
    if isinstance(value, list):
        errors.extend(_check_array(value, schema, path))
    return errors


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _check_type(value: Any, schema: JsonDict, path: str) -> FieldError | None:
    expected = schema.get("type")
    actual = _type_name(value)
    if schema.get("x-kubernetes-int-or-string"):
        ok = actual in ("integer", "string")
        expected = "integer or string"
    elif expected is None:
        return None
    else:
        ok = actual == expected or (expected == "number" and actual == "integer")
    if ok:
        return None
    shown = render_value(value) if actual not in ("object", "array") else f'"{actual}"'
    return FieldError(path, "FieldValueInvalid",
                      f"Invalid value: {shown}: {path} in body must be of type {expected}: \"{actual}\"")


def _check_enum(value: Any, schema: JsonDict, path: str) -> list[FieldError]:
    allowed = schema.get("enum")
    if allowed is None or value in allowed:
        return []
    supported = ", ".join(render_value(item) for item in allowed)
    return [FieldError(path, "FieldValueNotSupported",
                       f"Unsupported value: {render_value(value)}: supported values: {supported}")]


def _check_bounds(value: Any, schema: JsonDict, path: str) -> list[FieldError]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return []
    errors: list[FieldError] = []
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    if minimum is not None:
        exclusive = bool(schema.get("exclusiveMinimum"))
        if value < minimum or (exclusive and value == minimum):
            relation = "greater than" if exclusive else "greater than or equal to"
            errors.append(_invalid(value, path, f"should be {relation} {render_value(minimum)}"))
    if maximum is not None:
        exclusive = bool(schema.get("exclusiveMaximum"))
        if value > maximum or (exclusive and value == maximum):
            relation = "less than" if exclusive else "less than or equal to"
            errors.append(_invalid(value, path, f"should be {relation} {render_value(maximum)}"))
    return errors


def _check_string(value: Any, schema: JsonDict, path: str) -> list[FieldError]:
    if not isinstance(value, str):
        return []
    errors: list[FieldError] = []
    pattern = schema.get("pattern")
    if pattern is not None and re.search(pattern, value) is None:
        errors.append(_invalid(value, path, f"should match '{pattern}'"))
    if schema.get("minLength") is not None and len(value) < schema["minLength"]:
        errors.append(_invalid(value, path, f"should be at least {schema['minLength']} chars long"))
    if schema.get("maxLength") is not None and len(value) > schema["maxLength"]:
        errors.append(_invalid(value, path, f"may not be more than {schema['maxLength']} chars long", "Too long"))
    return errors


def _check_object(value: JsonDict, schema: JsonDict, path: str, root: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    for required in schema.get("required") or ():
        if required not in value:
            field = f"{path}.{required}" if path else required
            errors.append(FieldError(field, "FieldValueRequired", "Required value"))
    if schema.get("minProperties") is not None and len(value) < schema["minProperties"]:
        errors.append(_invalid(value, path, f"should have at least {schema['minProperties']} properties",
                               shown='"object"'))
    if schema.get("maxProperties") is not None and len(value) > schema["maxProperties"]:
        errors.append(FieldError(path, "FieldValueTooMany",
                                 f"Too many: {len(value)}: must have at most {schema['maxProperties']} items"))
    properties: JsonDict = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if root and key in ROOT_FIELDS:
            continue
        child_path = f"{path}.{key}" if path else key
        if key in properties:
            errors.extend(validate(item, properties[key], child_path))
        elif isinstance(additional, dict):
            errors.extend(validate(item, additional, child_path))
    return errors


def _check_array(value: list[Any], schema: JsonDict, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if schema.get("minItems") is not None and len(value) < schema["minItems"]:
        errors.append(_invalid(value, path, f"should have at least {schema['minItems']} items",
                               shown='"array"'))
    if schema.get("maxItems") is not None and len(value) > schema["maxItems"]:
        errors.append(FieldError(path, "FieldValueTooMany",
                                 f"Too many: {len(value)}: must have at most {schema['maxItems']} items"))
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            errors.extend(validate(item, items, f"{path}[{index}]"))
    return errors


def _invalid(value: Any, path: str, rule: str, prefix: str = "Invalid value", shown: str | None = None) -> FieldError:
    rendered = shown if shown is not None else render_value(value)
    return FieldError(path, "FieldValueInvalid", f"{prefix}: {rendered}: {path} in body {rule}")
