"""Kubernetes ``Status`` failures as exceptions, worded like kube-apiserver words them."""

from __future__ import annotations

from typing import Any

import kmock
from siskin.sandbox.apiserver_resources import ResourceType
from siskin.sandbox.apiserver_schema import FieldError

JsonDict = dict[str, Any]


def status_body(code: int, reason: str, message: str, details: JsonDict | None = None) -> JsonDict:
    """A ``v1 Status`` failure document."""
    body: JsonDict = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


class ApiError(kmock.KubernetesError):
    """A client-visible API failure; rendered as a Status body with its HTTP code."""

    def body(self) -> JsonDict:
        """The Status document for this failure."""
        return status_body(self.status, self.reason or "InternalError", self.message or "", self.details)


def _details(resource_type: ResourceType | None, name: str | None) -> JsonDict:
    details: JsonDict = {}
    if name:
        details["name"] = name
    if resource_type is not None:
        details["group"] = resource_type.group
        details["kind"] = resource_type.plural
    return details


def not_found(resource_type: ResourceType, name: str) -> ApiError:
    """404 for a missing object."""
    return ApiError(status=404, reason="NotFound",
                    message=f'{resource_type.qualified_resource} "{name}" not found',
                    details=_details(resource_type, name))


def namespace_not_found(namespace: str) -> ApiError:
    """404 for an object requested in a namespace that does not exist."""
    return ApiError(status=404, reason="NotFound", message=f'namespaces "{namespace}" not found',
                    details={"name": namespace, "kind": "namespaces"})


def unknown_path(path: str) -> ApiError:
    """404 for a URL that serves no resource (unknown group, version or plural)."""
    cause = {"reason": "UnexpectedServerResponse", "message": f"404 page not found: {path}"}
    return ApiError(status=404, reason="NotFound", message="the server could not find the requested resource",
                    details={"causes": [cause]})


def already_exists(resource_type: ResourceType, name: str) -> ApiError:
    """409 AlreadyExists on creating an existing object."""
    return ApiError(status=409, reason="AlreadyExists",
                    message=f'{resource_type.qualified_resource} "{name}" already exists',
                    details=_details(resource_type, name))


def conflict(resource_type: ResourceType, name: str) -> ApiError:
    """409 Conflict on a write carrying a stale resourceVersion (or failed precondition)."""
    return ApiError(status=409, reason="Conflict",
                    message=(f'Operation cannot be fulfilled on {resource_type.qualified_resource} "{name}": '
                             "the object has been modified; please apply your changes to the latest version "
                             "and try again"),
                    details=_details(resource_type, name))


def invalid(resource_type: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid for schema violations, naming every offending field."""
    lines = [error.message() for error in errors]
    summary = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    details = _details(resource_type, name)
    details["kind"] = resource_type.kind
    details["causes"] = [{"reason": error.reason, "message": error.detail, "field": error.field} for error in errors]
    return ApiError(status=422, reason="Invalid",
                    message=f'{resource_type.qualified_kind} "{name}" is invalid: {summary}', details=details)


def bad_request(message: str) -> ApiError:
    """400 BadRequest for malformed bodies, selectors or patches."""
    return ApiError(status=400, reason="BadRequest", message=message)


def method_not_allowed(method: str, path: str) -> ApiError:
    """405 for verbs a URL does not serve."""
    return ApiError(status=405, reason="MethodNotAllowed",
                    message=f"the server does not allow this method on the requested resource ({method} {path})")


def unsupported_media_type(content_type: str) -> ApiError:
    """415 for PATCH bodies of content types the resource does not accept."""
    return ApiError(status=415, reason="UnsupportedMediaType",
                    message=(f"the body of the request was in an unknown format ({content_type}) - accepted media "
                             "types include: application/json-patch+json, application/merge-patch+json, "
                             "application/apply-patch+yaml"))


def gone(message: str) -> ApiError:
    """410 Gone/Expired for watches resuming from a compacted resourceVersion."""
    return ApiError(status=410, reason="Expired", message=message)
