"""One poll's records in, decoded runs and rejections out: the run loop's only decode entry.

:func:`decode_poll` parses every record value at most twice (once in the run lane, once
more only if that lane declines its run) and never checks a record twice for the same
thing. Three lanes, fastest first, all with the reasons of :meth:`Decoder.decode`:

1. **run lane** — a run of single-sample records (consecutive offsets of one partition,
   dense ``{"x", "y"}`` or with hashing ``{"features", "y"}``) validated with C-level passes
   over the whole run (:meth:`Decoder.run_rows`): one :class:`DecodedRun`.
2. **row lane** — when the run lane declines (a weight, a bad record, another form),
   the single dense samples of the run are still collected into runs of Python rows and
   converted, and checked for finiteness, once per run (:func:`dense_matrix`).
3. **record lane** — any other record (batches, binary, named features, pre-decoded
   samples) is one :class:`DecodedRun` of its own samples.

A record whose value the source could not hold (``original_size_bytes`` set, e.g. a line
longer than the record limit) is rejected as ``too_large`` without being parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Protocol

import numpy as np

from ..core.types import FloatArray
from .binary import BINARY_MAGIC
from .decoder import Decoder, DenseRow
from .records import Features, RecordRejected, Samples, dense_matrix


class PolledRecord(Protocol):
    """What :func:`decode_poll` reads of a record (:class:`streamsgd.ports.SourceRecord`)."""

    @property
    def partition(self) -> str: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def samples(self) -> Samples | None: ...

    @property
    def original_size_bytes(self) -> int | None: ...


@dataclass(frozen=True)
class DecodedRun:
    """Samples of consecutive records of one partition, in order, ready for the buffer.

    Attributes
    ----------
    partition : str
    first_offset : int
        Offset of the first record.
    X : ndarray of shape (n, d), or SparseRows of n rows
    y : ndarray of shape (n,)
    weight : ndarray of shape (n,), or None
    one_per_record : bool
        True: n records at offsets ``first_offset + k`` of one sample each. False: one
        record (at ``first_offset``) holding all n samples.
    """

    partition: str
    first_offset: int
    X: Features
    y: FloatArray
    weight: FloatArray | None
    one_per_record: bool

    @property
    def n_samples(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Rejection:
    """A record that cannot be learned, with the reason (one of ``REJECT_REASONS``)."""

    record: Any  # the PolledRecord as given, for the dead-letter sink
    error: RecordRejected

    @property
    def reason(self) -> str:
        return self.error.reason

    @property
    def detail(self) -> str:
        return self.error.detail


Decoded = DecodedRun | Rejection


def decode_poll(decoder: Decoder, records: Sequence[PolledRecord]) -> list[Decoded]:
    """Decode one poll's records, in their order, into runs and rejections.

    Parameters
    ----------
    decoder : Decoder
    records : sequence of PolledRecord
        In order per partition, as a source's ``poll`` returns them.

    Returns
    -------
    list of DecodedRun and Rejection
        In record order: every record is in exactly one item (a run covers consecutive
        offsets of one partition).
    """
    out: list[Decoded] = []
    start, n_records = 0, len(records)
    while start < n_records:
        first = records[start]
        if first.samples is not None:  # an embedded source's pre-decoded record
            s = first.samples
            out.append(DecodedRun(first.partition, first.offset, s.X, s.y, s.weight, False))
            start += 1
            continue
        end = start + 1
        while (
            end < n_records
            and records[end].samples is None
            and records[end].partition == first.partition
            and records[end].offset == first.offset + (end - start)
        ):
            end += 1
        _decode_run(decoder, records[start:end], out)
        start = end
    return out


def _decode_run(decoder: Decoder, run: Sequence[PolledRecord], out: list[Decoded]) -> None:
    """Records of one partition at consecutive offsets, each with a value to decode."""
    truncated = any(map(attrgetter("original_size_bytes"), run))
    objs = None if truncated else decoder.parse_run(list(map(attrgetter("value"), run)))
    if objs is not None:
        rows = decoder.run_rows(objs)
        if rows is not None:
            first = run[0]
            out.append(DecodedRun(first.partition, first.offset, rows[0], rows[1], None, True))
            return
    _RowLane(decoder, out).decode(run, objs)


class _RowLane:
    """Records one at a time; single dense samples are gathered into runs of rows."""

    def __init__(self, decoder: Decoder, out: list[Decoded]) -> None:
        self.decoder = decoder
        self.out = out
        self.pending: list[tuple[PolledRecord, DenseRow]] = []

    def decode(self, run: Sequence[PolledRecord], objs: list[Any] | None) -> None:
        for i, record in enumerate(run):
            try:
                item = self._decode_one(record, _UNPARSED if objs is None else objs[i])
            except RecordRejected as exc:
                self._flush()
                self.out.append(Rejection(record, exc))
                continue
            if isinstance(item, Samples):
                self._flush()
                self.out.append(
                    DecodedRun(record.partition, record.offset, item.X, item.y, item.weight, False)
                )
            else:
                self.pending.append((record, item))
        self._flush()

    def _decode_one(self, record: PolledRecord, obj: Any) -> DenseRow | Samples:
        """A dense row (finiteness still to check) or the record's samples."""
        decoder = self.decoder
        if obj is _UNPARSED:
            size = record.original_size_bytes
            if size is not None:
                raise RecordRejected(
                    "too_large",
                    f"{size} bytes > limit of {decoder.max_record_bytes} "
                    f"(only the first {len(record.value or b'')} bytes were kept)",
                )
            value = record.value
            if value and len(value) <= decoder.max_record_bytes and value[:4] == BINARY_MAGIC:
                return decoder.decode(value)
            obj = decoder.parse(value)
        row = decoder.dense_row(obj)
        return decoder.decode_object(obj) if row is None else row

    def _flush(self) -> None:
        """The pending rows as runs; a row that is not finite is rejected on its own."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        try:
            X = dense_matrix([row[0] for _, row in pending], "x")
        except RecordRejected:
            self._flush_one_by_one(pending)
            return
        self._emit(pending, X)

    def _flush_one_by_one(self, pending: list[tuple[PolledRecord, DenseRow]]) -> None:
        good: list[tuple[PolledRecord, DenseRow]] = []
        for record, row in pending:  # rare: find the rows that are not finite
            try:
                dense_matrix([row[0]], "x")
            except RecordRejected as exc:
                self._emit(good)
                good = []
                self.out.append(Rejection(record, exc))
                continue
            good.append((record, row))
        self._emit(good)

    def _emit(
        self, pending: list[tuple[PolledRecord, DenseRow]], X: FloatArray | None = None
    ) -> None:
        if not pending:
            return
        if X is None:
            X = dense_matrix([row[0] for _, row in pending], "x")
        y = np.array([row[1] for _, row in pending])
        weights = [row[2] for _, row in pending]
        w = None
        if any(v is not None for v in weights):
            w = np.array([1.0 if v is None else v for v in weights])
        first = pending[0][0]
        self.out.append(DecodedRun(first.partition, first.offset, X, y, w, True))


_UNPARSED = object()  # marker: the record's value is still to parse
