"""The command line: summary, JSON contract, files, and clean errors."""

from __future__ import annotations

import gc
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import lmmfast
import lmmfast.cli
from lmmfast.cli import BROKEN_PIPE_STATUS, INTERRUPTED_STATUS, command, main


def test_summary_for_a_bundled_dataset(capsys) -> None:
    assert main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)"]) == 0
    out = capsys.readouterr().out
    assert "REML criterion at convergence: 1743.6" in out
    assert "Number of obs: 180, groups:  Subject, 18" in out


@pytest.mark.parametrize(
    ("arguments", "status"),
    [(["fit", "sleepstudy", "Reaction ~ Days + (1 | Subject)"], 0), (["fit", "nosuch", "y ~ x"], 2)],
)
def test_the_installed_command_exits_with_the_status_of_main(monkeypatch, capsys, arguments, status) -> None:
    monkeypatch.setattr(sys, "argv", ["lmmfast", *arguments])
    try:
        with pytest.raises(SystemExit) as exit_:
            command()
        # what is left is out of the final collection's reach
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert exit_.value.code == status
    captured = capsys.readouterr()
    assert ("REML criterion at convergence" in captured.out) == (status == 0)
    assert ("is neither a file nor a bundled dataset" in captured.err) == (status == 2)


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path) -> None:
    """``lmmfast fit ... | head``: the pipe is closed before the summary is written; the
    command ends with SIGPIPE's status and no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lmmfast", "fit", "sleepstudy", "Reaction ~ Days + (1 | Subject)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    error = process.stderr.read().decode()
    assert process.wait(timeout=120) == BROKEN_PIPE_STATUS == 141
    assert "Traceback" not in error and "BrokenPipeError" not in error


def test_ctrl_c_ends_the_command_with_a_line_not_a_traceback(monkeypatch, capsys) -> None:
    def interrupted(argv=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(lmmfast.cli, "main", interrupted)
    try:
        with pytest.raises(SystemExit) as exit_:
            command()
    finally:
        gc.unfreeze()
    assert exit_.value.code == INTERRUPTED_STATUS == 130
    assert capsys.readouterr().err == "lmmfast: interrupted\n"


def test_json_has_the_contract_fields(capsys) -> None:
    assert main(["fit", "sleepstudy", "Reaction ~ Days + (1 | Subject)", "--ml", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["criterion"] == "ML"
    assert payload["objective"] == pytest.approx(1794.07864300523, rel=1e-9)
    assert payload["ngrps"] == {"Subject": 18}
    assert set(payload["fixef"]) == {"Intercept", "Days"}
    assert payload["version"] == lmmfast.__version__


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".feather"])
def test_files_of_every_format(tmp_path, capsys, suffix) -> None:
    data = lmmfast.datasets.load("sleepstudy_weighted")
    path = tmp_path / f"sleep{suffix}"
    {
        ".csv": lambda: data.to_csv(path, index=False),
        ".parquet": lambda: data.to_parquet(path),
        ".feather": lambda: data.to_feather(path),
    }[suffix]()
    assert main(["fit", str(path), "Reaction ~ Days + (Days | Subject)", "--weights", "w", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["objective"] == pytest.approx(1733.54354646619, rel=1e-8)


def test_a_parquet_file_read_in_chunks(tmp_path, capsys) -> None:
    path = tmp_path / "sleep.parquet"
    lmmfast.datasets.load("sleepstudy_weighted").to_parquet(path)
    assert main(["fit", str(path), "Reaction ~ Days + (Days | Subject)", "--weights", "w", "--chunks", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["objective"] == pytest.approx(1733.54354646619, rel=1e-8)
    assert main(["fit", str(path), "Reaction ~ Days + (Days | Subject)", "--chunks"]) == 0
    assert "(not computed: the data were read in chunks" in capsys.readouterr().out
    assert main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--chunks"]) == 2
    assert "data is the path 'sleepstudy', which does not exist" in capsys.readouterr().err


def test_errors_exit_2_with_a_message_and_no_traceback(capsys) -> None:
    assert main(["fit", "sleepstudy", "Reaction ~ Dayz + (1 | Subject)"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmmfast: error: Column 'Dayz' is not in the data")
    assert "Traceback" not in err


def test_unknown_dataset(capsys) -> None:
    assert main(["fit", "nosuchdata", "y ~ (1 | g)"]) == 2
    assert "neither a file nor a bundled dataset" in capsys.readouterr().err


def test_warnings_go_to_stderr(capsys) -> None:
    assert main(["fit", "dyestuff2", "Yield ~ 1 + (1 | Batch)"]) == 0
    captured = capsys.readouterr()
    assert "boundary (singular) fit" in captured.out
    assert "lmmfast: warning: Boundary (singular) fit" in captured.err


@pytest.mark.parametrize(
    ("separator", "option"),
    [(";", []), ("\t", []), ("|", []), (";", ["--sep", ";"]), ("\t", ["--sep", "tab"])],
    ids=["semicolon detected", "tab detected", "pipe detected", "semicolon given", "tab given"],
)
def test_text_files_with_other_separators(tmp_path, capsys, separator, option) -> None:
    """A semicolon-separated .csv used to be read as one column."""
    path = tmp_path / "sleep.csv"
    lmmfast.datasets.load("sleepstudy").to_csv(path, index=False, sep=separator)
    assert main(["fit", str(path), "Reaction ~ Days + (1 | Subject)", "--ml", "--json", *option]) == 0
    assert json.loads(capsys.readouterr().out)["objective"] == pytest.approx(1794.07864300523, rel=1e-9)


def test_a_separator_of_several_characters_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "sleep.csv"
    lmmfast.datasets.load("sleepstudy").to_csv(path, index=False)
    assert main(["fit", str(path), "Reaction ~ Days + (1 | Subject)", "--sep", ";;"]) == 2
    assert "--sep must be one character" in capsys.readouterr().err


def test_an_unquoted_formula_gets_a_hint_to_quote_it(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "sleepstudy", "Reaction", "~", "Days"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: ~ Days" in err
    assert "The formula must be one argument: put it in quotes" in err and "'Reaction' as the formula" in err


def test_ddf_chooses_the_summary_columns(capsys) -> None:
    assert main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--ddf", "none"]) == 0
    assert "Pr(>|t|)" not in capsys.readouterr().out
    assert main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--ddf", "satterthwaite"]) == 0
    assert "Pr(>|t|)" in capsys.readouterr().out


def test_json_has_p_values_when_asked(capsys) -> None:
    """lmerTest's Satterthwaite df for sleepstudy's slopes model (17.00 for the intercept)."""
    assert main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--json"]) == 0
    assert "coef_table" not in json.loads(capsys.readouterr().out)
    assert main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--json", "--ddf", "satterthwaite"]) == 0
    table = json.loads(capsys.readouterr().out)["coef_table"]
    assert [row["name"] for row in table] == ["Intercept", "Days"]
    assert set(table[0]) == {"name", "estimate", "std_error", "df", "t_value", "p_value"}
    assert table[0]["df"] == pytest.approx(16.9997, abs=1e-3) and 0 < table[1]["p_value"] < 1e-3


FIT_SCHEMA = json.loads((Path(lmmfast.__file__).parent / "schemas" / "fit.schema.json").read_text())
ANOVA_SCHEMA = json.loads((Path(lmmfast.__file__).parent / "schemas" / "anova.schema.json").read_text())


@pytest.mark.parametrize(
    ("dataset", "formula", "options"),
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", []),
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)", ["--ddf", "satterthwaite", "--ml"]),
        ("dyestuff2", "Yield ~ 1 + (1 | Batch)", []),  # singular: a correlation-free, zero-variance fit
        ("machines", "score ~ Machine + (1 | Worker/Machine)", ["--ddf", "satterthwaite"]),
        ("sleepstudy_weighted", "Reaction ~ Days + (Days || Subject)", ["--weights", "w"]),
    ],
)
def test_json_output_validates_against_its_schema(capsys, dataset, formula, options) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert main(["fit", dataset, formula, "--output", "json", *options]) == 0
    payload = json.loads(capsys.readouterr().out)
    jsonschema.validate(payload, FIT_SCHEMA)
    assert payload["schema"] == "lmmfast-fit/1"


def test_anova_compares_models_and_validates_against_its_schema(capsys) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    small, big = "Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)"
    assert main(["anova", "sleepstudy", big, small, "--names", "m1,m0", "--output", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    jsonschema.validate(payload, ANOVA_SCHEMA)
    assert [row["model"] for row in payload["models"]] == ["m0", "m1"]
    assert payload["models"][1]["chisq"] == pytest.approx(42.139, abs=1e-3) and payload["models"][1]["df"] == 2
    assert payload["models"][0]["chisq"] is None
    assert main(["anova", "sleepstudy", small, big]) == 0
    assert "42.139" in capsys.readouterr().out


def test_anova_asks_for_quoted_formulas(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["anova", "sleepstudy", "Reaction", "~", "Days"])
    assert "every formula must be one argument with a '~'" in capsys.readouterr().err


def test_csv_and_markdown_print_the_tables(capsys) -> None:
    assert (
        main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--output", "csv", "--ddf", "satterthwaite"])
        == 0
    )
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), index_col="term")
    assert list(table.columns) == ["estimate", "std_error", "df", "t_value", "p_value"]
    assert table.loc["Days", "df"] == pytest.approx(17.0, abs=1e-3)
    assert main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--output", "markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| term | estimate | std_error | t_value |" and lines[4].startswith("| Intercept | 251.405 |")
    assert "| grp | var1 | var2 | vcov | sdcor |" in lines


GLMM_SCHEMA = json.loads((Path(lmmfast.__file__).parent / "schemas" / "glmm.schema.json").read_text())


@pytest.mark.parametrize(
    ("formula", "options"),
    [
        ("cbind(incidence, size - incidence) ~ period + (1 | herd)", ["--family", "binomial"]),
        ("incidence ~ period + offset(log(size)) + (1 | herd)", ["--family", "poisson", "--nagq", "0"]),
    ],
)
def test_generalized_fit_json_validates_against_its_schema(capsys, formula, options) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert main(["fit", "cbpp", formula, *options, "--output", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    jsonschema.validate(payload, GLMM_SCHEMA)
    assert payload["family"] == options[1] and payload["schema"] == "lmmfast-glmm/1"


def test_generalized_fit_prints_glmers_summary_and_tables(capsys) -> None:
    formula = "prop ~ period + (1 | herd)"
    assert main(["fit", "cbpp", formula, "--family", "binomial", "--weights", "size"]) == 0
    text = capsys.readouterr().out
    assert "Family: binomial  ( logit )" in text and "z value" in text
    assert main(["fit", "cbpp", formula, "--family", "binomial", "--weights", "size", "--output", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "term,estimate,std_error,z_value,p_value"


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        (["--nagq", "0"], "--nagq is for generalized models: add --family binomial"),
        (["--link", "probit"], "--link is for generalized models"),
        (["--family", "poisson", "--ddf", "satterthwaite"], "--ddf is for linear mixed models"),
    ],
)
def test_options_of_the_other_kind_of_model_are_refused(capsys, options, phrase) -> None:
    assert main(["fit", "cbpp", "incidence ~ period + (1 | herd)", *options]) == 2
    assert phrase in capsys.readouterr().err


PREDICTIONS_SCHEMA = json.loads((Path(lmmfast.__file__).parent / "schemas" / "predictions.schema.json").read_text())


def test_a_fit_saved_by_the_command_line_predicts_from_it(tmp_path, capsys) -> None:
    model = tmp_path / "sleep.lmmfast"
    assert main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--save", str(model)]) == 0
    capsys.readouterr()
    data = lmmfast.datasets.load("sleepstudy")
    new = tmp_path / "new.csv"
    data.iloc[[0, 17, 40]].assign(Subject=lambda d: d.Subject.astype(str).replace({"308": "999"})).to_csv(
        new, index=False
    )
    assert main(["predict", str(model), str(new)]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    expected = lmmfast.load(model).predict(pd.read_csv(new))
    assert list(printed.columns) == ["prediction"]
    assert printed.prediction.tolist() == expected.tolist()  # printed to 17 digits: exact
    assert main(["predict", str(model), str(new), "--re", "none", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(payload, PREDICTIONS_SCHEMA)
    assert payload["nrows"] == 3 and payload["re"] == "none" and payload["kind"] == "lmm"


def test_a_saved_generalized_fit_predicts_on_either_scale(tmp_path, capsys) -> None:
    model = tmp_path / "cbpp.lmmfast"
    formula = "prop ~ period + (1 | herd)"
    arguments = ["fit", "cbpp", formula, "--family", "binomial", "--weights", "size", "--save", str(model)]
    assert main([*arguments, "--include-data"]) == 0
    capsys.readouterr()
    assert main(["predict", str(model), "cbpp", "--type", "link", "--output", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    fit = lmmfast.load(model)
    assert fit.has_data and payload["scale"] == "link"
    assert payload["predictions"] == fit.predict(lmmfast.datasets.load("cbpp"), type="link").tolist()


@pytest.mark.parametrize(
    ("arguments", "phrase"),
    [
        (["predict", "missing.lmmfast", "sleepstudy"], "There is no file 'missing.lmmfast' to load."),
        (["predict", "MODEL", "sleepstudy", "--type", "link"], "--type link is for generalized models"),
        (["predict", "MODEL", "sleepstudy", "--new-levels", "error"], "levels of 'Subject' the fit has not seen"),
    ],
)
def test_predict_errors_name_the_problem(tmp_path, capsys, arguments, phrase) -> None:
    model = tmp_path / "fit.lmmfast"
    lmmfast.lmm("Reaction ~ Days + (1 | Subject)", lmmfast.datasets.load("sleepstudy").iloc[:170]).save(model)
    arguments = [str(model) if a == "MODEL" else a for a in arguments]
    assert main(arguments) == 2
    assert phrase in capsys.readouterr().err


def test_include_data_needs_save(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "sleepstudy", "Reaction ~ Days + (1 | Subject)", "--include-data"])
    assert "--include-data goes with --save FILE." in capsys.readouterr().err
