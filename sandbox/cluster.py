"""The sandbox as one thing: API server, workloads, Prometheus and load.

`make demo` and the end-to-end tests need "a cluster" without one. `Sandbox`
assembles the API emulator (with the HTTPRoute CRD installed), the workload
simulator, a real Prometheus scraping the simulated pods and load generators,
and writes a kubeconfig so kubectl, Kopf and the CLI can reach it.
`sandbox_up` / `sandbox_down` run it as a detached background process whose
whereabouts live in a small state file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from siskin.sandbox import apiserver, gateway_api
from siskin.sandbox.lifecycle import StartStop
from siskin.sandbox.loadgen import LoadGenerator, LoadTarget
from siskin.sandbox.prometheus import PrometheusServer
from siskin.sandbox.workloads import WorkloadSimulator

DEFAULT_STATE_DIR = Path(".siskin/sandbox")
STATE_FILE_NAME = "state.json"
CLUSTER_MODULE = "siskin.sandbox.cluster"
LONG_LOAD_S = 24 * 3600.0  # loads started with the sandbox end with it (or after a day)


@dataclass(frozen=True)
class SandboxInfo:
    """Where a running sandbox can be reached (the content of its state file)."""

    pid: int
    state_dir: str
    kubeconfig_path: str
    api_url: str
    prometheus_url: str
    log_dir: str

    def describe(self) -> str:
        """Human-readable lines, ending with the `export KUBECONFIG=...` to paste."""
        return (
            f"Siskin sandbox running (pid {self.pid})\n"
            f"  kubeconfig:  {self.kubeconfig_path}\n"
            f"  API server:  {self.api_url}\n"
            f"  Prometheus:  {self.prometheus_url}\n"
            f"  pod logs:    {self.log_dir}\n"
            f"export KUBECONFIG={self.kubeconfig_path}\n"
            f"export SISKIN_PROMETHEUS_URL={self.prometheus_url}   # for `siskin operator`"
        )


class Sandbox(StartStop):
    """API emulator + workload simulator + Prometheus + load generators, as an async context manager."""

    def __init__(
        self,
        state_dir: Path = DEFAULT_STATE_DIR,
        api_port: int = 0,
        scrape_interval_s: float = 1.0,
        namespace: str = "default",
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.api_port = api_port
        self.scrape_interval_s = scrape_interval_s
        self.namespace = namespace
        self.loads: list[LoadGenerator] = []
        self._stack = contextlib.AsyncExitStack()
        self._api: apiserver.RunningAPIServer | None = None
        self._prometheus: PrometheusServer | None = None
        self._simulator: WorkloadSimulator | None = None

    @property
    def kubeconfig_path(self) -> Path:
        """The kubeconfig pointing at this sandbox's API server."""
        return self.state_dir / "kubeconfig"

    @property
    def state_file(self) -> Path:
        """The JSON file describing the running sandbox."""
        return self.state_dir / STATE_FILE_NAME

    @property
    def api_url(self) -> str:
        """Base URL of the Kubernetes API emulator."""
        if self._api is None:
            raise RuntimeError("the sandbox is not running; enter it with `async with Sandbox() as sandbox`")
        return str(self._api.url)

    @property
    def prometheus_url(self) -> str:
        """Base URL of the sandbox's Prometheus."""
        return str(self.prometheus.url)

    @property
    def prometheus(self) -> PrometheusServer:
        """The running Prometheus (for queries in tests and the demo)."""
        if self._prometheus is None:
            raise RuntimeError("the sandbox is not running; enter it with `async with Sandbox() as sandbox`")
        return self._prometheus

    @property
    def simulator(self) -> WorkloadSimulator:
        """The running workload simulator."""
        if self._simulator is None:
            raise RuntimeError("the sandbox is not running; enter it with `async with Sandbox() as sandbox`")
        return self._simulator

    @property
    def emulator(self) -> apiserver.SandboxAPIServer:
        """The API emulator object (state inspection and fault injection)."""
        if self._api is None:
            raise RuntimeError("the sandbox is not running; enter it with `async with Sandbox() as sandbox`")
        return self._api.emulator

    def info(self) -> SandboxInfo:
        """Where this sandbox can be reached."""
        return SandboxInfo(
            pid=os.getpid(),
            state_dir=str(self.state_dir),
            kubeconfig_path=str(self.kubeconfig_path),
            api_url=self.api_url,
            prometheus_url=self.prometheus_url,
            log_dir=str(self.simulator.log_dir),
        )

    async def start(self) -> None:
        """Start every part; on failure, stop what was started and re-raise."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._api = await self._stack.enter_async_context(apiserver.serve_apiserver(port=self.api_port))
            api_url = self.api_url
            async with aiohttp.ClientSession() as session:
                await gateway_api.install_httproute_crd(session, api_url)
            apiserver.write_kubeconfig(self.kubeconfig_path, api_url, self.namespace)
            prometheus = PrometheusServer(
                sd_file=self.state_dir / "targets.json", scrape_interval_s=self.scrape_interval_s,
                work_root=self.state_dir,
            )
            self._prometheus = await self._stack.enter_async_context(prometheus)
            simulator = WorkloadSimulator(api_url, prometheus.sd_file, log_dir=self.state_dir / "logs")
            self._simulator = await self._stack.enter_async_context(simulator)
            write_state(self.state_file, self.info())
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop load, processes, Prometheus and the API server; forget the state file."""
        for load in self.loads:
            await load.stop()
        self.loads.clear()
        with contextlib.suppress(FileNotFoundError):
            state = read_state(self.state_file)
            if state is not None and state.pid == os.getpid():
                self.state_file.unlink()
        await self._stack.aclose()
        self._api = self._prometheus = self._simulator = None

    async def add_load(
        self, target: LoadTarget | str, rps: float = 200.0, duration_s: float = 3600.0, **options: Any
    ) -> LoadGenerator:
        """Start a load generator on `target` ("HTTPRoute ns/name" or "Service ns/name")."""
        load = LoadGenerator(
            self.api_url, target, self.simulator.endpoints_for_selector, rps=rps, duration_s=duration_s, **options
        )
        await load.start()
        self.loads.append(load)
        return load



