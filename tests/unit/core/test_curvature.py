"""The controller's curvature estimate (streamsgd.core.curvature): a power iteration on
¼ E[s v vᵀ] + λ₂ D from per-batch sums, and the step-size cap it gives.

The stationary problem has zero-mean features with a known diagonal covariance, so the
full-batch matrix ¼ XᵀX/n + λ₂ D (v = [x ; 1]) is strongly anisotropic: its largest
eigenvalue is about a quarter of the largest variance, far below the trace bound.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression, SparseRows
from streamsgd.checkpoint.document import dumps, loads
from streamsgd.core.batch_sums import BatchSums
from streamsgd.core.controller import NoiseController
from streamsgd.core.curvature import (
    SAFETY_FACTOR,
    WARMUP_STEPS,
    CurvatureDirection,
    CurvatureEstimate,
)
from streamsgd.core.step import batch_sums
from streamsgd.training.totals import Totals

N_FEATURES = 20
L2 = 0.01
VARIANCES = np.array([9.0, 4.0] + [1.0] * (N_FEATURES - 2))  # top eigenvalue of M ≈ 9


def _stream(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES)) * np.sqrt(VARIANCES)
    w = rng.standard_normal(N_FEATURES) / np.sqrt(N_FEATURES)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-X @ w))).astype(float)
    return X, y


def _full_batch_top_eigenvalue(X: np.ndarray) -> float:
    """λ_max(¼ VᵀV/n + λ₂ D), V = [X, 1]."""
    V = np.hstack([X, np.ones((len(X), 1))])
    H = 0.25 * (V.T @ V) / len(X)
    H[:-1, :-1] += L2 * np.eye(N_FEATURES)
    return float(np.linalg.eigvalsh(H)[-1])


def _model(learning_rate: float = 0.05) -> OnlineLogisticRegression:
    controller = NoiseController(adaptive_batch_size=False, batch_size=16, base_batch_size=16)
    return OnlineLogisticRegression(
        N_FEATURES, learning_rate=learning_rate, l2=L2, clip_norm_ratio=0.0, controller=controller
    )


def _learn(model: OnlineLogisticRegression, X: np.ndarray, y: np.ndarray, m: int = 16) -> None:
    for start in range(0, len(y) - m + 1, m):
        model.learn_batch(X[start : start + m], y[start : start + m])


def test_estimate_matches_the_largest_eigenvalue_of_the_full_batch_hessian() -> None:
    X, y = _stream(16 * 600)
    model = _model()
    _learn(model, X, y)
    assert model.controller is not None
    estimate = model.controller.curvature
    exact = _full_batch_top_eigenvalue(X)
    trace = 0.25 * float(np.mean(np.sum(X * X, axis=1) + 1.0)) + L2
    assert trace > 3.0 * exact  # the problem is anisotropic: the trace bound is loose
    assert estimate.rayleigh_quotient == pytest.approx(exact, rel=0.10)
    # u found the top eigenvector (the first, high-variance coordinate).
    u = estimate.direction(N_FEATURES + 1).dense()
    assert abs(u[0]) > 0.9


def test_cap_uses_the_estimate_and_stays_within_the_trace_bound() -> None:
    """With a rate far above the cap, η = 1/L̂: 1/T during the warm-up, then
    L̂ = min(T, max(ρ λ̂, (T − λ₂)/(d + 1) + λ₂)); always 1/T ≤ η ≤ (d + 1)/T; at the end
    near 1/(ρ λ_max) of the full-batch matrix, well above the trace bound's 1/T."""
    X, y = _stream(16 * 300)
    model = _model(learning_rate=10.0)
    controller = model.controller
    assert controller is not None
    m = 16
    for step, start in enumerate(range(0, len(y) - m + 1, m)):
        Xb, yb = X[start : start + m], y[start : start + m]
        sums = model.batch_sums(Xb, yb)
        trace = controller.curvature_bound(controller._row_norm_after(sums), L2)
        quotient = controller.curvature.quotient_after(sums, L2)
        eta = model.learn_batch(Xb, yb).learning_rate
        assert 1.0 / trace <= eta * (1 + 1e-12) and eta <= (N_FEATURES + 1) / trace
        if step < WARMUP_STEPS:
            assert eta == pytest.approx(1.0 / trace, rel=1e-12)
        else:
            floor = (trace - L2) / (N_FEATURES + 1) + L2
            bound = min(trace, max(SAFETY_FACTOR * quotient, floor))
            assert eta == pytest.approx(1.0 / bound, rel=1e-12)
    exact = _full_batch_top_eigenvalue(X)
    assert eta == pytest.approx(1.0 / (SAFETY_FACTOR * exact), rel=0.10)
    assert eta > 1.5 / trace


