"""Saved fits: what a loaded fit equals, what it asks the data for, and the file's safety."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import SLEEPSTUDY_SLOPES

import lmmfast
from lmmfast.archive import FORMAT_VERSION

KB07 = Path(__file__).parent / "reference" / "analysis" / "kb07_factors.csv"


def saved(fit, tmp_path: Path, name: str = "fit.lmmfast", **options) -> Path:
    path = tmp_path / name
    fit.save(path, **options)
    return path


def assert_same_tables(loaded, fit) -> None:
    """Everything that does not need the rows agrees exactly."""
    assert loaded.summary() == fit.summary()
    assert repr(loaded) == repr(fit)
    assert loaded.to_dict() == fit.to_dict()
    pd.testing.assert_frame_equal(loaded.varcorr, fit.varcorr)
    pd.testing.assert_frame_equal(loaded.vcov, fit.vcov)
    pd.testing.assert_frame_equal(loaded.ranef_table(), fit.ranef_table())
    pd.testing.assert_frame_equal(loaded.confint(), fit.confint())
    for group in fit.ranef:
        pd.testing.assert_frame_equal(loaded.ranef[group], fit.ranef[group])
        pd.testing.assert_frame_equal(loaded.coef[group], fit.coef[group])
    for name, block in fit.cond_var.items():
        np.testing.assert_array_equal(loaded.cond_var[name], block)
    np.testing.assert_array_equal(loaded.theta, fit.theta)
    for name in ("aic", "bic", "singular", "converged", "nobs", "fixef_names"):
        assert getattr(loaded, name) == getattr(fit, name)


def test_a_loaded_linear_fit_equals_the_original_without_its_rows(fit, sleep, tmp_path) -> None:
    loaded = lmmfast.load(saved(fit, tmp_path))
    assert isinstance(loaded, lmmfast.LmmResult) and not loaded.has_data
    assert_same_tables(loaded, fit)
    pd.testing.assert_frame_equal(loaded.coef_table, fit.coef_table)
    assert loaded.test_contrasts(np.array([[0.0, 1.0]])) == fit.test_contrasts(np.array([[0.0, 1.0]]))
    new = pd.DataFrame({"Days": [0.0, 4.5, 12.0], "Subject": ["308", "999", "372"]})
    for re in ("all", "none"):
        np.testing.assert_array_equal(loaded.predict(new, re=re), fit.predict(new, re=re))
    np.testing.assert_array_equal(loaded.predict(sleep), fit.predict(sleep))


@pytest.mark.parametrize(
    "call",
    [
        lambda f: f.residuals(),
        lambda f: f.fitted(),
        lambda f: f.refit(np.zeros(180)),
        lambda f: f.simulate(1, seed=1),
        lambda f: f.bootstrap(2, seed=1),
        lambda f: f.profile(),
        lambda f: f.confint("profile"),
        lambda f: f.r2(),
        lambda f: f.ranova(),
        lambda f: f.refit_ml(),
        lambda f: f.save("unused.lmmfast", include_data=True),
    ],
    ids=["residuals", "fitted", "refit", "simulate", "bootstrap", "profile", "confint", "r2", "ranova", "ml", "save"],
)
def test_what_needs_the_rows_asks_for_the_data(fit, tmp_path, call) -> None:
    loaded = lmmfast.load(saved(fit, tmp_path))
    with pytest.raises(lmmfast.DataNotSavedError, match=r"lmmfast.load\(path, data=the_data\)"):
        call(loaded)


def test_loading_with_the_data_restores_the_whole_fit(fit, sleep, tmp_path) -> None:
    restored = lmmfast.load(saved(fit, tmp_path), data=sleep)
    assert restored.has_data
    assert restored.summary() == fit.summary()
    np.testing.assert_allclose(restored.residuals(), fit.residuals(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(restored.beta, fit.beta, rtol=1e-12)
    # the optimiser's record is the saved one: no optimisation ran
    assert restored.optsummary.n_evals == fit.optsummary.n_evals
    assert restored.refit(fit.model.fixed.y).objective == pytest.approx(fit.objective, abs=1e-6)


def test_rows_saved_with_the_fit_restore_it_and_keep_its_dropped_rows(sleep, tmp_path) -> None:
    data = sleep.copy()
    data.loc[[3, 50], "Reaction"] = np.nan
    fit = lmmfast.lmm(SLEEPSTUDY_SLOPES, data)
    restored = lmmfast.load(saved(fit, tmp_path, include_data=True))
    assert restored.has_data
    np.testing.assert_array_equal(restored.dropped_rows, [3, 50])
    assert restored.summary() == fit.summary()
    np.testing.assert_allclose(restored.fitted(), fit.fitted(), atol=1e-9)


def test_a_file_without_rows_does_not_grow_with_them(tmp_path) -> None:
    data = lmmfast.datasets.simulate_crossed(60, 40, 40, trials_per_item=5, slopes=False, seed=3)
    fit = lmmfast.lmm("y ~ cond + freq + (1 | subj) + (1 | item)", data)
    compact, whole = saved(fit, tmp_path, "compact.lmmfast"), saved(fit, tmp_path, "whole.lmmfast", include_data=True)
    assert len(data) == 12_000
    assert compact.stat().st_size < 40_000 < whole.stat().st_size


def test_codings_levels_and_transforms_survive_saving(tmp_path) -> None:
    data = pd.read_csv(KB07).assign(x=lambda d: np.arange(len(d)) % 17 / 3.0)
    fit = lmmfast.lmm(
        "RTtrunc ~ spkr * prec + load + scale(x) + (1 | subj) + (1 + spkr | item)",
        data,
        contrasts={"spkr": "sum", "load": "helmert"},
        checks={"singular": "ignore"},
    )
    loaded = lmmfast.load(saved(fit, tmp_path))
    assert_same_tables(loaded, fit)
    new = data.iloc[[0, 5, 900]].assign(x=[100.0, -3.0, 0.5])  # the saved centre and scale, not new ones
    np.testing.assert_array_equal(loaded.predict(new), fit.predict(new))
    with pytest.raises(lmmfast.DataError, match="has a level the fit has not seen"):
        loaded.predict(new.assign(spkr="unknown"))
    with pytest.raises(lmmfast.DataError, match="numbers stored as text"):
        loaded.predict(new.assign(x=new.x.astype(str)))
    restored = lmmfast.load(saved(fit, tmp_path, "again.lmmfast"), data=data)
    assert restored.summary() == fit.summary()


def test_set_options_at_load_time_do_not_change_the_restored_codings(tmp_path) -> None:
    data = pd.read_csv(KB07)
    fit = lmmfast.lmm("RTtrunc ~ spkr + (1 | subj)", data)
    path = saved(fit, tmp_path)
    previous = lmmfast.get_options()["contrasts"]
    lmmfast.set_options(contrasts="sum")
    try:
        restored = lmmfast.load(path, data=data)
    finally:
        lmmfast.set_options(contrasts=previous)
    assert restored.fixef_names == fit.fixef_names == ("Intercept", "spkr[T.old]")


def test_other_data_are_refused(fit, sleep, tmp_path) -> None:
    path = saved(fit, tmp_path)
    with pytest.raises(lmmfast.SavedFitError, match="These data do not give the saved fit"):
        lmmfast.load(path, data=sleep.assign(Reaction=sleep.Reaction * 1.01))
    with pytest.raises(lmmfast.DataError, match="Column 'Days' is not in the data"):
        lmmfast.load(path, data=sleep.drop(columns="Days"))


def test_weights_given_as_an_array_are_kept_only_with_the_rows(sleep, tmp_path) -> None:
    weights = 1.0 + (np.arange(len(sleep)) % 3)
    fit = lmmfast.lmm(SLEEPSTUDY_SLOPES, sleep, weights=weights)
    with pytest.raises(lmmfast.SavedFitError, match="weights were given as an array"):
        lmmfast.load(saved(fit, tmp_path), data=sleep)
    restored = lmmfast.load(saved(fit, tmp_path, "rows.lmmfast", include_data=True))
    assert restored.summary() == fit.summary()
    np.testing.assert_allclose(restored.residuals("pearson"), fit.residuals("pearson"), atol=1e-9)


def test_a_loaded_fit_saves_again(fit, tmp_path) -> None:
    loaded = lmmfast.load(saved(fit, tmp_path))
    again = lmmfast.load(saved(loaded, tmp_path, "again.lmmfast"))
    assert_same_tables(again, fit)


# --- generalized fits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    return lmmfast.datasets.load("cbpp")


@pytest.mark.parametrize("nagq", [0, 1, 5])
def test_a_generalized_fit_saves_and_restores(cbpp, tmp_path, nagq) -> None:
    fit = lmmfast.glmm("prop ~ period + (1 | herd)", cbpp, weights="size", nagq=nagq)
    path = saved(fit, tmp_path)
    loaded = lmmfast.load(path)
    assert isinstance(loaded, lmmfast.GlmmResult) and not loaded.has_data
    assert_same_tables(loaded, fit)
    assert loaded.deviance == fit.deviance
    for scale in ("response", "link"):
        np.testing.assert_array_equal(loaded.predict(cbpp, type=scale), fit.predict(cbpp, type=scale))
    with pytest.raises(lmmfast.DataNotSavedError):
        loaded.residuals()
    restored = lmmfast.load(path, data=cbpp)
    assert restored.summary() == fit.summary()
    np.testing.assert_allclose(restored.residuals(), fit.residuals(), atol=1e-8)


def test_a_generalized_fit_with_an_offset_array_restores_from_its_saved_rows(tmp_path) -> None:
    data = lmmfast.datasets.simulate_crossed(30, 20, 10, slopes=False, family="poisson", seed=4)
    exposure = np.log(1.0 + np.arange(len(data)) % 4)
    fit = lmmfast.glmm("y ~ cond + (1 | subj) + (1 | item)", data, family="poisson", offset=exposure)
    with pytest.raises(lmmfast.SavedFitError, match="offset were given as an array"):
        lmmfast.load(saved(fit, tmp_path), data=data)
    restored = lmmfast.load(saved(fit, tmp_path, "rows.lmmfast", include_data=True))
    assert restored.summary() == fit.summary()
    np.testing.assert_allclose(restored.fitted(), fit.fitted(), rtol=1e-8)


# --- the file ---------------------------------------------------------------------------------------


def test_the_file_holds_json_arrays_and_parquet_only(fit, tmp_path) -> None:
    with zipfile.ZipFile(saved(fit, tmp_path, include_data=True)) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        dtypes = {np.load(io.BytesIO(archive.read(n)), allow_pickle=False).dtype.kind for n in names if ".npy" in n}
    assert names[0] == "manifest.json" and names[-1] == "data.parquet"
    assert all(n.startswith("arrays/") and n.endswith(".npy") for n in names[1:-1])
    assert dtypes <= set("biuf")
    assert (manifest["format"], manifest["format_version"], manifest["kind"]) == ("lmmfast-saved-fit", 1, "lmm")


def rewritten(path: Path, target: Path, change) -> Path:
    """A copy of the saved fit at ``path`` with its manifest changed by ``change``."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as copy:
        for name in source.namelist():
            payload = source.read(name)
            if name == "manifest.json":
                manifest = json.loads(payload)
                change(manifest)
                payload = json.dumps(manifest).encode()
            copy.writestr(name, payload)
    return target


