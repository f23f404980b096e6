"""OpenBLAS's idle spin: asked short at import, never against the user's choice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lmmfast.blas import (
    TIMEOUT_VARIABLE,
    idle_spin_seconds,
    request_short_idle_spin,
    spin_seconds,
)


def test_short_spin_is_requested_when_nothing_is_set() -> None:
    environ: dict[str, str] = {"OTHER": "1"}
    assert request_short_idle_spin(environ, {"numpy"})
    assert environ == {"OTHER": "1", TIMEOUT_VARIABLE: "20"}
    assert idle_spin_seconds(environ) == pytest.approx(2**20 / 3e9)


def test_the_users_setting_stands() -> None:
    environ = {TIMEOUT_VARIABLE: "26"}
    assert not request_short_idle_spin(environ, set())
    assert environ == {TIMEOUT_VARIABLE: "26"}
    assert idle_spin_seconds(environ) == pytest.approx(2**26 / 3e9)


def test_nothing_is_set_once_lapack_has_read_its_environment() -> None:
    environ: dict[str, str] = {}
    assert not request_short_idle_spin(environ, {"scipy", "scipy.linalg"})
    assert environ == {}
    assert idle_spin_seconds(environ) == pytest.approx(2**28 / 3e9)


@pytest.mark.parametrize(("value", "exponent"), [("2", 4), ("40", 30), ("twenty", 28), ("", 28), (24, 24)])
def test_spin_is_clamped_like_openblas(value, exponent) -> None:
    assert spin_seconds(value) == pytest.approx(2**exponent / 3e9)


@pytest.mark.parametrize(
    ("preset", "first_import", "expected"),
    [
        (None, "", "20"),
        ("25", "", "25"),
        (None, "import scipy.linalg; ", "unset"),
    ],
)
def test_importing_lmmfast_sets_the_variable_only_when_it_can_act(preset, first_import, expected) -> None:
    env = {key: value for key, value in os.environ.items() if key != TIMEOUT_VARIABLE}
    if preset is not None:
        env[TIMEOUT_VARIABLE] = preset
    code = f"import os; {first_import}import lmmfast; print(os.environ.get({TIMEOUT_VARIABLE!r}, 'unset'))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected
