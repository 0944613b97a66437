"""Where a partition resumes when the client cannot read at its position
(docs/operations.md#what-the-trainer-does-for-each-kafka-operation).

The clients are told never to reset a position themselves (kafka-python
``auto_offset_reset='none'``, librdkafka ``auto.offset.reset=error``): they report, and the
source decides here, so that every jump is accounted.

* A position before the log start (retention, ``delete_records``): resume at the log start;
  the records in between can no longer be read: a WARNING names the partition and the count,
  and ``streamsgd_records_skipped_total{reason="retention"}`` counts them.
* A position past the log end (the log was truncated under it, e.g. an unclean leader
  election): resume at the end, with a WARNING; nothing is skipped that still exists.
* No position at all (no checkpoint position, no committed offset): ``--auto-offset-reset``
  applies only when the trainer holds no position of the topic (its first start); a
  partition that appears later starts at its beginning (every record of it is learned).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger("streamsgd.kafka")

RETENTION = "retention"


@dataclass(frozen=True)
class Jump:
    """Resume at ``offset``; ``skipped`` records can no longer be read (``reason``)."""

    offset: int
    skipped: int = 0
    reason: str = RETENTION


def out_of_range(key: str, position: int, low: int, high: int) -> Jump:
    """The jump of partition ``key`` whose ``position`` lies outside ``[low, high]``."""
    if position < low:
        skipped = low - position
        log.warning(
            "%s: position %d is before the log start %d (retention or deleted records): "
            "%d records can no longer be read; resuming at %d",
            key,
            position,
            low,
            skipped,
            low,
        )
        return Jump(low, skipped)
    if position > high:
        log.warning(
            "%s: position %d is past the log end %d (the log was truncated): resuming at %d",
            key,
            position,
            high,
            high,
        )
        return Jump(high)
    return Jump(position)


class StartRule:
    """Where a partition without any position starts: "earliest" or "latest".

    ``auto_offset_reset`` applies to the partitions of the first assignment while the
    trainer holds no position of the topic (its first start); any other partition without
    a position is new to the trainer (added to the topic since), or the log is new
    (``from_beginning``): read from its beginning, so that none of its records is lost.
    """

    def __init__(self, topic: str, auto_offset_reset: str) -> None:
        self.topic = topic
        self.auto_offset_reset = auto_offset_reset
        self.initial: set[str] | None = None
        self.from_beginning = False

    def assigned(self, keys: Iterable[str]) -> None:
        """Note an assignment (the first non-empty one is the first start's)."""
        if self.initial is None and (keys := set(keys)):
            self.initial = keys

    def start_of(self, key: str, positions: Iterable[str]) -> str:
        prefix = f"{self.topic}:"
        first = (
            not self.from_beginning
            and (self.initial is None or key in self.initial)
            and not any(k.startswith(prefix) for k in positions)
        )
        if first:
            return self.auto_offset_reset
        log.info("%s has no position (new to the trainer): reading it from its start", key)
        return "earliest"