def test_bad_files_are_refused_with_the_reason(fit, tmp_path) -> None:
    path = saved(fit, tmp_path)
    text = tmp_path / "fit.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(lmmfast.SavedFitError, match="is not a saved fit \\(not a zip archive\\)"):
        lmmfast.load(text)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(lmmfast.SavedFitError, match=r"has no manifest\.json"):
        lmmfast.load(empty)

    def newer(manifest):
        manifest["format_version"] = FORMAT_VERSION + 1

    with pytest.raises(lmmfast.SavedFitError, match=r"newer than this lmmfast reads .*; upgrade lmmfast"):
        lmmfast.load(rewritten(path, tmp_path / "newer.lmmfast", newer))

    def foreign_class(manifest):
        manifest["content"]["fit"]["plan"]["$object"] = "os.system"

    with pytest.raises(lmmfast.SavedFitError, match=r"names a class a saved fit does not hold \(os.system\)"):
        lmmfast.load(rewritten(path, tmp_path / "foreign.lmmfast", foreign_class))
    with pytest.raises(lmmfast.ArgumentError, match="There is no file"):
        lmmfast.load(tmp_path / "missing.lmmfast")
    with pytest.raises(lmmfast.ArgumentError, match="path must be a file name"):
        fit.save(3)
    with pytest.raises(lmmfast.ArgumentError, match="include_data must be"):
        fit.save(path, include_data="yes")
