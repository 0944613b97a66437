"""Where a partition resumes when the client cannot read at its position (issue 21, item 3).

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


def without_position(key: str, first_start: bool, auto_offset_reset: str) -> str:
    """Where a partition without any position starts: "earliest" or "latest"."""
    if first_start:
        return auto_offset_reset
    log.info("%s has no position (a partition new to the trainer): reading it from its start", key)
    return "earliest"
