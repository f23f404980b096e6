"""The one-call API: :func:`lmm` validates its arguments, prepares the model
(:mod:`lmmfast.prepare`), reports on the design, and hands it to the one fit path
(:mod:`lmmfast.fit`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from lmmfast.control import Control, control_with
from lmmfast.design.data import data_name
from lmmfast.design.fingerprint import frame_fingerprint
from lmmfast.design.fixed import is_binary
from lmmfast.design.source import is_chunked, require_in_memory
from lmmfast.diagnostics import report, resolve_checks
from lmmfast.errors import ArgumentError, BinaryResponseWarning, LmmfastError, RankDeficiencyWarning
from lmmfast.fit import fit_prepared
from lmmfast.fitted import LmmResult
from lmmfast.formula import parse_formula
from lmmfast.options import get_options
from lmmfast.prepare import PreparedModel, model_columns, parse_linear, prepare
from lmmfast.recent import RECENT_MODELS
from lmmfast.validation import check_bool, check_count

if TYPE_CHECKING:
    from lmmfast.generalized.family import Family
    from lmmfast.generalized.prepare import PreparedGlmm
    from lmmfast.generalized.result import GlmmResult

__all__ = ["fit_and_report", "fit_and_report_glmm", "glmm", "glmm_settings", "lmm", "prepare", "report_design"]

#: lme4's largest number of quadrature nodes.
MAX_NAGQ = 25

Prepared = TypeVar("Prepared", PreparedModel, "PreparedGlmm")


def lmm(
    formula: str,
    data: object,
    *,
    reml: bool = True,
    weights: str | Sequence[float] | np.ndarray | None = None,
    contrasts: Mapping[str, Any] | None = None,
    factorization: str | None = None,
    checks: Mapping[str, str] | None = None,
    memory_budget: float | None = None,
    optimizer: str | None = None,
    control: Control | None = None,
    start: np.ndarray | Sequence[float] | None = None,
    progress: bool | None = None,
    verbose: bool = False,
    client: Any = None,
    REML: bool | None = None,  # lme4's spelling, accepted for its users
) -> LmmResult:
    """Fit a linear mixed model written in lme4's formula language.

    Parameters
    ----------
    formula : str
        For example ``"Reaction ~ Days + (Days | Subject)"``. Random terms: ``(1|g)``,
        ``(x|g)``, ``(0+x|g)``, ``(x||g)``, crossed ``(1|a) + (1|b)``, nested ``(1|a/b)``
        and ``(1|a:b)``.
    data : pandas or polars DataFrame, pyarrow Table, dict of arrays, or data read in chunks
        Never modified. Rows with missing values in the used columns are dropped. Data read
        in chunks — the path of a Parquet file or of a directory of them (a dataset), a
        ``pyarrow.dataset.Dataset`` or a Dask DataFrame — are read twice, chunk by chunk, and
        the fit holds their cross-products, none of their rows: memory grows with the numbers
        of levels, not of rows (see the documentation's "Data beyond memory").
    reml : bool, default True
        REML (lme4's default) or maximum likelihood.
    weights : str or array, optional
        Prior weights: a column name or one positive value per row of ``data``.
    contrasts : dict, optional
        The coding of categorical predictors, column → ``"treatment"`` (R's default),
        ``"sum"``, ``"helmert"``, ``"sdif"`` (successive differences) or ``"poly"``; applied to
        the factor, so the fixed part and the random terms code it alike (as R users get from
        ``contrasts(f) <- contr.sum``; lme4's ``contrasts=`` changes the fixed part only).
        Columns not named take the package-wide default (:func:`lmmfast.set_options`).
        Column names follow formulaic: ``spkr[S.new]`` for R's ``spkr1``. A coding may also be
        a matrix (R's ``contrasts(f) <- M``): a DataFrame indexed by the levels, its columns
        naming the coded columns (``Machine[AvC]``), or an array with one row per level in
        sorted order (columns ``Machine[1]``, ``Machine[2]``, ...).
    factorization : {"auto", "blocked", "cholmod"}, optional
        Shortcut for ``Control(factorization=...)``. How Λ'Z'ZΛ + I is factored: eliminating
        the first term into a dense block (crossed designs), CHOLMOD's sparse
        Cholesky (deep nesting), or chosen from the structure (default). Both give the same
        optimum.
    checks : dict, optional
        What to do about each diagnostic — ``"convergence"`` (the optimiser's stop and a
        check of the optimum: 2 evaluations per θ by finite differences after BOBYQA, the
        gradient and quasi-Newton curvature after L-BFGS-B), ``"singular"`` (a
        boundary fit), ``"rank_deficiency"`` (aliased fixed-effect columns dropped) and
        ``"binary_response"`` (a 0/1 response fitted by a linear model): ``"warn"``
        (default), ``"raise"`` (raise an :class:`LmmfastError` with the warning's message) or
        ``"ignore"`` (``"convergence": "ignore"`` also skips that check).
    memory_budget : float, optional
        Shortcut for ``Control(memory_budget=...)``. Bytes the fit may use beyond the data —
        the design's arrays, the cross-products and the factor with its working copies
        (default: 80% of physical memory). Models whose estimate (``fit.engine``'s
        ``estimated_bytes``) is larger are refused before the factor's numbers are
        allocated, with a :class:`MemoryBudgetError`.
    optimizer : {"auto", "bobyqa", "lbfgsb"}, optional
        Shortcut for ``Control(optimizer=...)``. BOBYQA (derivative-free, as lme4) or L-BFGS-B
        with the analytic gradient; ``"auto"`` (default) takes L-BFGS-B for models with many
        variance parameters, many random effects or a large dense block, where it needs far
        fewer evaluations, unless the gradient costs many evaluations (CHOLMOD factors with
        dense parts). Both reach the same optimum.
    control : Control, optional
        Every setting of the fit: optimiser, tolerances, evaluation limit, restarts,
        boundary and singular tolerances, factorisation, memory budget, threads
        (:class:`lmmfast.Control`; its defaults are lme4's). A setting given both here and
        by its shortcut is an :class:`ArgumentError`.
    start : array, optional
        Starting θ (as :attr:`LmmResult.theta` of a similar fit); default: moment estimates
        or lme4's identity templates.
    progress : bool, optional
        A progress bar (evaluations, best objective, elapsed): always (True), never (False),
        or once the fit turns out slow (None, the default); with None or True, a fit whose
        evaluations are estimated to take long says so before it starts.
    verbose : bool, default False
        Print the engine plan and one line per evaluation (lme4's ``verbose``).
    client : dask.distributed.Client, optional
        For data read in chunks: read and sum them on this cluster's workers, one task per
        partition (a Parquet path or Arrow dataset is read as a Dask DataFrame of its files).
    REML : bool, optional
        lme4's spelling of ``reml``, accepted as its alias (``REML=False`` is ``reml=False``).

    Returns
    -------
    LmmResult

    Raises
    ------
    FormulaError, DataError, ModelError
        For malformed formulas, unusable data, and models the data cannot identify.
    ArgumentError
        For arguments of the wrong type or value.
    ConvergenceError, SingularFitError, RankDeficiencyError
        Instead of the warnings, when ``checks`` says ``"raise"``.

    Warns
    -----
    ConvergenceWarning, SingularFitWarning, RankDeficiencyWarning, BinaryResponseWarning

    Notes
    -----
    A call with the formula, settings and column values of one of the last 8 calls, on a
    pandas or polars DataFrame or a pyarrow Table of at most 10,000 rows, fits the model
    that call prepared instead of
    preparing it again: the same fit, several times sooner on small data
    (``set_options(model_cache=...)`` sets how many are kept; 0 turns this off). To fit one
    model to many data sets, prepare it once: :class:`lmmfast.LinearMixedModel`.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> round(fit.objective, 3)
    1743.628
    """
    if REML is not None:
        REML = check_bool("REML", REML)
        if reml is not True and bool(reml) != bool(REML):
            raise ArgumentError(f"reml={reml!r} and REML={REML!r} disagree; give one of them (reml is lmmfast's name).")
        reml = bool(REML)
    actions = resolve_checks(checks)
    control = control_with(control, optimizer=optimizer, factorization=factorization, memory_budget=memory_budget)
    if progress is not None:
        progress = check_bool("progress", progress)
    if is_chunked(data):
        from lmmfast.inference.bootstrap import check_client
        from lmmfast.streamed import prepare_streamed  # with Dask's and Arrow's readers: only for chunked data

        check_client(client)
        prepared = prepare_streamed(
            formula,
            data,
            reml=reml,
            weights=weights,
            control=control,
            contrasts=contrasts,
            client=client,
            progress=progress,
        )
    else:
        if client is not None:
            raise ArgumentError(
                "client= spreads the reading of data read in chunks (Parquet, Arrow datasets, Dask DataFrames) over "
                "a cluster; these data are in memory. Drop client=."
            )
        prepared = recently_prepared(
            lambda: prepare(formula, data, reml=reml, weights=weights, control=control, contrasts=contrasts),
            ("lmm", formula, reml, weights, control),
            data,
            contrasts,
            lambda: model_columns(parse_linear(formula), data, weights),
        )
    return fit_and_report(prepared, actions, start, progress, verbose)


def recently_prepared(
    build: Callable[[], Prepared],
    settings: tuple[object, ...],
    data: object,
    contrasts: Mapping[str, Any] | None,
    columns: Callable[[], list[str]],
) -> Prepared:
    """The model a recent call prepared from the same ``settings``, ``contrasts`` and values of
    the ``columns`` it reads (:mod:`lmmfast.recent`), else ``build()``'s, kept for the calls
    to come. Where the data or the settings cannot be fingerprinted it is ``build()``'s."""
    key = _recent_key(settings, data, contrasts, columns)
    if key is None:
        return build()
    model = RECENT_MODELS.get(key)
    if model is None:
        model = build()
        RECENT_MODELS.put(key, model)
    return model  # type: ignore[return-value]  # stored under a key that names its kind


def _recent_key(
    settings: tuple[object, ...], data: object, contrasts: Mapping[str, Any] | None, columns: Callable[[], list[str]]
) -> tuple[object, ...] | None:
    """What a prepared model depends on, or None where some of it cannot be told by value
    (arrays of weights, matrices of contrasts, large or unusual data) or is invalid (the
    preparation then raises the error)."""
    if RECENT_MODELS.size == 0:
        return None
    if contrasts is None:
        codings: tuple[tuple[str, str], ...] | None = None
    elif isinstance(contrasts, Mapping) and all(isinstance(v, str) for v in contrasts.values()):
        codings = tuple(sorted((str(k), v) for k, v in contrasts.items()))
    else:
        return None
    try:
        hash(settings)
        fingerprint = frame_fingerprint(data, columns())
    except (TypeError, LmmfastError):
        return None
    if fingerprint is None:
        return None
    return (*settings, codings, get_options()["contrasts"], data_name(data), fingerprint)


def fit_and_report(
    prepared: PreparedModel,
    actions: Mapping[str, str],
    start: np.ndarray | Sequence[float] | None,
    progress: bool | None,
    verbose: bool,
) -> LmmResult:
    """The design's warnings (:func:`report_design`), then the one fit path: what
    :func:`lmm` and :class:`lmmfast.models.LinearMixedModel` do with a prepared model."""
    report_design(prepared, actions)
    verbose = check_bool("verbose", verbose)
    return LmmResult.of(fit_prepared(prepared, start=start, checks=actions, progress=progress, verbose=verbose))


def report_design(prepared: PreparedModel, actions: Mapping[str, str]) -> None:
    """The warnings about the data and the design, once per model (not per refit): a binary
    response fitted by a linear model, and aliased fixed-effect columns dropped."""
    binary = prepared.streamed.binary_response if prepared.streamed is not None else is_binary(prepared.fixed.y)
    if binary:
        report(
            actions["binary_response"],
            f"The response {prepared.formula.response!r} has only the values 0 and 1, and a linear mixed model "
            "is being fitted to it (a linear probability model: predictions can leave [0, 1] and the residual "
            "variance cannot be constant). Binary outcomes such as accuracy are usually fitted by a logistic "
            "mixed model: lmmfast.glmm(formula, data, family='binomial') (lme4's glmer). If the linear "
            "model is what you want, pass checks={'binary_response': 'ignore'}.",
            BinaryResponseWarning,
        )
    if prepared.fixed.dropped:
        report(
            actions["rank_deficiency"],
            f"The fixed-effects model matrix is rank deficient: dropping {', '.join(prepared.fixed.dropped)} "
            "(linear combinations of earlier columns), as lme4 does.",
            RankDeficiencyWarning,
        )


def glmm(
    formula: str,
    data: object,
    family: str | Family = "binomial",
    *,
    link: str | None = None,
    weights: str | Sequence[float] | np.ndarray | None = None,
    offset: str | Sequence[float] | np.ndarray | None = None,
    nagq: int = 1,
    contrasts: Mapping[str, Any] | None = None,
    factorization: str | None = None,
    checks: Mapping[str, str] | None = None,
    memory_budget: float | None = None,
    control: Control | None = None,
    start: np.ndarray | Sequence[float] | None = None,
    progress: bool | None = None,
    verbose: bool = False,
    nAGQ: int | None = None,  # lme4's spelling, accepted for its users
) -> GlmmResult:
    """Fit a generalized linear mixed model (binomial or Poisson), as lme4's ``glmer``.

    Parameters
    ----------
    formula : str
        lme4's formula language, as for :func:`lmm`; the response may be
        ``cbind(successes, failures)``, and ``offset(log(exposure))`` adds an offset.
    data : DataFrame, pyarrow Table or dict of arrays
        Never modified; rows with missing values in the used columns are dropped.
    family : {"binomial", "poisson"} or Family
        The response's distribution (``lmmfast.Family("binomial", "probit")`` for another link).
    link : str, optional
        ``"logit"`` (default), ``"probit"`` or ``"cloglog"`` for binomial; ``"log"`` for Poisson.
    weights : str or array, optional
        Prior weights; for a binomial proportion, the number of trials of each row.
    offset : str or array, optional
        An offset on the link scale, added to any ``offset()`` in the formula.
    nagq : int, default 1
        1: the Laplace approximation; 0: glmer's fast fit (β inside PIRLS, only θ by the
        optimiser); > 1: adaptive Gauss–Hermite quadrature with that many nodes, for a model
        with a single scalar random-effects term.
    contrasts, factorization, checks, memory_budget, control, start, progress, verbose
        As for :func:`lmm` (``start`` is θ). With a canonical link (logit, log) and
        ``nagq`` 0 or 1, both stages are optimised by L-BFGS-B with the deviance's analytic
        gradient unless ``control.optimizer`` is ``"bobyqa"``; otherwise by BOBYQA, as glmer
        (and with quadrature, stage 2 always).
    nAGQ : int, optional
        lme4's spelling of ``nagq``.

    Returns
    -------
    GlmmResult

    Raises
    ------
    FormulaError, DataError, ModelError, ArgumentError
        As for :func:`lmm`; a :class:`DataError` names every response that cannot be fitted
        (three outcomes, proportions without trials, negative or fractional counts, all
        successes).

    Notes
    -----
    Repeated calls on the same small data reuse the prepared model, as :func:`lmm`'s do.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.glmm("prop ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), weights="size")
    >>> round(fit.objective, 2)
    186.57
    """
    # the generalized models' modules (and scipy.special, for their links) cost a new process
    # about 60 ms to import: a process that fits only linear models never pays it
    from lmmfast.generalized.prepare import glmm_columns, prepare_glmm

    nagq, chosen, control = glmm_settings(family, link, nagq, nAGQ, control, factorization, memory_budget)
    actions = resolve_checks(checks)
    if progress is not None:
        progress = check_bool("progress", progress)
    verbose = check_bool("verbose", verbose)
    began = time.perf_counter()
    require_in_memory(data, "lmmfast.glmm")
    prepared = recently_prepared(
        lambda: prepare_glmm(
            formula, data, chosen, nagq=nagq, weights=weights, offset=offset, control=control, contrasts=contrasts
        ),
        ("glmm", formula, chosen, nagq, weights, offset, control),
        data,
        contrasts,
        lambda: glmm_columns(parse_formula(formula), data, weights, offset),
    )
    return fit_and_report_glmm(prepared, actions, start, progress, verbose, began)


def glmm_settings(
    family: str | Family,
    link: str | None,
    nagq: int,
    nAGQ: int | None,
    control: Control | None,
    factorization: str | None,
    memory_budget: float | None,
) -> tuple[int, Family, Control]:
    """A generalized model's nAGQ, family and control (with its shortcuts), validated as
    :func:`glmm` validates them."""
    from lmmfast.generalized.family import family_for  # as in glmm: imported on first use

    if nAGQ is not None:
        if nagq != 1 and nagq != nAGQ:
            raise ArgumentError(f"nagq={nagq!r} and nAGQ={nAGQ!r} disagree; give one of them (nagq is lmmfast's name).")
        nagq = nAGQ
    nagq = check_count("nagq", nagq, minimum=0)
    if nagq > MAX_NAGQ:
        raise ArgumentError(f"nagq must be at most {MAX_NAGQ} (lme4's limit), got {nagq}.")
    chosen = family_for(family, link)
    control = control_with(control, factorization=factorization, memory_budget=memory_budget)
    if control.optimizer == "lbfgsb" and not (nagq <= 1 and chosen.canonical):
        raise ArgumentError(
            f"optimizer='lbfgsb' needs the analytic gradient of the deviance, which exists for nagq=0 or 1 with a "
            f"canonical link (logit, log); this model has nagq={nagq} and the {chosen.link} link. Use "
            "optimizer='auto' or 'bobyqa'."
        )
    return nagq, chosen, control


def fit_and_report_glmm(
    prepared: PreparedGlmm,
    actions: Mapping[str, str],
    start: np.ndarray | Sequence[float] | None,
    progress: bool | None,
    verbose: bool,
    began: float,
) -> GlmmResult:
    """The design's warning (aliased columns dropped), then the generalized fit path: what
    :func:`glmm` and :class:`lmmfast.models.GeneralizedLinearMixedModel` do with a prepared
    model; ``began`` is when the fit's time starts."""
    from lmmfast.generalized.fit import fit_glmm  # as in glmm: imported on first use
    from lmmfast.generalized.result import GlmmResult

    verbose = check_bool("verbose", verbose)
    if prepared.fixed.dropped:
        report(
            actions["rank_deficiency"],
            f"The fixed-effects model matrix is rank deficient: dropping {', '.join(prepared.fixed.dropped)} "
            "(linear combinations of earlier columns), as lme4 does.",
            RankDeficiencyWarning,
        )
    solution = fit_glmm(prepared, start=start, checks=actions, progress=progress, verbose=verbose)
    return GlmmResult.of(prepared, solution, began)
