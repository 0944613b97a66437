"""Which fetched records and offset-reset errors belong to the current assignment.

librdkafka hands out a batch that can mix records and errors of several partitions, and an
error can be about an assignment the source has already replaced: assigning a partition with
no committed offset raises ``_AUTO_OFFSET_RESET``; the source then assigns it at an explicit
offset, and a second, late copy of that error can still arrive after records of the new
assignment were handed out. Acting on it moved the partition back to its start and the
trainer learned those records twice (a fault-suite run: 48 samples learned from 32 records).

:class:`DeliveryCursor` keeps, per partition of the current assignment, the offset of the next
record the source may hand out, so that a late error is recognised and a record the source
already handed out is never handed out again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..training.ports import SourceRecord
from .group import KafkaRecordMetadata


class DeliveryCursor:
    """Per partition number: the offset of the next record the source may hand out.

    A partition is unknown until it is assigned at an explicit offset (≥ 0) or hands out its
    first record; logical starts (beginning, end, the committed offset) are negative in
    librdkafka and say nothing yet.
    """

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def restart(self, offsets: Mapping[int, int]) -> None:
        """A new assignment (a rebalance, or the ranks' rule): partition → start offset.
        Records before a start are handed out again, on purpose (the trainer's position)."""
        self._next = {number: offset for number, offset in offsets.items() if offset >= 0}

    def moved(self, number: int, offset: int) -> None:
        """The source repositioned one partition (an offset-reset decision)."""
        if offset >= 0:
            self._next[number] = offset

    def accept(self, number: int, offset: int) -> bool:
        """Whether the record at ``offset`` is new; if so the cursor moves past it.

        A record below the cursor was handed out already under this assignment: it was
        fetched again after a reposition within the same batch."""
        expected = self._next.get(number)
        if expected is not None and offset < expected:
            return False
        self._next[number] = offset + 1
        return True

    def reset_is_stale(self, number: int, offset: int | None) -> bool:
        """Whether an offset-reset error for ``number`` at ``offset`` (None or negative: the
        partition had no offset at all) is about a position the source has since left.

        Stale when the partition now has an explicit position and the error names no offset
        or one below it; an error at or past the position is current (e.g. retention deleted
        the records there) and must be acted on, or the partition would stall."""
        expected = self._next.get(number)
        if expected is None:
            return False
        return offset is None or offset < 0 or offset < expected


def source_record(message: Any, topic: str, partition: int, key: str) -> SourceRecord:
    """The record a librdkafka message without error carries (its headers with bytes
    values only; a timestamp of kind 0 is no timestamp)."""
    kind, timestamp = message.timestamp()
    raw = message.headers()
    pairs = (raw.items() if isinstance(raw, dict) else raw) if raw else ()
    return SourceRecord(
        key,
        int(message.offset() or 0),
        message.value(),
        None,
        timestamp if kind else None,
        KafkaRecordMetadata(
            topic, partition, message.key(), [(k, v) for k, v in pairs if isinstance(v, bytes)]
        ),
    )
