"""Simulation from a fitted model, refits to a new response, and the parametric bootstrap.

A refit keeps everything that depends only on X and Z — the Z'Z blocks, the sparsity pattern
and the factorisation's symbolic work — and recomputes only the parts of the cross-products
that involve y (one pass over the rows), then optimises from the original θ̂.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from lmmfast.crossprod import accumulate_outer
from lmmfast.errors import DataError
from lmmfast.factor import BlockedFactor
from lmmfast.objective import ProfiledObjective
from lmmfast.optimize import OptSummary
from lmmfast.validation import check_count

if TYPE_CHECKING:
    from lmmfast.result import LmmResult


def simulate(fit: LmmResult, nsim: int = 1, seed: int | np.random.SeedSequence | None = None) -> np.ndarray:
    """Responses simulated from the fitted model (random effects drawn anew), shape (n, nsim).

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> simulate(fit, 2, seed=1).shape
    (180, 2)
    """
    nsim = check_count("nsim", nsim)
    rng = np.random.default_rng(seed)
    model = fit.model
    n = len(model.fixed.y)
    out = np.repeat((model.fixed.X @ fit.beta)[:, None], nsim, axis=1)
    for term, result in zip(model.terms, fit.terms):
        spherical = rng.standard_normal((nsim, term.n_levels, term.k))
        effects = fit.sigma * spherical @ result.template.T  # b = σ Λ u per level
        out += np.einsum("ik,sik->is", term.values, effects[:, term.codes, :])
    noise = rng.standard_normal((n, nsim)) * fit.sigma
    if model.weights is not None:
        noise /= np.sqrt(model.weights)[:, None]
    return out + noise


def refit(fit: LmmResult, y: np.ndarray) -> LmmResult:
    """The same model fitted to a new response on the same rows, warm-started at θ̂.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> abs(refit(fit, fit.model.fixed.y).objective - fit.objective) < 1e-6
    True
    """
    from lmmfast.api import _assemble
    from lmmfast.optimize import gradient_for, optimize_theta

    model = fit.model
    y = np.asarray(y, dtype=np.float64)
    if y.shape != model.fixed.y.shape:
        raise DataError(f"y must have one value per observation used by the fit ({len(model.fixed.y)}), got shape {y.shape}.")
    if not np.all(np.isfinite(y)):
        raise DataError("y has missing or infinite values; a refit needs a finite response for every row.")
    began = time.perf_counter()
    cp = model.objective.cross_products
    root = np.sqrt(model.weights) if model.weights is not None else np.ones(len(y))
    wy = (y * root)[:, None]
    ZtXy = cp.ZtXy.copy()
    ZtXy[:, -1] = 0.0
    for index, term in enumerate(model.terms):
        start = int(cp.column_offsets[index])
        view = ZtXy[start : start + term.n_levels * term.k, -1:].reshape(term.n_levels, term.k, 1)
        accumulate_outer(term.codes, term.values * root[:, None], wy, view)
    XytXy = cp.XytXy.copy()
    wX = model.fixed.X * root[:, None]
    XytXy[:-1, -1] = XytXy[-1, :-1] = wX.T @ wy[:, 0]
    XytXy[-1, -1] = float(wy[:, 0] @ wy[:, 0])
    new_cp = replace(cp, ZtXy=ZtXy, XytXy=XytXy)
    objective = ProfiledObjective(new_cp, model.layout, model.objective.factor, reml=model.objective.reml)
    new_model = replace(model, fixed=replace(model.fixed, y=y), objective=objective)
    record = optimize_theta(
        objective,
        model.layout,
        start=fit.theta,
        value_and_gradient=gradient_for(objective, model.layout.size, model.optimizer),
    )
    return _assemble(new_model, record, began)


def _replicate_row(fit: LmmResult, seed: np.random.SeedSequence) -> np.ndarray:
    replicate = refit(fit, simulate(fit, 1, seed)[:, 0])
    return np.concatenate([replicate.beta, [replicate.sigma], replicate.theta, [replicate.objective]])


_WORKER_FIT: LmmResult | None = None
_WORKER_LIMITS: object = None  # keeps the worker's BLAS thread limit in force


def _worker_init(
    formula: str,
    frame: pd.DataFrame,
    reml: bool,
    weights: np.ndarray | None,
    factorization: str,
    optimizer: str,
    record: OptSummary,
) -> None:
    """Rebuild the fit in a worker process (factor objects cannot be pickled): the same
    design and the same optimiser record, so every estimate is the parent's to the bit.
    Each worker's BLAS and rank update run one thread: the processes are the parallelism."""
    from lmmfast.api import _assemble, prepare

    global _WORKER_FIT, _WORKER_LIMITS
    _WORKER_LIMITS = threadpool_limits(limits=1)
    prepared = replace(prepare(formula, frame, reml=reml, weights=weights, factorization=factorization), optimizer=optimizer)
    if isinstance(prepared.objective.factor, BlockedFactor):
        prepared.objective.factor.threads = 1
    _WORKER_FIT = _assemble(prepared, record, time.perf_counter())


def _worker_replicate(seed: np.random.SeedSequence) -> np.ndarray:
    assert _WORKER_FIT is not None
    return _replicate_row(_WORKER_FIT, seed)


def bootstrap(
    fit: LmmResult, n: int, *, seed: int | None = None, processes: int = 1, progress: bool = False
) -> pd.DataFrame:
    """Parametric bootstrap: simulate from the fit, refit, collect the estimates.

    Replicate i draws from its own seed (``SeedSequence(seed).spawn(n)[i]``) and all
    linear algebra runs with one BLAS thread per process, so the result is the same bit for
    bit whether it runs in one process or several.

    Parameters
    ----------
    fit : LmmResult
    n : int
        Number of replicates.
    seed : int, optional
    processes : int, default 1
        Worker processes; each rebuilds the model once.
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per replicate: the fixed effects, ``sigma``, the θ entries and ``objective``.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"))
    >>> bootstrap(fit, 3, seed=1).shape
    (3, 4)
    """
    from tqdm.auto import tqdm

    n = check_count("n", n)
    processes = check_count("processes", processes)
    from lmmfast.api import _assemble

    seeds = np.random.SeedSequence(seed).spawn(int(n))
    columns = [*fit.fixef_names, "sigma", *fit.theta_names, "objective"]
    model = fit.model
    with threadpool_limits(limits=1):
        # BLAS with one thread everywhere, and the fit re-assembled under it, so that the
        # numbers cannot depend on how many processes share the work
        base = _assemble(model, fit.optsummary, time.perf_counter())
        if processes == 1:
            rows = [_replicate_row(base, s) for s in tqdm(seeds, disable=not progress, desc="bootstrap")]
        else:
            factorization = "blocked" if isinstance(model.objective.factor, BlockedFactor) else "cholmod"
            init = (
                model.formula.text, model.model_frame.frame, fit.reml, model.weights, factorization, model.optimizer,
                fit.optsummary,
            )
            # the platform's default start method: "spawn" re-imports the caller's main module,
            # which fails for scripts read from stdin; OpenBLAS, numba's serial kernels and the
            # rank update's Python threads (none running while we fork) are fork-safe on Linux
            with ProcessPoolExecutor(max_workers=int(processes), initializer=_worker_init, initargs=init) as pool:
                rows = list(
                    tqdm(pool.map(_worker_replicate, seeds), total=len(seeds), disable=not progress, desc="bootstrap")
                )
    return pd.DataFrame(np.vstack(rows), columns=columns)
