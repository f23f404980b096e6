"""How many BLAS threads the blocked factor's LAPACK calls should use.

Two costs decide: a second BLAS thread halves ``potrf`` and ``potri`` on a large dense block
but costs wake-ups on a small one, and while idle it spins (:mod:`lmmfast.blas`) on a core
that the factor's own threaded sparse passes need right after each call.
"""

from __future__ import annotations

from lmmfast.factor.dense_coupling import SPARSE_SECONDS_PER_MADD
from lmmfast.factor.rank_update import PARALLEL_COLUMNS

#: Seconds per multiply-add of ``potrf`` and ``potri`` on two BLAS threads (measured
#: 0.035–0.05 ns on dense blocks of 1,000 to 4,000).
FACTOR_SECONDS_PER_MADD = 5e-11


def choose_blas_threads(q2: int, sparse_work: float, threads: int, idle_spin: float) -> int | None:
    """BLAS threads for a fit on a blocked factor: 1, or None for BLAS's default.

    ``q2`` is the width of the dense block, ``sparse_work`` the multiply-adds of one sparse
    pass (0 where the update goes through BLAS or per-count sums), ``threads`` the threads
    those passes run on, ``idle_spin`` the seconds BLAS's idle threads spin after a call
    (:mod:`lmmfast.blas`). One BLAS thread:

    - for a dense block under ``PARALLEL_COLUMNS``: a second thread costs more in wake-ups
      than it saves (kb07's zero-correlation model, a 256 block, fitted in 0.71 s on one
      thread against 1.38 s on two);
    - where the threaded sparse passes lose more than a second BLAS thread saves. A spinning
      BLAS thread holds a core that the passes right after a call need, and runs them at
      about one thread's speed; the second BLAS thread saves about the two-thread time of
      ``potrf`` and ``potri``. With OpenBLAS's default spin (0.1 s), a 100k-row design with
      slopes (q2 = 1,000, 2.1e7 multiply-adds per pass) took 83–105 ms per evaluation with
      gradient on one BLAS thread against 107–144 ms on two; with lmmfast's short spin
      (0.35 ms) two BLAS threads fitted it in 1.46–1.74 s against 1.72–1.93 s on one.

    Examples
    --------
    >>> choose_blas_threads(256, 0.0, 1, 3e-4), choose_blas_threads(1000, 2e7, 2, 0.09)
    (1, 1)
    >>> choose_blas_threads(1000, 2e7, 2, 3e-4) is None
    True
    """
    if q2 < PARALLEL_COLUMNS:
        return 1
    if threads <= 1 or sparse_work <= 0:
        return None
    one_pass = SPARSE_SECONDS_PER_MADD * sparse_work / threads
    # the update's pass and the gradient's each take up to the spinning window longer
    lost_to_spinning = 2.0 * min(one_pass, idle_spin)
    saved_by_second_thread = FACTOR_SECONDS_PER_MADD * 0.5 * float(q2) ** 3
    return 1 if lost_to_spinning > saved_by_second_thread else None


#: From this width, the gradient's ``potri`` (twice the work of ``potrf``) takes every core
#: even where the fit keeps BLAS on one thread for a block narrower than ``PARALLEL_COLUMNS``:
#: two threads invert a 500 block in about 60% of one thread's time, which the whole fit
#: keeps; for a 256 block the saving is smaller and the fit did not gain.
INVERSE_PARALLEL_COLUMNS = 384


def inverse_blas_threads(q2: int, fit_blas_threads: int | None, cores: int) -> int | None:
    """BLAS threads for the gradient's ``potri`` of a q2 block where they differ from the
    fit's ``fit_blas_threads`` (:func:`choose_blas_threads`), else None.

    Examples
    --------
    >>> inverse_blas_threads(500, 1, 2), inverse_blas_threads(256, 1, 2), inverse_blas_threads(1000, 1, 2)
    (2, None, None)
    """
    if fit_blas_threads == 1 and cores > 1 and INVERSE_PARALLEL_COLUMNS <= q2 < PARALLEL_COLUMNS:
        return cores
    return None  # a wider block held to one thread is so for the spinning: keep it
