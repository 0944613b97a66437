"""MinibatchBuffer against a brute-force model of the stream (hypothesis).

The brute force keeps the whole appended stream as a flat list of samples plus the list of
records in append order, and a single counter `consumed`. After any sequence of takes:

* the minibatches, concatenated, are the first `consumed` samples, in order;
* each minibatch has min(requested, buffered) samples;
* the position of partition p is decided by the *last* record of p that the consumed prefix
  has reached: a record whose samples are all consumed (or an empty record with every sample
  appended before it consumed) gives (offset + 1, 0); a record consumed part-way, or one that
  was appended with fewer samples than its record_size, gives (offset, samples consumed so far
  in that record, counting `first_sample`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsgd.codec import DecodedRun
from streamsgd.core.sparse import SparseRows
from streamsgd.training.buffer import MinibatchBuffer, Position

D = 3


@dataclass
class Rec:
    partition: str
    offset: int
    first: int  # samples of the record consumed before (a restart)
    n: int  # samples appended
    record_size: int
    start: int  # global index of its first appended sample (= samples appended before it)
    empty_call: bool


def _rows(ids, sparse):
    ids = np.asarray(ids, dtype=float)
    dense = np.stack([ids, -ids, np.zeros_like(ids)], axis=1) if len(ids) else np.zeros((0, D))
    if not sparse:
        return dense
    return SparseRows.from_rows([(np.flatnonzero(r), r[np.flatnonzero(r)]) for r in dense], D)


def _dense(X):
    return X.to_dense() if isinstance(X, SparseRows) else np.asarray(X)


def _expected_positions(records, consumed, initial):
    pos = dict(initial)
    for r in records:
        if r.n == 0:
            if r.start <= consumed:
                pos[r.partition] = Position(r.offset + 1)
            else:
                break
        else:
            if r.start >= consumed:
                break
            done = min(consumed - r.start, r.n)
            if r.first + done == r.record_size:
                pos[r.partition] = Position(r.offset + 1)
            else:
                pos[r.partition] = Position(r.offset, r.first + done)
            if done < r.n:
                break
    return pos


append_op = st.tuples(
    st.just("append"),
    st.sampled_from(["p0", "p1", "p2"]),
    st.integers(0, 7),  # samples in the record (0 = rejected / empty record)
    st.integers(0, 3),  # first_sample (a resumed, partly consumed record)
    st.integers(0, 2),  # samples beyond the appended ones (record_size > first + n)
    st.booleans(),  # has weights
    st.integers(1, 3),  # offset gap
    st.booleans(),  # empty records via append_empty (else append with 0 samples)
)
take_op = st.tuples(st.just("take"), st.integers(1, 12))


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(st.one_of(append_op, take_op), max_size=40),
    sparse=st.booleans(),
    with_initial=st.booleans(),
)
def test_buffer_matches_brute_force(ops, sparse, with_initial):
    initial = {"p1": Position(5, 2)} if with_initial else {}
    buf = MinibatchBuffer(initial)
    records: list[Rec] = []
    ids_all: list[int] = []
    weights_all: list[float | None] = []
    next_offset = {"p0": 0, "p1": 5, "p2": 100}
    next_id = 0
    consumed = 0
    taken_ids: list[float] = []
    for op in ops:
        if op[0] == "append":
            _, p, n, first, extra, weighted, gap, via_empty = op
            offset = next_offset[p]
            next_offset[p] += gap
            if n == 0:
                # A record with no samples: rejected (append_empty) or fully consumed before.
                if via_empty:
                    buf.append_empty(p, offset)
                else:
                    buf.append(_rows([], sparse), np.zeros(0), None, p, offset, first_sample=first)
                records.append(Rec(p, offset, 0, 0, 0, len(ids_all), via_empty))
            else:
                ids = list(range(next_id, next_id + n))
                next_id += n
                w = np.array(ids, dtype=float) + 0.5 if weighted else None
                size = first + n + extra
                buf.append(
                    _rows(ids, sparse),
                    np.array(ids, dtype=float) % 2,
                    w,
                    p,
                    offset,
                    first_sample=first,
                    record_size=size,
                )
                records.append(Rec(p, offset, first, n, size, len(ids_all), False))
                ids_all += ids
                weights_all += list(w) if weighted else [None] * n
        else:
            k = op[1]
            available = len(ids_all) - consumed
            assert len(buf) == available
            if available == 0:
                before = dict(buf.positions)
                with pytest.raises(ValueError):
                    buf.take(k)
                assert buf.positions == before
                continue
            batch = buf.take(k)
            want = min(k, available)
            assert batch.n_samples == want
            exp_ids = ids_all[consumed : consumed + want]
            X = _dense(batch.X)
            assert X.shape == (want, D)
            assert isinstance(batch.X, SparseRows) == sparse
            np.testing.assert_array_equal(X[:, 0], exp_ids)
            np.testing.assert_array_equal(X[:, 1], -np.array(exp_ids, dtype=float))
            np.testing.assert_array_equal(batch.y, np.array(exp_ids, dtype=float) % 2)
            exp_w = weights_all[consumed : consumed + want]
            if all(w is None for w in exp_w):
                assert batch.sample_weight is None
            else:
                np.testing.assert_array_equal(
                    batch.sample_weight, [1.0 if w is None else w for w in exp_w]
                )
            consumed += want
            taken_ids += list(X[:, 0])
        assert buf.positions == _expected_positions(records, consumed, initial), (records, consumed)
        assert len(buf) == len(ids_all) - consumed
    # The concatenation of all minibatches is the appended stream, in order.
    assert taken_ids == ids_all[:consumed]


def test_empty_record_behind_samples_waits_for_them():
    buf = MinibatchBuffer()
    buf.append(_rows([0, 1, 2], False), np.zeros(3), None, "a", 10)
    buf.append_empty("a", 11)
    buf.append_empty("b", 7)
    assert buf.positions == {}
    buf.take(2)
    assert buf.positions == {"a": Position(10, 2)}
    buf.append(_rows([3, 4], False), np.zeros(2), None, "b", 8)
    buf.take(2)  # crosses the two empty records in the middle of a take
    assert buf.positions == {"a": Position(12), "b": Position(8, 1)}
    batch = buf.take(5)
    assert batch.n_samples == 1
    assert buf.positions == {"a": Position(12), "b": Position(9)}
    with pytest.raises(ValueError):
        buf.take(1)


def test_empty_record_on_an_empty_buffer_passes_at_once():
    buf = MinibatchBuffer({"a": Position(3)})
    buf.append_empty("a", 3)
    assert buf.positions == {"a": Position(4)}


def test_discard_partitions_drops_their_samples_and_keeps_positions():
    buf = MinibatchBuffer()
    buf.append(_rows([0, 1], False), np.zeros(2), None, "a", 0)
    buf.append(_rows([2, 3], False), np.zeros(2), None, "b", 0)
    buf.take(1)
    buf.append(_rows([4], False), np.zeros(1), None, "a", 1)
    buf.append_empty("b", 1)
    buf.append(_rows([5], False), np.zeros(1), None, "c", 0)
    buf.discard_partitions({"a"})
    assert len(buf) == 3
    assert buf.positions["a"] == Position(0, 1)  # last applied sample of "a" still covered
    batch = buf.take(10)
    np.testing.assert_array_equal(batch.X[:, 0], [2, 3, 5])
    assert buf.positions == {"a": Position(0, 1), "b": Position(2), "c": Position(1)}


# ------------------------------------------------------------------ decoded runs


def _run(partition: str, first_offset: int, n: int, one_per_record: bool) -> DecodedRun:
    X = np.arange(n * D, dtype=np.float64).reshape(n, D)
    return DecodedRun(partition, first_offset, X, np.arange(n) % 2.0, None, one_per_record)


def test_append_decoded_skips_the_samples_learned_before_a_restart() -> None:
    """A record restarted at Position(5, 3) gives only its samples 3.. ; later records of the
    partition and other partitions are whole."""
    buf = MinibatchBuffer({"a": Position(5, 3)})
    buf.append_decoded(_run("a", 5, 7, one_per_record=False))
    buf.append_decoded(_run("a", 6, 2, one_per_record=False))
    assert len(buf) == 4 + 2
    batch = buf.take(4)
    assert np.array_equal(batch.X, _run("a", 5, 7, False).X[3:])
    assert buf.positions["a"] == Position(6)
    buf.take(2)
    assert buf.positions["a"] == Position(7)


def test_append_decoded_stops_at_the_sample_limit_and_leaves_the_record_unfinished() -> None:
    buf = MinibatchBuffer()
    buf.append_decoded(_run("a", 0, 5, one_per_record=False), max_samples=2)
    buf.append_decoded(_run("b", 10, 5, one_per_record=True), max_samples=3)
    assert len(buf) == 5
    buf.take(5)
    assert buf.positions == {"a": Position(0, 2), "b": Position(13)}


def test_append_decoded_passes_over_a_single_sample_record_at_a_partial_position() -> None:
    """A partial position can only come from a many-sample record; if that offset now holds
    a single sample, it is passed over (as its samples up to the partial one were learned)."""
    buf = MinibatchBuffer({"a": Position(12, 1)})
    buf.append_decoded(_run("a", 10, 5, one_per_record=True))
    assert len(buf) == 4
    batch = buf.take(4)
    assert np.array_equal(batch.X, np.delete(_run("a", 10, 5, True).X, 2, axis=0))
    assert buf.positions["a"] == Position(15)


def test_revoked_partition_keeps_its_partial_position_for_a_later_assignment() -> None:
    """Samples 3 and 4 of record 5 are learned, the partition is revoked and comes back:
    the re-read record gives only its samples 5 and 6."""
    buf = MinibatchBuffer({"a": Position(5, 3)})
    buf.append_decoded(_run("a", 5, 7, one_per_record=False))
    buf.take(2)
    assert buf.positions["a"] == Position(5, 5)
    buf.discard_partitions({"a"})
    assert len(buf) == 0
    buf.append_decoded(_run("a", 5, 7, one_per_record=False))
    assert len(buf) == 2
    assert np.array_equal(buf.take(2).X, _run("a", 5, 7, False).X[5:])
