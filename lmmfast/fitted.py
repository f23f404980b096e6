"""The fitted model as users meet it: :class:`LmmResult`, the numbers of :class:`LmmFit`
plus the methods that call inference, prediction and output.

This layer sits above :mod:`lmmfast.inference`, :mod:`lmmfast.predict` and
:mod:`lmmfast.summary`, which work on the data-only :class:`~lmmfast.result.LmmFit`; so no
module below imports upwards, and the fit path stays free of them. The methods import what
they call when they are called: a process that fits and prints never loads the inference,
prediction, plotting and saving modules (about 30 ms of a new process's first fit).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import fields
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmmfast.design.source import is_chunked
from lmmfast.distributions import normal_quantile
from lmmfast.fit import refit_ml, refit_response
from lmmfast.inference.satterthwaite import contrast_df, satterthwaite_table, variance_derivatives
from lmmfast.result import ROW_FIELDS, LmmFit
from lmmfast.summary import format_summary, wants_satterthwaite
from lmmfast.validation import check_bool, check_choice, check_level

if TYPE_CHECKING:
    from lmmfast.inference.emmeans import MarginalMeans
    from lmmfast.inference.kenward_roger import KenwardRoger

#: The ``ddf`` of :meth:`LmmResult.fixef_table`.
FIXEF_DDF = ("satterthwaite", "kenward-roger", "none")


class LmmResult(LmmFit):
    """A fitted linear mixed model. Immutable; every statistic is read off what is stored.

    Use :func:`lmmfast.lmm` to make one.

    Examples
    --------
    >>> import lmmfast
    >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> round(float(fit.fixef["Days"]), 3), fit.nobs
    (10.467, 180)
    """

    @classmethod
    def of(cls, fit: LmmFit) -> LmmResult:
        """The user-facing result for the numbers of ``fit`` (which it shares: both are
        immutable)."""
        if isinstance(fit, cls):
            return fit
        return cls(**{f.name: getattr(fit, f.name) for f in fields(LmmFit)})

    @classmethod
    def without_rows(
        cls,
        record: dict[str, Any],
        cond_var: dict[str, np.ndarray],
        variance_derivatives: tuple[np.ndarray, np.ndarray] | None = None,
        coef_table: pd.DataFrame | None = None,
    ) -> LmmResult:
        """A fit loaded without its data: the fields of ``record`` (every field of
        :class:`LmmFit` but the rows'), with what was computed from the rows before it was
        saved: the conditional covariances and, where saved, the Satterthwaite table."""
        without: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
        fit = cls(**record, **without)
        # the cached properties' own slots, as if computed here
        fit.__dict__["cond_var"] = cond_var
        if variance_derivatives is not None and coef_table is not None:
            fit.__dict__["variance_derivatives"] = variance_derivatives
            fit.__dict__["coef_table"] = coef_table
        return fit

    # --- inference -------------------------------------------------------------------------
    @cached_property
    def variance_derivatives(self) -> tuple[np.ndarray, np.ndarray]:
        """(A, J): the asymptotic covariance of (θ, σ) and the derivatives of Var(β̂) in them,
        shared by the Satterthwaite t and F tests. Computed on first use."""
        return variance_derivatives(self)

    @cached_property
    def kenward_roger(self) -> KenwardRoger:
        """Kenward and Roger's adjustment (pbkrtest's): the adjusted covariance of β̂ and what
        its df need; see :mod:`lmmfast.inference.kenward_roger`. Computed on first use, for
        REML fits."""
        from lmmfast.inference.kenward_roger import kenward_roger

        return kenward_roger(self)

    def test_contrasts(self, contrasts: np.ndarray | pd.DataFrame, ddf: str = "satterthwaite") -> dict[str, float]:
        """Joint F test of Lβ = 0 with Satterthwaite's denominator df (lmerTest's method) or
        Kenward–Roger's scaled F and df (``ddf="kenward-roger"``); see
        :func:`lmmfast.inference.ftest.contrast_test`."""
        from lmmfast.inference.ftest import DDF_METHODS, contrast_test

        check_choice("ddf", ddf, DDF_METHODS)
        if ddf == "kenward-roger":
            return contrast_test(self, contrasts, ddf=ddf, adjustment=self.kenward_roger)
        return contrast_test(self, contrasts, self.variance_derivatives)

    def anova_terms(self, type: int = 3, ddf: str = "satterthwaite") -> pd.DataFrame:
        """One F test per fixed-effects term, of type 1, 2 or 3, with Satterthwaite's or
        Kenward–Roger's df (lmerTest's ``anova(m, type, ddf)``); see
        :func:`lmmfast.inference.ftest.term_tests`."""
        from lmmfast.inference.ftest import DDF_METHODS, term_tests

        check_choice("ddf", ddf, DDF_METHODS)
        if ddf == "kenward-roger":
            return term_tests(self, type=type, ddf=ddf, adjustment=self.kenward_roger)
        return term_tests(self, self.variance_derivatives, type=type)

    def emmeans(
        self,
        specs: str | Sequence[str],
        by: str | Sequence[str] | None = None,
        *,
        ddf: str = "satterthwaite",
        level: float = 0.95,
    ) -> MarginalMeans:
        """Estimated marginal means of the factors ``specs`` (within each level of ``by``), as
        R's emmeans: predictions over the reference grid (every factor's levels crossed,
        numeric predictors at their means), averaged with equal weights over the factors not
        named; ``.contrasts(method, adjust)`` compares them.

        ``ddf``: Satterthwaite's df (the default, cheap at any size) or Kenward–Roger's
        (``"kenward-roger"``, with its adjusted standard errors; emmeans' own default, which it
        drops above 3,000 observations). ``"a | b"`` is the same as ``specs="a", by="b"``.

        Examples
        --------
        >>> import lmmfast
        >>> fit = lmmfast.lmm("score ~ Machine + (1 | Worker/Machine)", lmmfast.datasets.load("machines"))
        >>> means = fit.emmeans("Machine")
        >>> means.table.emmean.round(2).tolist()
        [52.36, 60.32, 66.27]
        >>> means.contrasts("pairwise").p_value.round(4).tolist()  # Tukey-adjusted
        [0.0111, 0.0002, 0.0507]
        """
        from lmmfast.inference.emmeans import marginal_means
        from lmmfast.inference.ftest import DDF_METHODS

        check_choice("ddf", ddf, DDF_METHODS)
        if ddf == "kenward-roger":
            adjustment = self.kenward_roger
            return marginal_means(
                self,
                specs,
                by,
                ddf=ddf,
                level=level,
                covariance=adjustment.adjusted,
                contrast_df=adjustment.contrast_df,
            )
        covariance = self.beta_covariance
        A, J = self.variance_derivatives

        def df_of(weights: np.ndarray) -> float:
            return contrast_df(weights, covariance, A, J)

        return marginal_means(self, specs, by, ddf=ddf, level=level, covariance=covariance, contrast_df=df_of)

    def fixef_table(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """The fixed effects with ``estimate, std_error, df, t_value, p_value``: Satterthwaite's
        df (:attr:`coef_table`), Kenward–Roger's adjusted standard errors and df
        (``"kenward-roger"``, REML fits; lmerTest's ``summary(m, ddf = "Kenward-Roger")``), or
        none (``"none"``: estimates, standard errors and t values only).

        Examples
        --------
        >>> import lmmfast
        >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
        >>> fit.fixef_table("kenward-roger").loc["Days", ["std_error", "df"]].round(4).tolist()
        [1.5458, 17.0]
        """
        check_choice("ddf", ddf, FIXEF_DDF)
        if ddf == "satterthwaite":
            return self.coef_table
        if ddf == "kenward-roger":
            from lmmfast.inference.kenward_roger import kenward_roger_table

            return kenward_roger_table(self, self.kenward_roger)
        table = pd.DataFrame({"estimate": self.fixef, "std_error": self.stderr})
        return table.assign(t_value=table.estimate / table.std_error)

    @cached_property
    def coef_table(self) -> pd.DataFrame:
        """Fixed effects with Satterthwaite df and p-values (lmerTest's method): columns
        ``estimate, std_error, df, t_value, p_value``. Computed on first use: finite
        differences of the deviance's analytic gradient (4 (m+1) evaluations for m covariance
        parameters) where the factorisation has one, of the deviance (about 8 (m+1)²) otherwise."""
        return satterthwaite_table(self, self.variance_derivatives)

    @cached_property
    def cond_var(self) -> dict[str, np.ndarray]:
        """Conditional covariance matrices of the random effects, per term name (VarCorr's
        names): arrays of shape (n_levels, k, k). Computed on first use (from the factor's selected inverse)."""
        from lmmfast.inference.condvar import conditional_covariances

        return {term.name: block for term, block in zip(self.terms, conditional_covariances(self))}

    def ranef_table(self) -> pd.DataFrame:
        """Conditional modes and conditional sds per level (``grpvar, term, grp, condval, condsd``),
        R's ``as.data.frame(ranef(m, condVar = TRUE))``."""
        from lmmfast.inference.condvar import ranef_rows

        return ranef_rows(self.terms, list(self.cond_var.values()))

    def ranova(self) -> pd.DataFrame:
        """Likelihood-ratio tests of the random terms (lmerTest's ``ranova``): each term
        reduced and refitted; see :func:`lmmfast.inference.ranova.ranova`."""
        from lmmfast.inference.ranova import ranova

        return ranova(self)

    def r2(self) -> dict[str, float]:
        """Nakagawa's marginal and conditional R² (performance's ``r2_nakagawa``, random slopes
        included): ``{"marginal": …, "conditional": …}``; see :mod:`lmmfast.inference.r2`.

        Examples
        --------
        >>> import lmmfast
        >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
        >>> round(fit.r2()["conditional"], 3)
        0.799
        """
        from lmmfast.inference.r2 import r2_and_icc

        values = r2_and_icc(self, self.sigma**2)
        return {"marginal": values["marginal"], "conditional": values["conditional"]}

    def icc(self) -> dict[str, float]:
        """The intraclass correlation, ``adjusted`` (random over random plus residual variance)
        and ``unadjusted`` (over the total, fixed effects included), as performance's ``icc``."""
        from lmmfast.inference.r2 import r2_and_icc

        values = r2_and_icc(self, self.sigma**2)
        return {"adjusted": values["icc_adjusted"], "unadjusted": values["icc_unadjusted"]}

    def variance_decomposition(self) -> pd.DataFrame:
        """Variance components and their shares of the total (intraclass correlations for
        random-intercept models)."""
        from lmmfast.inference.condvar import variance_decomposition

        return variance_decomposition(self)

    def confint(
        self,
        method: str = "wald",
        level: float = 0.95,
        *,
        n: int = 1000,
        seed: int | None = None,
        boot_type: str = "percentile",
        processes: int = 1,
        progress: bool = False,
        client: Any = None,
    ) -> pd.DataFrame:
        """Confidence intervals, columns ``lower`` and ``upper``.

        ``method="wald"``: fixed effects only, estimate ± z·SE (lme4's ``method = "Wald"``
        has none for variance parameters either). ``"profile"``: profile likelihood on the
        ML deviance, as lme4; rows are the variance parameters named as lme4 names them
        (``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, ``sigma``) then the
        fixed effects. ``"boot"``: parametric bootstrap with ``n`` replicates, ``seed``,
        ``processes``, and ``boot_type`` ``"percentile"`` or ``"shortest"``. ``progress`` shows a
        bar over the profiled parameters or the bootstrap's replicates; ``processes`` or a
        Dask ``client`` (a ``distributed.Client``) spread either over processes or workers.
        """
        level = check_level(level)
        method = check_choice("confint method", method, ("wald", "profile", "boot"))
        progress = check_bool("progress", progress)
        if method == "profile":
            from lmmfast.inference.profile import profile_intervals

            return profile_intervals(self, level, progress=progress, processes=processes, client=client)
        if method == "boot":
            from lmmfast.inference.profile import bootstrap_intervals

            return bootstrap_intervals(
                self,
                n,
                level,
                seed=seed,
                kind=boot_type,
                processes=processes,
                progress=check_bool("progress", progress),
                client=client,
            )
        z = normal_quantile(0.5 + level / 2)
        se = self.stderr.to_numpy()
        return pd.DataFrame({"lower": self.beta - z * se, "upper": self.beta + z * se}, index=list(self.fixef_names))

    def profile(self, level: float = 0.99, points: int = 9, *, progress: bool = False) -> pd.DataFrame:
        """Profile traces (``parameter, value, zeta``) for plotting; see
        :func:`lmmfast.inference.profile.profile_traces` (``progress``: a bar over the parameters)."""
        from lmmfast.inference.profile import profile_traces

        return profile_traces(self, level, points, progress=check_bool("progress", progress))

    def refit_ml(self) -> LmmResult:
        """This model refitted by maximum likelihood (itself if it already is), reusing the
        cross-products and the factorisation's set-up; checked as every fit is."""
        return LmmResult.of(refit_ml(self))

    def predict(self, newdata: object, *, re: str = "all", new_levels: str = "population") -> Any:
        """Predicted means for new data; see :func:`lmmfast.predict.predict`. For new data
        read in chunks (a Dask DataFrame; a Parquet path or Arrow dataset), a lazy Dask Series
        or a ``pyarrow.ChunkedArray``, computed chunk by chunk."""
        if is_chunked(newdata):
            from lmmfast.chunk_rows import predict_chunks

            return predict_chunks(self, newdata, re=re, new_levels=new_levels)
        from lmmfast.predict import predict

        return predict(self, newdata, re=re, new_levels=new_levels)

    def fitted(self) -> Any:
        """Fitted values Xβ̂ + Zb̂ of the observations used (complete cases, in order); for a
        fit of data read in chunks, computed from them again chunk by chunk: a lazy Dask
        Series (indexed as the data) for a Dask DataFrame, a ``pyarrow.ChunkedArray`` for
        Parquet and Arrow."""
        if self._streamed:
            from lmmfast.chunk_rows import row_results

            return row_results(self, "fitted")
        return super().fitted()

    def residuals(self, type: str = "response") -> Any:
        """Residuals of the observations used: ``"response"`` (y − fitted) or ``"pearson"``
        (scaled by √w, as lme4); for a fit of data read in chunks, as :meth:`fitted`."""
        if self._streamed:
            from lmmfast.chunk_rows import row_results

            check_choice("residual type", type, ("response", "pearson"))
            return row_results(self, type)
        return super().residuals(type)

    @property
    def _streamed(self) -> bool:
        return self.prepared is not None and not self.prepared.has_rows

    def simulate(self, nsim: int = 1, seed: int | None = None) -> np.ndarray:
        """Responses simulated from the fit, shape (nobs, nsim); see :func:`lmmfast.inference.bootstrap.simulate`."""
        from lmmfast.inference.bootstrap import simulate

        return simulate(self, nsim, seed)

    def refit(self, y: np.ndarray) -> LmmResult:
        """The same model fitted to a new response (one value per observation used), from θ̂."""
        return LmmResult.of(refit_response(self, y))

    def bootstrap(
        self, n: int, *, seed: int | None = None, processes: int = 1, progress: bool = False, client: Any = None
    ) -> pd.DataFrame:
        """Parametric bootstrap replicates; see :func:`lmmfast.inference.bootstrap.bootstrap`."""
        from lmmfast.inference.bootstrap import bootstrap

        return bootstrap(self, n, seed=seed, processes=processes, progress=progress, client=client)

    # --- pictures (matplotlib, ``pip install lmmfast[plot]``) -----------------------------
    def plot_ranef(self, *, level: float = 0.95, ax: Any = None) -> Any:
        """Caterpillar plot of the conditional modes with their intervals; see
        :func:`lmmfast.plots.plot_ranef`."""
        from lmmfast.plots import plot_ranef

        return plot_ranef(self, level=level, ax=ax, table=self.ranef_table())

    def plot_pooling(self, group: str | None = None, *, ax: Any = None) -> Any:
        """Per-level least-squares fits against the mixed model's estimates; see
        :func:`lmmfast.plots.plot_pooling`."""
        from lmmfast.plots import plot_pooling

        return plot_pooling(self, group, ax=ax)

    def plot_residuals(self, *, ax: Any = None) -> Any:
        """Residuals against fitted values, QQ plots, scale-location; see
        :func:`lmmfast.plots.plot_residuals`."""
        from lmmfast.plots import plot_residuals

        return plot_residuals(self, ax=ax)

    def plot_profile(self, level: float = 0.99, points: int = 9, *, ax: Any = None) -> Any:
        """ζ against each parameter, from :meth:`profile`; see :func:`lmmfast.plots.plot_profile`."""
        from lmmfast.plots import plot_profile

        return plot_profile(self.profile(level, points), ax=ax)

    def plot_bootstrap(self, replicates: pd.DataFrame, *, columns: list[str] | None = None, ax: Any = None) -> Any:
        """Densities of bootstrap replicates from :meth:`bootstrap`; see
        :func:`lmmfast.plots.plot_bootstrap`."""
        from lmmfast.plots import plot_bootstrap

        return plot_bootstrap(replicates, columns=columns, ax=ax)

    # --- saving -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, include_data: bool = False) -> None:
        """Save the fit to a file that :func:`lmmfast.load` reads (the format is described in
        the documentation's "Saving fits"; no pickle, safe to load).

        The file holds what the result needs without its rows: θ, β and their covariance, σ,
        the conditional modes and variances, the design's encoding (formula, contrasts,
        levels, the state of transforms such as ``scale(x)``), the optimiser's record, and
        the Satterthwaite table where the summary shows it. A loaded fit prints the same
        summary and predicts the same values; what needs the rows (residuals, refits,
        profiles, the bootstrap) works once it is loaded with ``data=``, or when
        ``include_data=True`` saved the rows too (as Parquet).

        Examples
        --------
        >>> import lmmfast, tempfile, pathlib
        >>> fit = lmmfast.lmm("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sleepstudy.lmmfast"
        >>> fit.save(path)
        >>> lmmfast.load(path).summary() == fit.summary()
        True
        """
        include_data = check_bool("include_data", include_data)
        record = {f.name: getattr(self, f.name) for f in fields(LmmFit) if f.name not in ROW_FIELDS}
        content: dict[str, Any] = {"fit": record, "cond_var": self.cond_var}
        if "coef_table" in self.__dict__ or (self.has_data and wants_satterthwaite(self, "auto")):
            table = self.coef_table
            content["variance_derivatives"] = self.variance_derivatives
            content["coef_table"] = {"index": list(table.index), "columns": {c: table[c].to_numpy() for c in table}}
        data = None
        if include_data:
            model = self.model
            model.require_rows("include_data=True")
            data = model.model_frame.frame
            if model.weights is not None and self.weights_name not in data.columns:
                content["weights"] = model.weights  # given as an array: kept with the rows
        from lmmfast.archive import write_archive

        write_archive(path, "lmm", content, data)

    # --- output ---------------------------------------------------------------------------------
    def summary(self, ddf: str = "auto", *, verbose: bool = False) -> str:
        """The fit in lme4's printed layout, with lmerTest's Satterthwaite columns
        (``ddf="auto"``: when cheap; ``"satterthwaite"``: always; ``"none"``: never);
        ``verbose=True`` adds the engine plan and the optimiser's record."""
        # a fit loaded without its data shows the table its file holds, if any (the one its
        # original showed); the cached property's slot is where loading put it
        saved = ddf == "auto" and not self.has_data and "coef_table" in self.__dict__
        if ddf == "kenward-roger":
            table: pd.DataFrame | None = self.fixef_table("kenward-roger") if len(self.beta) else None
        else:
            table = self.coef_table if saved or wants_satterthwaite(self, ddf) else None
        return format_summary(self, ddf, table, verbose=check_bool("verbose", verbose))

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        """The summary, for notebooks (which show this instead of the two-line ``repr``)."""
        return f'<pre class="lmmfast-summary">{html.escape(self.summary())}</pre>'
