"""The prepared model and the refits that reuse it: every fit owns its factor."""

from __future__ import annotations

import numpy as np
from helpers import SLEEPSTUDY_SLOPES

from lmmfast.fit import fit_prepared
from lmmfast.prepare import prepare, with_reml, with_response

F = SLEEPSTUDY_SLOPES


def test_results_do_not_share_a_factor(sleep, fit) -> None:
    """Each fit optimises a fresh copy of the factor: using one result's factor at another θ
    leaves every other result's answers unchanged."""
    prepared = prepare(F, sleep)
    first, second = fit_prepared(prepared), fit_prepared(prepared)
    assert first.model.objective.factor is not second.model.objective.factor
    assert first.model.objective.factor is not prepared.objective.factor
    before = second.model.objective.solve(second.theta).u.copy()
    first.model.objective(np.array([3.0, 1.0, 2.0]))
    np.testing.assert_array_equal(second.model.objective.solve(second.theta).u, before)
    assert with_reml(prepared, False).objective.factor is not prepared.objective.factor
    assert with_response(prepared, prepared.fixed.y).objective.factor is not prepared.objective.factor
