"""How a fit is carried out: optimiser, tolerances, limits, factorisation and threads.

:class:`Control` gathers every setting of the fit path in one frozen object. Its defaults
are lme4's where lme4 has one (``nloptwrap``'s tolerances, ``isSingular``'s tolerance) and
reproduce lmmfast's fits exactly; the fit records the one it used in
:attr:`lmmfast.optsummary.OptSummary.control`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from lmmfast.errors import ArgumentError
from lmmfast.validation import check_bool, check_choice, check_count, check_positive_number

OPTIMIZERS = ("auto", "bobyqa", "lbfgsb")
FACTORIZATIONS = ("auto", "blocked", "cholmod")
COUPLINGS = ("auto", "dense", "grouped", "sparse")


@dataclass(frozen=True)
class Control:
    """Settings of the fit path (lme4's ``lmerControl``).

    Parameters
    ----------
    optimizer : {"auto", "bobyqa", "lbfgsb"}
        BOBYQA (derivative-free, as lme4), a quasi-Newton method with the analytic gradient
        (SciPy's L-BFGS-B; NLopt's L-BFGS where the criterion is compiled), or chosen from
        the model (linear models: a compiled criterion or the model's size) or from whether
        the deviance has a gradient (generalized models: canonical links with ``nagq`` 0 or 1).
    ftol_abs, ftol_rel, xtol_abs : float
        NLopt's stopping rules for BOBYQA (lme4's ``nloptwrap`` defaults); ``ftol_abs`` also
        stops the quasi-Newton methods, together with a relative floor for large objectives.
    max_evaluations : int
        The most evaluations of the objective one fit may use.
    restarts : int
        BOBYQA is restarted from its best point, with a step of ``restart_step``, up to this
        many times while a restart still lowers the objective by more than ``ftol_abs``.
    restart_step : float
    boundary_tolerance : float
        Template diagonals below this are set to exactly 0 after the optimiser stops, where
        that does not raise the objective.
    singular_tolerance : float
        A template diagonal below this makes the fit singular (lme4's ``isSingular``).
    convergence_tolerance : float
        The check of the optimum fails when a Newton step would still lower the objective by
        more than this (deviance units).
    factorization : {"auto", "blocked", "cholmod"}
        How Λ'Z'ZΛ + I is factored.
    coupling : {"auto", "dense", "grouped", "sparse"}
        The blocked path's route for the first term's coupling to the dense block
        (:class:`lmmfast.factor.FactorPlan`); ``"grouped"`` needs random intercepts only.
    merge_terms : bool
        Factor the terms on one grouping factor (the pieces of ``(x || g)``) as one term
        with a block-diagonal template (:mod:`lmmfast.design.amalgamate`); the same numbers
        either way, and far cheaper where they would otherwise land in the dense block.
    memory_budget : float, optional
        Bytes the fit may use beyond the data: the design's arrays, the cross-products and
        the factor with its working copies (default: 80% of physical memory).
    threads : int, optional
        The most threads the factorisation's sparse passes and BLAS may use (default: chosen
        from the model's size and the machine's cores).

    Examples
    --------
    >>> Control(optimizer="bobyqa", max_evaluations=500).max_evaluations
    500
    >>> Control(optimizer="newton")
    Traceback (most recent call last):
    ...
    lmmfast.errors.ArgumentError: optimizer must be 'auto', 'bobyqa' or 'lbfgsb', got 'newton'.
    """

    optimizer: str = "auto"
    ftol_abs: float = 1e-8
    ftol_rel: float = 0.0
    xtol_abs: float = 1e-8
    max_evaluations: int = 100_000
    restarts: int = 2
    restart_step: float = 1e-2
    boundary_tolerance: float = 1e-4
    singular_tolerance: float = 1e-4
    convergence_tolerance: float = 1e-3
    factorization: str = "auto"
    coupling: str = "auto"
    merge_terms: bool = True
    memory_budget: float | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("factorization", self.factorization, FACTORIZATIONS)
        check_choice("coupling", self.coupling, COUPLINGS)
        if self.coupling != "auto" and self.factorization == "cholmod":
            raise ArgumentError(
                f"coupling={self.coupling!r} is a route of the blocked path; it cannot go with factorization='cholmod'."
            )
        positive = ("ftol_abs", "xtol_abs", "restart_step", "boundary_tolerance", "singular_tolerance")
        for name in (*positive, "convergence_tolerance"):
            check_positive_number(name, getattr(self, name))
        if isinstance(self.ftol_rel, bool) or not isinstance(self.ftol_rel, (int, float)) or not 0 <= self.ftol_rel < 1:
            raise ArgumentError(f"ftol_rel must be a number in [0, 1), got {self.ftol_rel!r}.")
        check_bool("merge_terms", self.merge_terms)
        check_count("max_evaluations", self.max_evaluations)
        check_count("restarts", self.restarts, minimum=0)
        if self.memory_budget is not None:
            check_positive_number("memory_budget", self.memory_budget, "bytes")
        if self.threads is not None:
            check_count("threads", self.threads)


def control_with(control: Control | None, **shortcuts: object) -> Control:
    """``control`` (default :class:`Control`) with the keyword shortcuts of :func:`lmmfast.lmm`
    (``optimizer=``, ``factorization=``, ``memory_budget=``) filled in; those left at None
    are not given. A setting given both ways is an :class:`ArgumentError`.

    Examples
    --------
    >>> control_with(None, optimizer="bobyqa", memory_budget=None).optimizer
    'bobyqa'
    >>> control_with(Control(optimizer="lbfgsb"), optimizer="bobyqa")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lmmfast.errors.ArgumentError: optimizer='bobyqa' and control are both given; set it in the Control instead: ...
    """
    given = {name: value for name, value in shortcuts.items() if value is not None}
    known = {f.name for f in fields(Control)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ArgumentError(f"{unknown[0]} is not a setting of Control.")
    if control is None:
        return Control(**given)  # type: ignore[arg-type]
    if not isinstance(control, Control):
        raise ArgumentError(f"control must be a lmmfast.Control, got {type(control).__name__}.")
    if given:
        name, value = next(iter(given.items()))
        raise ArgumentError(
            f"{name}={value!r} and control are both given; set it in the Control instead: "
            f"Control(..., {name}={value!r})."
        )
    return control
