"""Simulation from a fitted model and the parametric bootstrap.

Each replicate is a refit to a simulated response by the one fit path's optimisation
(:func:`lmmfast.fit.response_estimates`): it keeps everything that depends only on X and Z — the
Z'Z blocks, the sparsity pattern and the factorisation's symbolic work — recomputes only the
cross-products that involve y (one pass over the rows) and optimises from θ̂; only the
estimates are read, so no result is built around them.
"""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from lmmfast.errors import ArgumentError, ConvergenceWarning
from lmmfast.fit import assemble, curvature_of, optimum_curvature, response_estimates
from lmmfast.validation import check_count

if TYPE_CHECKING:
    from lmmfast.prepare import PreparedModel
    from lmmfast.result import LmmFit


def simulate(fit: LmmFit, nsim: int = 1, seed: int | np.random.SeedSequence | None = None) -> np.ndarray:
    """Responses simulated from the fitted model (random effects drawn anew), shape (n, nsim).

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> simulate(fit, 2, seed=1).shape
    (180, 2)
    """
    nsim = check_count("nsim", nsim)
    templates = [term.template for term in fit.terms]
    return simulate_model(fit.model, fit.beta, templates, fit.sigma, nsim, np.random.default_rng(seed))


def simulate_model(
    model: PreparedModel,
    beta: np.ndarray,
    templates: Sequence[np.ndarray],
    sigma: float,
    nsim: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Responses of ``model``'s design with fixed effects ``beta``, relative covariance factors
    ``templates`` (one k×k Λ template per term) and residual SD ``sigma``: X β + Σ Z b + e,
    b = σ Λ u, shape (n, nsim). Draws the random effects first, then the noise, from ``rng``."""
    model.require_rows("Simulating responses (simulate, bootstrap, power)")
    n = len(model.fixed.y)
    out = np.repeat((model.fixed.X @ beta)[:, None], nsim, axis=1)
    for term, template in zip(model.terms, templates):
        spherical = rng.standard_normal((nsim, term.n_levels, term.k))
        effects = sigma * spherical @ template.T  # b = σ Λ u per level
        out += np.einsum("ik,sik->is", term.values, effects[:, term.codes, :])
    noise = rng.standard_normal((n, nsim)) * sigma
    if model.weights is not None:
        noise /= np.sqrt(model.weights)[:, None]
    return out + noise


def _replicate_row(payload: tuple[LmmFit, np.ndarray | None], seed: np.random.SeedSequence) -> tuple[np.ndarray, bool]:
    """One replicate of the fit in ``payload``: estimates (β, σ, θ, objective) of the refit
    to a simulated response, from θ̂ with the payload's curvature there, and whether that
    refit converged (singular replicates are expected and not reported)."""
    fit, curvature = payload
    replicate = response_estimates(fit.model, simulate(fit, 1, seed)[:, 0], fit.theta, curvature)
    row = np.concatenate([replicate.beta, [replicate.sigma], replicate.theta, [replicate.objective]])
    return row, replicate.converged


#: The checks of a simulation's full fit (a Satterthwaite or Kenward–Roger test in
#: :func:`lmmfast.power`): none warns, and the replicates whose optimiser did not converge
#: are reported once, in one warning, instead of one warning each.
REPLICATE_CHECKS = {"convergence": "ignore", "singular": "ignore"}

#: What a worker process holds: the payload (a fit) and the function that makes a replicate of it.
_HELD: tuple[Any, Callable[[Any, Any], tuple[np.ndarray, bool]]] | None = None
_WORKER_LIMITS: object = None  # keeps the worker's BLAS thread limit in force


def _hold(payload: Any, replicate: Callable[[Any, Any], tuple[np.ndarray, bool]]) -> None:
    """Hold the parent's payload (pickled once) in a worker process, whose BLAS runs one
    thread: the processes are the parallelism. What the worker holds by now is frozen out of
    the cyclic collector's full collections (:func:`collector_sparing`), for its life."""
    global _HELD, _WORKER_LIMITS
    _WORKER_LIMITS = threadpool_limits(limits=1)
    _HELD = (payload, replicate)
    gc.freeze()


@contextlib.contextmanager
def collector_sparing() -> Iterator[None]:
    """Leave the objects that exist now out of the cyclic garbage collector's full
    collections while the block runs (:func:`gc.freeze`), and hand them back after it.

    A full collection scans every object the process holds — numba's, SciPy's and pandas'
    modules are about half a million — and the many short-lived objects of a loop of small
    fits, promoted by the young collections they outlive, trigger one every few thousand
    fits, each as long as some hundreds of them. The loop's own objects are still collected.
    A process that froze objects itself is left as it is (unfreezing would undo its freeze).

    Examples
    --------
    >>> import gc
    >>> with collector_sparing():
    ...     frozen = gc.get_freeze_count() > 0
    >>> frozen, gc.get_freeze_count()
    (True, 0)
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _held_replicate(seed: Any) -> tuple[np.ndarray, bool]:
    assert _HELD is not None
    payload, replicate = _HELD
    return replicate(payload, seed)


#: Each worker process receives its share of the tasks in about this many chunks (small
#: enough to keep the processes busy to the end, large enough to send few messages).
CHUNKS_PER_PROCESS = 16


def run_replicates(
    payload: Any,
    replicate: Callable[[Any, Any], tuple[np.ndarray, bool]],
    seeds: Sequence[Any],
    *,
    processes: int,
    progress: bool,
    desc: str = "bootstrap",
    client: Any = None,
) -> list[tuple[np.ndarray, bool]]:
    """``replicate(payload, seed)`` for every seed (or other task: a response's index), in
    this process, in ``processes`` worker processes (each receives ``payload`` once) or on the
    workers of a dask.distributed ``client`` (the payload scattered once to each), always
    under one BLAS thread: the results are the same bit for bit every way. ``replicate`` must
    be a module-level function; ``desc`` labels the progress bar."""
    from tqdm.auto import tqdm

    client = check_client(client, processes)
    if client is not None:
        return _on_cluster(client, payload, replicate, seeds, progress, desc)
    with threadpool_limits(limits=1):
        if processes == 1:
            with collector_sparing():
                return [replicate(payload, s) for s in tqdm(seeds, disable=not progress, desc=desc)]
        # the platform's default start method: "spawn" re-imports the caller's main module,
        # which fails for scripts read from stdin; OpenBLAS, numba's serial kernels and the
        # rank update's Python threads (none running while we fork) are fork-safe on Linux
        # tasks go to the workers in chunks: one message per task costs more than a small refit
        chunk = max(1, len(seeds) // (processes * CHUNKS_PER_PROCESS))
        with ProcessPoolExecutor(max_workers=processes, initializer=_hold, initargs=(payload, replicate)) as pool:
            tasks = pool.map(_held_replicate, seeds, chunksize=chunk)
            return list(tqdm(tasks, total=len(seeds), disable=not progress, desc=desc))


def check_client(client: Any, processes: int = 1) -> Any:
    """``client`` where it is a dask.distributed client (None where none is given), else an
    :class:`ArgumentError`; refused beside ``processes`` > 1, which would compete for the cores."""
    if client is None:
        return None
    if not all(callable(getattr(client, name, None)) for name in ("scatter", "map", "gather")):
        raise ArgumentError(
            f"client must be a dask.distributed Client (from distributed import Client), got {type(client).__name__}."
        )
    if processes != 1:
        raise ArgumentError("Give client= or processes=, not both: the client's workers are the processes.")
    return client


def _single_threaded_replicate(
    payload: Any, replicate: Callable[[Any, Any], tuple[np.ndarray, bool]], seed: Any
) -> tuple[np.ndarray, bool]:
    """One task on a dask worker: the replicate under one BLAS thread, as everywhere else."""
    with threadpool_limits(limits=1):
        return replicate(payload, seed)


def _on_cluster(
    client: Any,
    payload: Any,
    replicate: Callable[[Any, Any], tuple[np.ndarray, bool]],
    seeds: Sequence[Any],
    progress: bool,
    desc: str,
) -> list[tuple[np.ndarray, bool]]:
    from distributed import as_completed
    from tqdm.auto import tqdm

    held = client.scatter(payload, broadcast=True)
    count = len(seeds)
    # pure=False: tasks are told apart by position, not by hashing the scattered payload
    futures = client.map(_single_threaded_replicate, [held] * count, [replicate] * count, list(seeds), pure=False)
    for _ in tqdm(as_completed(futures), total=count, disable=not progress, desc=desc):
        pass
    return list(client.gather(futures))


def report_failed_replicates(results: list[tuple[np.ndarray, bool]], what: str, consequence: str) -> None:
    """One warning for the replicates that failed: "k of n bootstrap replicates ``what``
    (rows ...); ``consequence``"."""
    failed = [index for index, (_, converged) in enumerate(results) if not converged]
    if failed:
        shown = ", ".join(str(i) for i in failed[:10]) + (", ..." if len(failed) > 10 else "")
        warnings.warn(
            ConvergenceWarning(
                f"{len(failed)} of {len(results)} bootstrap replicates {what} (rows {shown}); {consequence}"
            ),
            stacklevel=3,
        )


def _single_threaded(fit: LmmFit) -> LmmFit:
    """The fit with its model prepared for one thread everywhere, re-assembled at θ̂ under
    one BLAS thread: the numbers then cannot depend on how many processes share the work.
    Its convergence check stays, whose curvature scales the replicates' runs where the
    Hessian is not measured."""
    model = fit.model
    control = replace(model.control, threads=1)
    objective = model.objective.fresh(control.threads)
    return assemble(
        replace(model, control=control, objective=objective),
        replace(fit.optsummary, control=control),
        fit.convergence,
    )


def bootstrap(
    fit: LmmFit, n: int, *, seed: int | None = None, processes: int = 1, progress: bool = False, client: Any = None
) -> pd.DataFrame:
    """Parametric bootstrap: simulate from the fit, refit, collect the estimates.

    Replicate i draws from its own seed (``SeedSequence(seed).spawn(n)[i]``) and all
    linear algebra runs with one BLAS thread per process, so the result is the same bit for
    bit whether it runs in one process or several.

    Parameters
    ----------
    fit : LmmFit
    n : int
        Number of replicates.
    seed : int, optional
    processes : int, default 1
        Worker processes; each receives the fit once (pickled) and refits on one thread.
    progress : bool, default False
        Show a tqdm progress bar.
    client : distributed.Client, optional
        Spread the replicates over a Dask cluster's workers instead (the fit is sent to each
        once); the result is the same bit for bit.

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
    n = check_count("n", n)
    processes = check_count("processes", processes)
    check_client(client, processes)
    seeds = np.random.SeedSequence(seed).spawn(int(n))
    columns = [*fit.fixef_names, "sigma", *fit.theta_names, "objective"]
    with threadpool_limits(limits=1):
        base = _single_threaded(fit)
        # the Hessian costs 2 evaluations per θ, once: at most one evaluation per replicate
        curvature = optimum_curvature(base) if int(n) > 2 * len(fit.theta) else curvature_of(base)
    results = run_replicates(
        (base, curvature), _replicate_row, seeds, processes=int(processes), progress=progress, client=client
    )
    report_failed_replicates(
        results, "did not converge", "their estimates may be off. Simplify the random effects if there are many."
    )
    return pd.DataFrame(np.vstack([row for row, _ in results]), columns=columns)
