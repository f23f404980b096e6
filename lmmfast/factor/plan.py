"""The engine plan: which factorisation path runs, by which coupling route, on how many
threads, in how much memory — decided once per model and recorded on its fit."""

from __future__ import annotations

from dataclasses import dataclass

#: How the blocked path forms and uses L21 L21' (the first term's coupling to the dense block):
#: BLAS on L21 held dense, sums per distinct first-term count (balanced designs with random
#: intercepts only), or the scattered sparse kernels.
ROUTES = ("dense", "grouped", "sparse")


@dataclass(frozen=True)
class FactorPlan:
    """How Λ'Z'ZΛ + I is factored for one model.

    Attributes
    ----------
    path : {"blocked", "cholmod"}
        The blocked elimination into a dense block, or CHOLMOD's sparse Cholesky.
    route : {"dense", "grouped", "sparse"} or None
        The blocked path's coupling route (:data:`ROUTES`); None where there is no dense
        block to couple to, and on the CHOLMOD path.
    merged_terms : bool
        Whether terms on one grouping factor are factored as one (blocked path).
    dense_size : int
        Order of the dense block (0 on the CHOLMOD path).
    threads : int
        Threads of the blocked path's sparse passes.
    blas_threads : int or None
        BLAS threads of the fit (None: BLAS's default).
    estimated_bytes : int
        The factorisation's memory, estimated before anything was allocated.
    estimated_seconds : float
        One evaluation of the criterion, estimated from the work of the factorisation (a
        rough guide, for telling the user before a long fit; 0 where not estimated).
    envelope_size : int
        Order of the augmented matrix the compiled criterion of a small model factors
        (:mod:`lmmfast.factor.envelope`); 0 where evaluations run on the factor.

    Examples
    --------
    >>> print(FactorPlan("blocked", "dense", False, 256, 1, 1, 1_572_864, 0.001))
    blocked path, dense coupling, dense block 256 × 256, 1 thread (BLAS 1), about 1.5 MiB
    """

    path: str
    route: str | None
    merged_terms: bool
    dense_size: int
    threads: int
    blas_threads: int | None
    estimated_bytes: int
    estimated_seconds: float = 0.0
    envelope_size: int = 0

    def __str__(self) -> str:
        parts = [f"{self.path} path"]
        if self.route is not None:
            parts.append(f"{self.route} coupling")
        if self.merged_terms:
            parts.append("terms on one factor merged")
        if self.dense_size:
            parts.append(f"dense block {self.dense_size} × {self.dense_size}")
        blas = "default" if self.blas_threads is None else str(self.blas_threads)
        parts.append(f"{self.threads} thread{'s' if self.threads != 1 else ''} (BLAS {blas})")
        parts.append(f"about {format_bytes(self.estimated_bytes)}")
        if self.envelope_size:
            parts.append(f"criterion compiled ({self.envelope_size} × {self.envelope_size} envelope)")
        return ", ".join(parts)


def format_bytes(count: float) -> str:
    """A byte count in binary units.

    Examples
    --------
    >>> format_bytes(512), format_bytes(3 * 2**30)
    ('512 bytes', '3.0 GiB')
    """
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{int(count)} bytes" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"
