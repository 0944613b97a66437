"""The deferred work of the O(nnz) m = 1 loop is carried on the model between calls
(core/deferred.py): the result is the same bits however a stream is cut into calls, a state
written mid-stream resumes bit for bit, readers see the folded weights without changing
what is learned next, and another kind of step folds first.

Bit-equality is right here: each comparison replays one computation (the same steps in the
same order), only cut into calls or interrupted differently."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression, SparseRows
from streamsgd.core.sequential import learn_sequence

D = 4000
OPTIONS = [
    {},  # SGD, statistics on: μ of the mean gradient is deferred
    {"l2": 1e-3},  # σ of w
    {"l1": 1e-3, "gradient_statistics": False},  # U of the cumulative L1 prox
    {"optimizer": "adagrad", "l1": 1e-3},  # U with AdaGrad's per-coordinate sizes
    {"l2": 5.0},  # σ tiny every ~330 steps: folded where the stream says, not the cut
]


def _stream(n: int, seed: int) -> tuple[SparseRows, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 12, n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = rng.integers(0, D, indptr[-1]).astype(np.int64)
    values = rng.normal(size=indptr[-1])
    X = SparseRows(indptr, indices, values, D)
    y = (X.matvec(rng.normal(size=D)) > 0).astype(np.float64)
    return X, y


def _learn_in_cuts(model: OnlineLogisticRegression, X: SparseRows, y, cuts) -> None:
    edges = [0, *cuts, len(y)]
    for lo, hi in itertools.pairwise(edges):
        learn_sequence(model, X.slice_rows(lo, hi), y[lo:hi])


def _state(model: OnlineLogisticRegression) -> list[tuple[str, bytes]]:
    """The model's state, key by key, as bytes (a pickle of the whole dict would also
    compare which equal floats happen to be one object)."""
    return _flat(model.get_state(), "")


def _flat(state: dict, prefix: str) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for key, value in state.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append((prefix + key, pickle.dumps(value)))
    return out


@pytest.mark.parametrize("options", OPTIONS)
def test_any_cut_into_calls_gives_the_same_bits(options):
    """One call, calls cut at random (unaligned) points, one sample a call: identical. (The
    loop used to fold its scale factors at every call's end: another cut, other bits.)"""
    X, y = _stream(2500, seed=1)
    whole = OnlineLogisticRegression(D, learning_rate=0.1, **options)
    learn_sequence(whole, X, y)
    rng = np.random.default_rng(2)
    cut = OnlineLogisticRegression(D, learning_rate=0.1, **options)
    _learn_in_cuts(cut, X, y, sorted(rng.choice(np.arange(1, 2500), 40, replace=False)))
    assert _state(cut) == _state(whole)
    single = OnlineLogisticRegression(D, learning_rate=0.1, **options)
    _learn_in_cuts(single, X, y, range(1, 300))
    reference = OnlineLogisticRegression(D, learning_rate=0.1, **options)
    _learn_in_cuts(reference, X, y, [300])
    assert _state(single) == _state(reference)


@pytest.mark.parametrize("options", OPTIONS)
def test_a_state_written_mid_stream_resumes_bit_for_bit(options):
    """get_state after 1,337 samples (deferred work pending), from_state, the rest: the
    bits of the uninterrupted run (the SIGKILL + restart guarantee on one model)."""
    X, y = _stream(2500, seed=3)
    straight = OnlineLogisticRegression(D, learning_rate=0.1, **options)
    learn_sequence(straight, X, y)
    first = OnlineLogisticRegression(D, learning_rate=0.1, **options)
    learn_sequence(first, X.slice_rows(0, 1337), y[:1337])
    stored = pickle.loads(pickle.dumps(first.get_state()))
    if not options.get("l2") == 5.0:  # (σ may have just been folded there)
        assert stored.get("deferred") is not None
    resumed = OnlineLogisticRegression.from_state(stored)
    learn_sequence(resumed, X.slice_rows(1337, 2500), y[1337:])
    assert _state(resumed) == _state(straight)


def test_reads_see_the_folded_weights_and_do_not_change_the_run():
    """Predictions, θ and the state between calls are those of w = σ v (the per-sample
    loop's), and reading them leaves the next steps' bits alone."""
    X, y = _stream(2000, seed=5)
    options = {"l2": 1e-2, "learning_rate": 0.1}
    quiet = OnlineLogisticRegression(D, **options)
    _learn_in_cuts(quiet, X, y, [500, 1000, 1500])
    read = OnlineLogisticRegression(D, **options)
    per_sample = OnlineLogisticRegression(D, **options)
    for lo, hi in ((0, 500), (500, 1000), (1000, 1500), (1500, 2000)):
        learn_sequence(read, X.slice_rows(lo, hi), y[lo:hi])
        for i in range(lo, hi):
            per_sample.learn_batch(X.slice_rows(i, i + 1), y[i : i + 1])
        assert read.deferred is not None
        # w to rtol 1e-9: the loop and the per-sample steps round in different orders.
        np.testing.assert_allclose(read.coef_, per_sample.coef_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            read.decision_function(X.slice_rows(0, 50)),
            per_sample.decision_function(X.slice_rows(0, 50)),
            rtol=1e-9,
            atol=1e-12,
        )
        read.health()
        read.get_state()
    assert _state(read) == _state(quiet)


def test_a_minibatch_step_folds_first():
    """A minibatch after m = 1 blocks steps from w (folded), not from the deferred v: the
    same bits as from a state written without the deferred work (every state before it was
    carried, which must still load)."""
    X, y = _stream(600, seed=7)
    options = {"l2": 1e-2, "learning_rate": 0.1}
    model = OnlineLogisticRegression(D, **options)
    learn_sequence(model, X.slice_rows(0, 500), y[:500])
    assert model.deferred is not None
    older = {k: v for k, v in model.get_state().items() if k != "deferred"}
    folded = OnlineLogisticRegression.from_state(older)
    assert folded.deferred is None
    model.learn_batch(X.slice_rows(500, 600), y[500:])
    assert model.deferred is None
    folded.learn_batch(X.slice_rows(500, 600), y[500:])
    assert _state(model) == _state(folded)
