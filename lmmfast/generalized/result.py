"""A fitted generalized linear mixed model: its numbers, and what users do with them.

:class:`GlmmResult` has the names of :class:`lmmfast.LmmResult` where they apply
(``objective``, ``loglik``, ``aic``, ``bic``, ``fixef``, ``stderr``, ``theta``, ``varcorr``,
``ranef``, ``cond_var``, ``summary()``, ``to_dict()``, ``optsummary``), and the family's:
``family``, ``link`` and ``deviance`` — lme4's ``deviance()``, the sum of the squared deviance
residuals at the conditional modes, which is not the −2 log-likelihood (``objective``) that
glmer's summary and ``anova`` print as "deviance".
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from lmmfast._version import __version__
from lmmfast.archive import write_archive
from lmmfast.design.data import build_model_frame, column_names
from lmmfast.design.encoding import DesignEncoding
from lmmfast.design.random import display_names
from lmmfast.design.variables import formula_variables
from lmmfast.diagnostics import resolve_checks
from lmmfast.errors import ArgumentError, DataError
from lmmfast.factor.plan import FactorPlan
from lmmfast.generalized.family import Family
from lmmfast.generalized.fit import GlmmSolution
from lmmfast.generalized.prepare import PreparedGlmm
from lmmfast.generalized.response import evaluate
from lmmfast.generalized.reweight import add_random_part, mean_and_derivative
from lmmfast.generalized.simulate import FittedParameters, bootstrap_replicates, refit_to, simulate_responses
from lmmfast.inference.condvar import covariance_blocks, ranef_rows
from lmmfast.inference.emmeans import MarginalMeans, marginal_means
from lmmfast.inference.r2 import r2_and_icc
from lmmfast.objective import scale_by_lambda
from lmmfast.optsummary import OptSummary
from lmmfast.plots import binned_residuals, plot_bootstrap, plot_generalized_residuals, plot_ranef
from lmmfast.predict import predict as predict_link
from lmmfast.result import MixedFit, RandomTermResult, data_not_saved, residual_quantiles
from lmmfast.summary import (
    fixed_correlation_lines,
    format_column,
    format_p_value,
    format_table,
    residuals_and_random_effects_lines,
)
from lmmfast.validation import check_bool, check_choice, check_level

#: The version of :meth:`GlmmResult.to_dict`'s layout (``lmmfast/schemas/glmm.schema.json``).
GLMM_SCHEMA = "lmmfast-glmm/1"

RESIDUAL_TYPES = ("deviance", "pearson", "response", "working")

#: The fields of :class:`GlmmResult` that hold or need the rows (what a fit saved without its
#: data does not hold).
GLMM_ROW_FIELDS = ("prepared", "fitted_solution", "linear_predictor", "mu")
SCALES = ("response", "link")


@dataclass(frozen=True, eq=False, repr=False)
class GlmmResult(MixedFit):
    """A fitted generalized linear mixed model (:func:`lmmfast.glmm`). Immutable.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.glmm("prop ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), weights="size")
    >>> round(fit.objective, 2), round(fit.deviance, 2), fit.family.name
    (186.57, 75.07, 'binomial')
    """

    formula: str
    family: Family
    nagq: int
    data_name: str | None
    weights_name: str | None
    offset_name: str | None
    fixef_names: tuple[str, ...]
    beta: np.ndarray
    beta_covariance: np.ndarray
    covariance_source: str
    theta: np.ndarray
    theta_names: tuple[str, ...]
    terms: tuple[RandomTermResult, ...]
    objective: float
    deviance: float
    nobs: int
    dropped_rows: np.ndarray
    dropped_columns: tuple[str, ...]
    residual_quantiles: np.ndarray
    newton_gain: float | None
    optsummary: OptSummary
    stages: tuple[OptSummary, ...]
    fit_seconds: float
    version: str
    plan: FactorPlan
    encoding: DesignEncoding = field(repr=False)
    #: The model with its rows, and the fit's own deviance functions at its optimum; None for
    #: a fit loaded without its data.
    prepared: PreparedGlmm | None = field(repr=False)
    fitted_solution: GlmmSolution | None = field(repr=False)
    linear_predictor: np.ndarray | None = field(repr=False)
    mu: np.ndarray | None = field(repr=False)

    @classmethod
    def of(cls, prepared: PreparedGlmm, solution: GlmmSolution, began: float | None = None) -> GlmmResult:
        """The result of ``solution``, a fit of ``prepared``."""
        layout, terms = prepared.layout, prepared.terms
        pirls = solution.deviance.pirls
        b = scale_by_lambda(pirls.layout, pirls.shape, solution.theta, solution.mode.u)
        eta = prepared.response.offset + prepared.fixed.X @ solution.beta
        add_random_part(pirls.terms, b, pirls.shape.column_offsets, eta)
        mu, _ = mean_and_derivative(eta, prepared.family.link)
        pearson = residuals_of(solution, prepared.response.y, eta, "pearson")
        term_results = [
            RandomTermResult(
                name=name,
                group=term.group,
                columns=term.columns,
                levels=term.levels,
                template=layout.template(solution.theta, index),
                modes=np.ascontiguousarray(modes),
            )
            for index, (term, name, modes) in enumerate(
                zip(terms, display_names(terms), prepared.engine.model_modes(b, pirls.shape.column_offsets))
            )
        ]
        return cls(
            formula=prepared.formula.text,
            family=prepared.family,
            nagq=prepared.nagq,
            data_name=prepared.data_name,
            weights_name=prepared.weights_name,
            offset_name=prepared.offset_name,
            fixef_names=prepared.fixed.names,
            beta=solution.beta,
            beta_covariance=solution.beta_covariance,
            covariance_source=solution.covariance_source,
            theta=solution.theta,
            theta_names=tuple(layout.names([t.group for t in terms], [t.columns for t in terms])),
            terms=tuple(term_results),
            objective=solution.objective,
            deviance=solution.mode.deviance,
            nobs=len(prepared.response.y),
            dropped_rows=prepared.model_frame.dropped_rows,
            dropped_columns=prepared.fixed.dropped,
            residual_quantiles=residual_quantiles(pearson),
            newton_gain=solution.newton_gain,
            optsummary=solution.stages[-1],
            stages=solution.stages,
            fit_seconds=time.perf_counter() - began if began is not None else solution.seconds,
            version=__version__,
            plan=solution.deviance.pirls.plan(),
            encoding=prepared.encoding,
            prepared=prepared,
            fitted_solution=solution,
            linear_predictor=eta,
            mu=mu,
        )

    @property
    def model(self) -> PreparedGlmm:
        """The prepared model, rows included; :class:`~lmmfast.DataNotSavedError` for a fit
        loaded without its data."""
        return self.held(self.prepared)

    @property
    def solution(self) -> GlmmSolution:
        """What the fit found, with its own deviance functions at the optimum (which
        residuals and conditional variances evaluate); :class:`~lmmfast.DataNotSavedError`
        for a fit loaded without its data."""
        return self.held(self.fitted_solution)

    # --- likelihood summaries -------------------------------------------------------------
    @property
    def residual_sd(self) -> float | None:
        """None: a generalized model has no residual variance."""
        return None

    @property
    def link(self) -> str:
        """The link function's name (``"logit"``, ``"probit"``, ``"cloglog"``, ``"log"``)."""
        return self.family.link

    @property
    def npar(self) -> int:
        """Number of parameters: fixed effects and θ."""
        return len(self.beta) + len(self.theta)

    @property
    def converged(self) -> bool:
        """Whether every stage's optimiser stopped on its tolerances and the check of the
        optimum passed (a Newton step would gain at most ``Control.convergence_tolerance``)."""
        gain = self.newton_gain
        tolerance = self.optsummary.control.convergence_tolerance
        return all(stage.converged for stage in self.stages) and (gain is None or gain <= tolerance)

    @property
    def n_evals(self) -> int:
        """Deviance evaluations over both stages (without the Hessian's)."""
        return sum(stage.n_evals for stage in self.stages)

    @property
    def method(self) -> str:
        """How the likelihood was approximated, as glmer's summary says it."""
        if self.nagq == 0:
            return "Laplace approximation, nAGQ = 0"
        if self.nagq == 1:
            return "Laplace Approximation"
        return f"Adaptive Gauss-Hermite Quadrature, nAGQ = {self.nagq}"

    # --- per observation ---------------------------------------------------------------------
    def fitted(self, type: str = "response") -> np.ndarray:
        """Fitted values of the observations used: the means μ̂ (``"response"``) or the linear
        predictor η̂ (``"link"``), random effects and offset included."""
        scale = check_choice("type", type, SCALES)
        eta, mu = self._rows()
        return mu.copy() if scale == "response" else eta.copy()

    def residuals(self, type: str = "deviance") -> np.ndarray:
        """Residuals of the observations used, as lme4's ``residuals(m, type)``:
        ``"deviance"`` (default), ``"pearson"``, ``"response"`` (y − μ̂) or ``"working"``."""
        check_choice("residual type", type, RESIDUAL_TYPES)
        return residuals_of(self.solution, self.model.response.y, self._rows()[0], type)

    def _rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(linear predictor, means), or :class:`DataNotSavedError`."""
        if self.linear_predictor is None or self.mu is None:
            raise data_not_saved()
        return self.linear_predictor, self.mu

    def predict(
        self, newdata: object, *, type: str = "response", re: str = "all", new_levels: str = "population"
    ) -> np.ndarray:
        """Predictions for the rows of ``newdata`` on the response scale (probabilities,
        rates) or the link scale, with or without the random effects; offsets in the formula
        are taken from ``newdata`` (an ``offset=`` argument of the fit is not: add it to the
        link-scale prediction). Arguments as for :meth:`lmmfast.LmmResult.predict`.

        Examples
        --------
        >>> import lmmfast
        >>> fit = lmmfast.glmm("prop ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), weights="size")
        >>> fit.predict({"period": [1, 4], "herd": [1, 1]}).round(3).tolist()
        [0.288, 0.07]
        """
        scale = check_choice("type", type, SCALES)
        link = predict_link(self, newdata, re=re, new_levels=new_levels)  # type: ignore[arg-type]
        available = set(column_names(newdata))
        for expression in self.encoding.formula.offsets:
            needed = formula_variables(f"0 + I({expression})", f"offset({expression})", available)
            frame = build_model_frame(newdata, sorted(needed)).frame
            if len(frame) != len(link):
                raise DataError(f"newdata has missing values in the offset's columns ({', '.join(sorted(needed))}).")
            link = link + evaluate(expression, frame, "The offset")
        if scale == "link":
            return link
        return mean_and_derivative(link, self.family.link)[0]

    # --- simulation, refits, intervals ------------------------------------------------------
    def _parameters(self) -> FittedParameters:
        return FittedParameters(self.model, self.beta, self.theta, tuple(t.template for t in self.terms))

    def simulate(self, nsim: int = 1, seed: int | None = None) -> np.ndarray:
        """Responses simulated from the fit (random effects drawn anew), shape (nobs, nsim),
        in the form of the fit's response: proportions of its trials, or counts.

        Examples
        --------
        >>> import lmmfast
        >>> fit = lmmfast.glmm("prop ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), weights="size")
        >>> fit.simulate(3, seed=1).shape
        (56, 3)
        """
        return simulate_responses(self._parameters(), nsim, seed)

    def refit(self, y: np.ndarray, checks: Mapping[str, str] | None = None) -> GlmmResult:
        """The same model fitted to a new response (one value per observation used, as
        :attr:`model.response.y <lmmfast.generalized.response.Response>`), from θ̂."""
        began = time.perf_counter()
        prepared, solution = refit_to(self.model, y, self.theta, resolve_checks(checks))
        return GlmmResult.of(prepared, solution, began)

    def bootstrap(
        self, n: int, *, seed: int | None = None, processes: int = 1, progress: bool = False, client: Any = None
    ) -> pd.DataFrame:
        """Parametric bootstrap: ``n`` responses simulated from the fit, each refitted; one
        row per replicate (the fixed effects, θ, ``objective``), bit-identical for a ``seed``
        whatever ``processes`` or Dask ``client``. A replicate that cannot be fitted
        (separation) is a row of NaN."""
        columns = [*self.fixef_names, *self.theta_names, "objective"]
        return bootstrap_replicates(
            self._parameters(),
            columns,
            n,
            seed=seed,
            processes=processes,
            progress=check_bool("progress", progress),
            client=client,
        )

    def confint(
        self, method: str = "wald", level: float = 0.95, *, n: int = 1000, seed: int | None = None, processes: int = 1
    ) -> pd.DataFrame:
        """Confidence intervals (``lower``, ``upper``): ``"wald"`` for the fixed effects,
        estimate ± z·SE (as lme4); ``"boot"``, percentile intervals from ``n`` parametric
        bootstrap replicates, for the fixed effects and θ. Profile intervals are not yet
        available for generalized fits."""
        level = check_level(level)
        method = check_choice("confint method", method, ("wald", "boot"))
        if method == "boot":
            replicates = self.bootstrap(n, seed=seed, processes=processes).dropna()
            columns = [*self.fixef_names, *self.theta_names]
            bounds = np.quantile(replicates[columns].to_numpy(), [(1 - level) / 2, (1 + level) / 2], axis=0)
            return pd.DataFrame({"lower": bounds[0], "upper": bounds[1]}, index=columns)
        z = float(ndtri(0.5 + level / 2))
        se = self.stderr.to_numpy()
        return pd.DataFrame({"lower": self.beta - z * se, "upper": self.beta + z * se}, index=list(self.fixef_names))

    # --- random effects ------------------------------------------------------------------------
    @cached_property
    def cond_var(self) -> dict[str, np.ndarray]:
        """Conditional covariance matrices of the random effects per term (VarCorr's names),
        arrays (n_levels, k, k): Λ (Λ'Z'WZΛ + I)⁻¹ Λ' at the modes, as lme4's ``condVar``."""
        deviance = self.solution.deviance.fresh()
        deviance.pirls.solve(self.theta, self.beta, free_beta=False, u=self.solution.mode.u)
        pirls = deviance.pirls
        blocks = covariance_blocks(pirls.factor, pirls.shape.column_offsets, self.model.engine, self.terms, 1.0)
        return {term.name: block for term, block in zip(self.terms, blocks)}

    def ranef_table(self) -> pd.DataFrame:
        """Conditional modes and conditional sds per level (``grpvar, term, grp, condval, condsd``)."""
        return ranef_rows(self.terms, list(self.cond_var.values()))

    def plot_ranef(self, *, level: float = 0.95, ax: Any = None) -> Any:
        """Caterpillar plot of the conditional modes with their intervals (link scale); see
        :func:`lmmfast.plots.plot_ranef` (matplotlib: ``pip install lmmfast[plot]``)."""
        return plot_ranef(self, level=level, ax=ax, table=self.ranef_table())  # type: ignore[arg-type]

    def binned_residuals(self, bins: int | None = None) -> pd.DataFrame:
        """Binned residuals: the observations in ``bins`` groups by fitted mean (default √n),
        each with its mean fitted value, mean residual y − μ̂ and that mean's standard error
        under the model; see :func:`lmmfast.plots.binned_residuals`."""
        mu = self._rows()[1]
        response = self.model.response
        # Var(y) per row on the response scale: V(μ) over the prior weights (trials)
        variance = self.family.variance(mu) / response.weights
        return binned_residuals(mu, response.y, variance, bins)

    def plot_residuals(self, *, bins: int | None = None, ax: Any = None) -> Any:
        """Binned residuals, Pearson residuals against the linear predictor, and a normal QQ
        plot of the random effects; see :func:`lmmfast.plots.plot_generalized_residuals`."""
        table = self.binned_residuals(bins)
        return plot_generalized_residuals(table, self._rows()[0], self.residuals("pearson"), self.terms, ax=ax)

    def plot_bootstrap(self, replicates: pd.DataFrame, *, columns: list[str] | None = None, ax: Any = None) -> Any:
        """Densities of bootstrap replicates from :meth:`bootstrap`; see
        :func:`lmmfast.plots.plot_bootstrap`."""
        return plot_bootstrap(replicates, columns=columns, ax=ax)

    # --- marginal means ------------------------------------------------------------------------
    def emmeans(
        self,
        specs: str | Sequence[str],
        by: str | Sequence[str] | None = None,
        *,
        type: str = "link",
        level: float = 0.95,
    ) -> MarginalMeans:
        """Estimated marginal means of the factors ``specs`` (within ``by``), as emmeans gives
        them for glmer fits: on the link scale, or (``type="response"``) as probabilities or
        rates with delta-method standard errors, their contrasts then odds ratios (logit) or
        ratios (log); asymptotic (z) inference. See :meth:`lmmfast.LmmResult.emmeans`.

        Examples
        --------
        >>> import lmmfast
        >>> fit = lmmfast.glmm("prop ~ C(period) + (1 | herd)", lmmfast.datasets.load("cbpp"), weights="size")
        >>> fit.emmeans("period", type="response").table.prob.round(3).tolist()
        [0.198, 0.084, 0.074, 0.048]
        """
        scale = check_choice("type", type, SCALES)
        link = self.link

        def inverse(eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return mean_and_derivative(eta, link)

        response = (self.family.name, link, inverse) if scale == "response" else None
        covariance = self.beta_covariance
        return marginal_means(
            self,
            specs,
            by,
            ddf="asymptotic",
            level=level,
            covariance=covariance,
            contrast_df=lambda weights: np.inf,
            response=response,
        )

    # --- explained variance ---------------------------------------------------------------
    def _distribution_variance(self) -> float:
        """The residual variance on the link scale that Nakagawa's R² uses (performance's):
        π²/3 for the logit, 1 for the probit, π²/6 for the cloglog link."""
        if self.family.name != "binomial":
            raise ArgumentError(
                "R² and the ICC of Poisson models need the distribution's variance from a null model, which "
                "lmmfast does not compute yet; binomial models have them."
            )
        return {"logit": np.pi**2 / 3, "probit": 1.0, "cloglog": np.pi**2 / 6}[self.link]

    def r2(self) -> dict[str, float]:
        """Nakagawa's marginal and conditional R² on the link scale (performance's
        ``r2_nakagawa``; binomial models)."""
        values = r2_and_icc(self, self._distribution_variance())
        return {"marginal": values["marginal"], "conditional": values["conditional"]}

    def icc(self) -> dict[str, float]:
        """The intraclass correlation, ``adjusted`` and ``unadjusted`` (performance's ``icc``;
        binomial models)."""
        values = r2_and_icc(self, self._distribution_variance())
        return {"adjusted": values["icc_adjusted"], "unadjusted": values["icc_unadjusted"]}

    # --- saving -------------------------------------------------------------------------------
    @classmethod
    def without_rows(cls, record: dict[str, Any], cond_var: dict[str, np.ndarray]) -> GlmmResult:
        """A fit loaded without its data: the fields of ``record`` (all but the rows'), with
        the conditional covariances computed before it was saved."""
        without: dict[str, Any] = dict.fromkeys(GLMM_ROW_FIELDS)
        fit = cls(**record, **without)
        fit.__dict__["cond_var"] = cond_var  # the cached property's own slot
        return fit

    def save(self, path: str | os.PathLike[str], *, include_data: bool = False) -> None:
        """Save the fit to a file that :func:`lmmfast.load` reads; as
        :meth:`lmmfast.LmmResult.save`.

        Examples
        --------
        >>> import lmmfast, tempfile, pathlib
        >>> fit = lmmfast.glmm("prop ~ period + (1 | herd)", lmmfast.datasets.load("cbpp"), weights="size")
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "cbpp.lmmfast"
        >>> fit.save(path)
        >>> lmmfast.load(path).summary() == fit.summary()
        True
        """
        include_data = check_bool("include_data", include_data)
        record = {f.name: getattr(self, f.name) for f in fields(GlmmResult) if f.name not in GLMM_ROW_FIELDS}
        content: dict[str, Any] = {"fit": record, "cond_var": self.cond_var}
        data = None
        if include_data:
            model = self.model
            data = model.model_frame.frame
            # given as arrays: kept with the rows (columns are among them)
            given = {"weights": model.given_weights, "offset": model.given_offset}
            content.update({name: value for name, value in given.items() if isinstance(value, np.ndarray)})
        write_archive(path, "glmm", content, data)

    # --- output ------------------------------------------------------------------------------
    @property
    def coef_table(self) -> pd.DataFrame:
        """The fixed effects with standard errors, Wald z and Pr(>|z|), as glmer's summary."""
        se = np.sqrt(np.diag(self.beta_covariance))
        z = self.beta / se
        return pd.DataFrame(
            {"estimate": self.beta, "std_error": se, "z_value": z, "p_value": 2.0 * ndtr(-np.abs(z))},
            index=list(self.fixef_names),
        )

    def summary(self) -> str:
        """glmer's ``summary()``, as text."""
        return format_glmm_summary(self)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        """The summary, for notebooks (which show this instead of the two-line ``repr``)."""
        return f'<pre class="lmmfast-summary">{html.escape(self.summary())}</pre>'

    def __repr__(self) -> str:
        groups = ", ".join(f"{name} ({count})" for name, count in self.ngrps.items())
        flags = "".join(
            [", boundary (singular) fit" if self.singular else "", "" if self.converged else ", not converged"]
        )
        return (
            f"<{type(self).__name__}: {self.formula}, {self.family.name} ({self.link})\n"
            f" -2 log-likelihood {self.objective:.3f}, {self.nobs} observations, groups: {groups}{flags}>"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``schema``: ``"lmmfast-glmm/1"``)."""

        def clean(value: float) -> float | None:
            return None if value is None or not np.isfinite(value) else float(value)

        return {
            "schema": GLMM_SCHEMA,
            "formula": self.formula,
            "family": self.family.name,
            "link": self.link,
            "nagq": self.nagq,
            "nobs": self.nobs,
            "n_dropped": len(self.dropped_rows),
            "ngrps": self.ngrps,
            "objective": self.objective,
            "loglik": self.loglik,
            "aic": self.aic,
            "bic": self.bic,
            "deviance": self.deviance,
            "fixef": {k: float(v) for k, v in self.fixef.items()},
            "stderr": {k: float(v) for k, v in self.stderr.items()},
            "theta": [float(t) for t in self.theta],
            "theta_names": list(self.theta_names),
            "varcorr": [
                {"grp": row.grp, "var1": row.var1, "var2": row.var2, "vcov": clean(row.vcov), "sdcor": clean(row.sdcor)}
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


def residuals_of(solution: GlmmSolution, y: np.ndarray, eta: np.ndarray, type: str) -> np.ndarray:
    """The residuals of type ``type`` (:data:`RESIDUAL_TYPES`) of a fit with linear predictor
    ``eta`` and response ``y``, from its deviance functions' row pass."""
    pirls = solution.deviance.pirls.fresh()
    rows = pirls.buffers
    pirls.evaluate_rows(eta.copy())
    if type == "response":
        return y - rows.mu
    if type == "working":
        return rows.working_residuals.copy()
    if type == "pearson":  # √w (y − μ) / √V(μ): √w μ'/√V times (y − μ)/μ'
        return rows.root_weights * rows.working_residuals
    return np.sign(y - rows.mu) * np.sqrt(np.maximum(rows.deviance_residuals, 0.0))


def format_glmm_summary(fit: GlmmResult) -> str:
    """Render ``fit`` as glmer's ``summary()`` prints it; the −2 log-likelihood is labelled
    as such (``-2*log(L)``, as lme4's newer summaries do), and lme4's ``deviance()`` — the sum
    of squared deviance residuals — is given on a line of its own."""
    lines = [f"Generalized linear mixed model fit by maximum likelihood ({fit.method}) ['glmerMod']"]
    lines.append(f" Family: {fit.family.name}  ( {fit.link} )")
    lines.append(f"Formula: {fit.formula}")
    if fit.data_name:
        lines.append(f"   Data: {fit.data_name}")
    if fit.weights_name:
        lines.append(f"Weights: {fit.weights_name}")
    if fit.offset_name and not fit.encoding.formula.offsets:
        lines.append(f" Offset: {fit.offset_name}")
    lines.append("")
    header = ["AIC", "BIC", "logLik", "-2*log(L)", "df.resid"]
    cells = [f"{fit.aic:.1f}", f"{fit.bic:.1f}", f"{fit.loglik:.1f}", f"{fit.objective:.1f}", str(fit.nobs - fit.npar)]
    lines.extend(" " + row for row in format_table(header, [cells], set()))
    lines.append(
        f"Deviance (sum of squared deviance residuals at the conditional modes, lme4's deviance()): {fit.deviance:.2f}"
    )
    lines.extend(residuals_and_random_effects_lines(fit, fit.residual_quantiles))
    lines.append("Fixed effects:")
    table = fit.coef_table
    names = [("(Intercept)" if n == "Intercept" else n) for n in fit.fixef_names]
    rows = [
        [name, estimate, error, f"{z:.3f}", format_p_value(p)]
        for name, estimate, error, z, p in zip(
            names,
            format_column(table.estimate.to_numpy()),
            format_column(table.std_error.to_numpy()),
            table.z_value,
            table.p_value,
        )
    ]
    lines.extend(format_table(["", "Estimate", "Std. Error", "z value", "Pr(>|z|)"], rows, {0}))
    if fit.covariance_source == "RX" and fit.nagq > 0:
        lines.append("(standard errors from R_X: the Hessian of the deviance was not positive definite)")
    lines.extend(fixed_correlation_lines(fit))
    notes = []
    if fit.singular:
        notes.append("boundary (singular) fit: see help(lmmfast.SingularFitWarning)")
    if not fit.converged:
        notes.append(f"optimizer ({fit.optsummary.algorithm}) stopped without converging: {fit.optsummary.return_code}")
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)
