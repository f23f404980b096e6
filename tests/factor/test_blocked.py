"""The blocked path agrees with CHOLMOD and with dense algebra, and is chosen where it pays."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import lmmfast
from lmmfast.api import prepare
from lmmfast.factor import BlockedFactor, CholmodFactor, choose_method
from lmmfast.factor.blas_threads import choose_blas_threads, inverse_blas_threads
from lmmfast.factor.blocked_layout import band_positions
from lmmfast.factor.dense_coupling import times_band

MODELS = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("sleepstudy", "Reaction ~ Days + (Days | Subject) + (1 | Days)"),
    ("kb07", "RTtrunc ~ 1 + S + P + C + (1 + S | subj) + (1 + P + C | item)"),
    # 2×2 blocks on both sides: the elimination's written-out case
    ("kb07", "RTtrunc ~ 1 + S + P + C + (1 + S | subj) + (1 + P | item)"),
    # merged `||` pieces: diagonal templates on both sides, then on the first term only
    ("kb07", "RTtrunc ~ 1 + S + P + (1 + S + P || subj) + (1 + S || item)"),
    ("kb07", "RTtrunc ~ 1 + S + P + (1 + S + P || subj) + (1 + S | item)"),
    ("pastes", "strength ~ 1 + (1 | batch/cask)"),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("machines", "score ~ Machine + (0 + Machine | Worker) + (1 | Machine:Worker)"),
]


@pytest.mark.parametrize(("dataset", "formula"), MODELS)
def test_blocked_and_cholmod_factor_the_same_matrix(dataset, formula) -> None:
    prepared = prepare(formula, lmmfast.datasets.load(dataset))
    cp, layout = prepared.objective.cross_products, prepared.objective.layout
    blocked, cholmod = BlockedFactor(cp, layout), CholmodFactor(cp, layout)
    rng = np.random.default_rng(11)
    for _ in range(3):
        theta = np.where(
            layout.is_diagonal, np.abs(rng.normal(size=layout.size)) + 0.05, 0.5 * rng.normal(size=layout.size)
        )
        blocked.update(theta)
        cholmod.update(theta)
        assert blocked.logdet() == pytest.approx(cholmod.logdet(), rel=1e-12)
        rhs = rng.normal(size=(cp.q, 3))
        # L⁻¹P differs between the paths only by an orthogonal factor: compare norms and the full solve
        np.testing.assert_allclose(
            np.linalg.norm(blocked.solve_L(rhs), axis=0), np.linalg.norm(cholmod.solve_L(rhs), axis=0), rtol=1e-10
        )
        np.testing.assert_allclose(
            blocked.solve_Lt(blocked.solve_L(rhs)), cholmod.solve_Lt(cholmod.solve_L(rhs)), rtol=1e-9, atol=1e-12
        )
        vector = rhs[:, 0]
        assert blocked.solve_L(vector).shape == vector.shape


@pytest.mark.parametrize("coupling", ["dense", "sparse"])
@pytest.mark.parametrize(
    ("dataset", "formula"),
    # and two later terms crossed with each other: blocks off the dense part's diagonal
    [*MODELS, ("pastes", "strength ~ 1 + (1 | sample) + (1 | batch) + (1 | cask)")],
)
def test_zz_times_matches_the_dense_cross_product(dataset, formula, coupling) -> None:
    prepared = prepare(formula, lmmfast.datasets.load(dataset), control=lmmfast.Control(coupling=coupling))
    factor = prepared.objective.factor
    assert isinstance(factor, BlockedFactor)
    assert factor.describe().route == (coupling if factor.dense_size else None)
    Z = sp.hstack([t.z_block() for t in prepared.engine.terms]).toarray()
    V = np.random.default_rng(4).normal(size=(Z.shape[1], 3))
    np.testing.assert_allclose(factor.zz_times(V), Z.T @ (Z @ V), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(factor.zz_times(V[:, 0]).ravel(), Z.T @ (Z @ V[:, 0]), rtol=1e-12, atol=1e-9)


@pytest.mark.filterwarnings("ignore::lmmfast.SingularFitWarning")
@pytest.mark.parametrize(("dataset", "formula"), MODELS)
def test_both_paths_reach_the_same_optimum(dataset, formula) -> None:
    data = lmmfast.datasets.load(dataset)
    fits = [lmmfast.lmm(formula, data, factorization=method, optimizer="bobyqa") for method in ("blocked", "cholmod")]
    assert fits[0].objective == pytest.approx(fits[1].objective, rel=1e-9)
    np.testing.assert_allclose(fits[0].fixef, fits[1].fixef, rtol=1e-5)
    # with the gradient (where "auto" picks it) the blocked path never ends higher
    automatic = lmmfast.lmm(formula, data)
    assert automatic.objective <= fits[1].objective + 1e-7 * abs(fits[1].objective)


@pytest.mark.filterwarnings("ignore::lmmfast.SingularFitWarning")
def test_gradient_escapes_the_boundary_corner_where_bobyqa_stops() -> None:
    # BOBYQA stops with two variances at 0 (REML 214.233, as lme4's bounded search would);
    # L-BFGS-B, unbounded on the even template columns, finds 208.311 — and CHOLMOD's
    # objective agrees at that θ
    data = lmmfast.datasets.load("machines")
    formula = "score ~ Machine + (0 + Machine | Worker) + (1 | Machine:Worker)"
    fit = lmmfast.lmm(formula, data, optimizer="lbfgsb")
    assert fit.objective == pytest.approx(208.3112183, abs=1e-6)
    cholmod = prepare(formula, data, factorization="cholmod")
    assert cholmod.objective(fit.theta) == pytest.approx(fit.objective, rel=1e-12)
    assert lmmfast.lmm(formula, data, optimizer="bobyqa").objective > fit.objective + 5.0


def test_crossed_design_chooses_blocked_and_deep_nesting_chooses_cholmod() -> None:
    crossed = prepare("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", lmmfast.datasets.load("insteval"))
    assert choose_method(crossed.objective.cross_products) == "blocked"
    rng = np.random.default_rng(0)
    n_schools, per_school = 1500, 4
    school = np.repeat(np.arange(n_schools), per_school)
    data = {
        "y": rng.normal(size=n_schools * per_school),
        "district": school // 3,
        "school": school,
        "klass": np.arange(n_schools * per_school) // 2,
    }
    nested = prepare("y ~ 1 + (1 | district/school/klass)", data)
    assert choose_method(nested.objective.cross_products) == "cholmod"


def test_unknown_factorization_is_rejected() -> None:
    with pytest.raises(lmmfast.ArgumentError, match="factorization must be"):
        lmmfast.lmm("Yield ~ 1 + (1 | Batch)", lmmfast.datasets.load("dyestuff"), factorization="qr")


def test_small_dense_blocks_ask_for_one_blas_thread() -> None:
    small = prepare("RTtrunc ~ 1 + S + (1 | subj) + (1 | item)", lmmfast.datasets.load("kb07"))
    large = prepare("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", lmmfast.datasets.load("insteval"), reml=False)
    assert small.objective.factor.blas_threads == 1
    assert large.objective.factor.blas_threads is None


DEFAULT_SPIN = 0.089  # OpenBLAS's own idle spin, 2²⁸ cycles
SHORT_SPIN = 3.5e-4  # the one lmmfast asks for (lmmfast.blas)


@pytest.mark.parametrize(
    ("q2", "work", "threads", "spin", "expected"),
    [
        (256, 0.0, 1, SHORT_SPIN, 1),  # small dense block: wake-ups cost more than a thread saves
        (1000, 2.1e7, 2, DEFAULT_SPIN, 1),  # 100k rows with slopes: short threaded passes lose to spinning
        (1000, 2.1e7, 2, SHORT_SPIN, None),  # ... unless the spinning stops soon
        (1000, 2.1e7, 1, DEFAULT_SPIN, None),  # one thread for the passes: nothing to lose
        (1142, 1.8e6, 2, DEFAULT_SPIN, None),  # InstEval: the factorisation dominates
        (4000, 8.0e8, 2, DEFAULT_SPIN, None),  # 1M rows: passes far longer than the spinning
        (1000, 0.0, 2, DEFAULT_SPIN, None),  # update by BLAS or per-count sums
    ],
)
def test_blas_threads_weigh_spinning_against_the_factorisation(q2, work, threads, spin, expected) -> None:
    assert choose_blas_threads(q2, work, threads, spin) == expected


@pytest.mark.parametrize(
    ("q2", "fit_threads", "cores", "expected"),
    [
        (500, 1, 2, 2),  # one BLAS thread for a narrow block, but potri gains from two
        (256, 1, 2, None),  # too narrow for potri too
        (1000, 1, 2, None),  # held to one thread for the spinning: keep it
        (1142, None, 2, None),  # the fit's BLAS threads already
        (500, 1, 1, None),  # nothing to gain on one core
    ],
)
def test_potri_takes_every_core_only_where_the_fit_held_back_for_a_narrow_block(
    q2, fit_threads, cores, expected
) -> None:
    assert inverse_blas_threads(q2, fit_threads, cores) == expected


def test_band_product_matches_dense_lambda() -> None:
    # later terms of sizes 3, 1 and 2 (two, three and two levels): bands of different lengths
    sizes = np.array([1, 3, 1, 2])
    levels = np.array([1, 2, 3, 2])
    rng = np.random.default_rng(5)
    templates = [np.tril(rng.normal(size=(k, k))) for k in sizes]
    offsets = np.concatenate([[0], np.cumsum(sizes**2)[:-1]])
    packed = np.concatenate([t.ravel() for t in templates])
    col_term = np.repeat(np.arange(1, 4), levels[1:] * sizes[1:])
    col_index = np.concatenate([np.tile(np.arange(sizes[t]), levels[t]) for t in range(1, 4)])
    Lambda = np.zeros((len(col_term), len(col_term)))
    start = 0
    for t in range(1, 4):
        for _ in range(levels[t]):
            k = sizes[t]
            Lambda[start : start + k, start : start + k] = templates[t]
            start += k
    rows = rng.normal(size=(3, 2, len(col_term)))  # three first-term levels of two rows each
    positions = band_positions(sizes, offsets, col_term, col_index)
    band = np.where(positions >= 0, packed[np.maximum(positions, 0)], 0.0)
    out = np.zeros_like(rows)
    times_band(rows, band, out)
    np.testing.assert_allclose(out, rows @ Lambda, rtol=1e-12, atol=1e-12)


def _dense_inverse_on_pattern(cp, layout, theta, terms) -> np.ndarray:
    """M⁻¹ by dense algebra, read at every stored block of Z'Z as ``block_values`` lays them out."""
    Z = sp.hstack([t.z_block() for t in terms]).toarray()
    Lam = sp.block_diag(
        [sp.kron(sp.identity(int(n)), layout.template(theta, i)) for i, n in enumerate(cp.term_levels)]
    ).toarray()
    inverse = np.linalg.inv(Lam.T @ Z.T @ Z @ Lam + np.eye(cp.q))
    out = np.empty_like(cp.block_values)
    for s in range(len(cp.slot_offsets)):
        ta, tb = cp.slot_term_a[s], cp.slot_term_b[s]
        ka, kb = int(cp.term_sizes[ta]), int(cp.term_sizes[tb])
        row = cp.column_offsets[ta] + cp.slot_level_a[s] * ka
        col = cp.column_offsets[tb] + cp.slot_level_b[s] * kb
        out[cp.slot_offsets[s] : cp.slot_offsets[s] + ka * kb] = inverse[row : row + ka, col : col + kb].ravel()
    return out


@pytest.mark.parametrize("path", ["dense", "sparse", "cholmod"])
@pytest.mark.parametrize(
    ("dataset", "formula"), [*MODELS, ("pastes", "strength ~ 1 + (1 | sample) + (1 | batch) + (1 | cask)")]
)
def test_inverse_on_pattern_matches_dense_algebra(dataset, formula, path) -> None:
    control = lmmfast.Control(coupling=path) if path != "cholmod" else lmmfast.Control(factorization="cholmod")
    prepared = prepare(formula, lmmfast.datasets.load(dataset), control=control)
    cp, layout, factor = prepared.objective.cross_products, prepared.objective.layout, prepared.objective.factor
    rng = np.random.default_rng(3)
    theta = np.where(layout.is_diagonal, np.abs(rng.normal(size=layout.size)) + 0.2, 0.3 * rng.normal(size=layout.size))
    factor.update(theta)
    expected = _dense_inverse_on_pattern(cp, layout, theta, prepared.engine.terms)
    np.testing.assert_allclose(factor.inverse_on_pattern(), expected, rtol=1e-9, atol=1e-12)
