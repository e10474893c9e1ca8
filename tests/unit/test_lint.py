"""The code stays as clean as the project promises: ruff, and mypy --strict on every siskin package."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not (BIN / "ruff").exists() and shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_finds_nothing() -> None:
    result = _run(str(BIN / "ruff") if (BIN / "ruff").exists() else "ruff", "check", "siskin", "operator",
                  "analysis", "sandbox", "dashboard", "tests", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = _run("bash", "scripts/typecheck", "--cache-dir", str(ROOT / "build" / "mypy-cache"))
    assert result.returncode == 0, result.stdout + result.stderr
