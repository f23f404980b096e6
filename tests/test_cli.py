"""The command line: summary, JSON contract, files, and clean errors."""

from __future__ import annotations

import json

import pytest

import lmmfast
from lmmfast.cli import main


def test_summary_for_a_bundled_dataset(capsys) -> None:
    assert main(["fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)"]) == 0
    out = capsys.readouterr().out
    assert "REML criterion at convergence: 1743.6" in out
    assert "Number of obs: 180, groups:  Subject, 18" in out


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
    {".csv": lambda: data.to_csv(path, index=False), ".parquet": lambda: data.to_parquet(path), ".feather": lambda: data.to_feather(path)}[suffix]()
    assert main(["fit", str(path), "Reaction ~ Days + (Days | Subject)", "--weights", "w", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["objective"] == pytest.approx(1733.54354646619, rel=1e-8)


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
