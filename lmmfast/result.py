"""The numbers of a fit: estimates, variance components, conditional modes, record.

:class:`LmmFit` holds what a fit found and what follows from it by arithmetic alone; it is
what the fit path (:mod:`lmmfast.fit`) returns and what inference reads. The user-facing
:class:`lmmfast.LmmResult` adds the methods that call inference, prediction and output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from lmmfast._version import __version__
from lmmfast.convergence import ConvergenceCheck
from lmmfast.design.encoding import DesignEncoding
from lmmfast.design.random import display_names
from lmmfast.errors import DataNotSavedError
from lmmfast.factor.plan import FactorPlan
from lmmfast.objective import Solution
from lmmfast.optsummary import OptSummary
from lmmfast.prepare import PreparedModel
from lmmfast.validation import check_choice

#: The version of :meth:`LmmFit.to_dict`'s layout (``lmmfast/schemas/fit.schema.json``).
FIT_SCHEMA = "lmmfast-fit/1"

#: What a fit holds with its rows (:meth:`MixedFit.held`).
Held = TypeVar("Held")

#: The fields of :class:`LmmFit` that hold or need the rows (what a fit saved without its data
#: does not hold).
ROW_FIELDS = ("prepared", "scaled_residuals", "fitted_values")

#: The quantiles of the scaled residuals that summaries print (Min, 1Q, Median, 3Q, Max).
RESIDUAL_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def residual_quantiles(residuals: np.ndarray) -> np.ndarray:
    """The ``RESIDUAL_QUANTILES`` of ``residuals`` as R's and numpy's default (linear
    interpolation between order statistics), from one sort: ``np.quantile`` costs a small
    refit's worth of set-up.

    Examples
    --------
    >>> values = np.array([3.0, -1.0, 4.0, 1.5, 9.0, 2.0])
    >>> np.array_equal(residual_quantiles(values), np.quantile(values, RESIDUAL_QUANTILES))
    True
    """
    ordered = np.sort(residuals)
    position = np.asarray(RESIDUAL_QUANTILES) * (len(ordered) - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, len(ordered) - 1)
    fraction = position - below
    low, high = ordered[below], ordered[above]
    # numpy's lerp: from the nearer end, so that the extremes are exact
    return np.where(fraction >= 0.5, high - (high - low) * (1.0 - fraction), low + (high - low) * fraction)


def data_not_saved() -> DataNotSavedError:
    """The error for a fit loaded without its data that was asked for its rows."""
    return DataNotSavedError(
        "This needs the rows the model was fitted to, and the fit was loaded without them; load it with "
        "lmmfast.load(path, data=the_data) (one evaluation restores everything), or save it with "
        "fit.save(path, include_data=True)."
    )


@dataclass(frozen=True)
class RandomTermResult:
    """One random-effects term of a fitted model (lme4's order).

    Attributes
    ----------
    name : str
        Its VarCorr name (``Subject``, ``Subject.1`` for a second term on Subject).
    group : str
        The grouping factor (``Subject``).
    columns : tuple of str
    levels : numpy.ndarray
    template : numpy.ndarray
        The k×k lower-triangular Λ template at the optimum.
    modes : numpy.ndarray, shape (n_levels, k)
        Conditional modes b̂.
    """

    name: str
    group: str
    columns: tuple[str, ...]
    levels: np.ndarray
    template: np.ndarray
    modes: np.ndarray


class MixedFit:
    """What every mixed-model fit (linear or generalized) reads off its estimates: the fixed
    effects with their covariance, the variance components and the conditional modes.

    Subclasses hold ``fixef_names``, ``beta``, ``beta_covariance``, ``terms``,
    ``optsummary``, ``plan`` and ``prepared`` (None without rows), and say by
    :attr:`residual_sd` whether the model has a residual.
    """

    fixef_names: tuple[str, ...]
    beta: np.ndarray
    beta_covariance: np.ndarray
    terms: tuple[RandomTermResult, ...]
    optsummary: OptSummary

    objective: float
    nobs: int
    plan: FactorPlan
    #: The prepared model with its rows; None for a fit loaded without its data.
    prepared: Any

    @property
    def has_data(self) -> bool:
        """Whether the fit holds its rows (False only for a fit loaded without its data)."""
        return self.prepared is not None

    @staticmethod
    def held(value: Held | None) -> Held:
        """``value``, something a fit holds with its rows; :class:`DataNotSavedError` for a fit
        loaded without them (where it is None)."""
        if value is None:
            raise data_not_saved()
        return value

    @property
    def engine(self) -> FactorPlan:
        """How the model was factored: path, coupling route, dense block, threads, memory
        estimate (:class:`lmmfast.factor.FactorPlan`)."""
        return self.plan

    @property
    def residual_sd(self) -> float | None:
        """σ, the residual standard deviation (None for models without one)."""
        raise NotImplementedError

    @property
    def npar(self) -> int:
        """Number of parameters of the likelihood."""
        raise NotImplementedError

    @property
    def loglik(self) -> float:
        """The log-likelihood, −objective / 2: lme4's ``logLik`` (the REML log-likelihood for
        REML fits, lme4's quadrature scale for generalized fits with ``nagq > 1``)."""
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        """Akaike's information criterion, −2 logLik + 2 npar."""
        return self.objective + 2.0 * self.npar

    @property
    def bic(self) -> float:
        """Schwarz's criterion, −2 logLik + log(n) npar."""
        return self.objective + np.log(self.nobs) * self.npar

    @property
    def singular(self) -> bool:
        """lme4's ``isSingular``: some template diagonal is (near) zero — a boundary fit
        (below :attr:`lmmfast.Control.singular_tolerance`)."""
        diagonal = np.concatenate([np.diag(t.template) for t in self.terms])
        return bool(np.any(diagonal < self.optsummary.control.singular_tolerance))

    # --- estimates ----------------------------------------------------------------------------
    @property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates, indexed by formulaic's column names."""
        return pd.Series(self.beta, index=list(self.fixef_names), name="estimate")

    @property
    def stderr(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return pd.Series(np.sqrt(np.diag(self.beta_covariance)), index=list(self.fixef_names), name="std_error")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed-effects estimates."""
        names = list(self.fixef_names)
        return pd.DataFrame(self.beta_covariance, index=names, columns=names)

    @property
    def ngrps(self) -> dict[str, int]:
        """Number of levels per grouping factor (lme4's order)."""
        return {t.group: len(t.levels) for t in self.terms}

    @property
    def varcorr(self) -> pd.DataFrame:
        """Variance components as R's ``as.data.frame(VarCorr(m))``.

        Columns ``grp, var1, var2, vcov, sdcor``: per term the variances, then the covariances
        (``sdcor`` the correlation), the residual last.
        """
        rows: list[tuple[str, str | None, str | None, float, float]] = []
        scale = 1.0 if self.residual_sd is None else self.residual_sd
        for term in self.terms:
            cov = scale**2 * term.template @ term.template.T
            sd = np.sqrt(np.diag(cov))
            for i, column in enumerate(term.columns):
                rows.append((term.name, column, None, cov[i, i], sd[i]))
            for j in range(len(term.columns)):
                for i in range(j + 1, len(term.columns)):
                    denominator = sd[i] * sd[j]
                    corr = cov[i, j] / denominator if denominator > 0 else np.nan
                    rows.append((term.name, term.columns[j], term.columns[i], cov[i, j], corr))
        if self.residual_sd is not None:
            rows.append(("Residual", None, None, self.residual_sd**2, self.residual_sd))
        grp, var1, var2, vcov, sdcor = zip(*rows)
        return pd.DataFrame(
            {
                "grp": pd.Series(grp, dtype=object),
                "var1": pd.Series(var1, dtype=object),
                "var2": pd.Series(var2, dtype=object),
                "vcov": np.asarray(vcov, dtype=np.float64),
                "sdcor": np.asarray(sdcor, dtype=np.float64),
            }
        )

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor: rows are levels, columns the terms' columns."""
        out: dict[str, pd.DataFrame] = {}
        for term in self.terms:
            frame = pd.DataFrame(term.modes, index=pd.Index(term.levels, name=term.group), columns=list(term.columns))
            out[term.group] = frame if term.group not in out else pd.concat([out[term.group], frame], axis=1)
        return out

    @property
    def coef(self) -> dict[str, pd.DataFrame]:
        """lme4's ``coef()``: per grouping factor, the fixed effects plus each level's
        conditional modes — every level's own intercept and slopes.

        One DataFrame per grouping factor, rows its levels, columns named as the fixed
        effects (``Intercept``, ``Days``). A column with a random effect but no fixed effect
        comes first, with a fixed part of 0 (as lme4).

        Examples
        --------
        >>> import lmmfast
        >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
        >>> fit.coef["Subject"].loc["308"].round(2).to_dict()
        {'Intercept': 253.66, 'Days': 19.67}
        """
        fixed = self.fixef
        out: dict[str, pd.DataFrame] = {}
        for group, modes in self.ranef.items():
            columns = ["Intercept" if column == "(Intercept)" else column for column in modes.columns]
            random_only = list(dict.fromkeys(c for c in columns if c not in fixed.index))
            names = random_only + list(fixed.index)
            values = np.tile(np.r_[np.zeros(len(random_only)), fixed.to_numpy()], (len(modes), 1))
            position = {name: j for j, name in enumerate(names)}
            for j, column in enumerate(columns):
                values[:, position[column]] += modes.iloc[:, j].to_numpy()
            out[group] = pd.DataFrame(values, index=modes.index.copy(), columns=names)
        return out


@dataclass(frozen=True, eq=False, repr=False)
class LmmFit(MixedFit):
    """The numbers of a fitted linear mixed model. Immutable; every statistic is read off
    what is stored. :func:`lmmfast.lmm` returns its user-facing subclass,
    :class:`lmmfast.LmmResult`.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> round(float(fit.fixef["Days"]), 3), fit.nobs
    (10.467, 180)
    """

    formula: str
    reml: bool
    data_name: str | None
    weights_name: str | None
    fixef_names: tuple[str, ...]
    beta: np.ndarray
    beta_covariance: np.ndarray
    sigma: float
    theta: np.ndarray
    theta_names: tuple[str, ...]
    terms: tuple[RandomTermResult, ...]
    objective: float
    nobs: int
    dropped_rows: np.ndarray
    dropped_columns: tuple[str, ...]
    residual_quantiles: np.ndarray
    optsummary: OptSummary
    convergence: ConvergenceCheck | None
    fit_seconds: float
    version: str
    plan: FactorPlan
    encoding: DesignEncoding = field(repr=False)
    #: The model with its rows; None for a fit loaded without its data.
    prepared: PreparedModel | None = field(repr=False)
    scaled_residuals: np.ndarray | None = field(repr=False)
    fitted_values: np.ndarray | None = field(repr=False)

    @classmethod
    def from_solution(
        cls,
        prepared: PreparedModel,
        record: OptSummary,
        solution: Solution,
        convergence: ConvergenceCheck | None = None,
        began: float | None = None,
    ) -> LmmFit:
        """The result at the optimiser's solution: conditional modes per term, fitted values
        and residuals (one pass over the rows).

        ``solution`` is ``prepared.objective.solve(record.final)``; ``began`` the
        :func:`time.perf_counter` at the fit's start, for :attr:`fit_seconds`.
        """
        objective, layout, terms = prepared.objective, prepared.layout, prepared.terms
        offsets = objective.cross_products.column_offsets
        fitted = prepared.fixed.X @ solution.beta
        term_results = []
        all_modes = prepared.engine.model_modes(solution.b, offsets)
        for index, (term, name, modes) in enumerate(zip(terms, display_names(terms), all_modes)):
            modes = np.ascontiguousarray(modes)
            if prepared.has_rows:
                fitted += np.einsum("ij,ij->i", term.values, modes[term.codes])
            term_results.append(
                RandomTermResult(
                    name=name,
                    group=term.group,
                    columns=term.columns,
                    levels=term.levels,
                    template=layout.template(record.final, index),
                    modes=modes,
                )
            )
        scaled_residuals: np.ndarray | None = None
        quantiles = np.full(len(RESIDUAL_QUANTILES), np.nan)  # data read in chunks: not computed
        if prepared.has_rows:
            residuals = prepared.fixed.y - fitted
            if prepared.weights is not None:
                residuals = residuals * np.sqrt(prepared.weights)
            scaled_residuals = residuals / solution.sigma
            quantiles = residual_quantiles(scaled_residuals)
        return cls(
            formula=prepared.formula.text,
            reml=objective.reml,
            data_name=prepared.data_name,
            weights_name=prepared.weights_name,
            fixef_names=prepared.fixed.names,
            beta=solution.beta,
            beta_covariance=solution.beta_covariance,
            sigma=solution.sigma,
            theta=record.final,
            theta_names=tuple(layout.names([t.group for t in terms], [t.columns for t in terms])),
            terms=tuple(term_results),
            objective=record.final_objective,
            nobs=objective.cross_products.n,
            dropped_rows=prepared.model_frame.dropped_rows,
            dropped_columns=prepared.fixed.dropped,
            residual_quantiles=quantiles,
            optsummary=record,
            convergence=convergence,
            fit_seconds=time.perf_counter() - began if began is not None else record.seconds,
            version=__version__,
            plan=objective.describe(),
            encoding=prepared.encoding,
            prepared=prepared,
            scaled_residuals=scaled_residuals,
            fitted_values=fitted if prepared.has_rows else None,
        )

    @property
    def model(self) -> PreparedModel:
        """The prepared model, rows included (what refits, residuals and the inference that
        re-evaluates the criterion use); :class:`DataNotSavedError` for a fit loaded without
        its data."""
        return self.held(self.prepared)

    # --- likelihood summaries -------------------------------------------------------------
    @property
    def criterion(self) -> str:
        """``"REML"`` or ``"ML"``."""
        return "REML" if self.reml else "ML"

    @property
    def npar(self) -> int:
        """Number of parameters: fixed effects, θ, and σ."""
        return len(self.beta) + len(self.theta) + 1

    @property
    def converged(self) -> bool:
        """Whether the optimiser stopped on its tolerances and, where it was run, the
        finite-difference check of the optimum passed."""
        return self.optsummary.converged and (self.convergence is None or self.convergence.ok)

    @property
    def n_evals(self) -> int:
        """Objective evaluations used."""
        return self.optsummary.n_evals

    @property
    def residual_sd(self) -> float | None:
        """σ, the residual standard deviation."""
        return self.sigma

    # --- inference -------------------------------------------------------------------------
    def fitted(self) -> np.ndarray:
        """Fitted values Xβ̂ + Zb̂ of the observations used (complete cases, in order)."""
        return self._rows()[0].copy()

    def residuals(self, type: str = "response") -> np.ndarray:
        """Residuals of the observations used: ``"response"`` (y − fitted) or ``"pearson"``
        (scaled by √w, as lme4)."""
        check_choice("residual type", type, ("response", "pearson"))
        fitted, scaled = self._rows()
        if type == "response":
            return self.model.fixed.y - fitted
        return scaled * self.sigma

    def _rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(fitted values, scaled residuals), or :class:`DataNotSavedError`."""
        if self.prepared is not None:
            self.prepared.require_rows("Fitted values and residuals")
        if self.fitted_values is None or self.scaled_residuals is None:
            raise data_not_saved()
        return self.fitted_values, self.scaled_residuals

    # --- output ---------------------------------------------------------------------------------
    def __repr__(self) -> str:
        """Two lines: formula, then criterion, observations and groups (``print(fit)`` or
        ``fit.summary()`` shows everything)."""
        groups = ", ".join(f"{name} ({count})" for name, count in self.ngrps.items())
        flags = "".join(
            [", boundary (singular) fit" if self.singular else "", "" if self.converged else ", not converged"]
        )
        criterion = "REML criterion" if self.reml else "deviance (ML)"
        return (
            f"<{type(self).__name__}: {self.formula}\n"
            f" {criterion} {self.objective:.3f}, {self.nobs} observations, groups: {groups}{flags}>"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--output json``), described by the JSON Schema
        ``lmmfast/schemas/fit.schema.json`` (``schema``: ``"lmmfast-fit/1"``)."""

        def clean(value: float) -> float | None:
            return None if value is None or not np.isfinite(value) else float(value)

        return {
            "schema": FIT_SCHEMA,
            "formula": self.formula,
            "criterion": self.criterion,
            "nobs": self.nobs,
            "n_dropped": len(self.dropped_rows),
            "ngrps": self.ngrps,
            "objective": self.objective,
            "loglik": self.loglik,
            "aic": self.aic,
            "bic": self.bic,
            "fixef": {k: float(v) for k, v in self.fixef.items()},
            "stderr": {k: float(v) for k, v in self.stderr.items()},
            "sigma": self.sigma,
            "theta": [float(t) for t in self.theta],
            "theta_names": list(self.theta_names),
            "varcorr": [
                {
                    "grp": row.grp,
                    "var1": row.var1,
                    "var2": row.var2,
                    "vcov": clean(row.vcov),
                    "sdcor": clean(row.sdcor),
                }
                for row in self.varcorr.itertuples(index=False)
            ],
            "converged": self.converged,
            "singular": self.singular,
            "n_evals": self.n_evals,
            "fit_seconds": self.fit_seconds,
            "optimizer": self.optsummary.algorithm,
            "dropped_columns": list(self.dropped_columns),
            "version": self.version,
        }
