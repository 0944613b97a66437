"""SparseRows against dense numpy, sparse-vs-dense training, and the feature hash."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsgd import OnlineLogisticRegression, SparseRows
from streamsgd.core.hashing import FEATURE_HASH, MAX_HASH_BITS, feature_hash, feature_index

from .test_murmurhash import reference_murmurhash3_32

ROOT = Path(__file__).resolve().parents[3]


def _random_sparse(rng, n, d, density=0.3, duplicates=False):
    """A SparseRows and its dense twin, built independently (dense first)."""
    rows = []
    for _ in range(n):
        k = int(rng.binomial(d, density))
        idx = rng.choice(d, size=k, replace=False)
        vals = rng.standard_normal(k)
        if duplicates and k:
            extra = rng.choice(idx, size=int(rng.integers(1, 3)))
            idx = np.concatenate([idx, extra])
            vals = np.concatenate([vals, rng.standard_normal(len(extra))])
        rows.append((idx.astype(np.int64), vals))
    dense = np.zeros((n, d))
    for i, (idx, vals) in enumerate(rows):
        for j, v in zip(idx, vals, strict=False):
            dense[i, j] += v
    return SparseRows.from_rows(rows, d), dense


@pytest.mark.parametrize("duplicates", [False, True], ids=["canonical", "duplicate-entries"])
@pytest.mark.parametrize("n,d", [(1, 1), (7, 5), (40, 64), (3, 1000)])
def test_sparse_rows_operations_match_dense(n, d, duplicates):
    rng = np.random.default_rng(n * 1000 + d)
    S, A = _random_sparse(rng, n, d, duplicates=duplicates)
    w = rng.standard_normal(d)
    r = rng.standard_normal(n)
    assert S.shape == (n, d) and len(S) == n
    np.testing.assert_array_equal(S.to_dense(), A)
    np.testing.assert_allclose(S.matvec(w), A @ w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(S.rmatvec(r), A.T @ r, rtol=1e-12, atol=1e-12)
    # ‖x_i‖² of the *matrix* (duplicate entries of one cell add up before squaring).
    np.testing.assert_allclose(S.row_squared_norms(), (A * A).sum(axis=1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("duplicates", [False, True], ids=["canonical", "duplicate-entries"])
def test_rmatvec_columns_is_rmatvec_at_the_touched_columns_bit_for_bit(duplicates):
    rng = np.random.default_rng(5)
    S, A = _random_sparse(rng, 30, 400, density=0.02, duplicates=duplicates)
    r = rng.standard_normal(30)
    workspace = np.full(400, -7, dtype=np.intp)  # any contents
    columns, sums = S.rmatvec_columns(r, workspace)
    assert len(columns) == len(set(columns.tolist()))
    assert np.array_equal(np.sort(columns), np.unique(S.indices))
    full = S.rmatvec(r)
    assert np.array_equal(sums, full[columns])
    untouched = np.setdiff1d(np.arange(400), columns)
    assert np.array_equal(full[untouched], np.zeros(len(untouched)))
    assert np.array_equal(A[:, untouched], np.zeros((30, len(untouched))))


@pytest.mark.parametrize(
    "params", [dict(learning_rate=0.3), dict(learning_rate=0.2, optimizer="adagrad")]
)
def test_sparse_step_leaves_untouched_weights_bit_for_bit(params):
    """A sparse minibatch moves only the columns it touches (and b); every other weight and
    AdaGrad accumulator keeps its exact value, and the gradient stays sparse."""
    rng = np.random.default_rng(9)
    d = 1 << 14
    S, _ = _random_sparse(rng, 64, d, density=0.0005)
    y = (rng.random(64) < 0.5).astype(float)
    model = OnlineLogisticRegression(d, **params)
    state = model.get_state()
    state["theta"] = rng.standard_normal(d + 1)
    model = OnlineLogisticRegression.from_state(state)
    before = model.get_state()
    stats = model.learn_batch(S, y)
    after = model.get_state()
    touched = np.unique(S.indices)
    assert np.array_equal(np.sort(stats.sums.gradient_columns), touched)
    assert len(stats.sums.gradient_sum) == len(touched) + 1
    rest = np.setdiff1d(np.arange(d), touched)
    assert np.array_equal(after["theta"][rest], before["theta"][rest])
    assert not np.any(after["theta"][touched] == before["theta"][touched])
    if before["squared_gradient_sum"] is not None:
        assert np.array_equal(
            after["squared_gradient_sum"][rest], before["squared_gradient_sum"][rest]
        )


def test_sparse_rows_with_empty_rows_and_no_entries():
    S = SparseRows.from_rows([(np.zeros(0, np.int64), np.zeros(0))] * 3, 4)
    np.testing.assert_array_equal(S.to_dense(), np.zeros((3, 4)))
    np.testing.assert_array_equal(S.matvec(np.ones(4)), np.zeros(3))
    np.testing.assert_array_equal(S.rmatvec(np.ones(3)), np.zeros(4))
    np.testing.assert_array_equal(S.row_squared_norms(), np.zeros(3))
    empty = SparseRows.from_rows([], 4)
    assert empty.shape == (0, 4)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    d=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_slice_and_concatenate_match_dense(n, d, seed, data):
    rng = np.random.default_rng(seed)
    S, A = _random_sparse(rng, n, d, density=0.4)
    start = data.draw(st.integers(0, n))
    stop = data.draw(st.integers(start, n))
    part = S.slice_rows(start, stop)
    assert part.shape == (stop - start, d)
    np.testing.assert_array_equal(part.to_dense(), A[start:stop])
    np.testing.assert_allclose(part.row_squared_norms(), (A[start:stop] ** 2).sum(1), rtol=1e-12)
    # Cut into pieces (slices of slices included) and glue back together.
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=4)))
    bounds = [0, *cuts, n]
    pieces = [S.slice_rows(a, b) for a, b in itertools.pairwise(bounds)]
    glued = SparseRows.concatenate(pieces)
    np.testing.assert_array_equal(glued.to_dense(), A)
    np.testing.assert_array_equal(glued.indptr, S.indptr)
    w = rng.standard_normal(d)
    np.testing.assert_allclose(glued.matvec(w), A @ w, rtol=1e-12, atol=1e-12)
    # Concatenating slices of slices.
    inner = S.slice_rows(start, stop)
    mid = inner.n_samples // 2
    again = SparseRows.concatenate(
        [inner.slice_rows(0, mid), inner.slice_rows(mid, inner.n_samples)]
    )
    np.testing.assert_array_equal(again.to_dense(), A[start:stop])


@pytest.mark.parametrize(
    "params",
    [
        dict(learning_rate=0.3),
        dict(learning_rate=0.3, l2=0.02, l1=0.01),
        dict(learning_rate=0.2, optimizer="adagrad", l1=0.001),
        dict(learning_rate=0.5, learning_rate_schedule="inverse_scaling"),
        dict(learning_rate=0.2, optimizer="adagrad"),
        dict(learning_rate=0.01, optimizer="adagrad", reduction="sum"),
    ],
)
@pytest.mark.parametrize("m", [1, 8, 64])
@pytest.mark.parametrize(
    "d,density", [(50, 0.1), (4096, 0.001)], ids=["dense-gradient", "column-gradient"]
)
def test_training_on_sparse_equals_training_on_dense(params, m, d, density):
    """Both sparse steps (the gradient over all columns, or kept at the touched columns when
    nnz ≪ d and there is no regulariser) against the same rows as a dense matrix."""
    rng = np.random.default_rng(m)
    n_batches = 12
    S, A = _random_sparse(rng, m * n_batches, d, density=density)
    y = (rng.random(m * n_batches) < 0.4).astype(float)
    sw = rng.uniform(0, 2, m * n_batches)
    sparse_model = OnlineLogisticRegression(d, **params)
    dense_model = OnlineLogisticRegression(d, **params)
    column_steps = 0
    for k in range(n_batches):
        lo, hi = k * m, (k + 1) * m
        a = sparse_model.learn_batch(S.slice_rows(lo, hi), y[lo:hi], sw[lo:hi])
        column_steps += a.sums.gradient_columns is not None
        b = dense_model.learn_batch(A[lo:hi], y[lo:hi], sw[lo:hi])
        assert a.loss == pytest.approx(b.loss, rel=1e-12)
        assert a.n_misclassified == b.n_misclassified
        assert a.gradient_norm == pytest.approx(b.gradient_norm, rel=1e-12)
        if m > 1:
            assert a.gradient_variance == pytest.approx(b.gradient_variance, rel=1e-10)
    regularised = params.get("l1") or params.get("l2")
    assert column_steps == (n_batches if d == 4096 and m > 1 and not regularised else 0)
    np.testing.assert_allclose(sparse_model.coef_, dense_model.coef_, rtol=1e-12, atol=1e-15)
    assert sparse_model.intercept_ == pytest.approx(dense_model.intercept_, rel=1e-12)
    S_test, A_test = _random_sparse(rng, 10, d)
    np.testing.assert_allclose(
        sparse_model.predict_proba(S_test), dense_model.predict_proba(A_test), rtol=1e-12
    )


def test_sparse_input_with_wrong_width_is_rejected():
    S, _ = _random_sparse(np.random.default_rng(0), 2, 5)
    with pytest.raises(ValueError):
        OnlineLogisticRegression(6).learn_batch(S, [0, 1])


# ------------------------------------------------------------------------------ hashing

NAMES = ["age", "country=FR", "", "é", "日本語", "a" * 1000, "x=1", "x=01", "Age", "age "]


def _murmur(name: str) -> int:
    return reference_murmurhash3_32(name.encode("utf-8"), 0)


def test_hash_is_the_documented_murmurhash3_x86_32_seed_0():
    for name in NAMES:
        assert feature_hash(name) == _murmur(name)
        for bits in (1, 5, 18, MAX_HASH_BITS):
            assert feature_index(name, bits) == _murmur(name) % (1 << bits)


def test_hash_golden_values():
    # Pinned so that a change of hash (which would silently scramble every trained hashed
    # model) fails a test. Values: sklearn.utils.murmurhash3_32(name, 0, positive=True) of
    # the UTF-8 name (the same as the Python transcription of the reference algorithm).
    assert feature_hash("age") == 717653329 == _murmur("age")
    assert feature_index("age", 18) == 717653329 & 0x3FFFF
    assert feature_index("country=FR", 20) == 3100778771 & 0xFFFFF
    assert feature_hash("") == 0
    assert feature_hash("é") == 269551495
    assert FEATURE_HASH == "murmurhash3_x86_32/seed=0/utf-8"


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=40), bits=st.integers(1, MAX_HASH_BITS))
def test_hash_index_in_range(name, bits):
    i = feature_index(name, bits)
    assert isinstance(i, int) and 0 <= i < (1 << bits)
    assert i == feature_hash(name) % (1 << bits)


def test_hash_is_stable_across_processes():
    code = (
        "import json, sys; from streamsgd.core.hashing import feature_index;"
        "names = json.loads(sys.stdin.read());"
        "print(json.dumps([[feature_index(n, b) for b in (4, 18, 30)] for n in names]));"
        "print(hash('age'))"
    )
    import json

    here = [[feature_index(n, b) for b in (4, 18, 30)] for n in NAMES]
    salts = []
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(NAMES),
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=ROOT,
        ).stdout.splitlines()
        assert json.loads(out[0]) == here
        salts.append(out[1])
    # The subprocesses really had different str hash salts (so Python's hash() would differ).
    assert salts[0] != salts[1]


def test_readers_in_other_threads_see_whole_sparse_steps():
    """The sparse step writes θ in place; a reader's snapshot (``parameters``, what /predict
    and /model use) must always be θ after some whole number of steps, never a mix. (Large
    enough that numpy releases the GIL while copying and assigning: without the lock this
    test sees torn snapshots.)"""
    rng = np.random.default_rng(17)
    d, m = 1 << 18, 2048  # nnz = 24,576 < d/8: the in-place column step
    n_batches = 30
    S = SparseRows(
        np.arange(0, m * n_batches * 12 + 1, 12, dtype=np.int64),
        rng.integers(0, d, m * n_batches * 12),
        rng.standard_normal(m * n_batches * 12),
        d,
    )
    y = (rng.random(m * n_batches) < 0.5).astype(float)
    model = OnlineLogisticRegression(d, learning_rate=0.5)

    def digest(theta: np.ndarray) -> bytes:
        return hashlib.blake2b(theta.tobytes(), digest_size=16).digest()

    states = {digest(model.parameters)}
    seen: list[bytes] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(digest(model.parameters))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        # Train (cycling over the batches) until the reader has taken 50 snapshots, so that
        # reads overlap writes however the threads are scheduled.
        for step in range(100 * n_batches):
            if len(seen) >= 50:
                break
            k = step % n_batches
            stats = model.learn_batch(S.slice_rows(k * m, (k + 1) * m), y[k * m : (k + 1) * m])
            assert stats.sums.gradient_columns is not None
            states.add(digest(model.parameters))
    finally:
        stop.set()
        reader.join()
    assert len(seen) >= 50
    assert set(seen) <= states
