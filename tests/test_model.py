"""LinearMixedModel: a model prepared once and fitted to other data gives lmm's fit of them."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import SLEEPSTUDY_SLOPES

import lmmfast
from lmmfast.errors import ArgumentError, DataError
from lmmfast.prepare import prepare


def assert_same_fit(a: lmmfast.LmmResult | lmmfast.GlmmResult, b: lmmfast.LmmResult | lmmfast.GlmmResult) -> None:
    """The two fits (linear or generalized) are one: same optimum, estimates, names and rows."""
    assert a.objective == b.objective
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.beta, b.beta)
    np.testing.assert_array_equal(a.beta_covariance, b.beta_covariance)
    assert a.fixef_names == b.fixef_names
    assert a.nobs == b.nobs


@pytest.fixture(scope="module")
def machines() -> pd.DataFrame:
    return lmmfast.datasets.load("machines")


def resample_subjects(data: pd.DataFrame, column: str, seed: int) -> pd.DataFrame:
    """A cluster bootstrap resample: whole subjects drawn with replacement, each draw a new
    subject."""
    rng = np.random.default_rng(seed)
    subjects = data[column].unique()
    drawn = rng.choice(subjects, size=len(subjects), replace=True)
    parts = [data[data[column] == s].assign(**{column: f"draw{i}"}) for i, s in enumerate(drawn)]
    return pd.concat(parts, ignore_index=True)


def test_fit_of_its_own_data_is_lmms(sleep, fit) -> None:
    model = lmmfast.LinearMixedModel(SLEEPSTUDY_SLOPES, sleep)
    assert_same_fit(model.fit(), fit)
    assert_same_fit(model.fit(sleep), fit)


def test_fits_of_other_data_are_lmms(sleep) -> None:
    model = lmmfast.LinearMixedModel(SLEEPSTUDY_SLOPES, sleep)
    for data in (sleep[sleep["Days"] < 7], resample_subjects(sleep, "Subject", 1), sleep.iloc[::-1]):
        assert_same_fit(model.fit(data), lmmfast.lmm(SLEEPSTUDY_SLOPES, data))


def test_ml_and_optimizer_settings_carry_to_every_fit(sleep) -> None:
    model = lmmfast.LinearMixedModel(SLEEPSTUDY_SLOPES, sleep, reml=False, optimizer="bobyqa")
    data = resample_subjects(sleep, "Subject", 2)
    fit = model.fit(data)
    assert not fit.reml
    assert fit.optsummary.algorithm == "NLOPT_LN_BOBYQA"
    assert_same_fit(fit, lmmfast.lmm(SLEEPSTUDY_SLOPES, data, reml=False, optimizer="bobyqa"))


def test_categorical_predictors_with_the_same_levels_reuse_the_encoding(machines, monkeypatch) -> None:
    """Neither the codings nor formulaic's specs are learnt again (the codings' resolution
    made to fail shows it), and the fit is lmm's."""
    formula = "score ~ Machine + (1 | Worker)"
    model = lmmfast.LinearMixedModel(formula, machines, contrasts={"Machine": "sum"})
    data = machines.iloc[::2]
    expected = lmmfast.lmm(formula, data, contrasts={"Machine": "sum"})

    def not_again(*args, **kwargs):
        raise AssertionError("the codings were resolved again")

    monkeypatch.setattr("lmmfast.prepare.resolve_codings", not_again)
    assert_same_fit(model.fit(data), expected)
    with pytest.raises(AssertionError, match="resolved again"):
        model.fit(machines[machines["Machine"] != "B"])


def test_categorical_predictors_with_other_levels_are_encoded_afresh(machines) -> None:
    """A level gone from the data is not an empty column: the encoding is learnt from the
    new data, as lmm learns it."""
    formula = "score ~ Machine + (1 | Worker)"
    model = lmmfast.LinearMixedModel(formula, machines)
    data = machines[machines["Machine"] != "B"]
    fit = model.fit(data)
    assert fit.fixef_names == ("Intercept", "Machine[T.C]")
    assert_same_fit(fit, lmmfast.lmm(formula, data))


