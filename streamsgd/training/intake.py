"""The intake of the training loop: poll → :func:`~streamsgd.codec.decode_poll` → the
minibatch buffer, rejected records to the dead-letter sink (docs/design.md#the-data-path).

The same for a single trainer and for every replica of a job: what differs is only when the
buffered samples become steps (the stepper's business, :mod:`streamsgd.training.stepper`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..codec import Decoder, RecordRejected, Rejection, decode_poll
from .buffer import MinibatchBuffer
from .ports import DeadLetterSink, Sensor, Source, SourceRecord

log = logging.getLogger("streamsgd.service")


@dataclass
class Intake:
    """Records in, samples buffered with their exact positions, rejections dead-lettered.

    Parameters
    ----------
    source, decoder
        Where records come from and how they become samples.
    dead_letter : DeadLetterSink or None
        Where rejected records go (with their reason).
    sensors : sequence of Sensor
        Told what was consumed, rejected and dead-lettered.
    changed : callable
        Called when a rejection changed what a checkpoint must hold.

    Attributes
    ----------
    buffer : MinibatchBuffer
        Replaced when the run adopts a state (a checkpoint, or the replicas' agreed one).
    dead_letters_unflushed : int
        Dead letters sent since the last delivery.
    undelivered : bool
        The last delivery failed: no checkpoint may pass the records it holds.
    """

    source: Source
    decoder: Decoder
    dead_letter: DeadLetterSink | None
    sensors: Sequence[Sensor]
    changed: Callable[[], None]
    buffer: MinibatchBuffer = field(default_factory=MinibatchBuffer, init=False)
    dead_letters_unflushed: int = field(default=0, init=False)
    undelivered: bool = field(default=False, init=False)

    def poll(
        self,
        timeout_seconds: float,
        room: Callable[[], int | None],
        learn: Callable[[], None] | None = None,
    ) -> int:
        """Poll the source once and take in what came; returns the number of records.

        ``room`` gives, before each decoded item, how many more samples may be buffered
        (None: no limit); ``learn`` is called after each item (a single trainer learns every
        full minibatch as it fills, so a poll never buffers more than a minibatch ahead).
        """
        records = self.source.poll(timeout_seconds)
        if records:
            newest = records[-1].timestamp_ms
            for s in self.sensors:
                s.records_consumed(len(records))
                if newest is not None:
                    s.record_timestamp(newest / 1000.0)
            self.take_in(records, room, learn)
        return len(records)

    def take_in(
        self,
        records: Sequence[SourceRecord],
        room: Callable[[], int | None],
        learn: Callable[[], None] | None = None,
    ) -> None:
        """Decode a poll's records into the buffer (see :meth:`poll`). Records past the
        room are left unread: their positions do not advance."""
        for item in decode_poll(self.decoder, records):
            remaining = room()
            if remaining is not None and remaining <= 0:
                return
            if isinstance(item, Rejection):
                self.reject(item.record, item.error)
            else:
                self.buffer.append_decoded(item, remaining)
            if learn is not None:
                learn()

    def reject(self, record: SourceRecord, exc: RecordRejected) -> None:
        """Dead-letter and pass over a record that cannot be learned; it enters the totals
        when its position is passed, with the samples before it."""
        for s in self.sensors:
            s.record_rejected(exc.reason)
        if self.dead_letter is not None:
            self.dead_letter.send(record, exc.reason, exc.detail)
            self.dead_letters_unflushed += 1
            for s in self.sensors:
                s.record_dead_lettered()
        self.buffer.append_empty(record.partition, record.offset)
        self.changed()

    def flush_dead_letters(self) -> str | None:
        """Deliver the dead letters sent so far: an offset is never committed past a
        rejected record whose dead letter is not delivered. Returns the failure, if any."""
        if self.dead_letter is None:
            return None
        try:
            self.dead_letter.flush()
        except Exception as exc:
            self.undelivered = True
            return f"dead-letter delivery failed: {exc}"
        self.dead_letters_unflushed = 0
        self.undelivered = False
        return None
