"""The demo HTTP service that every sandbox Deployment runs.

Its behaviour comes from the environment, exactly as a container's would, so
a Rollout that changes the pod template's env changes how the "new version"
behaves: ``VERSION``, ``ERROR_RATE`` (fraction of requests answered 500),
``LATENCY_MS`` (median latency) and ``LATENCY_SIGMA`` (lognormal shape).
It exposes RED metrics in the Prometheus format the analysis queries.

Run: ``python -m siskin.sandbox.demo_app --port 0`` (prints the bound port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from siskin.sandbox import procguard

LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)


@dataclass(frozen=True)
class Behaviour:
    """How the service answers GET /: version, share of 500s and latency distribution."""

    version: str = "v1"
    error_rate: float = 0.0
    latency_median_ms: float = 10.0
    latency_sigma: float = 0.3

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Behaviour:
        """Read VERSION, ERROR_RATE, LATENCY_MS, LATENCY_SIGMA; raise ValueError naming a bad one."""

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(
                    f"{name}={raw!r} is not a number; set it to a value in [{low}, {high}]"
                ) from None
            if not (low <= value <= high) or math.isnan(value):
                raise ValueError(f"{name}={raw!r} is out of range; set it to a value in [{low}, {high}]")
            return value

        return cls(
            version=environ.get("VERSION", "v1") or "v1",
            error_rate=number("ERROR_RATE", 0.0, 0.0, 1.0),
            latency_median_ms=number("LATENCY_MS", 10.0, 0.0, 60_000.0),
            latency_sigma=number("LATENCY_SIGMA", 0.3, 0.0, 5.0),
        )

    def sample_latency_seconds(self, rng: random.Random) -> float:
        """One lognormal draw with the configured median (ms) and shape."""
        if self.latency_median_ms <= 0:
            return 0.0
        return self.latency_median_ms / 1000.0 * math.exp(self.latency_sigma * rng.gauss(0.0, 1.0))


def build_app(behaviour: Behaviour, rng: random.Random | None = None) -> web.Application:
    """The aiohttp application: GET / (simulated work), /healthz, /metrics."""
    registry = CollectorRegistry(auto_describe=True)
    requests_total = Counter(
        "http_requests_total", "HTTP requests answered on /, by status code.", ["code"], registry=registry
    )
    request_duration = Histogram(
        "http_request_duration_seconds",
        "Time to answer requests on /.",
        buckets=LATENCY_BUCKETS_SECONDS,
        registry=registry,
    )
    # Pre-create both series so rate()/increase() see a zero before the first error.
    requests_total.labels(code="200")
    requests_total.labels(code="500")
    random_source = rng or random.Random()

    async def answer(request: web.Request) -> web.Response:
        started = time.perf_counter()
        await asyncio.sleep(behaviour.sample_latency_seconds(random_source))
        failed = random_source.random() < behaviour.error_rate
        code = 500 if failed else 200
        requests_total.labels(code=str(code)).inc()
        request_duration.observe(time.perf_counter() - started)
        text = f"{'error' if failed else 'ok'} from {behaviour.version}\n"
        return web.Response(status=code, text=text, headers={"X-Version": behaviour.version})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/", answer)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(
    behaviour: Behaviour,
    host: str,
    port: int,
    port_file: Path | None = None,
    parent_pid: int | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or until the parent process dies)."""
    runner = web.AppRunner(build_app(behaviour), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    print(bound_port, flush=True)
    if port_file is not None:
        temporary = port_file.with_suffix(port_file.suffix + ".tmp")
        temporary.write_text(f"{bound_port}\n")
        temporary.replace(port_file)  # atomic: readers never see a half-written port

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)

    async def watch_parent(pid: int) -> None:
        while procguard.parent_is_alive(pid):
            await asyncio.sleep(1.0)
        stop.set()

    watchdog = asyncio.create_task(watch_parent(parent_pid)) if parent_pid is not None else None
    try:
        await stop.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m siskin.sandbox.demo_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one and prints it")
    parser.add_argument("--port-file", type=Path, help="also write the bound port to this file")
    parser.add_argument("--parent-pid", type=int, help="exit when this process (the sandbox) dies")
    options = parser.parse_args(argv)
    try:
        behaviour = Behaviour.from_environment(os.environ)
    except ValueError as error:
        print(f"demo_app: bad environment: {error}", file=sys.stderr)
        return 2
    if options.parent_pid is not None:
        procguard.die_with_parent(options.parent_pid, signal.SIGTERM)
    try:
        asyncio.run(serve(behaviour, options.host, options.port, options.port_file, options.parent_pid))
    except OSError as error:
        print(f"demo_app: cannot listen on {options.host}:{options.port}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
