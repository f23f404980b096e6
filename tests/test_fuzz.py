"""Fuzzing: random data and formulas end in a valid fit or an LmmfastError, nothing else."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmmfast

NUMERIC = ["x", "z", "const", "huge", "tiny"]
FACTORS = ["g", "h", "f"]


@st.composite
def datasets(draw):
    n = draw(st.sampled_from([0, 1, 2, 5]) | st.integers(min_value=10, max_value=80))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    rng = np.random.default_rng(seed)
    data = {
        "y": rng.normal(size=n),
        "x": rng.normal(size=n),
        "z": rng.integers(0, 3, size=n).astype(float),
        "const": np.ones(n),
        "huge": rng.normal(size=n) * 1e9,
        "tiny": rng.normal(size=n) * 1e-9,
        "g": rng.integers(0, draw(st.integers(1, 12) | st.just(6)), size=n),
        "h": rng.choice(list("abcde")[: draw(st.integers(1, 5))], size=n),
        "f": rng.choice(["u", "v"], size=n),
        "w": rng.uniform(0.1, 3.0, size=n),
    }
    frame = pd.DataFrame(data)
    for column in draw(st.lists(st.sampled_from(["y", "x", "g", "h", "w"]), max_size=2)):
        kind = draw(st.sampled_from(["nan", "inf", "none"]))
        if n:
            row = draw(st.integers(0, n - 1))
            if kind == "inf" and frame[column].dtype.kind == "f":
                frame.loc[row, column] = np.inf
            elif kind != "inf":
                frame[column] = frame[column].astype(object) if frame[column].dtype.kind not in "f" else frame[column]
                frame.loc[row, column] = np.nan if kind == "nan" else None
    return frame


@st.composite
def formulas(draw):
    # valid pieces are listed several times so that most draws reach the engine
    fixed = draw(
        st.lists(st.sampled_from(NUMERIC * 2 + ["f", "x:f", "I(x**2)", "np.log(w)", "0", "1", "missing"]), max_size=3)
    )
    random_terms = []
    for _ in range(draw(st.integers(0, 3)) or draw(st.integers(0, 1)) + 1):
        expr = draw(st.sampled_from(["1"] * 4 + ["x", "1 + x", "0 + x", "f", "0 + f", "z", "nothing"]))
        bar = draw(st.sampled_from(["|", "|", "|", "||"]))
        group = draw(st.sampled_from(FACTORS * 3 + ["g:h", "g/h", "h/f", "unknown"]))
        random_terms.append(f"({expr} {bar} {group})")
    junk = draw(st.sampled_from([""] * 16 + [" +", " (", ")", " | g", "~"]))
    terms = fixed + random_terms
    return "y ~ " + (" + ".join(terms) if terms else "") + junk


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets(), formula=formulas(), reml=st.booleans(), weighted=st.booleans())
def test_every_outcome_is_a_valid_fit_or_a_clear_error(data, formula, reml, weighted) -> None:
    before = data.copy(deep=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmmfast.LmmfastWarning)
        try:
            fit = lmmfast.lmm(formula, data, reml=reml, weights="w" if weighted else None)
        except lmmfast.LmmfastError as error:
            assert str(error)
            return
        finally:
            pd.testing.assert_frame_equal(data, before)
    assert np.isfinite(fit.objective)
    assert fit.sigma > 0 and np.isfinite(fit.sigma)
    assert np.all(np.isfinite(fit.beta)) and np.all(np.isfinite(fit.stderr))
    assert np.all(np.isfinite(fit.theta))
    assert np.all(np.isfinite(fit.varcorr.vcov))
    for frame in fit.ranef.values():
        assert np.all(np.isfinite(frame.to_numpy()))
    with warnings.catch_warnings():
        # a degenerate fit may warn that its Satterthwaite df are not available
        warnings.simplefilter("ignore", lmmfast.LmmfastWarning)
        assert fit.summary()
        fit.to_dict()


@st.composite
def generalized_datasets(draw):
    frame = draw(datasets())
    n = len(frame)
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    frame["b"] = rng.integers(0, 2, size=n)
    frame["k"] = rng.poisson(draw(st.sampled_from([0.05, 1.0, 20.0])), size=n)
    frame["trials"] = rng.integers(1, 6, size=n)
    frame["s"] = rng.binomial(frame["trials"].to_numpy(), 0.3)
    return frame


# numpy's floating-point warnings too: an overflowing trial point is PIRLS's to step back
# from, not the user's to see
@pytest.mark.filterwarnings("error::RuntimeWarning")
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=generalized_datasets(),
    formula=formulas(),
    family=st.sampled_from(["binomial", "poisson"]),
    response=st.sampled_from(["b", "k", "cbind(s, trials - s)", "y", "f"]),
    nagq=st.sampled_from([0, 1, 1, 3]),
)
def test_every_generalized_outcome_is_a_valid_fit_or_a_clear_error(data, formula, family, response, nagq) -> None:
    before = data.copy(deep=True)
    formula = response + formula[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmmfast.LmmfastWarning)
        try:
            fit = lmmfast.glmm(formula, data, family, nagq=nagq)
        except lmmfast.LmmfastError as error:
            assert str(error)
            return
        finally:
            pd.testing.assert_frame_equal(data, before)
        assert np.isfinite(fit.objective) and np.isfinite(fit.deviance)
        assert np.all(np.isfinite(fit.beta)) and np.all(np.isfinite(fit.theta))
        assert np.all(np.isfinite(fit.fitted()))
        assert fit.summary()
        fit.to_dict()
