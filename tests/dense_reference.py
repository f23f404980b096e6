"""A dense, textbook evaluation of the LMM likelihood, independent of the engine's algebra."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lmmfast.prepare import PreparedModel


def dense_objective(prepared: PreparedModel, theta: np.ndarray) -> float:
    """−2 log-likelihood (ML) or the REML criterion from V = ZΛΛ'Z' + W⁻¹, by brute force."""
    layout, terms = prepared.layout, prepared.terms
    X, y = prepared.fixed.X, prepared.fixed.y
    n, p = X.shape
    Z = sp.hstack([t.z_block() for t in terms]).toarray()
    blocks = [np.kron(np.eye(t.n_levels), layout.template(theta, i)) for i, t in enumerate(terms)]
    lam = np.zeros((Z.shape[1], Z.shape[1]))
    offset = 0
    for block in blocks:
        size = block.shape[0]
        lam[offset : offset + size, offset : offset + size] = block
        offset += size
    w = prepared.weights if prepared.weights is not None else np.ones(n)
    V = Z @ lam @ lam.T @ Z.T + np.diag(1.0 / w)
    Vinv = np.linalg.inv(V)
    XtVX = X.T @ Vinv @ X
    beta = np.linalg.solve(XtVX, X.T @ Vinv @ y)
    r = y - X @ beta
    quad = float(r @ Vinv @ r)
    logdet_V = np.linalg.slogdet(V)[1]
    if prepared.objective.reml:
        dof = n - p
        return logdet_V + np.linalg.slogdet(XtVX)[1] + dof * (1 + np.log(2 * np.pi * quad / dof))
    return logdet_V + n * (1 + np.log(2 * np.pi * quad / n))
