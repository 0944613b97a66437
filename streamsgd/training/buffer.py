"""FIFO buffer that cuts a stream of records into minibatches of exactly m samples.

A record may hold one sample or many (the batched wire format), so a minibatch may end in
the middle of a record. The buffer therefore tracks, per partition, the *position* after the
last sample it has handed out: the next record offset to read and how many samples of that
record are already consumed. Records with no samples (rejected ones) advance the position
once every sample before them has been handed out.

After a restart inside a record (``skip_samples`` > 0), the buffer drops that record's
samples already learned when the record is read again (:meth:`MinibatchBuffer.append_decoded`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..codec import DecodedRun
from ..core.sparse import SparseRows
from ..core.types import FloatArray

Features = FloatArray | SparseRows


@dataclass(frozen=True)
class Position:
    """Where to resume a partition: ``offset`` is the next record to read, of which the
    first ``skip_samples`` samples were already consumed."""

    offset: int
    skip_samples: int = 0


@dataclass
class _Chunk:
    X: Features | None
    y: FloatArray
    weight: FloatArray | None
    partition: str
    offset: int
    first_sample: int
    record_size: int
    # A run of single-sample records at offsets offset, offset + 1, ...: sample k of the
    # chunk is record offset + k.
    one_per_record: bool = False
    # Rows of X already handed out (y and weight are kept cut to the rows still held): a
    # take reads only its own rows instead of also re-slicing the rest, O(k) not O(chunk).
    row_start: int = 0

    @property
    def n_samples(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Minibatch:
    """m samples taken from the buffer, in arrival order."""

    X: Features
    y: FloatArray
    sample_weight: FloatArray | None

    @property
    def n_samples(self) -> int:
        return len(self.y)


def _concatenate(parts: list[Features]) -> Features:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], SparseRows):
        return SparseRows.concatenate(parts)  # type: ignore[arg-type]
    return np.concatenate(parts)  # type: ignore[arg-type]


def slice_rows(X: Features, start: int, stop: int) -> Features:
    """Rows [start, stop) of a dense array or of :class:`SparseRows`."""
    if isinstance(X, SparseRows):
        return X.slice_rows(start, stop)
    return X[start:stop]


class MinibatchBuffer:
    """Holds samples until a minibatch of the requested size can be taken.

    ``positions`` maps each partition to the :class:`Position` right after the last sample
    handed out by :meth:`take` (or the last empty record passed), i.e. what a checkpoint taken
    after the step on that minibatch covers.
    """

    def __init__(self, positions: dict[str, Position] | None = None) -> None:
        self._chunks: deque[_Chunk] = deque()
        self.n_samples = 0
        self.positions: dict[str, Position] = dict(positions or {})
        # Empty (rejected) records whose position was passed: a replica reports them with
        # the step whose positions cover them, so a rolled-back step does not count them.
        self.passed_empty = 0
        # Records partly learned before a restart, per partition: skip their first samples.
        self._partial = {p: pos for p, pos in self.positions.items() if pos.skip_samples}

    def __len__(self) -> int:
        return self.n_samples

    @property
    def head_samples(self) -> int:
        """Samples held by the first chunk: a take of at most this many copies no rows."""
        return self._chunks[0].n_samples if self._chunks else 0

    def append(
        self,
        X: Features,
        y: FloatArray,
        sample_weight: FloatArray | None,
        partition: str,
        offset: int,
        first_sample: int = 0,
        record_size: int | None = None,
    ) -> None:
        """Add samples ``first_sample .. first_sample + len(y)`` of a record of
        ``record_size`` samples (default: exactly those). ``first_sample`` > 0 when the
        leading samples were consumed before a restart; a ``record_size`` beyond the end
        when the rest is not wanted (a sample limit), so the record stays unfinished."""
        if record_size is None:
            record_size = first_sample + len(y)
        if len(y) == 0:
            self.append_empty(partition, offset)
            return
        self._chunks.append(
            _Chunk(X, y, sample_weight, partition, offset, first_sample, record_size)
        )
        self.n_samples += len(y)

    def append_run(
        self,
        X: Features,
        y: FloatArray,
        sample_weight: FloatArray | None,
        partition: str,
        first_offset: int,
    ) -> None:
        """Add single-sample records at consecutive offsets ``first_offset, ...`` at once
        (one chunk instead of one per record)."""
        if len(y):
            self._chunks.append(
                _Chunk(X, y, sample_weight, partition, first_offset, 0, 1, one_per_record=True)
            )
            self.n_samples += len(y)

    def append_empty(self, partition: str, offset: int) -> None:
        """A record that contributes no samples (rejected); it is handled in order."""
        self._chunks.append(_Chunk(None, np.zeros(0), None, partition, offset, 0, 0))
        self._pass_empty()

    def _pass_empty(self) -> None:
        while self._chunks and self._chunks[0].n_samples == 0:
            chunk = self._chunks.popleft()
            self.positions[chunk.partition] = Position(chunk.offset + 1)
            self.passed_empty += 1

    def take(self, n_samples: int) -> Minibatch:
        """Remove and return the first ``min(n_samples, len(self))`` samples (≥ 1)."""
        want = min(n_samples, self.n_samples)
        if want < 1:
            raise ValueError("the buffer is empty")
        xs: list[Features] = []
        ys: list[FloatArray] = []
        ws: list[FloatArray | None] = []
        got = 0
        while got < want:
            chunk = self._chunks[0]
            if chunk.X is None:  # an empty (rejected) record between samples
                self._chunks.popleft()
                self.positions[chunk.partition] = Position(chunk.offset + 1)
                self.passed_empty += 1
                continue
            k = min(chunk.n_samples, want - got)
            start = chunk.row_start
            if k == chunk.n_samples:
                self._chunks.popleft()
                xs.append(chunk.X if start == 0 else slice_rows(chunk.X, start, start + k))
                ys.append(chunk.y)
                ws.append(chunk.weight)
            else:
                xs.append(slice_rows(chunk.X, start, start + k))
                ys.append(chunk.y[:k])
                ws.append(None if chunk.weight is None else chunk.weight[:k])
                chunk.row_start = start + k
                chunk.y = chunk.y[k:]
                chunk.weight = None if chunk.weight is None else chunk.weight[k:]
            if chunk.one_per_record:
                chunk.offset += k
                self.positions[chunk.partition] = Position(chunk.offset)
                got += k
                continue
            chunk.first_sample += k
            if chunk.first_sample == chunk.record_size:
                self.positions[chunk.partition] = Position(chunk.offset + 1)
            else:
                self.positions[chunk.partition] = Position(chunk.offset, chunk.first_sample)
            got += k
        self.n_samples -= want
        self._pass_empty()
        weight: FloatArray | None = None
        if any(w is not None for w in ws):
            weight = np.concatenate(
                [np.ones(len(y)) if w is None else w for w, y in zip(ws, ys, strict=True)]
            )
        y_all = ys[0] if len(ys) == 1 else np.concatenate(ys)
        return Minibatch(_concatenate(xs), y_all, weight)

    def discard_partitions(self, partitions: set[str]) -> None:
        """Drop buffered samples of partitions this consumer no longer owns; their positions
        stay, so a later assignment resumes right after the last applied sample."""
        kept = [c for c in self._chunks if c.partition not in partitions]
        self._chunks = deque(kept)
        self.n_samples = sum(c.n_samples for c in kept)
        self._pass_empty()
        for partition in partitions:
            position = self.positions.get(partition)
            if position is not None and position.skip_samples:
                self._partial[partition] = position

    def move_position(self, partition: str, offset: int | None) -> None:
        """Drop the partition's buffered samples and set its position to ``offset`` (None:
        no position, so that it starts where the source decides)."""
        self.discard_partitions({partition})
        self._partial.pop(partition, None)
        if offset is None:
            self.positions.pop(partition, None)
        else:
            self.positions[partition] = Position(offset)

    # ------------------------------------------------------------------ decoded records
    def append_decoded(self, run: DecodedRun, max_samples: int | None = None) -> None:
        """Add a decoded run (:func:`streamsgd.codec.decode_poll`), at most ``max_samples``
        of its samples (None: all); a record cut short by the limit stays unfinished."""
        if run.one_per_record:
            self._append_records(run, max_samples)
            return
        first = 0
        partial = self._partial.get(run.partition)
        if partial is not None and partial.offset == run.first_offset:
            first = partial.skip_samples
            del self._partial[run.partition]
        n = run.n_samples
        stop = n if max_samples is None else min(n, first + max_samples)
        part = run if (first, stop) == (0, n) else _rows(run, first, stop)
        self.append(
            part.X,
            part.y,
            part.weight,
            run.partition,
            run.first_offset,
            first_sample=first,
            record_size=n,
        )

    def _append_records(self, run: DecodedRun, max_samples: int | None) -> None:
        """Single-sample records at consecutive offsets: one chunk."""
        n = run.n_samples if max_samples is None else min(run.n_samples, max_samples)
        partial = self._partial.get(run.partition)
        if partial is not None and run.first_offset <= partial.offset < run.first_offset + n:
            # A one-sample record cannot be partly learned: the partial position came from
            # another value at that offset, so that record is passed over.
            k = partial.offset - run.first_offset
            del self._partial[run.partition]
            self._append_records(_rows(run, 0, k), None)
            self.append_empty(run.partition, partial.offset)
            self._append_records(_rows(run, k + 1, n), None)
        elif n:
            part = run if n == run.n_samples else _rows(run, 0, n)
            self.append_run(part.X, part.y, part.weight, run.partition, run.first_offset)


def _rows(run: DecodedRun, start: int, stop: int) -> DecodedRun:
    """Samples [start, stop) of a run (offsets shift with them for one sample per record)."""
    return DecodedRun(
        run.partition,
        run.first_offset + (start if run.one_per_record else 0),
        slice_rows(run.X, start, stop),
        run.y[start:stop],
        None if run.weight is None else run.weight[start:stop],
        run.one_per_record,
    )
