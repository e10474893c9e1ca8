"""Make sandbox child processes die with the process that started them.

The sandbox starts real processes (one demo service per Deployment, a
Prometheus). If the sandbox is killed with SIGKILL it gets no chance to clean
up, so each child asks the kernel to kill it when its parent goes away
(Linux ``PR_SET_PDEATHSIG``); elsewhere a cheap ``getppid()`` poll does it.

Programs we do not control (Prometheus) are started through
``python -m siskin.sandbox.procguard PARENT_PID -- PROGRAM ARGS...``, which
arms the guard and then ``exec``s the program: the setting survives ``exec``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Sequence

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, signal_number: int = signal.SIGKILL) -> bool:
    """Arrange for this process to get `signal_number` when `parent_pid` exits.

    Returns True when the kernel guard is armed (Linux), False when callers must
    poll `parent_is_alive` themselves. Exits at once if the parent is already gone.
    """
    armed = False
    if sys.platform.startswith("linux"):
        libc_name = ctypes.util.find_library("c") or "libc.so.6"
        try:
            libc = ctypes.CDLL(libc_name, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal_number, 0, 0, 0) == 0
        except OSError:
            armed = False
    # The parent may have died before the guard was armed: we were re-parented already.
    if not parent_is_alive(parent_pid):
        os._exit(1)
    return armed


def parent_is_alive(parent_pid: int) -> bool:
    """True while this process is still the child of `parent_pid`."""
    return os.getppid() == parent_pid


def guarded_argv(argv: Sequence[str]) -> list[str]:
    """Wrap a command so that it is killed when the calling process dies."""
    return [sys.executable, "-m", "siskin.sandbox.procguard", str(os.getpid()), "--", *argv]


def main(argv: Sequence[str]) -> int:
    """`PARENT_PID -- PROGRAM ARGS...`: arm the guard, then become PROGRAM."""
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python -m siskin.sandbox.procguard PARENT_PID -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    die_with_parent(int(argv[0]))
    program = list(argv[2:])
    try:
        os.execvp(program[0], program)
    except OSError as error:
        print(f"procguard: cannot run {program[0]!r}: {error}", file=sys.stderr)
        return 127
    return 0  # not reached: execvp replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
