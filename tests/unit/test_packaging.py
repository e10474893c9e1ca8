"""A plain wheel of Siskin holds the whole product and never shadows the standard library's ``operator``.

The top-level folders (``operator/``, ``analysis/``, ``sandbox/``, ``crds/``, ``examples/``) are
mapped onto ``siskin.*`` subpackages at build time; a mistake there ships a wheel without the
operator, without the CRDs, or with a top-level ``operator`` package that breaks every program
importing the standard ``operator`` module. The wheel is built from a copy of the source tree,
installed into a fresh directory and imported by an interpreter that does not run ``site`` (so the
editable install of the development virtualenv cannot answer in its place).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", ".siskin", "__pycache__",
                                    ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``pip wheel --no-deps`` of a copy of the source tree (the checkout itself is left alone)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"),
                             str(source)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    wheels = list((work / "dist").glob("siskin-*.whl"))
    assert len(wheels) == 1, wheels
    yield wheels[0]


@pytest.fixture(scope="module")
def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.mark.parametrize("module", [
    "siskin/__init__.py", "siskin/cli.py", "siskin/demo.py",
    "siskin/operator/decide.py", "siskin/operator/observe.py", "siskin/operator/handlers.py",
    "siskin/operator/traffic/__init__.py", "siskin/operator/traffic/gateway_api.py",
    "siskin/analysis/__init__.py", "siskin/analysis/sequential.py", "siskin/analysis/template.py",
    "siskin/sandbox/__init__.py", "siskin/sandbox/cluster.py", "siskin/sandbox/apiserver.py",
    "siskin/sandbox/httproute-crd.yaml",
])
def test_wheel_holds_the_product(names: set[str], module: str) -> None:
    assert module in names


def test_wheel_holds_every_source_file_of_the_mapped_folders(names: set[str]) -> None:
    for folder, package in (("operator", "siskin/operator"), ("analysis", "siskin/analysis"),
                            ("sandbox", "siskin/sandbox")):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                shipped = f"{package}/{path.relative_to(ROOT / folder).as_posix()}"
                assert shipped in names, f"{path.relative_to(ROOT)} is not in the wheel as {shipped}"


@pytest.mark.parametrize("folder", ["crds", "examples"])
def test_wheel_holds_the_manifests(names: set[str], folder: str) -> None:
    manifests = sorted(p.name for p in (ROOT / folder).glob("*.yaml"))
    assert manifests
    for name in manifests:
        assert f"siskin/{folder}/{name}" in names


def test_wheel_has_no_top_level_package_but_siskin(names: set[str]) -> None:
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"siskin"}, top
    assert not any(name.startswith("operator/") for name in names)


def test_installed_wheel_imports_and_leaves_stdlib_operator_alone(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "installed"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target",
                              str(target), str(wheel)], capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, f"{install.stdout}\n{install.stderr}"
    dependencies = sysconfig.get_paths()["purelib"]  # the dev venv's site-packages, read without running site
    probe = """
import importlib.resources, json, operator, sys
import siskin, siskin.operator.decide, siskin.analysis.sequential, siskin.sandbox.cluster
print(json.dumps({
    "siskin": siskin.__file__,
    "decide": siskin.operator.decide.__file__,
    "sequential": siskin.analysis.sequential.__file__,
    "operator": getattr(operator, "__file__", "built-in"),
    "itemgetter": operator.itemgetter(1)([0, 42]),
    "crd": importlib.resources.files("siskin.crds").joinpath("rollout.yaml").is_file(),
    "example": importlib.resources.files("siskin.examples").joinpath("rollout.yaml").is_file(),
    "editable_finder": [type(f).__module__ for f in sys.meta_path if "editable" in type(f).__module__.lower()],
}))
"""
    run_dir = tmp_path / "elsewhere"  # not the checkout: its operator/ folder must not be on sys.path
    run_dir.mkdir()
    result = subprocess.run([sys.executable, "-S", "-c", probe], cwd=run_dir, capture_output=True, text=True,
                            timeout=120, check=False,
                            env={"PYTHONPATH": f"{target}:{dependencies}", "PATH": "/usr/bin:/bin",
                                 "PYTHONNOUSERSITE": "1"})
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["editable_finder"] == [], "the editable install answered imports; the test proves nothing"
    for key in ("siskin", "decide", "sequential"):
        assert Path(seen[key]).is_relative_to(target), f"{key} came from {seen[key]}, not the installed wheel"
    assert Path(seen["operator"]).parent == Path(sysconfig.get_paths()["stdlib"]), seen["operator"]
    assert seen["itemgetter"] == 42
    assert seen["crd"] and seen["example"]


@pytest.mark.parametrize("how", [["-S", "-c", "import operator; print(operator.__file__)"],
                                 ["-S", "-m", "json.tool", "--help"]])
def test_source_tree_never_shadows_stdlib_operator(how: list[str]) -> None:
    """``python -m ...`` from the checkout (as make and pytest run) must still get the standard library's operator."""
    result = subprocess.run([sys.executable, *how], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert str(ROOT / "operator") not in result.stdout