def test_stateful_transforms_are_learnt_from_the_new_data(sleep) -> None:
    """scale(Days) centres and scales by the data being fitted, never by the data the model
    was prepared from."""
    formula = "Reaction ~ scale(Days) + (1 | Subject)"
    model = lmmfast.LinearMixedModel(formula, sleep)
    data = sleep[sleep["Days"] >= 3]
    fit = model.fit(data)
    assert_same_fit(fit, lmmfast.lmm(formula, data))
    assert fit.prepared.fixed.X[:, 1].mean() == pytest.approx(0.0, abs=1e-12)


def test_weights_by_column_carry_to_new_data(sleep) -> None:
    data = sleep.assign(w=np.linspace(0.5, 2.0, len(sleep)))
    model = lmmfast.LinearMixedModel(SLEEPSTUDY_SLOPES, data, weights="w")
    part = data.iloc[:120]
    assert_same_fit(model.fit(part), lmmfast.lmm(SLEEPSTUDY_SLOPES, part, weights="w"))


def test_the_data_are_left_as_they_were(sleep) -> None:
    model = lmmfast.LinearMixedModel(SLEEPSTUDY_SLOPES, sleep)
    data = resample_subjects(sleep, "Subject", 3)
    before = data.copy(deep=True)
    model.fit(data)
    pd.testing.assert_frame_equal(data, before)


def test_a_predictor_of_another_kind_is_encoded_afresh(sleep) -> None:
    """Days as text is a factor of ten levels, as lmm makes it; a grouping factor's kind
    does not matter."""
    model = lmmfast.LinearMixedModel("Reaction ~ Days + (1 | Subject)", sleep)
    data = sleep.assign(Days=sleep["Days"].astype(str), Subject=sleep["Subject"].astype(str))
    fit = model.fit(data)
    assert len(fit.fixef_names) == 10
    assert_same_fit(fit, lmmfast.lmm("Reaction ~ Days + (1 | Subject)", data))


def test_weights_given_as_an_array_do_not_carry_to_other_data(sleep) -> None:
    model = lmmfast.LinearMixedModel(SLEEPSTUDY_SLOPES, sleep, weights=np.ones(len(sleep)))
    model.fit()
    with pytest.raises(ArgumentError) as raised:
        model.fit(sleep)
    assert str(raised.value) == (
        "The model's weights were given as an array, which belongs to the data it was prepared from; to fit other "
        "data with weights, prepare the model with weights= naming their column."
    )


def test_missing_columns_and_data_in_chunks_are_refused(sleep, tmp_path) -> None:
    model = lmmfast.LinearMixedModel(SLEEPSTUDY_SLOPES, sleep)
    with pytest.raises(DataError) as raised:
        model.fit(sleep.drop(columns="Days"))
    assert str(raised.value) == "Column 'Days' is not in the data (columns: 'Reaction', 'Subject')."
    path = tmp_path / "sleep.parquet"
    sleep.to_parquet(path)
    in_memory = (
        " needs its data in memory (a pandas or polars DataFrame, a pyarrow Table or a dict of arrays); only "
        "lmmfast.lmm fits data read in chunks"
    )
    with pytest.raises(DataError, match=re.escape("LinearMixedModel.fit" + in_memory)):
        model.fit(path)
    with pytest.raises(DataError, match=re.escape("lmmfast.LinearMixedModel" + in_memory)):
        lmmfast.LinearMixedModel(SLEEPSTUDY_SLOPES, path)


def test_each_fit_warns_about_its_own_design(sleep) -> None:
    data = sleep.assign(Days2=2 * sleep["Days"])
    model = lmmfast.LinearMixedModel("Reaction ~ Days + Days2 + (1 | Subject)", data)
    with pytest.warns(lmmfast.RankDeficiencyWarning, match="dropping Days2"):
        model.fit(data.iloc[:100])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(data.iloc[:100], checks={"rank_deficiency": "ignore"})


def test_like_must_encode_the_same_formula(sleep) -> None:
    encoding = prepare(SLEEPSTUDY_SLOPES, sleep).encoding
    with pytest.raises(ArgumentError, match=r"^like= is the encoding of 'Reaction ~ Days \+ \(Days \| Subject\)'"):
        prepare("Reaction ~ 1 + (1 | Subject)", sleep, like=encoding)


