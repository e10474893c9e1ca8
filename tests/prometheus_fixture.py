"""Start and stop a real Prometheus for tests: loopback port, temporary config and data dir.

Small on purpose: the sandbox has its own launcher for the demo; this one only
serves the analysis integration tests.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

PROMETHEUS_BINARY = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusServer:
    """A Prometheus process scraping ``targets`` every ``scrape_interval``; use as a context manager."""

    def __init__(self, targets: list[str], scrape_interval: str = "1s") -> None:
        self.targets = targets
        self.scrape_interval = scrape_interval
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._workdir = Path(tempfile.mkdtemp(prefix="siskin-prometheus-"))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 30.0) -> None:
        """Write the config, start the process and wait until ``/-/ready`` answers."""
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [{"job_name": "test", "static_configs": [{"targets": self.targets}]}],
        }
        config_path = self._workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        log = (self._workdir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                PROMETHEUS_BINARY,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self._workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited early: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {ready_timeout}s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines Prometheus logged."""
        path = self._workdir / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        """Terminate the process (kill after 10 s) and delete the temporary directory."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class TrafficExporter:
    """Simulated HTTP traffic for a real Prometheus to scrape: one request counter and one latency
    histogram series per label-value tuple, each with its own error and slow-request share."""

    def __init__(self, label_names: Sequence[str], series: Mapping[tuple[str, ...], tuple[float, float]],
                 rps_per_series: float, seed: int) -> None:
        self.registry = CollectorRegistry()
        self.series = dict(series)
        self.rps_per_series = rps_per_series
        self.seed = seed
        self.requests = Counter("http_requests", "Requests.", [*label_names, "code"], registry=self.registry)
        self.duration = Histogram("http_request_duration_seconds", "Latency.", list(label_names),
                                  buckets=(0.05, 0.1, 0.25, 0.5, 1.0), registry=self.registry)
        self.port = free_port()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: Any = None

    def start(self) -> None:
        self._server = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if isinstance(self._server, tuple):
            self._server[0].shutdown()

    def _run(self) -> None:
        rng = random.Random(self.seed)
        tick = 0.1
        while not self._stop.wait(tick):
            for labels, (error_share, slow_share) in self.series.items():
                for _ in range(int(self.rps_per_series * tick)):
                    code = "500" if rng.random() < error_share else "200"
                    self.requests.labels(*labels, code).inc()
                    self.duration.labels(*labels).observe(0.4 if rng.random() < slow_share else 0.02)


@contextlib.contextmanager
def scraping(exporter: TrafficExporter, query: str, track: str, timeout_s: float = 30.0) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping ``exporter`` every second, yielded once ``query`` shows ``track``."""
    from siskin.analysis.prometheus import PrometheusProvider
    from siskin.analysis.provider import QueryError

    exporter.start()
    server = PrometheusServer([f"127.0.0.1:{exporter.port}"], scrape_interval="1s")
    server.start()
    provider = PrometheusProvider(server.url)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = time.time()
            try:
                series = provider.range_by_track(query, now - 5, now, 1)
            except QueryError:
                series = {}
            if series.get(track):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"no data scraped within {timeout_s:.0f} s: {server.log_tail()}")
        yield server
    finally:
        provider.close()
        server.stop()
        exporter.stop()
