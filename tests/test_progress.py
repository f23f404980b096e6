"""What a fit shows while it runs: verbose lines, a progress bar, a word before long fits."""

from __future__ import annotations

import io

import numpy as np
import pytest

import lmmfast
from lmmfast.factor.plan import FactorPlan
from lmmfast.progress import LONG_EVALUATION_SECONDS, FitMonitor


def test_verbose_prints_the_plan_and_every_evaluation(capsys) -> None:
    fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"), verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Engine: {fit.engine}"
    assert len(lines) == 1 + fit.n_evals
    last = lines[-1].split()
    assert last[0] == f"{fit.n_evals}:" and float(last[2]) == pytest.approx(
        fit.optsummary.trace_objective[-1], abs=1e-6
    )


def test_quiet_by_default_and_a_bar_when_asked(capsys) -> None:
    data = lmmfast.datasets.load("dyestuff")
    lmmfast.lmm("Yield ~ 1 + (1 | Batch)", data)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    lmmfast.lmm("Yield ~ 1 + (1 | Batch)", data, progress=True)
    assert "lmmfast fit" in capsys.readouterr().err
    with pytest.raises(lmmfast.ArgumentError, match="progress must be True or False"):
        lmmfast.lmm("Yield ~ 1 + (1 | Batch)", data, progress="yes")


def test_a_slow_fit_gets_a_bar_and_a_long_one_a_warning_first(capsys) -> None:
    monitor = FitMonitor(progress=None)
    slow = FactorPlan("blocked", "sparse", False, 20_000, 2, None, 10**10, 2 * LONG_EVALUATION_SECONDS)
    monitor.start(slow)
    assert "each evaluation of this model will take about 20 s" in capsys.readouterr().err
    monitor.evaluation(np.zeros(1), 1.0, 30.0)  # the first may be compiling: no bar yet
    assert monitor._bar is None
    monitor.evaluation(np.zeros(1), 0.5, 2.0)
    assert monitor._bar is not None and monitor._bar.n == 2
    monitor.close()
    capsys.readouterr()
    silent = FitMonitor(progress=False, stream=io.StringIO())
    silent.start(slow)
    silent.evaluation(np.zeros(1), 1.0, 30.0)
    silent.evaluation(np.zeros(1), 1.0, 30.0)
    assert silent._bar is None and capsys.readouterr().err == ""
