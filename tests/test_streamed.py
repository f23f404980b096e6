"""Data read in chunks (Parquet, Arrow datasets, Dask DataFrames): the in-memory fit's
numbers from cross-products summed chunk by chunk, and clear errors for what needs rows."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from helpers import SLEEPSTUDY_SLOPES, case_data, reference_cases

import lmmfast
import lmmfast.design.source as source
from lmmfast.errors import ArgumentError, DataError, DataNotSavedError, FormulaError, ModelError
from lmmfast.prepare import prepare
from lmmfast.streamed import prepare_streamed

#: Rows per chunk in these tests: small, so that every data set spans several chunks.
SMALL_CHUNKS = 50


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "CHUNK_ROWS", SMALL_CHUNKS)


@pytest.fixture
def sleepstudy_path(tmp_path):
    """sleepstudy as a Parquet file."""
    path = tmp_path / "data.parquet"
    lmmfast.datasets.load("sleepstudy").to_parquet(path)
    return path


def _quiet_fit(formula: str, data: object, **options) -> lmmfast.LmmResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmmfast.SingularFitWarning)
        return lmmfast.lmm(formula, data, **options)


def _assert_same_fit(streamed: lmmfast.LmmResult, in_memory: lmmfast.LmmResult) -> None:
    assert streamed.objective == pytest.approx(in_memory.objective, rel=1e-10)
    np.testing.assert_allclose(streamed.beta, in_memory.beta, rtol=1e-6, atol=1e-6 * np.max(in_memory.stderr))
    # θ and what follows from it to 1e-5: on a flat optimum (machines' factor slopes) sums in
    # another order end 3e-6 of θ away at 5e-11 of the criterion, where BOBYQA ends 4e-5 away
    np.testing.assert_allclose(streamed.theta, in_memory.theta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(streamed.stderr, in_memory.stderr, rtol=1e-5)
    assert streamed.fixef_names == in_memory.fixef_names
    assert streamed.nobs == in_memory.nobs
    assert streamed.ngrps == in_memory.ngrps
    for a, b in zip(streamed.terms, in_memory.terms):
        np.testing.assert_array_equal(a.levels, b.levels)
        np.testing.assert_allclose(a.modes, b.modes, rtol=1e-5, atol=1e-6 * np.max(np.abs(b.modes)))


CASES = reference_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_a_parquet_file_gives_the_in_memory_fit(case, tmp_path, monkeypatch) -> None:
    data = case_data(case)
    monkeypatch.setattr(source, "CHUNK_ROWS", max(SMALL_CHUNKS, len(data) // 8))  # at least 8 chunks
    path = tmp_path / "data.parquet"
    data.to_parquet(path, row_group_size=max(37, len(data) // 20))  # row groups gathered into chunks
    reml = case["criterion"] == "REML"
    _assert_same_fit(_quiet_fit(case["formula"], path, reml=reml), _quiet_fit(case["formula"], data, reml=reml))


def _with_gaps() -> pd.DataFrame:
    """sleepstudy with text levels, a text predictor, missing values and a weight column."""
    data = lmmfast.datasets.load("sleepstudy")
    rng = np.random.default_rng(5)
    data = data.assign(
        Subject="s" + data.Subject.astype(str),
        shift=rng.choice(["night", "day", "early"], len(data)),
        w=rng.uniform(0.5, 2.0, len(data)),
    )
    data.loc[[3, 70, 71, 150], "Reaction"] = np.nan
    data.loc[[10, 90], "shift"] = None
    return data


def test_text_predictors_missing_values_and_weights_as_in_memory(tmp_path) -> None:
    data = _with_gaps()
    path = tmp_path / "data.parquet"
    data.to_parquet(path, row_group_size=23)
    formula = "Reaction ~ Days * shift + (Days | Subject)"
    streamed = _quiet_fit(formula, path, weights="w")
    in_memory = _quiet_fit(formula, data, weights="w")
    _assert_same_fit(streamed, in_memory)
    np.testing.assert_array_equal(streamed.dropped_rows, in_memory.dropped_rows)
    assert streamed.weights_name == "w"


def test_a_dataset_of_several_files_and_an_arrow_dataset(tmp_path) -> None:
    data = _with_gaps()
    folder = tmp_path / "dataset"
    folder.mkdir()
    for part, rows in enumerate(np.array_split(np.arange(len(data)), 4)):
        data.iloc[rows].to_parquet(folder / f"part-{part}.parquet")
    formula = "Reaction ~ Days + shift + (1 | Subject)"
    in_memory = _quiet_fit(formula, data)
    _assert_same_fit(_quiet_fit(formula, str(folder)), in_memory)
    _assert_same_fit(_quiet_fit(formula, ds.dataset(folder)), in_memory)
    np.testing.assert_array_equal(_quiet_fit(formula, folder).dropped_rows, in_memory.dropped_rows)


def test_interaction_and_nested_groupings(tmp_path) -> None:
    data = lmmfast.datasets.load("pastes")
    path = tmp_path / "pastes.parquet"
    data.sample(frac=1.0, random_state=3).to_parquet(path)  # levels arrive in no order
    shuffled = data.sample(frac=1.0, random_state=3)
    for formula in ("strength ~ 1 + (1 | batch/cask)", "strength ~ 1 + (1 | batch:cask) + (1 | batch)"):
        _assert_same_fit(_quiet_fit(formula, path), _quiet_fit(formula, shuffled))


def test_aliased_columns_are_dropped_as_in_memory(tmp_path) -> None:
    data = lmmfast.datasets.load("sleepstudy").assign(twice=lambda d: 2.0 * d.Days + 1.0)
    path = tmp_path / "data.parquet"
    data.to_parquet(path)
    with pytest.warns(lmmfast.RankDeficiencyWarning, match="dropping twice"):
        streamed = lmmfast.lmm("Reaction ~ Days + twice + (1 | Subject)", path)
    with pytest.warns(lmmfast.RankDeficiencyWarning):
        in_memory = lmmfast.lmm("Reaction ~ Days + twice + (1 | Subject)", data)
    assert streamed.dropped_columns == in_memory.dropped_columns == ("twice",)
    _assert_same_fit(streamed, in_memory)


def test_the_analysis_from_the_fit_alone_works(tmp_path) -> None:
    data = lmmfast.datasets.load("sleepstudy")
    path = tmp_path / "data.parquet"
    data.to_parquet(path)
    streamed, in_memory = lmmfast.lmm(SLEEPSTUDY_SLOPES, path), lmmfast.lmm(SLEEPSTUDY_SLOPES, data)
    pd.testing.assert_frame_equal(streamed.coef_table, in_memory.coef_table, rtol=1e-6)
    pd.testing.assert_frame_equal(streamed.confint(method="wald"), in_memory.confint(method="wald"), rtol=1e-6)
    pd.testing.assert_frame_equal(streamed.anova_terms(type=1), in_memory.anova_terms(type=1), rtol=1e-6)
    np.testing.assert_allclose(streamed.predict(data), in_memory.predict(data), rtol=1e-6)
    pd.testing.assert_frame_equal(streamed.ranef_table(), in_memory.ranef_table(), rtol=1e-5, atol=1e-4)
    reduced = lmmfast.lmm("Reaction ~ 1 + (Days | Subject)", path)
    table = lmmfast.anova(reduced, streamed)
    expected = lmmfast.anova(lmmfast.lmm("Reaction ~ 1 + (Days | Subject)", data), in_memory)
    np.testing.assert_allclose(table["chisq"].iloc[1], expected["chisq"].iloc[1], rtol=1e-6)
    assert "not computed: the data were read in chunks" in streamed.summary()
    assert f"Data: {path}" in streamed.summary()


def test_profiles_marginal_means_ml_refits_and_saved_fits_work_without_rows(tmp_path) -> None:
    data = _with_gaps().drop(columns="w")
    path = tmp_path / "data.parquet"
    data.to_parquet(path)
    formula = "Reaction ~ Days * shift + (Days | Subject)"
    streamed, in_memory = lmmfast.lmm(formula, path), lmmfast.lmm(formula, data)
    pd.testing.assert_frame_equal(streamed.confint(method="profile"), in_memory.confint(method="profile"), rtol=1e-4)
    pd.testing.assert_frame_equal(streamed.emmeans("shift").table, in_memory.emmeans("shift").table, rtol=1e-5)
    pd.testing.assert_frame_equal(streamed.anova_terms(type=2), in_memory.anova_terms(type=2), rtol=1e-6)
    assert streamed.refit_ml().objective == pytest.approx(in_memory.refit_ml().objective, rel=1e-10)
    streamed.save(tmp_path / "fit.lmmfast")
    loaded = lmmfast.load(tmp_path / "fit.lmmfast")
    complete = data.dropna()
    np.testing.assert_array_equal(loaded.predict(complete), streamed.predict(complete))
    assert loaded.summary() == streamed.summary()
    with pytest.raises(DataNotSavedError, match=r"^include_data=True: this needs the rows"):
        streamed.save(tmp_path / "with-data.lmmfast", include_data=True)


def test_what_needs_the_rows_says_so(sleepstudy_path) -> None:
    path = sleepstudy_path
    fit = lmmfast.lmm(SLEEPSTUDY_SLOPES, path)
    for needs_rows, purpose in [
        (fit.plot_residuals, "The residual plot"),
        (lambda: fit.refit(np.ones(180)), "A refit to a new response"),
        (lambda: fit.bootstrap(2, seed=1), "Simulating responses"),
        (lambda: fit.simulate(1, seed=1), "Simulating responses"),
        (lambda: fit.summary(ddf="kenward-roger"), "Kenward–Roger"),
        (fit.r2, "R²"),
        (fit.ranova, "ranova"),
    ]:
        with pytest.raises(DataNotSavedError, match=rf"^{purpose}.*: this needs the rows of the data, and the model"):
            needs_rows()


def test_fitted_values_residuals_and_predictions_come_chunk_by_chunk(tmp_path) -> None:
    data = _with_gaps()
    path = tmp_path / "data.parquet"
    data.to_parquet(path, row_group_size=23)
    formula = "Reaction ~ Days * shift + (Days | Subject)"
    streamed, in_memory = _quiet_fit(formula, path, weights="w"), _quiet_fit(formula, data, weights="w")
    fitted = streamed.fitted()
    assert isinstance(fitted, pa.ChunkedArray) and fitted.num_chunks > 1
    np.testing.assert_allclose(fitted.to_numpy(), in_memory.fitted(), rtol=1e-6)
    for kind in ("response", "pearson"):
        np.testing.assert_allclose(streamed.residuals(kind).to_numpy(), in_memory.residuals(kind), atol=1e-5)
    complete = data.dropna(subset=["Reaction", "shift"])
    complete.to_parquet(tmp_path / "complete.parquet", row_group_size=23)
    predicted = streamed.predict(tmp_path / "complete.parquet").to_numpy()
    np.testing.assert_allclose(predicted, in_memory.predict(complete), rtol=1e-6)
    with pytest.raises(ArgumentError, match="residual type"):
        streamed.residuals("deviance")
    assert len(complete) == len(fitted)


def test_a_wrong_path_or_argument_is_named(tmp_path, sleepstudy_path) -> None:
    with pytest.raises(DataError, match=r"data is the path '.*nowhere.parquet', which does not exist"):
        lmmfast.lmm(SLEEPSTUDY_SLOPES, tmp_path / "nowhere.parquet")
    with pytest.raises(DataError, match=r"For the bundled dataset, pass lmmfast.datasets.load\('sleepstudy'\)"):
        lmmfast.lmm(SLEEPSTUDY_SLOPES, "sleepstudy")
    text = tmp_path / "data.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"could not be read as Parquet"):
        lmmfast.lmm(SLEEPSTUDY_SLOPES, text)
    path = sleepstudy_path
    with pytest.raises(ArgumentError, match=r"^weights must be a column's name for data read in chunks"):
        lmmfast.lmm(SLEEPSTUDY_SLOPES, path, weights=np.ones(180))
    with pytest.raises(DataError, match=r"^Column 'Reactions' is not in the data .* Did you mean 'Reaction'\?"):
        lmmfast.lmm("Reactions ~ Days + (Days | Subject)", path)
    with pytest.raises(ArgumentError, match=r"^client= spreads the reading of data read in chunks"):
        lmmfast.lmm(SLEEPSTUDY_SLOPES, lmmfast.datasets.load("sleepstudy"), client=object())
    with pytest.raises(ArgumentError, match=r"^client must be a dask.distributed Client"):
        lmmfast.lmm(SLEEPSTUDY_SLOPES, path, client=object())


def test_whole_column_transforms_and_numbers_as_categories_are_refused(sleepstudy_path) -> None:
    path = sleepstudy_path
    with pytest.raises(FormulaError, match=r"^scale\(Days\) in the fixed part takes its state .* from the whole col"):
        lmmfast.lmm("Reaction ~ scale(Days) + (1 | Subject)", path)
    with pytest.raises(FormulaError, match=r"^C\(Days\) in the fixed part reads the numeric column 'Days' as categ"):
        lmmfast.lmm("Reaction ~ C(Days) + (1 | Subject)", path)


def test_the_whole_datas_checks_apply(tmp_path) -> None:
    data = lmmfast.datasets.load("sleepstudy")
    path = tmp_path / "data.parquet"
    data.assign(Reaction=300.0).to_parquet(path)
    with pytest.raises(DataError, match=r"^The response 'Reaction' is constant \(300\)"):
        lmmfast.lmm(SLEEPSTUDY_SLOPES, path)
    data.assign(Reaction=np.nan).to_parquet(path)
    with pytest.raises(DataError, match=r"^Every row of .* misses a value in a column the model uses"):
        lmmfast.lmm(SLEEPSTUDY_SLOPES, path)
    data.assign(Subject=np.arange(180)).to_parquet(path)
    with pytest.raises(
        ModelError, match=r"^The grouping factor 'Subject' in \(Days \| Subject\) has 180 levels for 180"
    ):
        lmmfast.lmm(SLEEPSTUDY_SLOPES, path)


def test_a_column_whose_type_changes_between_files_is_refused(tmp_path) -> None:
    folder = tmp_path / "dataset"
    folder.mkdir()
    data = lmmfast.datasets.load("sleepstudy")
    data.iloc[:90].to_parquet(folder / "a.parquet")
    pq.write_table(pa.Table.from_pandas(data.iloc[90:].assign(Days=data.Days.iloc[90:].astype(str))), folder / "b.pq")
    dataset = ds.dataset([str(folder / "a.parquet")], format="parquet")
    other = ds.dataset([str(folder / "b.pq")], format="parquet")
    scans = [
        lmmfast.design.scan.scan_chunk(d.to_table().to_pandas(), ["Reaction", "Days", "Subject"], [("Subject",)])
        for d in (dataset, other)
    ]
    with pytest.raises(DataError, match=r"^Column 'Days' is numeric \(int64\) in one part of the data and text"):
        lmmfast.design.scan.add_scans(*scans)


def test_progress_shows_the_rows_each_pass_has_read(sleepstudy_path, capsys) -> None:
    lmmfast.lmm(SLEEPSTUDY_SLOPES, sleepstudy_path, progress=True)
    err = capsys.readouterr().err
    assert "levels (pass 1 of 2)" in err and "cross-products (pass 2 of 2)" in err and "/180 [" in err
    lmmfast.lmm(SLEEPSTUDY_SLOPES, sleepstudy_path, progress=False)
    assert capsys.readouterr().err == ""


def test_a_prepared_streamed_model_holds_no_rows(sleepstudy_path) -> None:
    path = sleepstudy_path
    prepared = prepare_streamed(SLEEPSTUDY_SLOPES, path)
    assert not prepared.has_rows
    assert prepared.fixed.X.shape == (0, 2) and prepared.terms[0].codes.shape == (0,)
    assert prepared.objective.cross_products.n == 180


def test_a_path_where_data_in_memory_are_needed_is_named() -> None:
    fit = lmmfast.glmm(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), family="binomial"
    )
    with pytest.raises(DataError, match=r"^data is 'new.parquet', to be read in chunks, which only lmmfast.lmm"):
        fit.predict("new.parquet")


def test_generalized_and_many_response_fits_need_data_in_memory(tmp_path) -> None:
    path = tmp_path / "data.parquet"
    lmmfast.datasets.load("cbpp").to_parquet(path)
    with pytest.raises(DataError, match=r"^lmmfast.glmm needs its data in memory"):
        lmmfast.glmm("cbind(incidence, size - incidence) ~ period + (1 | herd)", path)
    with pytest.raises(DataError, match=r"^lmmfast.lmm_many needs its data in memory"):
        lmmfast.lmm_many("~ period + (1 | herd)", path, ["incidence"])
    with pytest.raises(DataError, match=r"^lmmfast.prepare needs its data in memory.*prepare_streamed prepares them"):
        prepare("incidence ~ period + (1 | herd)", path)


dd = pytest.importorskip("dask.dataframe")


def test_a_dask_dataframe_gives_the_in_memory_fit_and_lazy_row_results() -> None:
    data = _with_gaps()
    formula = "Reaction ~ Days * shift + (Days | Subject)"
    frame = dd.from_pandas(data, npartitions=5)
    streamed, in_memory = _quiet_fit(formula, frame, weights="w"), _quiet_fit(formula, data, weights="w")
    _assert_same_fit(streamed, in_memory)
    residuals = streamed.residuals()
    assert isinstance(residuals, dd.Series)
    computed = residuals.compute()
    np.testing.assert_array_equal(computed.index, data.dropna(subset=["Reaction", "shift"]).index)
    np.testing.assert_allclose(computed.to_numpy(), in_memory.residuals(), atol=1e-4)
    complete = data.dropna(subset=["Reaction", "shift"])
    predicted = streamed.predict(dd.from_pandas(complete, npartitions=3), re="none").compute()
    np.testing.assert_allclose(predicted.to_numpy(), in_memory.predict(complete, re="none"), rtol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_a_dask_dataframe_of_each_reference_case_gives_the_in_memory_fit(case) -> None:
    data = case_data(case)
    reml = case["criterion"] == "REML"
    frame = dd.from_pandas(data, npartitions=3)
    _assert_same_fit(_quiet_fit(case["formula"], frame, reml=reml), _quiet_fit(case["formula"], data, reml=reml))
