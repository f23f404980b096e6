"""How BLAS's threads share the cores with the factor's own threads.

OpenBLAS's worker threads spin after every call, waiting for the next one, for 2^t processor
cycles before they sleep, t = ``OPENBLAS_THREAD_TIMEOUT`` (default 28: about 0.1 s). A blocked
factor alternates LAPACK on the dense block with threaded sparse passes a few milliseconds
long, so with the default every pass shares its cores with a spinning BLAS thread and runs at
about half speed (InstEval, one evaluation with gradient: the two passes took 11 and 15 ms
spun against, 6 and 7 ms without). OpenBLAS reads the variable once, when the library is
loaded, so the package asks for a short spin (2²⁰ cycles, a fraction of a millisecond: the
parallel steps inside one ``potrf`` still follow each other without sleeping) before it imports
NumPy's and SciPy's linear algebra, unless the variable is set already.

This module imports neither NumPy nor SciPy, so that :mod:`lmmfast` can call
:func:`request_short_idle_spin` first.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Collection, Mapping, MutableMapping
from typing import Any

TIMEOUT_VARIABLE = "OPENBLAS_THREAD_TIMEOUT"

#: log₂ of the processor cycles OpenBLAS's idle threads spin for when left to themselves.
DEFAULT_TIMEOUT_EXPONENT = 28

#: log₂ of the cycles asked for: long enough to bridge the steps of one LAPACK call.
SHORT_TIMEOUT_EXPONENT = 20

#: The time-stamp counter OpenBLAS counts in ticks at roughly this rate.
CYCLES_PER_SECOND = 3e9

#: The module that links SciPy's LAPACK: once it is imported, the variable comes too late.
LAPACK_MODULE = "scipy.linalg"


def spin_seconds(exponent: str | int) -> float:
    """Seconds an idle OpenBLAS thread spins for the timeout exponent ``exponent``, clamped
    to 4–30 as OpenBLAS does; an unreadable value counts as OpenBLAS's default.

    Examples
    --------
    >>> round(spin_seconds(28), 3), round(spin_seconds("20") * 1e3, 2), spin_seconds(2) == spin_seconds(4)
    (0.089, 0.35, True)
    """
    try:
        value = int(exponent)
    except (TypeError, ValueError):
        value = DEFAULT_TIMEOUT_EXPONENT
    return float(2 ** min(30, max(4, value))) / CYCLES_PER_SECOND


def request_short_idle_spin(environ: MutableMapping[str, str], loaded_modules: Collection[str]) -> bool:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` to :data:`SHORT_TIMEOUT_EXPONENT` in ``environ``, unless
    it is set already (the user's choice stands) or SciPy's LAPACK is among
    ``loaded_modules`` (the library has read its environment: the variable would change
    nothing there and mislead :func:`idle_spin_seconds`). Whether it was set.

    Examples
    --------
    >>> environ = {}
    >>> request_short_idle_spin(environ, set()), environ
    (True, {'OPENBLAS_THREAD_TIMEOUT': '20'})
    >>> request_short_idle_spin({}, {"scipy.linalg"}), request_short_idle_spin({"OPENBLAS_THREAD_TIMEOUT": "24"}, set())
    (False, False)
    """
    if TIMEOUT_VARIABLE in environ or LAPACK_MODULE in loaded_modules:
        return False
    environ[TIMEOUT_VARIABLE] = str(SHORT_TIMEOUT_EXPONENT)
    return True


def idle_spin_seconds(environ: Mapping[str, str]) -> float:
    """How long OpenBLAS's threads spin after a call, by the variable in ``environ``.

    Examples
    --------
    >>> round(idle_spin_seconds({}), 3), round(idle_spin_seconds({"OPENBLAS_THREAD_TIMEOUT": "20"}) * 1e3, 2)
    (0.089, 0.35)
    """
    return spin_seconds(environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_EXPONENT))


@functools.cache
def _thread_pools() -> Any:
    """The loaded thread pools (BLAS, OpenMP), found once: finding them costs about 1 ms."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def limit_blas_threads(threads: int | None) -> contextlib.AbstractContextManager:
    """A context that holds BLAS to ``threads`` threads, or changes nothing for None.

    Examples
    --------
    >>> with limit_blas_threads(1):
    ...     pass
    """
    return _thread_pools().limit(limits=threads, user_api="blas") if threads else contextlib.nullcontext()
