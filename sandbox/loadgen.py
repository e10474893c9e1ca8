"""Load generator: real HTTP traffic split the way the cluster's routing says.

A canary can only be judged if it gets real requests, in the share the
operator asked for. This generator sends open-loop Poisson arrivals (a fixed
rate, independent of how fast backends answer, like real users) to either

* ``HTTPRoute NAMESPACE/NAME`` — split by the first rule's backendRef weights
  across Services, each Service's share split across its ready endpoints by
  ready replicas (what a Gateway does); or
* ``Service NAMESPACE/NAME`` — split across ready endpoints by ready replicas
  (how a replica-ratio canary gets its share).

Routes, Services and endpoints are re-read every ~0.5 s so weights written by
the operator take effect quickly. It only ever sends to loopback addresses,
and it stops by itself after a duration and a request count.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

import aiohttp
from siskin.sandbox.lifecycle import StartStop
from siskin.sandbox.workloads import Endpoint

logger = logging.getLogger(__name__)

EndpointLookup = Callable[[str, Mapping[str, str]], Sequence[Endpoint]]
HTTPROUTE_API = "/apis/gateway.networking.k8s.io/v1"
TARGET_KINDS = ("HTTPRoute", "Service")


@dataclass(frozen=True)
class LoadTarget:
    """Where the load goes: an HTTPRoute or a Service, by namespace and name."""

    kind: Literal["HTTPRoute", "Service"]
    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> LoadTarget:
        """Parse ``"HTTPRoute NAMESPACE/NAME"`` or ``"Service NAMESPACE/NAME"``."""
        parts = text.split()
        if len(parts) == 2 and parts[0] in TARGET_KINDS and parts[1].count("/") == 1:
            namespace, name = parts[1].split("/")
            if namespace and name:
                kind: Literal["HTTPRoute", "Service"] = "HTTPRoute" if parts[0] == "HTTPRoute" else "Service"
                return cls(kind, namespace, name)
        raise ValueError(
            f"load target {text!r} is not understood; write 'HTTPRoute NAMESPACE/NAME' or 'Service NAMESPACE/NAME'"
        )

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class BackendKey(NamedTuple):
    """One backend: the Service the request went through and the pod that got it ('' if none)."""

    service: str
    pod: str


@dataclass
class BackendStats:
    """Counters for one backend."""

    sent: int = 0
    responses_by_code: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: int = 0  # connection errors and timeouts
    unroutable: int = 0  # the backend had weight but no ready endpoint
    latency_sum_s: float = 0.0

    @property
    def server_errors(self) -> int:
        """Responses with a 5xx status."""
        return sum(count for code, count in self.responses_by_code.items() if code >= 500)


@dataclass(frozen=True)
class _Route:
    key: BackendKey
    url: str | None  # None: weight without an endpoint
    weight: float


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is a loopback address or 'localhost'."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoadGenerator(StartStop):
    """Open-loop Poisson load at `rps`, bounded by `duration_s` and `max_requests`."""

    def __init__(
        self,
        api_url: str,
        target: LoadTarget | str,
        endpoints: EndpointLookup,
        rps: float = 200.0,
        duration_s: float = 300.0,
        max_requests: int | None = None,
        concurrency: int = 256,
        refresh_interval_s: float = 0.5,
        path: str = "/",
        request_timeout_s: float = 5.0,
        seed: int | None = None,
    ) -> None:
        if rps <= 0:
            raise ValueError(f"load rate {rps!r} must be a positive number of requests per second")
        self.api_url = api_url.rstrip("/")
        self.target = target if isinstance(target, LoadTarget) else LoadTarget.parse(target)
        self.endpoints = endpoints
        self.rps = rps
        self.duration_s = duration_s
        self.max_requests = max_requests if max_requests is not None else int(rps * duration_s * 2) + 1
        self.concurrency = concurrency
        self.refresh_interval_s = refresh_interval_s
        self.path = path
        self.request_timeout_s = request_timeout_s
        self.stats: dict[BackendKey, BackendStats] = collections.defaultdict(BackendStats)
        self.arrivals = 0  # every scheduled request, routed or not
        self.dropped = 0  # arrivals skipped because `concurrency` requests were in flight
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.last_refresh_error: str | None = None
        self._random = random.Random(seed)
        self._routes: list[_Route] = []
        self._cumulative_weights: list[float] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._load_session: aiohttp.ClientSession | None = None
        self._api_session: aiohttp.ClientSession | None = None
        self._generator: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Read the routing once, then generate load in the background."""
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=0, keepalive_timeout=30)
        self._load_session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.request_timeout_s)
        )
        self._api_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        await self.refresh_routes()
        self._refresher = asyncio.create_task(self._refresh_forever(), name=f"siskin-load-routes {self.target}")
        self._generator = asyncio.create_task(self._generate(), name=f"siskin-load {self.target}")

    async def wait(self) -> None:
        """Wait until the load ran its duration or count (and in-flight requests finished)."""
        if self._generator is not None:
            await asyncio.shield(self._generator)

    async def stop(self) -> None:
        """Stop now: cancel arrivals and in-flight requests, close connections."""
        for task in (self._generator, self._refresher, *self._in_flight):
            if task is not None:
                task.cancel()
        for task in (self._generator, self._refresher, *self._in_flight):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._generator = self._refresher = None
        for session in (self._load_session, self._api_session):
            if session is not None:
                await session.close()
        self._load_session = self._api_session = None
        if self.started_at is not None and self.finished_at is None:
            self.finished_at = time.monotonic()


    @property
    def done(self) -> bool:
        """True once the load ran its course."""
        return self._generator is not None and self._generator.done()

    # ----------------------------------------------------------------- figures

    def sent_by_service(self) -> dict[str, int]:
        """Requests (sent or unroutable) per Service."""
        totals: dict[str, int] = collections.Counter()
        for key, stats in self.stats.items():
            totals[key.service] += stats.sent + stats.unroutable
        return dict(totals)

    def snapshot(self) -> dict[BackendKey, tuple[int, int, int]]:
        """Per backend: (sent, 5xx, failures) — subtract two snapshots to see a time slice."""
        return {key: (s.sent, s.server_errors, s.failures) for key, s in self.stats.items()}

    @property
    def achieved_rps(self) -> float:
        """Arrivals per second so far."""
        if self.started_at is None:
            return 0.0
        elapsed = (self.finished_at or time.monotonic()) - self.started_at
        return self.arrivals / elapsed if elapsed > 0 else 0.0

    def summary(self) -> str:
        """A few lines for a live display."""
        lines = [f"{self.target}: {self.arrivals} arrivals, {self.achieved_rps:.0f} rps, {self.dropped} dropped"]
        for key in sorted(self.stats):
            stats = self.stats[key]
            mean_ms = 1000 * stats.latency_sum_s / stats.sent if stats.sent else 0.0
            lines.append(
                f"  {key.service:<24} {key.pod or '(no endpoint)':<32} sent={stats.sent:<7} "
                f"5xx={stats.server_errors:<5} failed={stats.failures:<4} unroutable={stats.unroutable:<4} "
                f"mean={mean_ms:.1f}ms"
            )
        return "\n".join(lines)

    # ----------------------------------------------------------------- routing

    async def refresh_routes(self) -> None:
        """Re-read the route/Service objects and endpoints into the weighted routing table."""
        try:
            routes = await self._resolve()
        except (aiohttp.ClientError, TimeoutError, LookupError, ValueError) as error:
            message = f"cannot read {self.target} from {self.api_url}: {error}"
            if message != self.last_refresh_error:
                logger.warning("%s; keeping the previous routing", message)
            self.last_refresh_error = message
            return
        self.last_refresh_error = None
        cumulative, total = [], 0.0
        for route in routes:
            total += route.weight
            cumulative.append(total)
        self._routes, self._cumulative_weights = routes, cumulative

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval_s)
            await self.refresh_routes()

    async def _get_object(self, path: str) -> dict[str, Any]:
        assert self._api_session is not None
        async with self._api_session.get(self.api_url + path) as reply:
            if reply.status == 404:
                raise LookupError(f"{path} not found")
            reply.raise_for_status()
            body: dict[str, Any] = await reply.json(content_type=None)
            return body

    async def _resolve(self) -> list[_Route]:
        if self.target.kind == "Service":
            return await self._service_routes(self.target.namespace, self.target.name, 1.0)
        route = await self._get_object(
            f"{HTTPROUTE_API}/namespaces/{self.target.namespace}/httproutes/{self.target.name}"
        )
        rules = (route.get("spec") or {}).get("rules") or []
        first_rule: dict[str, Any] = next((rule for rule in rules if rule.get("backendRefs")), {})
        backend_refs: list[dict[str, Any]] = first_rule.get("backendRefs") or []
        routes: list[_Route] = []
        for ref in backend_refs:
            weight = float(ref.get("weight", 1))
            if weight <= 0:
                continue
            if ref.get("kind", "Service") != "Service" or ref.get("group", "") not in ("", "core"):
                logger.warning("%s: backendRef %s is not a Service; ignored", self.target, ref)
                continue
            namespace = ref.get("namespace") or self.target.namespace
            try:
                routes += await self._service_routes(namespace, ref["name"], weight)
            except LookupError:  # a Gateway answers 500 for a missing backend: count it as unroutable
                routes.append(_Route(BackendKey(ref["name"], ""), None, weight))
        return routes

    async def _service_routes(self, namespace: str, name: str, weight: float) -> list[_Route]:
        service = await self._get_object(f"/api/v1/namespaces/{namespace}/services/{name}")
        selector = (service.get("spec") or {}).get("selector") or {}
        found = [e for e in self.endpoints(namespace, selector) if e.ready_replicas > 0]
        for endpoint in found:
            if not is_loopback_url(endpoint.url):
                raise ValueError(
                    f"endpoint {endpoint.url} of Service {namespace}/{name} is not on loopback; "
                    "the sandbox load generator only sends to 127.0.0.1"
                )
        replicas = sum(endpoint.ready_replicas for endpoint in found)
        if not replicas:
            return [_Route(BackendKey(name, ""), None, weight)]
        return [
            _Route(
                BackendKey(name, endpoint.pod or endpoint.url),
                endpoint.url.rstrip("/") + self.path,
                weight * endpoint.ready_replicas / replicas,
            )
            for endpoint in found
        ]

    # ----------------------------------------------------------------- sending

    async def _generate(self) -> None:
        loop = asyncio.get_running_loop()
        self.started_at = time.monotonic()
        begin = loop.time()
        deadline = begin + self.duration_s
        next_arrival = begin
        try:
            while self.arrivals < self.max_requests:
                next_arrival += self._random.expovariate(self.rps)
                if next_arrival >= deadline:
                    break
                delay = next_arrival - loop.time()
                if delay > 0.0005:  # late arrivals are sent at once: the schedule, not the loop, sets the rate
                    await asyncio.sleep(delay)
                self._arrive()
            if self._in_flight:
                await asyncio.wait(set(self._in_flight), timeout=self.request_timeout_s)
        finally:
            self.finished_at = time.monotonic()
            if self._refresher is not None:
                self._refresher.cancel()

    def _arrive(self) -> None:
        self.arrivals += 1
        if not self._routes:
            self.stats[BackendKey("", "")].unroutable += 1
            return
        pick = self._random.random() * self._cumulative_weights[-1]
        route = self._routes[min(bisect.bisect_right(self._cumulative_weights, pick), len(self._routes) - 1)]
        if route.url is None:
            self.stats[route.key].unroutable += 1
            return
        if len(self._in_flight) >= self.concurrency:
            self.dropped += 1
            return
        task = asyncio.create_task(self._send(route.key, route.url))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send(self, key: BackendKey, url: str) -> None:
        assert self._load_session is not None
        stats = self.stats[key]
        stats.sent += 1
        started = time.perf_counter()
        try:
            async with self._load_session.get(url) as reply:
                await reply.read()
                stats.responses_by_code[reply.status] += 1
        except (aiohttp.ClientError, TimeoutError):
            stats.failures += 1
        finally:
            stats.latency_sum_s += time.perf_counter() - started
