"""Start and stop a real Prometheus for the sandbox and the end-to-end tests.

The analysis must be judged on what a real Prometheus returns (staleness,
``increase()`` extrapolation, counter resets), so the sandbox runs the real
binary on a free loopback port with a throw-away config and data directory.
Scrape targets come from a file-based service discovery JSON file that the
workload simulator rewrites whenever a Deployment's process changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from siskin.sandbox import procguard
from siskin.sandbox.lifecycle import StartStop

INSTALL_HINT = "install it: apt-get install -y prometheus (or run `make demo`, which does it)"
SCRAPE_JOB_NAME = "siskin-sandbox"


class PrometheusNotInstalledError(RuntimeError):
    """The prometheus binary is not on PATH."""


class PrometheusStartError(RuntimeError):
    """Prometheus did not become ready."""


def find_prometheus_binary(binary: str = "prometheus") -> str:
    """Absolute path of the Prometheus binary, or a clear error saying how to install it."""
    found = shutil.which(binary)
    if found is None:
        raise PrometheusNotInstalledError(f"Prometheus binary {binary!r} not found on PATH; {INSTALL_HINT}")
    return found


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def render_config(sd_file: Path, scrape_interval_s: float) -> str:
    """Prometheus YAML config: one job whose targets come from `sd_file`."""
    interval = f"{max(int(scrape_interval_s * 1000), 100)}ms"
    timeout = f"{max(int(scrape_interval_s * 800), 80)}ms"
    return (
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  scrape_timeout: {timeout}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        f"  - job_name: {SCRAPE_JOB_NAME}\n"
        "    metrics_path: /metrics\n"
        "    file_sd_configs:\n"
        f"      - files: ['{sd_file}']\n"
        "        refresh_interval: 1s\n"
    )


class PrometheusServer(StartStop):
    """A Prometheus process with its own temp dir; use as `async with PrometheusServer() as prom`."""

    def __init__(
        self,
        sd_file: Path | None = None,
        scrape_interval_s: float = 1.0,
        binary: str = "prometheus",
        ready_timeout_s: float = 30.0,
        work_root: Path | None = None,
    ) -> None:
        """``work_root``: where its temp dir goes (default: the system's); a killed owner leaves it there."""
        self.scrape_interval_s = scrape_interval_s
        self._work_root = work_root
        self.ready_timeout_s = ready_timeout_s
        self._binary = binary
        self._requested_sd_file = sd_file
        self._work_dir: Path | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._port: int | None = None
        self.sd_file: Path = sd_file or Path("/nonexistent")  # set for real in start()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234 (only while running)."""
        if self._port is None:
            raise RuntimeError("Prometheus is not running; start() it first")
        return f"http://127.0.0.1:{self._port}"

    @property
    def log_file(self) -> Path:
        """Where Prometheus' own output goes."""
        if self._work_dir is None:
            raise RuntimeError("Prometheus is not running; start() it first")
        return self._work_dir / "prometheus.log"

    @property
    def pid(self) -> int | None:
        """Process id of the running Prometheus, if any."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Write config, start the binary, and wait until /-/ready answers 200."""
        binary_path = find_prometheus_binary(self._binary)
        if self._work_root is not None:
            self._work_root.mkdir(parents=True, exist_ok=True)
        self._work_dir = Path(tempfile.mkdtemp(prefix="siskin-prometheus-", dir=self._work_root))
        self.sd_file = self._requested_sd_file or self._work_dir / "targets.json"
        if not self.sd_file.exists():
            self.sd_file.parent.mkdir(parents=True, exist_ok=True)
            self.sd_file.write_text("[]\n")
        config_file = self._work_dir / "prometheus.yml"
        config_file.write_text(render_config(self.sd_file, self.scrape_interval_s))
        try:
            for _attempt in range(3):  # the free port may be taken between probe and bind
                self._port = free_loopback_port()
                await self._spawn(binary_path, config_file)
                if await self._wait_ready():
                    return
            raise PrometheusStartError(
                f"Prometheus did not become ready within {self.ready_timeout_s:.0f}s; "
                f"see its log {self.log_file}"
            )
        except BaseException:
            await self.stop(keep_logs=True)
            raise

    async def _spawn(self, binary_path: str, config_file: Path) -> None:
        assert self._work_dir is not None
        argv = [
            binary_path,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self._work_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self._port}",
            "--storage.tsdb.retention.time=1d",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        with open(self.log_file, "ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *procguard.guarded_argv(argv), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )

    async def _wait_ready(self) -> bool:
        """True once ready; False if the process exited (e.g. port taken)."""
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if self._process.returncode is not None:
                    return False
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(f"{self.url}/-/ready") as response:
                        if response.status == 200:
                            return True
                await asyncio.sleep(0.1)
        return False

    async def stop(self, keep_logs: bool = False) -> None:
        """Terminate Prometheus and remove its temp dir (kept when `keep_logs`, for diagnosis)."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=5.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._work_dir is not None and not keep_logs:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
        self._port = None

    async def query(self, promql: str) -> list[dict[str, object]]:
        """Instant query; returns the `result` list (handy in tests and the demo)."""
        query_url = f"{self.url}/api/v1/query"
        params = {"query": promql}
        async with aiohttp.ClientSession() as session, session.get(query_url, params=params) as reply:
            body = await reply.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus query {promql!r} failed: {body.get('error', body)}")
        result: list[dict[str, object]] = body["data"]["result"]
        return result



@contextlib.asynccontextmanager
async def run_prometheus(
    sd_file: Path | None = None, scrape_interval_s: float = 1.0
) -> AsyncIterator[PrometheusServer]:
    """Run a Prometheus for the duration of the block."""
    async with PrometheusServer(sd_file=sd_file, scrape_interval_s=scrape_interval_s) as server:
        yield server
