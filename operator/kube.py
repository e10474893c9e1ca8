"""A thin JSON client for the Kubernetes API: dicts in, dicts out, one error type.

Built on the ``kubernetes`` package's configuration and REST transport (kubeconfig,
in-cluster service accounts, TLS), without its generated models: the operator
works on plain manifests and the decision core never sees this module.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """A Kubernetes API answer that was not a success."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    group: str
    version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of a collection, an object or an object's subresource."""
        prefix = f"/api/{self.version}" if self.group == "" else f"/apis/{self.group}/{self.version}"
        path = prefix + (f"/namespaces/{namespace}" if namespace else "") + f"/{self.plural}"
        if name is not None:
            path += f"/{name}"
        if subresource is not None:
            path += f"/{subresource}"
        return path


ROLLOUTS = Resource("siskin.dev", "v1alpha1", "rollouts")
ANALYSIS_TEMPLATES = Resource("siskin.dev", "v1alpha1", "analysistemplates")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
SERVICES = Resource("", "v1", "services")
EVENTS = Resource("", "v1", "events")
HTTP_ROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes")


def load_api_client(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """An API client from ``kubeconfig``, else the in-cluster service account, else KUBECONFIG / ~/.kube/config."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig is None:
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return kubernetes.client.ApiClient(configuration)
        except kubernetes.config.ConfigException:
            pass
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, client_configuration=configuration
    )
    return kubernetes.client.ApiClient(configuration)


class KubeAPI:
    """JSON requests against one API server."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient | None = None,
        timeout: float = 15.0,
        kubeconfig: str | None = None,
    ) -> None:
        self._client = api_client or load_api_client(kubeconfig)
        self._timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """Send one request; raise :class:`KubeError` on any non-2xx answer."""
        config = self._client.configuration
        url = config.host + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        self._client.update_params_for_auth(headers, None, ["BearerToken"], path, method, body)
        try:
            response = self._client.rest_client.request(  # type: ignore[no-untyped-call]
                method, url, headers=headers, body=body, _request_timeout=self._timeout
            )
        except ApiException as exc:
            raise _to_error(exc.status or 0, exc.reason or "", exc.body) from None
        data = response.read()
        if not 200 <= int(response.status) < 300:
            raise _to_error(int(response.status), str(response.reason or ""), data)
        return json.loads(data) if data else {}

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", resource.path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, resource: Resource, namespace: str | None, label_selector: str | None = None) -> list[Any]:
        """Objects of a kind, optionally filtered by a label selector."""
        query = {"labelSelector": label_selector} if label_selector else None
        return list(self.request("GET", resource.path(namespace), query=query).get("items", []))

    def create(self, resource: Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object."""
        return self.request("POST", resource.path(namespace), body)

    def replace(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Replace an object or its subresource (409 when ``metadata.resourceVersion`` is stale)."""
        return self.request("PUT", resource.path(namespace, name, subresource), body)

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """JSON-merge-patch an object or its subresource."""
        return self.request("PATCH", resource.path(namespace, name, subresource), body, content_type=MERGE_PATCH)


def _to_error(status: int, reason: str, body: Any) -> KubeError:
    message = str(body or "")
    try:
        parsed = json.loads(body) if body else {}
        if isinstance(parsed, dict):
            message = str(parsed.get("message") or message)
            reason = str(parsed.get("reason") or reason)
    except (TypeError, ValueError):
        pass
    return KubeError(status, reason, message)
