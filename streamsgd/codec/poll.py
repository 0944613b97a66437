"""One poll's records in, decoded runs and rejections out: the run loop's only decode entry.

:func:`decode_poll` parses every record value at most twice (once in the run lane, once
more only if that lane declines its run) and never checks a record twice for the same
thing. Three lanes, fastest first, all with the reasons of :meth:`Decoder.decode`:

1. **run lane** — a run of single-sample records (consecutive offsets of one partition):
   dense ``{"x", "y"}`` validated with C-level passes over the whole run
   (:meth:`Decoder.run_rows`), or with hashing the named records ``{"features", "y",
   "weight"}`` parsed and hashed straight from their bytes by compiled code
   (:mod:`._named_json`), one :class:`DecodedRun` per stretch of records it accepts; it
   declines every record it does not fully understand, which the next lanes decode.
2. **row lane** — when the run lane declines (a weight, a bad record, another form),
   the single dense samples of the run are still collected into runs of Python rows and
   converted, and checked for finiteness, once per run (:func:`dense_matrix`).
3. **record lane** — any other record (batches, binary, named features, pre-decoded
   samples) is one :class:`DecodedRun` of its own samples.

A source may poll a :class:`ValueRun` (a file's lines): values of one partition, no record
object built unless a record is rejected.

A record whose value the source could not hold (``original_size_bytes`` set, e.g. a line
longer than the record limit) is rejected as ``too_large`` without being parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..core.sparse import SparseRows
from ..core.types import FloatArray, IndexArray
from ._named_json import parse_named, parse_named_lines
from .binary import BINARY_MAGIC
from .decoder import Decoder, DenseRow
from .records import Features, RecordRejected, Samples, dense_matrix
from .value_run import ValueRun


class PolledRecord(Protocol):
    """What :func:`decode_poll` reads of a record
    (:class:`streamsgd.training.ports.SourceRecord`)."""

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
# parse_named's result: accepted, indptr, indices, data, y, weight, weighted.
Parsed = tuple[Any, IndexArray, IndexArray, FloatArray, FloatArray, FloatArray, Any]


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
    if isinstance(records, ValueRun) and records.lines is not None and decoder.sparse:
        # Lines left in their chunk: parsed there, no bytes object per line.
        assert decoder.hash_bits is not None
        chunk, starts, ends = records.lines
        parsed = parse_named_lines(
            chunk,
            starts,
            ends,
            decoder.hash_bits,
            decoder.max_record_bytes,
            decoder.max_sample_weight,
        )
        if len(starts):
            _named_runs(decoder, records, parsed, out)
        return out
    if isinstance(records, ValueRun):  # one run already, its values at hand
        values: Sequence[bytes | None] = records.values
        if records.original_sizes:  # rare: lines over the record limit
            values = [None if k in records.original_sizes else v for k, v in enumerate(values)]
        if values:
            _decode_run(decoder, records, out, values)
        return out
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


def _decode_run(
    decoder: Decoder,
    run: Sequence[PolledRecord],
    out: list[Decoded],
    values: Sequence[bytes | None] | None = None,
) -> None:
    """Records of one partition at consecutive offsets, each with a value to decode;
    ``values``: their values, None for one the source could not hold (default: read from
    the records)."""
    if values is None:
        values = [
            None if r.original_size_bytes is not None else r.value for r in run
        ]  # a truncated value is declined by both lanes below
    if decoder.sparse:
        _named_lane(decoder, run, values, out)
        return
    # None: a truncated value (or a tombstone, which parse_run declines all the same).
    objs = None if None in values else decoder.parse_run(values)
    if objs is not None:
        rows = decoder.run_rows(objs)
        if rows is not None:
            first = run[0]
            out.append(DecodedRun(first.partition, first.offset, rows[0], rows[1], None, True))
            return
    _RowLane(decoder, out).decode(run, objs)


def _named_lane(
    decoder: Decoder,
    run: Sequence[PolledRecord],
    values: Sequence[bytes | None],
    out: list[Decoded],
) -> None:
    """With hashing: the records of the named form parsed in one compiled call
    (:func:`~streamsgd.codec._named_json.parse_named`) into one :class:`DecodedRun` per
    stretch of consecutive accepted records; each record it declines (another form, or any
    record the decoder would reject) goes to the row lane, which gives its samples or its
    reason exactly as :meth:`Decoder.decode` does."""
    assert decoder.hash_bits is not None
    parsed = parse_named(
        values, decoder.hash_bits, decoder.max_record_bytes, decoder.max_sample_weight
    )
    _named_runs(decoder, run, parsed, out)


def _named_runs(
    decoder: Decoder, run: Sequence[PolledRecord], parsed: Parsed, out: list[Decoded]
) -> None:
    """The runs of accepted records and the row lane's items of the declined ones."""
    accepted, indptr, indices, data, y, weight, weighted = parsed
    X = SparseRows(indptr, indices, data, decoder.n_features)
    n = len(accepted)
    if len(y) == n:  # the common case: every record parsed
        w = weight if weighted.any() else None
        out.append(DecodedRun(run[0].partition, run[0].offset, X, y, w, True))
        return
    declined = np.flatnonzero(accepted == 0).tolist()
    row = start = 0  # the next accepted row, the next record
    for stop in [*declined, n]:
        if stop > start:  # records start .. stop - 1 were all accepted: rows row .. row + k
            k = stop - start
            w = weight[row : row + k] if weighted[row : row + k].any() else None
            part = X if k == len(y) else X.slice_rows(row, row + k)
            first = run[start]
            out.append(DecodedRun(first.partition, first.offset, part, y[row : row + k], w, True))
            row += k
        if stop < n:
            _RowLane(decoder, out).decode([run[stop]], None)
        start = stop + 1


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
