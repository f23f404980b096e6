"""Simulation from a generalized fit, refits to new responses, and the parametric bootstrap.

Each refit goes through the one fit path of generalized models
(:func:`lmmfast.generalized.fit.fit_glmm`) on the same design, row pattern and factor set-up
(:func:`lmmfast.generalized.prepare.with_response`), starting from θ̂. Replicate i of the
bootstrap draws from its own seed (``SeedSequence(seed).spawn(n)[i]``) and runs on one
thread, so the result is the same bit for bit in one process or several.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from lmmfast.errors import ModelError
from lmmfast.generalized.fit import GlmmSolution, fit_glmm
from lmmfast.generalized.prepare import PreparedGlmm, with_response
from lmmfast.generalized.reweight import mean_and_derivative
from lmmfast.inference.bootstrap import check_client, report_failed_replicates, run_replicates
from lmmfast.validation import check_count

#: A replicate's own checks are not reported one by one; the bootstrap reports the failures once.
REPLICATE_CHECKS = {"convergence": "ignore", "singular": "ignore", "rank_deficiency": "ignore"}


@dataclass(frozen=True)
class FittedParameters:
    """What simulation needs of a fit: its model and estimates."""

    model: PreparedGlmm
    beta: np.ndarray
    theta: np.ndarray
    templates: tuple[np.ndarray, ...]


def simulate_responses(
    fitted: FittedParameters, nsim: int = 1, seed: int | np.random.SeedSequence | None = None
) -> np.ndarray:
    """Responses drawn from the fitted model, random effects drawn anew, shape (n, nsim):
    proportions of the fit's trials (binomial) or counts (Poisson), as the fit's own response."""
    nsim = check_count("nsim", nsim)
    rng = np.random.default_rng(seed)
    model = fitted.model
    eta = np.repeat((model.response.offset + model.fixed.X @ fitted.beta)[:, None], nsim, axis=1)
    for term, template in zip(model.terms, fitted.templates):
        spherical = rng.standard_normal((nsim, term.n_levels, term.k))
        effects = spherical @ template.T  # b = Λ u per level
        eta += np.einsum("ik,sik->is", term.values, effects[:, term.codes, :])
    mu, _ = mean_and_derivative(eta.ravel(), model.family.link)
    mu = mu.reshape(eta.shape)
    if model.family.name == "binomial":
        trials = np.maximum(model.response.trials, 1.0)[:, None]
        return rng.binomial(trials.astype(np.int64), mu) / trials
    return rng.poisson(mu).astype(np.float64)


def refit_to(
    model: PreparedGlmm, y: np.ndarray, theta: np.ndarray, checks: Mapping[str, str] | None = None
) -> tuple[PreparedGlmm, GlmmSolution]:
    """The model fitted to response ``y`` from ``theta``."""
    prepared = with_response(model, y)
    return prepared, fit_glmm(prepared, start=theta, checks=checks, progress=False)


def _replicate_row(fitted: FittedParameters, seed: np.random.SeedSequence) -> tuple[np.ndarray, bool]:
    y = simulate_responses(fitted, 1, seed)[:, 0]
    width = len(fitted.beta) + len(fitted.theta) + 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, solution = refit_to(fitted.model, y, fitted.theta, REPLICATE_CHECKS)
    except ModelError:  # a replicate with separation, or all successes
        return np.full(width, np.nan), False
    row = np.concatenate([solution.beta, solution.theta, [solution.objective]])
    return row, all(stage.converged for stage in solution.stages)


def bootstrap_replicates(
    fitted: FittedParameters,
    columns: list[str],
    n: int,
    *,
    seed: int | None = None,
    processes: int = 1,
    progress: bool = False,
    client: Any = None,
) -> pd.DataFrame:
    """``n`` parametric-bootstrap replicates: one row each (``columns``: the fixed effects,
    θ and ``objective``); a replicate whose refit fails (separation) is a row of NaN."""
    n = check_count("n", n)
    processes = check_count("processes", processes)
    check_client(client, processes)
    seeds = np.random.SeedSequence(seed).spawn(int(n))
    model = fitted.model
    single = replace(fitted, model=replace(model, control=replace(model.control, threads=1)))
    results = run_replicates(single, _replicate_row, seeds, processes=int(processes), progress=progress, client=client)
    report_failed_replicates(
        results,
        "did not converge or could not be fitted",
        "those that could not be fitted (separation in the simulated response) are rows of NaN.",
    )
    return pd.DataFrame(np.vstack([row for row, _ in results]), columns=columns)
