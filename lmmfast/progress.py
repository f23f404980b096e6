"""What a fit tells the user while it runs: a progress bar on long fits, a warning before a
long first evaluation, and lme4's ``verbose`` trace.

The optimiser reports every evaluation to a :class:`FitMonitor`; the monitor decides what
to show. With ``progress=None`` (the default) a bar appears only once the fit turns out to be
slow, so quick fits print nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import numpy as np
from tqdm.auto import tqdm

from lmmfast.factor.plan import FactorPlan

#: With ``progress=None``, a bar appears once the fit has run this long ...
AUTO_PROGRESS_SECONDS = 5.0

#: ... or once one evaluation (not the first, which may load numba's kernels) took this long.
SLOW_EVALUATION_SECONDS = 1.0

#: Evaluations shorter than this look at the clock only every ``CLOCK_EVERY``.
CLOCK_ALWAYS_SECONDS = 1e-3
CLOCK_EVERY = 16

#: Before a fit whose first evaluation is estimated to take longer than this, say so.
LONG_EVALUATION_SECONDS = 10.0


class FitMonitor:
    """Reports a fit's evaluations as ``progress`` and ``verbose`` ask.

    Parameters
    ----------
    progress : bool or None
        True: a progress bar from the start; False: never; None: once the fit is slow.
    verbose : bool
        Print the engine plan, then one line per evaluation (lme4's ``verbose``).
    stream : file, optional
        Where the verbose lines go (default: standard output).

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> monitor = FitMonitor(progress=False, verbose=True, stream=out)
    >>> monitor.evaluation(np.array([0.5]), 12.25, 0.001)
    >>> monitor.close()
    >>> out.getvalue()
    '    1: objective 12.2500000  θ [0.5]  (1.0 ms)\\n'
    """

    def __init__(self, progress: bool | None = None, verbose: bool = False, stream: TextIO | None = None) -> None:
        self.progress = progress
        self.verbose = verbose
        self.stream = sys.stdout if stream is None else stream
        self.count = 0
        self.best = np.inf
        self.began = time.perf_counter()
        self._bar: Any = None
        #: what the verbose lines call the evaluated point ("θ, β" in a generalized fit's stage 2)
        self.label = "θ"

    def start(self, plan: FactorPlan) -> None:
        """Before the first evaluation: the plan (verbose), and a word if it will be slow."""
        if self.verbose:
            print(f"Engine: {plan}", file=self.stream)
        if self.progress is not False and plan.estimated_seconds > LONG_EVALUATION_SECONDS:
            print(
                f"lmmfast: each evaluation of this model will take about {plan.estimated_seconds:.0f} s ({plan}); "
                "the fit needs tens of them. progress=False silences this.",
                file=sys.stderr,
            )
        if self.progress is True:
            self._open_bar()

    @property
    def silent(self) -> bool:
        """Whether the monitor will never show anything (``progress=False``, not verbose):
        the optimiser then need not report to it."""
        return self.progress is False and not self.verbose

    def evaluation(self, theta: np.ndarray, value: float, seconds: float) -> None:
        """After each evaluation of the criterion (called tens of thousands of times in a
        bootstrap of a small model: kept to a few comparisons)."""
        self.count += 1
        if value < self.best:
            self.best = value
        if self.verbose:
            shown = np.array2string(np.asarray(theta), precision=5, separator=", ", max_line_width=10_000)
            print(
                f"{self.count:5d}: objective {value:.7f}  {self.label} {shown}  ({seconds * 1e3:.1f} ms)",
                file=self.stream,
            )
        if self._bar is None:
            if self.progress is None and self._slow(seconds):
                self._open_bar()
            else:
                return
        self._bar.set_postfix(objective=f"{self.best:.6g}", refresh=False)
        self._bar.update(self.count - self._bar.n)  # redrawn at most every 0.1 s

    def _slow(self, seconds: float) -> bool:
        if self.count > 1 and seconds > SLOW_EVALUATION_SECONDS:
            return True
        # fast evaluations read the clock every CLOCK_EVERY only; it costs more than they do
        look = seconds > CLOCK_ALWAYS_SECONDS or self.count % CLOCK_EVERY == 0
        return look and time.perf_counter() - self.began > AUTO_PROGRESS_SECONDS

    def _open_bar(self) -> None:
        self._bar = tqdm(desc="lmmfast fit", unit=" evaluations", initial=self.count, leave=False)

    def close(self) -> None:
        """After the fit."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