# --------------------------------------------------------------------------- state file


def write_state(path: Path, info: SandboxInfo) -> None:
    """Write the state file atomically."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(info), indent=2) + "\n")
    temporary.replace(path)


def read_state(path: Path) -> SandboxInfo | None:
    """The state file's content, or None when there is none (or it is unreadable)."""
    try:
        return SandboxInfo(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def is_sandbox_process(pid: int) -> bool:
    """True if `pid` runs and is a sandbox started by `sandbox_up` (guards against reused pids)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return CLUSTER_MODULE.encode() in cmdline.read_bytes()
        except OSError:
            return False
    return True


def running_sandbox(state_dir: Path = DEFAULT_STATE_DIR) -> SandboxInfo | None:
    """The sandbox running for `state_dir`, if any."""
    info = read_state(Path(state_dir) / STATE_FILE_NAME)
    if info is None or not is_sandbox_process(info.pid):
        return None
    return info


# --------------------------------------------------------------------------- CLI functions


def sandbox_up(
    state_dir: Path = DEFAULT_STATE_DIR,
    detach: bool = True,
    loads: Sequence[tuple[str, float]] = (),
    timeout_s: float = 60.0,
) -> SandboxInfo:
    """Start the sandbox (in a detached background process by default) and print how to reach it.

    `loads` are (target, rps) pairs, e.g. ("HTTPRoute default/web", 200): load generators that
    run as long as the sandbox (a target that does not exist yet is retried every 0.5 s).
    With `detach=False` it runs in the foreground until SIGINT/SIGTERM.
    """
    for target, rps in loads:
        LoadTarget.parse(target)  # fail here, not in the background process
        if rps <= 0:
            raise ValueError(f"load rate {rps!r} for {target!r} must be a positive number of requests per second")
    state_dir = Path(state_dir).absolute()
    existing = running_sandbox(state_dir)
    if existing is not None:
        print(f"A sandbox is already running for {state_dir}.\n{existing.describe()}")
        return existing
    if not detach:
        return asyncio.run(_serve_in_foreground(state_dir, loads))

    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE_NAME).unlink(missing_ok=True)
    log_path = state_dir / "sandbox.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                CLUSTER_MODULE,
                "serve",
                "--state-dir",
                str(state_dir),
                *(argument for target, rps in loads for argument in ("--load", f"{target}@{rps}")),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survives the terminal; its own process group for sandbox_down
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = read_state(state_dir / STATE_FILE_NAME)
        if info is not None and info.pid == process.pid:
            print(info.describe())
            return info
        if process.poll() is not None:
            raise RuntimeError(
                f"the sandbox exited with status {process.returncode} while starting: {_tail(log_path)}\n"
                f"(full log: {log_path})"
            )
        time.sleep(0.1)
    _kill_group(process.pid)
    raise RuntimeError(f"the sandbox did not start within {timeout_s:.0f}s; see {log_path}")


def sandbox_down(state_dir: Path = DEFAULT_STATE_DIR, timeout_s: float = 20.0) -> bool:
    """Stop the detached sandbox of `state_dir` and its children; False if none was running."""
    state_dir = Path(state_dir).absolute()
    state_file = state_dir / STATE_FILE_NAME
    info = read_state(state_file)
    if info is None or not is_sandbox_process(info.pid):
        state_file.unlink(missing_ok=True)
        print(f"No sandbox is running for {state_dir}.")
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and is_sandbox_process(info.pid):
        time.sleep(0.1)
    if is_sandbox_process(info.pid):
        print(f"The sandbox (pid {info.pid}) did not stop within {timeout_s:.0f}s; killing it.", file=sys.stderr)
    _kill_group(info.pid)
    _wait_until_exited(info.pid, timeout_s=5.0)
    state_file.unlink(missing_ok=True)
    print(f"Sandbox stopped (pid {info.pid}).")
    return True


def _wait_until_exited(pid: int, timeout_s: float) -> None:
    """Wait until `pid` is gone or a zombie: an exiting process loses its cmdline before it stops running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.05)