def test_repr_names_the_model(sleep) -> None:
    model = lmmfast.LinearMixedModel(SLEEPSTUDY_SLOPES, sleep, reml=False)
    assert repr(model) == "LinearMixedModel('Reaction ~ Days + (Days | Subject)', ML, prepared from 180 rows)"


# --- GeneralizedLinearMixedModel ------------------------------------------------------------


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return lmmfast.datasets.load("cbpp")


def test_a_generalized_model_fits_its_own_data_and_others_as_glmm(cbpp, monkeypatch) -> None:
    """Binomial proportions with trials by a weights column: the fit of the model's own data
    and of a subset of herds are glmm's, the subset's with the encoding reused (period keeps
    its four levels: the codings are not resolved again)."""
    formula = "incidence / size ~ period + (1 | herd)"
    model = lmmfast.GeneralizedLinearMixedModel(formula, cbpp, weights="size")
    assert_same_fit(model.fit(), lmmfast.glmm(formula, cbpp, weights="size"))
    herds = cbpp[cbpp["herd"].astype(int) <= 10]
    expected = lmmfast.glmm(formula, herds, weights="size")

    def not_again(*args, **kwargs):
        raise AssertionError("the codings were resolved again")

    monkeypatch.setattr("lmmfast.generalized.prepare.resolve_codings", not_again)
    assert_same_fit(model.fit(herds), expected)


def test_a_poisson_model_with_an_offset_column_and_nagq_zero(cbpp) -> None:
    formula = "incidence ~ period + offset(np.log(size)) + (1 | herd)"
    model = lmmfast.GeneralizedLinearMixedModel(formula, cbpp, "poisson", nAGQ=0)
    assert repr(model) == (
        "GeneralizedLinearMixedModel('incidence ~ period + offset(np.log(size)) + (1 | herd)', poisson (log), "
        "nagq=0, prepared from 56 rows)"
    )
    part = cbpp.iloc[::-1].iloc[:40]
    assert_same_fit(model.fit(part), lmmfast.glmm(formula, part, "poisson", nagq=0))


def test_a_generalized_models_arrays_do_not_carry_to_other_data(cbpp) -> None:
    formula = "incidence / size ~ period + (1 | herd)"
    model = lmmfast.GeneralizedLinearMixedModel(formula, cbpp, weights=cbpp["size"].to_numpy())
    model.fit()
    with pytest.raises(ArgumentError) as raised:
        model.fit(cbpp)
    assert str(raised.value) == (
        "The model's weights were given as an array, which belongs to the data it was prepared from; to fit other "
        "data with weights, prepare the model with weights= naming their column."
    )


def test_a_generalized_models_settings_are_validated_up_front(cbpp) -> None:
    with pytest.raises(ArgumentError, match=r"^nagq must be at most 25 \(lme4.s limit\), got 26\.$"):
        lmmfast.GeneralizedLinearMixedModel("incidence ~ period + (1 | herd)", cbpp, "poisson", nagq=26)
    with pytest.raises(DataError, match=re.escape("lmmfast.GeneralizedLinearMixedModel needs its data in memory")):
        lmmfast.GeneralizedLinearMixedModel("incidence ~ period + (1 | herd)", "cbpp.parquet", "poisson")


def test_prepared_models_travel_to_other_processes(sleep, cbpp) -> None:
    """A pickled model (as a process pool or a Dask worker receives it) fits as the original."""
    import pickle

    model = lmmfast.LinearMixedModel(SLEEPSTUDY_SLOPES, sleep)
    model.fit()  # a factor that has been used travels too
    part = sleep.iloc[:120]
    assert_same_fit(pickle.loads(pickle.dumps(model)).fit(part), model.fit(part))
    generalized = lmmfast.GeneralizedLinearMixedModel("incidence / size ~ period + (1 | herd)", cbpp, weights="size")
    assert_same_fit(pickle.loads(pickle.dumps(generalized)).fit(), generalized.fit())
