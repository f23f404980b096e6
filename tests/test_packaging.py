"""The package builds as a wheel that holds everything a fit needs (code and bundled data)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lmmfast

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
        "data = lmmfast.datasets.load('sleepstudy')\n"
        "fit = lmmfast.lmm('Reaction ~ Days + (Days | Subject)', data)\n"
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


def test_importing_lmmfast_leaves_what_a_linear_fit_does_not_need_unloaded() -> None:
    """A new process (the command line, a tool's subprocess) pays for every import before its
    first fit; scipy.stats and scipy.optimize cost a third of lmmfast's import, the
    generalized models and scipy.special another 60 ms, the analysis after the fit (marginal
    means, Kenward–Roger, profiles, plots, saving, reading in chunks) about 30 ms. A plain fit
    needs none of them, and its summary only scipy.special (its p-values). The package's names
    for them still resolve, on first use, and the methods that need them import them."""
    unneeded = [
        "scipy.stats",
        "scipy.optimize",
        "scipy.special",
        "lmmfast.generalized",
        "lmmfast.saved",
        "lmmfast.inference.anova",
        "lmmfast.inference.emmeans",
        "lmmfast.inference.kenward_roger",
        "lmmfast.inference.profile",
        "lmmfast.plots",
        "lmmfast.archive",
        "lmmfast.streamed",
        "lmmfast.many",
        "lmmfast.predict",
    ]
    code = (
        "import sys, lmmfast\n"
        "data = lmmfast.datasets.load('sleepstudy')\n"
        "fit = lmmfast.lmm('Reaction ~ Days + (Days | Subject)', data)\n"
        f"print(sorted(m for m in {unneeded} if m in sys.modules))\n"
        "summary = fit.summary()  # its p-values need scipy.special\n"
        f"print(sorted(m for m in {unneeded} if m in sys.modules and m != 'scipy.special'))\n"
        "print(lmmfast.Family('poisson').link, lmmfast.GlmmResult.__name__, callable(lmmfast.load))\n"
        "print(lmmfast.LinearMixedModel.__name__, lmmfast.GeneralizedLinearMixedModel.__name__)\n"
        "print(lmmfast.anova.__name__, lmmfast.lmm_many.__name__, len(fit.predict(data.head(3))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-5:] == [
        "[]",
        "[]",
        "log GlmmResult True",
        "LinearMixedModel GeneralizedLinearMixedModel",
        "anova lmm_many 3",
    ]


def test_a_name_lmmfast_does_not_have_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'lmmfast' has no attribute 'lmer'"):
        lmmfast.lmer  # noqa: B018
    assert {"Family", "GlmmResult", "load", "lmm"} <= set(dir(lmmfast))