def _kill_group(pid: int) -> None:
    """SIGKILL whatever is left of the process group led by `pid` (a session leader we started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _serve_in_foreground(state_dir: Path, loads: Sequence[tuple[str, float]] = ()) -> SandboxInfo:
    """Run the sandbox (and its loads) until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    async with Sandbox(state_dir) as sandbox:
        for target, rps in loads:
            await sandbox.add_load(target, rps, duration_s=LONG_LOAD_S)
        info = sandbox.info()
        print(info.describe(), flush=True)
        await stop.wait()
    return info


def parse_load(text: str) -> tuple[str, float]:
    """Parse 'KIND NAMESPACE/NAME@RPS' (RPS defaults to 200)."""
    target, _, rate = text.rpartition("@") if "@" in text else (text, "", "200")
    try:
        rps = float(rate)
    except ValueError:
        raise ValueError(f"load {text!r}: {rate!r} is not a rate; write e.g. 'HTTPRoute default/web@200'") from None
    LoadTarget.parse(target)
    return target, rps


def main(argv: list[str] | None = None) -> int:
    """`python -m siskin.sandbox.cluster up|down|serve [--state-dir DIR]`."""
    parser = argparse.ArgumentParser(prog=f"python -m {CLUSTER_MODULE}", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "serve"], help="serve: run in the foreground")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="default: .siskin/sandbox")
    parser.add_argument(
        "--load",
        action="append",
        default=[],
        metavar="'KIND NS/NAME@RPS'",
        help="run load for the sandbox's lifetime, e.g. 'HTTPRoute default/web@200' (repeatable)",
    )
    options = parser.parse_args(argv)
    try:
        loads = [parse_load(text) for text in options.load]
        if options.command == "up":
            sandbox_up(options.state_dir, loads=loads)
        elif options.command == "down":
            sandbox_down(options.state_dir)
        else:
            asyncio.run(_serve_in_foreground(Path(options.state_dir).absolute(), loads))
    except (RuntimeError, ValueError) as error:
        print(f"siskin sandbox: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