@pytest.mark.parametrize("sparse", [False, True])
def test_curvature_sums_add_exactly_across_splits(sparse: bool) -> None:
    """P = ¼ Σ s_i v_i (v_iᵀ u) of a batch equals the dense formula and the sum of any split
    of it; sparse rows with few entries keep it at the gradient's columns (O(nnz))."""
    rng = np.random.default_rng(5)
    n_features = 4096 if sparse else N_FEATURES
    X = rng.standard_normal((48, n_features))
    X[rng.random(X.shape) < (0.998 if sparse else 0.6)] = 0.0
    y = (rng.random(48) < 0.5).astype(float)
    weights = rng.random(48) + 0.5
    u = rng.standard_normal(n_features + 1)
    u /= np.linalg.norm(u)
    theta = rng.standard_normal(n_features + 1)
    workspace = np.empty(n_features, dtype=np.intp) if sparse else None

    def sums(lo: int, hi: int):  # type: ignore[no-untyped-def]
        rows = X[lo:hi]
        features = (
            SparseRows.from_rows([(np.flatnonzero(r), r[r != 0.0]) for r in rows], n_features)
            if sparse
            else rows
        )
        return batch_sums(
            theta,
            features,
            y[lo:hi],
            weights[lo:hi],
            row_scale=1.0,
            clip_norm_ratio=0.0,
            gradient_statistics=True,
            column_workspace=workspace,
            curvature_direction=CurvatureDirection(u * 2.0, 0.5),
        )

    V = np.hstack([X, np.ones((48, 1))])
    expected = 0.25 * V.T @ (weights * (V @ u))
    whole_sums = sums(0, 48)
    split_sums = sums(0, 7) + sums(7, 30) + sums(30, 48)
    assert (whole_sums.gradient_columns is not None) == sparse
    whole = whole_sums.dense_curvature_product_sum(n_features)
    split = split_sums.dense_curvature_product_sum(n_features)
    assert whole is not None and split is not None
    np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(whole, expected, rtol=1e-12, atol=1e-15)
    # A column batch added to a dense one (another replica without columns) adds densely.
    mixed = whole_sums + BatchSums(
        1, np.zeros(n_features + 1), 0.0, 0.0, 0, curvature_product_sum=np.ones(n_features + 1)
    )
    np.testing.assert_allclose(mixed.curvature_product_sum, expected + 1.0, rtol=1e-12)


def test_sparse_estimate_in_o_nnz_matches_the_dense_one() -> None:
    """The same hashed-like stream learned as sparse rows (column path, y kept scaled) and
    as dense rows: the power iteration gives the same λ̂ and u up to round-off, over more
    steps than one rescaling of ŷ takes (κ < 1e-100 after ≈ 800 steps)."""
    rng = np.random.default_rng(7)
    n_features, m, n_steps = 512, 8, 900
    results = []
    for sparse in (True, False):
        controller = NoiseController(adaptive_batch_size=False, batch_size=m, base_batch_size=m)
        model = OnlineLogisticRegression(
            n_features, learning_rate=0.05, clip_norm_ratio=0.0, controller=controller
        )
        rng = np.random.default_rng(7)
        for _ in range(n_steps):
            cols = rng.zipf(1.5, size=(m, 3)) % n_features
            X = np.zeros((m, n_features))
            for i, c in enumerate(cols):
                X[i, np.unique(c)] = 1.0
            y = (rng.random(m) < 0.5).astype(float)
            rows = SparseRows.from_rows([(np.flatnonzero(r), r[r != 0.0]) for r in X], n_features)
            stats = model.learn_batch(rows if sparse else X, y)
            assert (stats.sums.gradient_columns is not None) == sparse
        estimate = controller.curvature
        results.append((estimate.rayleigh_quotient, estimate.direction(n_features + 1).dense()))
    (q_sparse, u_sparse), (q_dense, u_dense) = results
    assert q_sparse == pytest.approx(q_dense, rel=1e-9)
    np.testing.assert_allclose(u_sparse, u_dense, rtol=1e-7, atol=1e-12)


def test_estimate_survives_a_checkpoint_round_trip() -> None:
    X, y = _stream(16 * 100)
    model = _model()
    _learn(model, X[:800], y[:800])
    document = {
        "model": model.get_state(),
        "positions": {},
        "offsets": {},
        "totals": vars(Totals()),
        "source": {},
        "batch_size": 16,
    }
    resumed = OnlineLogisticRegression.from_state(loads(dumps(document))["model"])
    _learn(model, X[800:], y[800:])
    _learn(resumed, X[800:], y[800:])
    assert resumed.parameters.tobytes() == model.parameters.tobytes()
    assert resumed.controller is not None and model.controller is not None
    a, b = resumed.controller.curvature, model.controller.curvature
    assert a.product is not None and b.product is not None
    assert a.product.tobytes() == b.product.tobytes()
    assert (a.rayleigh_quotient, a.n_steps) == (b.rayleigh_quotient, b.n_steps)


