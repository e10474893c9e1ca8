"""An in-process Kubernetes API server for the sandbox and the integration tests.

No real kube-apiserver can run on the development machines, yet the operator,
the ``kubernetes`` client, Kopf and a real ``kubectl`` must work unmodified.
This module extends kmock's ``KubernetesEmulator`` (its HTTP server, request
recording, user-defined reactions and discovery scaffold) with the behaviour
those clients rely on: resourceVersions and watches that resume, CRDs that
register resources and validate objects, status subresources, selectors,
finalizers, garbage collection, server-side tables and the OpenAPI index.

Fault injection for tests::

    emulator.inject_fault(method="PATCH", plural="deployments", status=500, times=1)

makes the next matching request fail with a Status body of that code (other
filters: ``namespace``, ``name``, ``subresource``; ``times=None`` means forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import pathlib
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import apps, rendering
from siskin.sandbox import apiserver_errors as errors
from siskin.sandbox import apiserver_patching as patching
from siskin.sandbox.apiserver_openapi import openapi_v3_group_version, openapi_v3_root
from siskin.sandbox.apiserver_resources import ResourceRegistry, ResourceType
from siskin.sandbox.apiserver_selectors import SelectorError, build_predicate
from siskin.sandbox.apiserver_store import ObjectStore
from siskin.sandbox.apiserver_tables import jsonpath_values, render_table
from siskin.sandbox.apiserver_writes import ObjectWriter, object_key
from typing_extensions import override

JsonDict = dict[str, Any]
logger = logging.getLogger(__name__)

SERVER_VERSION: JsonDict = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-siskin-sandbox", "gitCommit": "0" * 40,
    "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.4",
    "compiler": "gc", "platform": "linux/amd64",
}
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
WATCH_IDLE_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class ApiPath:
    """A resource URL split into its parts (``group`` is "" for the core API)."""

    group: str
    version: str
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath | None:
    """Split ``/api/v1/...`` or ``/apis/<g>/<v>/...`` into parts; None for non-resource URLs."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    namespace_subresource = group == "" and len(rest) == 3 and rest[0] == "namespaces" and rest[2] in (
        "status", "finalize")
    if len(rest) >= 3 and rest[0] == "namespaces" and not namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return ApiPath(group, version)
    return ApiPath(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None,
                   "/".join(rest[2:]) or None)


@dataclasses.dataclass
class InjectedFault:
    """A planned failure: requests matching all set filters fail with ``status``."""

    status: int = 500
    method: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    times: int | None = 1  # None: every matching request
    message: str = "injected fault"
    hits: int = 0

    def matches(self, method: str, api_path: ApiPath) -> bool:
        """Whether this fault applies to a request."""
        wanted = ((self.method, method.upper()), (self.plural, api_path.plural),
                  (self.namespace, api_path.namespace), (self.name, api_path.name),
                  (self.subresource, api_path.subresource))
        return all(expected is None or expected == actual for expected, actual in wanted) and (
            self.times is None or self.hits < self.times)


