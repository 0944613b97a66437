"""Packed step sums (streamsgd.core.reduction): N replicas that each pack their share of a
batch, add the vectors and apply the reduced sums take the single-trainer step on the union
batch — for dense and sparse rows, with L2, a controller (curvature product), importance
weights, standardisation, and replicas without a sample."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression
from streamsgd.core.controller import NoiseController
from streamsgd.core.reduction import SumsLayout, local_sums, reduced_sums
from streamsgd.core.sparse import SparseRows

D = 12


def _dense_batches(rng: np.random.Generator, n_steps: int, m: int) -> list[tuple]:
    w = rng.standard_normal(D)
    batches = []
    for _ in range(n_steps):
        X = rng.standard_normal((m, D)) * rng.uniform(0.5, 3.0, D) + rng.uniform(-1, 1, D)
        y = (rng.random(m) < 1 / (1 + np.exp(-X @ w))).astype(float)
        batches.append((X, y, rng.uniform(0.2, 2.0, m)))
    return batches


def _sparse(X: np.ndarray) -> SparseRows:
    rows, cols = np.nonzero(np.abs(X) > 0.8)
    indptr = np.searchsorted(rows, np.arange(X.shape[0] + 1)).astype(np.int64)
    return SparseRows(indptr, cols.astype(np.int64), X[rows, cols].astype(float), X.shape[1])


def _rows(X: np.ndarray | SparseRows, start: int, stop: int) -> np.ndarray | SparseRows:
    return X.slice_rows(start, stop) if isinstance(X, SparseRows) else X[start:stop]


def _replicated_step(
    replicas: list[OnlineLogisticRegression], X, y, weights, cuts: list[int]
) -> None:
    """Each replica k packs rows [cuts[k], cuts[k+1]), the vectors are added, and every
    replica applies the reduced sums (what the collective and the loop do)."""
    vectors = []
    for k, model in enumerate(replicas):
        start, stop = cuts[k], cuts[k + 1]
        if start == stop:
            vectors.append(local_sums(model, None, None))
        else:
            vectors.append(
                local_sums(model, _rows(X, start, stop), y[start:stop], weights[start:stop])
            )
    total = np.sum(vectors, axis=0)
    for model in replicas:
        sums = reduced_sums(model, total)
        assert sums is not None
        model.apply_step(sums)


MAKERS: dict[str, Callable[[], OnlineLogisticRegression]] = {
    "plain": lambda: OnlineLogisticRegression(D, learning_rate=0.2),
    "l2_adagrad": lambda: OnlineLogisticRegression(
        D, learning_rate=0.3, l2=1e-2, optimizer="adagrad"
    ),
    "controller": lambda: OnlineLogisticRegression(
        D, controller=NoiseController.create("auto", adaptive_learning_rate=True)
    ),
    "standardize": lambda: OnlineLogisticRegression(D, learning_rate=0.1, standardize=True),
}


# Standardisation refuses sparse rows (test_standardize), so it is dense only.
CASES = [(kind, sparse) for kind in sorted(MAKERS) for sparse in (False, True)]
CASES.remove(("standardize", True))


@pytest.mark.parametrize(("kind", "sparse"), CASES)
def test_replicas_take_the_union_batch_step(kind: str, sparse: bool) -> None:
    rng = np.random.default_rng(7)
    single = MAKERS[kind]()
    replicas = [MAKERS[kind]() for _ in range(3)]
    for X, y, weights in _dense_batches(rng, 40, 24):
        features = _sparse(X) if sparse else X
        single.learn_batch(features, y, weights)
        # Uneven shares, one replica empty every other step.
        a = int(rng.integers(0, 25))
        b = int(rng.integers(a, 25))
        _replicated_step(replicas, features, y, weights, [0, a, b, 24])
    for model in replicas:
        np.testing.assert_array_equal(model.parameters, replicas[0].parameters)
        np.testing.assert_allclose(model.parameters, single.parameters, rtol=1e-10, atol=1e-12)
        assert model.n_updates == single.n_updates
        assert model.n_samples_seen == single.n_samples_seen
        assert model.row_scale == pytest.approx(single.row_scale, rel=1e-12)
    if kind == "controller":
        assert replicas[0].controller is not None and single.controller is not None
        assert replicas[0].controller.batch_size == single.controller.batch_size


def test_no_sample_anywhere_is_no_step() -> None:
    model = OnlineLogisticRegression(D, standardize=True)
    total = local_sums(model, None, None) + local_sums(model, None, None)
    assert reduced_sums(model, total) is None
    assert total.shape == (SumsLayout.of(model).size,)


def test_a_vector_of_another_layout_is_refused() -> None:
    model = OnlineLogisticRegression(D)
    with pytest.raises(ValueError, match="expected"):
        reduced_sums(model, np.zeros(3))
