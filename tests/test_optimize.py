"""The optimiser: bounds, snapping to the boundary, and its record."""

from __future__ import annotations

import numpy as np
import pytest

import lmmfast
from lmmfast.optimize import optimize_theta
from lmmfast.parameters import ThetaLayout


def test_minimum_inside_the_bounds() -> None:
    layout = ThetaLayout.from_sizes([2])
    target = np.array([1.5, -0.4, 0.7])
    record = optimize_theta(lambda t: float(np.sum((t - target) ** 2)), layout)
    np.testing.assert_allclose(record.final, target, atol=1e-5)
    assert record.converged and record.n_evals > 5 and record.final_objective < record.initial_objective


def test_boundary_minimum_is_snapped_to_exact_zero() -> None:
    layout = ThetaLayout.from_sizes([1, 1])
    record = optimize_theta(lambda t: (t[0] + 1.0) ** 2 + (t[1] - 2.0) ** 2, layout)
    assert record.final[0] == 0.0
    assert record.final[1] == pytest.approx(2.0, abs=1e-5)


def test_snapping_never_raises_the_objective() -> None:
    layout = ThetaLayout.from_sizes([1])
    # minimum at 5e-5, inside the singular tolerance but not on the boundary
    record = optimize_theta(lambda t: 1e6 * (t[0] - 5e-5) ** 2, layout)
    assert record.final[0] > 0.0
    assert record.snapped == ()


def test_dyestuff2_optimum_is_on_the_boundary() -> None:
    with pytest.warns(lmmfast.SingularFitWarning, match=r"Batch.\(Intercept\)"):
        fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff2"))
    assert fit.theta.tolist() == [0.0]
    assert fit.singular


def test_maxeval_exhaustion_warns_of_nonconvergence() -> None:
    from lmmfast.api import _assemble, prepare

    prepared = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    record = optimize_theta(prepared.objective, prepared.layout, maxeval=6)
    assert not record.converged
    assert record.return_code == "MAXEVAL_REACHED"
    assert record.n_evals <= 7
    assert not _assemble(prepared, record, 0.0).converged