@attrs.define(kw_only=True)
class SandboxAPIServer(kmock.KubernetesEmulator):
    """A Kubernetes API emulator good enough for Kopf, the kubernetes client and kubectl."""

    history_limit: int = 2000
    request_log_limit: int = 5000
    registry: ResourceRegistry = attrs.field(factory=ResourceRegistry, init=False)
    store: ObjectStore = attrs.field(init=False)
    writer: ObjectWriter = attrs.field(init=False)
    faults: list[InjectedFault] = attrs.field(factory=list, init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        # kmock's own fallbacks are replaced wholesale: one catch-all serves the API, while
        # reactions that tests add with kmock's DSL still take precedence over it.
        self.store = ObjectStore(history_limit=self.history_limit)
        self.writer = ObjectWriter(self.registry, self.store)
        self.fallback << self._serve
        namespaces = self.registry.get("", "v1", "namespaces")
        assert namespaces is not None
        for namespace in INITIAL_NAMESPACES:
            self.writer.create(namespaces, None, {"metadata": {"name": namespace}})

    # -- public helpers -----------------------------------------------------------------------

    def inject_fault(self, *, method: str | None = None, plural: str | None = None, namespace: str | None = None,
                     name: str | None = None, subresource: str | None = None, status: int = 500,
                     times: int | None = 1, message: str = "injected fault") -> InjectedFault:
        """Make the next ``times`` matching requests fail with ``status``; returns the fault (see ``hits``)."""
        fault = InjectedFault(status=status, method=method.upper() if method else None, plural=plural,
                              namespace=namespace, name=name, subresource=subresource, times=times,
                              message=message)
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget all injected faults."""
        self.faults.clear()

    def get_object(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> JsonDict | None:
        """The stored object (read-only: never mutate it), or None."""
        resource_type = self.registry.find_kind(api_version, kind)
        if resource_type is None:
            return None
        return self.store.get(object_key(resource_type, namespace, name))

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[JsonDict]:
        """Stored objects of a kind (read-only), in one namespace or all."""
        resource_type = self.registry.find_kind(api_version, kind)
        if resource_type is None:
            return []
        return self.store.objects_of((resource_type.group, resource_type.plural), namespace)

    def close_watches(self) -> None:
        """End all open watch streams (used on shutdown)."""
        self._closing = True
        self.store.wake_watchers()

    # -- HTTP entry ---------------------------------------------------------------------------

    @override
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock's own parser cannot split some valid URLs (e.g. /api/v1/namespaces), so parse here.
        request = await self._parse_request(raw_request)
        self._requests.append(request)
        if len(self._requests) > 2 * self.request_log_limit:
            del self._requests[: -self.request_log_limit]
        try:
            response = await self._handle(request)
            logger.debug("%s %s -> %s", request.method, request.url.path_qs, response.status)
            return response
        except rendering.StreamingError as streaming_error:
            raw_response = streaming_error.args[0]
            cause = streaming_error.__cause__
            error = cause if isinstance(cause, Exception) else streaming_error
            if raw_response.prepared:
                await self._stream_error(error, raw_response)
                return raw_response  # type: ignore[no-any-return]
            return await self._render_error(error)
        except Exception as error:
            logger.debug("%s %s -> %r", request.method, request.url.path_qs, error)
            return await self._render_error(error)

    @override
    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # Skip kmock's own naive object tracking: this emulator keeps the state in its store.
        return await apps.RawHandler._handle(self, request)

    async def _parse_request(self, raw_request: aiohttp.web.BaseRequest) -> rendering.Request:
        body = await raw_request.read()
        text = body.decode("utf-8", errors="replace")
        data: Any = None
        if text.strip():
            with contextlib.suppress(ValueError):
                data = json.loads(text)
        api_path = parse_api_path(raw_request.path)
        resource = None if api_path is None else kmock.resource(
            group=api_path.group, version=api_path.version, plural=api_path.plural)
        return rendering.Request(
            id=len(self._requests), raw_request=raw_request, url=raw_request.url, method=raw_request.method,
            params=dict(raw_request.query), headers=dict(raw_request.headers), cookies=dict(raw_request.cookies),
            body=body, text=text, data=data, action=_guess_action(raw_request.method, api_path, raw_request.query),
            resource=resource, namespace=api_path.namespace if api_path else None,
            name=api_path.name if api_path else None, subresource=api_path.subresource if api_path else None,
        )

    @override
    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, errors.ApiError):
            return aiohttp.web.json_response(exc.body(), status=exc.status)
        if isinstance(exc, kmock.KubernetesError):
            body = errors.status_body(exc.status, exc.reason or "InternalError", exc.message or "")
            return aiohttp.web.json_response(body, status=exc.status)
        logger.error("API emulator failure: %s", "".join(traceback.format_exception(exc)))
        body = errors.status_body(500, "InternalError", f"an error on the server ({exc!r})")
        return aiohttp.web.json_response(body, status=500)

    @override
    async def _stream_error(self, exc: Exception, raw_response: aiohttp.web.StreamResponse) -> None:
        code = exc.status if isinstance(exc, kmock.KubernetesError) else 500
        body = errors.status_body(code, "InternalError", repr(exc))
        await raw_response.write(json.dumps({"type": "ERROR", "object": body}).encode() + b"\n")

    # -- routing ------------------------------------------------------------------------------

    async def _serve(self, request: rendering.Request) -> rendering.Response:
        path = request.url.path.rstrip("/") or "/"
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        api_path = parse_api_path(path)
        if api_path is not None:
            self._raise_injected_fault(method, api_path)
        if api_path is None or api_path.plural is None:
            return _json(self._serve_non_resource(path, method, api_path))
        resource_type = self.registry.get(api_path.group, api_path.version, api_path.plural)
        if resource_type is None:
            raise errors.unknown_path(path)
        return await self._serve_resource(request, method, resource_type, api_path)

    def _raise_injected_fault(self, method: str, api_path: ApiPath) -> None:
        for fault in self.faults:
            if fault.matches(method, api_path):
                fault.hits += 1
                reason = "InternalError" if fault.status >= 500 else "Injected"
                raise errors.ApiError(status=fault.status, reason=reason, message=fault.message)

    def _serve_non_resource(self, path: str, method: str, api_path: ApiPath | None) -> JsonDict:
        if method != "GET":
            raise errors.method_not_allowed(method, path)
        if path in ("/healthz", "/livez", "/readyz"):
            return {"status": "ok"}
        if path == "/version":
            return SERVER_VERSION
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            return self.registry.api_group_list()
        if path == "/openapi/v3":
            return openapi_v3_root(self.registry)
        if path.startswith("/openapi/v3/"):
            return self._serve_openapi_group_version(path.removeprefix("/openapi/v3/"))
        if path == "/":
            return {"paths": ["/api", "/api/v1", "/apis", "/openapi/v3", "/version"]}
        if path.startswith("/apis/") and api_path is None and path.count("/") == 2:
            group = path.split("/")[2]
            if group in self.registry.groups():
                return {"kind": "APIGroup", "apiVersion": "v1", **self.registry.api_group(group)}
        if api_path is not None:
            document = self.registry.api_resource_list(api_path.group, api_path.version)
            if document is not None:
                return document
        raise errors.unknown_path(path)

    def _serve_openapi_group_version(self, relative: str) -> JsonDict:
        parts = relative.split("/")
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            raise errors.unknown_path(f"/openapi/v3/{relative}")
        if self.registry.api_resource_list(group, version) is None:
            raise errors.unknown_path(f"/openapi/v3/{relative}")
        return openapi_v3_group_version(self.registry, group, version)

    async def _serve_resource(self, request: rendering.Request, method: str, resource_type: ResourceType,
                              api_path: ApiPath) -> rendering.Response:
        namespace = api_path.namespace if resource_type.namespaced else None
        if api_path.subresource not in (None, "status", "scale") or (
                api_path.subresource == "status" and not resource_type.has_status) or (
                api_path.subresource == "scale" and resource_type.scale_paths is None):
            raise errors.unknown_path(request.url.path)
        if api_path.name is None:
            return self._serve_collection(request, method, resource_type, namespace)
        if method == "GET" and _is_watch(request):
            return self._watch_response(request, resource_type, namespace, api_path.name)
        if method == "GET":
            return self._serve_get(request, resource_type, namespace, api_path)
        if method in ("PUT", "PATCH"):
            return self._serve_write(request, method, resource_type, namespace, api_path)
        if method == "DELETE" and api_path.subresource is None:
            current = self._current(resource_type, namespace, api_path.name)
            options = request.data if isinstance(request.data, dict) else {}
            options = {**options, **{k: v for k, v in request.params.items() if k == "propagationPolicy"}}
            return _json(self.writer.delete(resource_type, current, options, dry_run=_dry_run(request)))
        raise errors.method_not_allowed(method, request.url.path)

    def _serve_collection(self, request: rendering.Request, method: str, resource_type: ResourceType,
                          namespace: str | None) -> rendering.Response:
        if method == "GET" and _is_watch(request):
            return self._watch_response(request, resource_type, namespace, None)
        if method == "GET":
            return self._list_response(request, resource_type, namespace)
        if method == "POST":
            created, warnings = self.writer.create(resource_type, namespace, request.data, _strict(request),
                                                   _dry_run(request))
            return _json(self._versioned(created, resource_type), 201, warnings)
        if method == "DELETE":
            predicate = self._predicate(request)
            options = request.data if isinstance(request.data, dict) else {}
            for obj in self.store.objects_of((resource_type.group, resource_type.plural), namespace):
                if predicate(obj):
                    self.writer.delete(resource_type, obj, options)
            return _json(errors.status_body(200, "", "") | {"status": "Success"})
        raise errors.method_not_allowed(method, request.url.path)

    # -- reads --------------------------------------------------------------------------------

    def _current(self, resource_type: ResourceType, namespace: str | None, name: str) -> JsonDict:
        obj = self.store.get(object_key(resource_type, namespace, name))
        if obj is None:
            raise errors.not_found(resource_type, name)
        return obj

    def _predicate(self, request: rendering.Request) -> Any:
        try:
            return build_predicate(request.params.get("labelSelector"), request.params.get("fieldSelector"))
        except SelectorError as error:
            raise errors.bad_request(str(error)) from error

    def _list_response(self, request: rendering.Request, resource_type: ResourceType,
                    namespace: str | None) -> rendering.Response:
        predicate = self._predicate(request)
        stored = self.store.objects_of((resource_type.group, resource_type.plural), namespace)
        items = [self._versioned(obj, resource_type) for obj in stored if predicate(obj)]
        revision = str(self.store.revision)
        if _wants_table(request):
            return _json(render_table(resource_type, items, revision, request.params.get("includeObject", "")))
        return _json({"kind": resource_type.list_kind, "apiVersion": resource_type.group_version,
                      "metadata": {"resourceVersion": revision}, "items": items})

    def _serve_get(self, request: rendering.Request, resource_type: ResourceType, namespace: str | None,
                   api_path: ApiPath) -> rendering.Response:
        assert api_path.name is not None
        obj = self._versioned(self._current(resource_type, namespace, api_path.name), resource_type)
        if api_path.subresource == "scale":
            return _json(self._scale_of(resource_type, obj))
        if _wants_table(request):
            return _json(render_table(resource_type, [obj], str(self.store.revision),
                                      request.params.get("includeObject", "")))
        return _json(obj)

    @staticmethod
    def _versioned(obj: JsonDict, resource_type: ResourceType) -> JsonDict:
        if obj.get("apiVersion") == resource_type.group_version:
            return obj
        return {**obj, "apiVersion": resource_type.group_version}

    @staticmethod
    def _scale_of(resource_type: ResourceType, obj: JsonDict) -> JsonDict:
        paths = resource_type.scale_paths or {}
        spec_replicas = jsonpath_values(obj, paths.get("specReplicasPath", ".spec.replicas"))
        status_replicas = jsonpath_values(obj, paths.get("statusReplicasPath", ".status.replicas"))
        selector = jsonpath_values(obj, paths.get("labelSelectorPath", ".status.selector"))
        metadata = {key: obj["metadata"][key] for key in ("name", "namespace", "uid", "resourceVersion",
                                                           "creationTimestamp") if key in obj["metadata"]}
        status: JsonDict = {"replicas": status_replicas[0] if status_replicas else 0}
        if selector:
            status["selector"] = selector[0]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": metadata,
                "spec": {"replicas": spec_replicas[0] if spec_replicas else 0}, "status": status}

    # -- writes -------------------------------------------------------------------------------

    def _serve_write(self, request: rendering.Request, method: str, resource_type: ResourceType,
                     namespace: str | None, api_path: ApiPath) -> rendering.Response:
        assert api_path.name is not None
        key = object_key(resource_type, namespace, api_path.name)
        current = self.store.get(key)
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if current is None and method == "PATCH" and content_type == "application/apply-patch+yaml":
            applied = _parse_body(request.text, yaml_allowed=True)
            created, warnings = self.writer.create(resource_type, namespace, applied, _strict(request),
                                                   _dry_run(request))
            return _json(created, 201, warnings)
        if current is None:
            if namespace is not None and resource_type.namespaced:
                self.writer.require_namespace(namespace)
            raise errors.not_found(resource_type, api_path.name)
        if api_path.subresource == "scale":
            return _json(self._write_scale(request, method, content_type, resource_type, current))
        if method == "PUT":
            candidate = request.data
        else:
            candidate = self._patched(resource_type, current, content_type, request.text)
        updated, warnings = self.writer.update(resource_type, current, candidate, api_path.subresource,
                                               _strict(request), _dry_run(request))
        return _json(self._versioned(updated, resource_type), 200, warnings)

    @staticmethod
    def _patched(resource_type: ResourceType, current: JsonDict, content_type: str, text: str) -> Any:
        try:
            if content_type == "application/json-patch+json":
                return patching.json_patch(current, _parse_body(text))
            if content_type == "application/merge-patch+json":
                return patching.merge_patch(current, _parse_body(text))
            if content_type == "application/strategic-merge-patch+json" and not resource_type.from_crd:
                return patching.strategic_merge_patch(current, _parse_body(text))
            if content_type == "application/apply-patch+yaml":
                applied = _parse_body(text, yaml_allowed=True)
                if isinstance(applied, dict):
                    applied.get("metadata", {}).pop("resourceVersion", None)
                return patching.merge_patch(current, applied)
        except patching.PatchError as error:
            raise errors.ApiError(status=422, reason="Invalid", message=f"the patch cannot be applied: {error}") \
                from error
        raise errors.unsupported_media_type(content_type)

    def _write_scale(self, request: rendering.Request, method: str, content_type: str,
                     resource_type: ResourceType, current: JsonDict) -> JsonDict:
        scale = self._scale_of(resource_type, current)
        wanted = request.data if method == "PUT" else self._patched(resource_type, scale, content_type,
                                                                    request.text)
        replicas = (wanted.get("spec") or {}).get("replicas") if isinstance(wanted, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise errors.bad_request("spec.replicas of a Scale must be an integer")
        field = (resource_type.scale_paths or {}).get("specReplicasPath", ".spec.replicas").strip(".").split(".")
        candidate = json.loads(json.dumps(current))
        node = candidate
        for part in field[:-1]:
            node = node.setdefault(part, {})
        node[field[-1]] = replicas
        updated, _ = self.writer.update(resource_type, current, candidate, None)
        return self._scale_of(resource_type, updated)

    # -- watch --------------------------------------------------------------------------------

    def _watch_response(self, request: rendering.Request, resource_type: ResourceType, namespace: str | None,
                        name: str | None) -> rendering.Response:
        predicate = self._predicate(request)
        since_text = request.params.get("resourceVersion", "")
        try:
            since = int(since_text) if since_text not in ("", "0") else None
        except ValueError as error:
            raise errors.bad_request(f"invalid resourceVersion: {since_text!r}") from error
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        bookmarks = request.params.get("allowWatchBookmarks") in ("true", "1")

        def selected(obj: JsonDict) -> bool:
            metadata = obj["metadata"]
            return (namespace is None or metadata.get("namespace") == namespace) and (
                name is None or metadata.get("name") == name) and bool(predicate(obj))

        stream = self._watch_events(resource_type, since, timeout, bookmarks, selected)
        return rendering.Response(status=200, headers={"Content-Type": "application/json"}, payload=stream)

    async def _watch_events(self, resource_type: ResourceType, since: int | None, timeout: float | None,
                            bookmarks: bool, selected: Any) -> AsyncIterator[Any]:
        yield b""  # send the headers now: clients wait for them before reading events
        type_key = (resource_type.group, resource_type.plural)
        if since is None:
            since = self.store.revision
            for obj in self.store.objects_of(type_key, None):
                if selected(obj):
                    yield {"type": "ADDED", "object": self._versioned(obj, resource_type)}
        elif self.store.is_compacted(since):
            message = f"too old resource version: {since} ({self.store.compacted_revision + 1})"
            yield {"type": "ERROR", "object": errors.gone(message).body()}
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closing:
            for event in self.store.events_after(since):
                since = event.resource_version
                if event.type_key == type_key and selected(event.obj):
                    yield {"type": event.event_type, "object": self._versioned(event.obj, resource_type)}
            remaining = WATCH_IDLE_SECONDS if deadline is None else min(deadline - time.monotonic(),
                                                                        WATCH_IDLE_SECONDS)
            if remaining <= 0:
                return
            if not self.store.events_after(since):
                await self.store.wait_for_change(remaining)
                if bookmarks and not self.store.events_after(since):
                    yield {"type": "BOOKMARK", "object": {
                        "kind": resource_type.kind, "apiVersion": resource_type.group_version,
                        "metadata": {"resourceVersion": str(self.store.revision)}}}


def _guess_action(method: str, api_path: ApiPath | None, query: Any) -> kmock.action | None:
    if api_path is None or api_path.plural is None:
        return None
    if method == "GET" and query.get("watch") in ("true", "1"):
        return kmock.action.WATCH
    table = ({"GET": kmock.action.LIST, "POST": kmock.action.CREATE} if api_path.name is None else
             {"GET": kmock.action.FETCH, "PATCH": kmock.action.UPDATE, "PUT": kmock.action.UPDATE,
              "DELETE": kmock.action.DELETE})
    return table.get(method.upper())


def _is_watch(request: rendering.Request) -> bool:
    return request.params.get("watch") in ("true", "1")


def _dry_run(request: rendering.Request) -> bool:
    return request.params.get("dryRun") == "All"


def _strict(request: rendering.Request) -> bool:
    return request.params.get("fieldValidation") == "Strict"


def _wants_table(request: rendering.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def _parse_body(text: str, yaml_allowed: bool = False) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        if yaml_allowed:
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError as yaml_error:
                raise errors.bad_request(f"the body is neither JSON nor YAML: {yaml_error}") from yaml_error
        raise errors.bad_request(f"the body is not valid JSON: {error}") from error


def _json(payload: JsonDict, status: int = 200, warnings: list[str] | None = None) -> rendering.Response:
    headers: dict[str, str | None] = {}
    if warnings:
        headers["Warning"] = ", ".join('299 - "' + warning.replace('"', '\\"') + '"' for warning in warnings)
    return rendering.Response(status=status, payload=payload, headers=headers or None)


@dataclasses.dataclass(frozen=True)
class RunningAPIServer:
    """A started emulator: its base URL and the emulator itself (for state and fault injection)."""

    url: str
    emulator: SandboxAPIServer


@contextlib.asynccontextmanager
async def serve_apiserver(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[RunningAPIServer]:
    """Run the emulator on a TCP port (0: any free port) in the current event loop."""
    emulator = SandboxAPIServer()
    async with emulator, kmock.Server(emulator, host=host, port=port or None) as server:
        try:
            yield RunningAPIServer(url=str(server.url).rstrip("/"), emulator=emulator)
        finally:
            emulator.close_watches()
            await asyncio.sleep(0)


def write_kubeconfig(path: pathlib.Path, server_url: str, namespace: str = "default") -> None:
    """Write a kubeconfig (context ``siskin-sandbox``, plain http, no auth) for kubectl, clients and Kopf."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "siskin-sandbox", "cluster": {"server": server_url}}],
        "users": [{"name": "siskin-sandbox", "user": {}}],
        "contexts": [{"name": "siskin-sandbox", "context": {
            "cluster": "siskin-sandbox", "user": "siskin-sandbox", "namespace": namespace}}],
        "current-context": "siskin-sandbox",
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
