"""The package builds as a wheel that holds everything a fit needs (code and bundled data)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (path,) = out.glob("lmmfast-*.whl")
    return path


def test_the_wheel_holds_the_package_and_its_datasets(wheel) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"lmmfast/__init__.py", "lmmfast/fit.py", "lmmfast/datasets/sleepstudy.csv"} <= names
    assert not any(name.startswith(("tests/", "benchmarks/", "docs/")) for name in names)


def test_a_fit_runs_from_the_installed_wheel(wheel, tmp_path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    script = (
        "import lmmfast\n"
        "fit = lmmfast.lmm('Reaction ~ Days + (Days | Subject)', lmmfast.datasets.load('sleepstudy'))\n"
        "print(lmmfast.__file__)\n"
        "print(round(fit.objective, 3))\n"
    )
    # the wheel's copy comes first on the path, ahead of the development install
    environment = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path, env=environment
    )
    location, objective = run.stdout.split()
    assert Path(location).is_relative_to(target)
    assert objective == "1743.628"


def test_importing_lmmfast_leaves_scipy_stats_and_optimize_unloaded() -> None:
    """A new process (the command line, a tool's subprocess) pays for every import before its
    first fit; scipy.stats and scipy.optimize cost a third of lmmfast's import and a plain fit
    needs neither."""
    code = "import sys, lmmfast; print(sorted(m for m in ('scipy.stats', 'scipy.optimize') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
