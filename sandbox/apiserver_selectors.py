"""Label and field selectors of list and watch requests (``?labelSelector=`` / ``?fieldSelector=``)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

JsonDict = dict[str, Any]
ObjectPredicate = Callable[[JsonDict], bool]


class SelectorError(ValueError):
    """A selector string that cannot be parsed (answered with 400 BadRequest)."""


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One clause of a selector: ``key <operator> values``."""

    key: str
    operator: str  # =, !=, in, notin, exists, !exists
    values: tuple[str, ...] = ()

    def matches(self, fields: dict[str, str]) -> bool:
        """Whether a label (or field) map satisfies this clause."""
        present = self.key in fields
        value = fields.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        # != and notin match objects without the key, like the real server.
        return not present or value not in self.values


_SET_CLAUSE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQUALITY_CLAUSE = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")
_EXISTS_CLAUSE = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*$")


def _split_clauses(selector: str) -> list[str]:
    clauses: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            clauses.append(current)
            current = ""
        else:
            current += char
    clauses.append(current)
    return [clause for clause in clauses if clause.strip()]


def parse_selector(selector: str) -> list[Requirement]:
    """Parse a label/field selector string into requirements (all must hold)."""
    requirements: list[Requirement] = []
    for clause in _split_clauses(selector):
        if match := _SET_CLAUSE.match(clause):
            values = tuple(value.strip() for value in match.group(3).split(",") if value.strip())
            requirements.append(Requirement(match.group(1), match.group(2), values))
        elif match := _EQUALITY_CLAUSE.match(clause):
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append(Requirement(match.group(1), operator, (match.group(3),)))
        elif match := _EXISTS_CLAUSE.match(clause):
            operator = "!exists" if match.group(1) else "exists"
            requirements.append(Requirement(match.group(2), operator))
        else:
            raise SelectorError(f"unable to parse requirement: {clause.strip()!r}")
    return requirements


def field_value(obj: JsonDict, dotted_path: str) -> str | None:
    """The string value of a dotted field path (``metadata.name``, ``involvedObject.uid``), or None."""
    node: Any = obj
    for part in dotted_path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if node is None or isinstance(node, dict | list):
        return None
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def build_predicate(label_selector: str | None, field_selector: str | None) -> ObjectPredicate:
    """A predicate over objects combining both selectors (absent selectors match everything)."""
    label_requirements = parse_selector(label_selector or "")
    field_requirements = parse_selector(field_selector or "")
    for requirement in field_requirements:
        if requirement.operator not in ("=", "!="):
            raise SelectorError(f"field selectors support only =, == and !=, not {requirement.operator!r}")

    def matches(obj: JsonDict) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        if not all(requirement.matches(labels) for requirement in label_requirements):
            return False
        for requirement in field_requirements:
            value = field_value(obj, requirement.key)
            fields = {requirement.key: value if value is not None else ""}
            if not requirement.matches(fields):
                return False
        return True

    return matches