def test_older_controller_state_without_the_estimate_resumes_fresh() -> None:
    state = NoiseController().get_state()
    del state["curvature"]
    fresh = NoiseController.from_state(state).curvature
    assert fresh.product is None and fresh.n_steps == 0 and math.isnan(fresh.rayleigh_quotient)
    with pytest.raises(ValueError):
        CurvatureEstimate.from_state(
            {"rayleigh_quotient": 1.0, "product": [math.nan], "n_steps": 1}
        )


def test_no_controller_computes_no_curvature_sums() -> None:
    X, y = _stream(32)
    plain = OnlineLogisticRegression(N_FEATURES)
    assert plain.batch_sums(X, y).curvature_product_sum is None


def test_sparse_estimate_resumes_bit_for_bit() -> None:
    """Sparse batches keep y scaled (y = κ ŷ, ‖ŷ‖² updated incrementally): the checkpoint
    stores ŷ, κ and ‖ŷ‖² as they are, so a resumed run takes the same steps bit for bit."""
    n_features, m = 1 << 12, 16
    rng = np.random.default_rng(9)
    rows = [(np.unique(rng.integers(0, n_features, 5)), None) for _ in range(m * 80)]
    X = SparseRows.from_rows([(ix, np.ones(len(ix))) for ix, _ in rows], n_features)
    y = (rng.random(m * 80) < 0.4).astype(float)

    def learn(model: OnlineLogisticRegression, lo: int, hi: int) -> None:
        for start in range(lo, hi, m):
            model.learn_batch(X.slice_rows(start, start + m), y[start : start + m])

    controller = NoiseController.create("auto", adaptive_learning_rate=True)
    model = OnlineLogisticRegression(n_features, controller=controller)
    learn(model, 0, m * 40)
    assert controller.curvature.get_state()["scale"] < 1.0  # y is kept scaled
    document = {
        "model": model.get_state(),
        "positions": {},
        "offsets": {},
        "totals": vars(Totals()),
        "source": {},
        "batch_size": m,
    }
    resumed = OnlineLogisticRegression.from_state(loads(dumps(document))["model"])
    learn(model, m * 40, m * 80)
    learn(resumed, m * 40, m * 80)
    assert resumed.parameters.tobytes() == model.parameters.tobytes()
    assert resumed.controller is not None
    a, b = resumed.controller.curvature.get_state(), controller.curvature.get_state()
    assert a["product"].tobytes() == b["product"].tobytes()
    assert (a["scale"], a["squared_norm"]) == (b["scale"], b["squared_norm"])


@pytest.mark.parametrize("sparse", [False, True])
def test_a_replica_that_scored_no_batch_takes_the_same_step(sparse: bool) -> None:
    """Scale-out: replicas add their batch sums and each applies the total. A replica with
    no samples of its own this step never asked for u; it takes u from the state it shares,
    so its curvature estimate and weights stay identical to the others'."""
    rng = np.random.default_rng(12)
    n_features, m = (1 << 12, 16) if sparse else (N_FEATURES, 16)

    def batch() -> tuple[object, np.ndarray]:
        if sparse:
            rows = [(np.unique(rng.integers(0, n_features, 5)), None) for _ in range(m)]
            X = SparseRows.from_rows([(ix, np.ones(len(ix))) for ix, _ in rows], n_features)
        else:
            X = rng.standard_normal((m, n_features))
        return X, (rng.random(m) < 0.4).astype(float)

    scoring = OnlineLogisticRegression(
        n_features, controller=NoiseController.create("auto", adaptive_learning_rate=True)
    )
    for _ in range(60):
        scoring.learn_batch(*batch())  # type: ignore[arg-type]
    idle = OnlineLogisticRegression.from_state(scoring.get_state())
    for _ in range(5):
        X, y = batch()
        total = scoring.batch_sums(X, y)  # type: ignore[arg-type]
        scoring.apply_step(total)
        idle.apply_step(total)
    assert idle.parameters.tobytes() == scoring.parameters.tobytes()
    assert idle.controller is not None and scoring.controller is not None
    assert _same(idle.controller.curvature.get_state(), scoring.controller.curvature.get_state())


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (a[k].tobytes() == b[k].tobytes()) if isinstance(a[k], np.ndarray) else a[k] == b[k]
        for k in a
    )
