"""The criterion's curvature, for the quasi-Newton runs to scale θ by instead of probing for
one common first step (:func:`lmmfast.lbfgsb.curvature_root`).

At the optimiser's start, from the cross-products (:func:`start_curvature`): each level's own
least-squares coefficients carry Fisher information about its term's θ; summed over levels it
approximates the diagonal of the deviance's Hessian, from Z'Z's diagonal blocks alone (and,
for models of intercepts, the counts the factors' levels share), so the estimate costs the
numbers of levels, not of rows.

At an optimum that many refits start from (bootstrap replicates), measured
(:func:`measured_curvature`): the whole Hessian, by central differences of the analytic
gradient, 2 evaluations per θ once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lmmfast.crossprod import CrossProducts, level_blocks
from lmmfast.design.random import RandomTerm
from lmmfast.parameters import ThetaLayout

#: A θ whose estimated curvature is below this share of its term's largest is left without
#: one (NaN): the approximation vanishes near the boundary of the parameter space.
CURVATURE_SHARE = 0.01

#: Grouping factors with more random-effect columns than this (a term's, or the terms' on
#: one factor together) have no curvature estimate (NaN): the information about their θ is
#: far from diagonal, and scaling θ by its diagonal took kb07's models with 4 to 8 columns
#: on each factor more evaluations than one probe for a common step.
CURVATURE_MAX_COLUMNS = 2

#: The central differences of :func:`measured_curvature` step this share of |θᵢ|, at least
#: this much: on InstEval and kb07 the Hessian agrees with steps of 1e-5 and 1e-6 to 2e-7 of
#: its largest entry (the third derivatives' share is smaller still), far finer than a
#: scaling needs.
MEASURING_STEP = 1e-4


def start_curvature(
    layout: ThetaLayout,
    terms: Sequence[RandomTerm],
    cross_products: CrossProducts,
    blocks: Sequence[tuple[int, int]],
    theta: np.ndarray,
) -> np.ndarray:
    """The diagonal of the deviance's Hessian in θ, approximated at ``theta`` from each
    level's Gram matrix: what the quasi-Newton optimiser scales θ by instead of probing for
    its first step.

    Each level's own least-squares coefficients would vary, over σ², with covariance
    Ωⱼ = TT' + Gⱼ⁻¹ (T the term's template, Gⱼ the level's block of Z'Z), and their Fisher
    information about θᵢ is ½ tr(Ωⱼ⁻¹ Dᵢ Ωⱼ⁻¹ Dᵢ), Dᵢ = ∂(TT')/∂θᵢ; the deviance's curvature
    is twice its sum over levels, cᵢ. That is the curvature with σ held; the criterion has σ
    profiled out, and a larger θ explains variance a smaller σ would otherwise: with
    s = log σ², whose curvature is n (every row's variance scales with σ²) and whose
    coupling to θᵢ is sᵢ = Σⱼ tr(Ωⱼ⁻¹ Dᵢ), the profiled curvature is cᵢ − sᵢ²/n. That
    matters where levels have few rows (a 200,000 × 20,000 crossed design with 3 rows a
    subject: 586,000 held, 386,000 profiled, against central differences' 386,000). The
    Hessian of crossed designs is nearly diagonal and this its diagonal to a few per cent
    (a 100,000-row design with slopes on both factors: within 3% at the start and at the
    optimum). Ωⱼ⁻¹ is taken as Gⱼ − GⱼT(I + T'GⱼT)⁻¹T'Gⱼ, which
    holds where a level cannot estimate its own coefficients (Gⱼ singular) too. Entries
    without an estimate are NaN: the θ of grouping factors with more than
    ``CURVATURE_MAX_COLUMNS`` columns, and those below ``CURVATURE_SHARE`` of their term's
    largest (near the boundary, where the information vanishes but the curvature does not).

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.api import prepare
    >>> p = prepare("Reaction ~ Days + (Days | Subject)", lmmfast.datasets.load("sleepstudy"))
    >>> theta = np.array([0.967, 0.015, 0.231])  # REML's optimum, where the Hessian's is (37, 416, 790)
    >>> start_curvature(p.layout, p.terms, p.objective.cross_products, p.engine.blocks, theta).round(0).tolist()
    [39.0, 440.0, 832.0]
    """
    curvature = np.full(len(theta), np.nan)
    rows = float(cross_products.n)
    intercepts = len(terms) > 1 and all(term.columns == ("(Intercept)",) for term in terms)
    unseparated = _unseparated_variances(layout, cross_products, blocks, theta) if intercepts else None
    grams: dict[int, np.ndarray] = {}  # per engine term: the terms split by ``||`` share one
    for index, (term, (engine, first)) in enumerate(zip(terms, blocks)):
        mask = layout.term_of == index
        if int(cross_products.term_sizes[engine]) > CURVATURE_MAX_COLUMNS:
            continue
        if engine not in grams:
            grams[engine] = level_blocks(cross_products, engine)
        own = slice(first, first + term.k)
        gram = grams[engine][:, own, own]
        template = np.zeros((term.k, term.k))
        template[layout.rows[mask], layout.cols[mask]] = theta[mask]
        if unseparated is not None:
            # Ωⱼ = θ² + 1/nⱼ + the other terms' share that level j cannot separate from its own
            variance = template[0, 0] ** 2 + unseparated[index][:, None, None]
            precision = gram / (1.0 + gram * variance)
        elif term.k == 1:  # Ωⱼ = θ² + 1/Gⱼ, without the batched solve's overhead
            precision = gram / (1.0 + gram * template[0, 0] ** 2)
        else:
            projected = gram @ template  # GⱼT
            inner = np.eye(term.k) + template.T @ projected  # I + T'GⱼT
            precision = gram - projected @ np.linalg.solve(inner, projected.transpose(0, 2, 1))  # Ωⱼ⁻¹
        for i in np.flatnonzero(mask):
            unit = np.zeros((term.k, term.k))
            unit[layout.rows[i], layout.cols[i]] = 1.0
            derivative = unit @ template.T + template @ unit.T
            product = precision @ derivative
            held = float(np.einsum("jab,jba->", product, product))
            coupling = float(np.einsum("jaa->", product))  # to log σ², whose curvature is n
            curvature[i] = held - coupling**2 / rows
        # where T is near a boundary (a column near 0) the information vanishes along it,
        # while the criterion's curvature there comes from its slope in the variance, which
        # this leaves out: such entries are not estimated
        own = curvature[mask]
        own[own < CURVATURE_SHARE * own.max(initial=0.0)] = np.nan
        curvature[mask] = own
    return curvature


def _unseparated_variances(
    layout: ThetaLayout, cp: CrossProducts, blocks: Sequence[tuple[int, int]], theta: np.ndarray
) -> list[np.ndarray]:
    """For models of random intercepts on several factors: per term, per level j, the other
    terms' variance (over σ²) in level j's estimate of its own effect that j's own rows cannot
    tell from it. For each other term s, j's rows fall into the cells it shares with s's
    levels l (nⱼₗ rows); a cell's mean carries l's effect, of which the share nⱼₗ/nₗ is not
    estimated from l's other rows, so it varies by vⱼₗ = θₛ² nⱼₗ/nₗ + 1/nⱼₗ. Weighing the
    cells by their precision (generalized least squares), j's estimate varies by
    1/Σₗ 1/vⱼₗ, of which the term s adds what exceeds 1/nⱼ. A level l whose rows all lie
    within j (nested factors: InstEval's lecturers within departments) adds its whole
    variance to its cell; one seen mostly elsewhere (crossed factors) adds next to nothing.
    Weighing the cells by their rows instead (the level's mean) overstates the variance
    where the cells are unequal (InstEval's departments' curvature: half the Hessian's, where
    weighed by precision it is within 2%).

    Examples
    --------
    >>> import lmmfast
    >>> from lmmfast.api import prepare
    >>> p = prepare("strength ~ 1 + (1 | batch) + (1 | batch:cask)", lmmfast.datasets.load("pastes"))
    >>> # 6 rows a batch, 2 a cask: a batch's mean holds its 3 casks' 4 / 3² each, a cask's a third of its batch's 1
    >>> [v.round(3).tolist()[:2] for v in _unseparated_variances(p.layout, p.objective.cross_products,
    ...                                                            p.engine.blocks, np.array([1.0, 2.0]))]
    [[1.333, 1.333], [0.333, 0.333]]
    """
    counts = [level_blocks(cp, engine)[:, 0, 0] for engine, _ in blocks]
    variances = [np.zeros(len(c)) for c in counts]
    for t, (engine_t, _) in enumerate(blocks):
        for s, (engine_s, _) in enumerate(blocks):
            if s == t:
                continue
            theta_s = float(theta[layout.starts[s]])
            # Z'Z's blocks between the two terms are stored once, either way round (once in
            # all where both share an engine term, as two intercepts on one factor would)
            orientations = [(engine_t, engine_s, cp.slot_level_a, cp.slot_level_b)]
            if engine_s != engine_t:
                orientations.append((engine_s, engine_t, cp.slot_level_b, cp.slot_level_a))
            for a, b, levels_t, levels_s in orientations:
                shared = (cp.slot_term_a == a) & (cp.slot_term_b == b)
                if not shared.any():
                    continue
                n_jl = cp.block_values[cp.slot_offsets[shared]]
                j, l = levels_t[shared], levels_s[shared]
                precision = np.bincount(j, n_jl / (1.0 + theta_s**2 * n_jl**2 / counts[s][l]), len(counts[t]))
                excess = np.divide(1.0, precision, out=np.zeros_like(precision), where=precision > 0) - 1.0 / counts[t]
                variances[t] += np.maximum(excess, 0.0)
    return variances


def measured_curvature(
    value_and_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]], theta: np.ndarray
) -> np.ndarray:
    """The deviance's Hessian at ``theta`` by central differences of its analytic gradient
    (``value_and_gradient``: θ ↦ (criterion, gradient)), made symmetric: 2 evaluations per θ.

    Refits that start from one optimum with the whole Hessian there (bootstrap replicates:
    :func:`lmmfast.inference.bootstrap.bootstrap`) take its Newton step first and need no
    evaluations to learn θ's correlations, which the start's diagonal
    (:func:`start_curvature`) leaves out (kb07's replicates with a correlated slope: a
    quarter fewer evaluations).

    Examples
    --------
    >>> def quadratic(t):
    ...     hessian = np.array([[4.0, 1.0], [1.0, 2.0]])
    ...     return 0.5 * float(t @ hessian @ t), hessian @ t
    >>> measured_curvature(quadratic, np.array([0.3, 0.7])).round(8).tolist()
    [[4.0, 1.0], [1.0, 2.0]]
    """
    theta = np.asarray(theta, dtype=np.float64)
    hessian = np.empty((len(theta), len(theta)))
    for i in range(len(theta)):
        step = MEASURING_STEP * max(1.0, abs(float(theta[i])))
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        hessian[:, i] = (value_and_gradient(up)[1] - value_and_gradient(down)[1]) / (2.0 * step)
    return 0.5 * (hessian + hessian.T)
