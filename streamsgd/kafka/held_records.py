"""Records held back until the broker has confirmed the log they were fetched from
(docs/operations.md#what-the-trainer-does-for-each-kafka-operation).

librdkafka gives no event when a topic is deleted and created again between two of its
metadata refreshes: it goes on fetching at the same offsets, now in the new log, and it does
not expose the topic id it caches. What can be known is the broker's topic id *now*: a
question asked after a record was fetched that answers with the id the trainer verified at
start proves that the record came from that log (a topic id is never reused, so the topic
cannot have been replaced before the fetch and be the old one at the answer). So every
fetched record is held until such an answer; a different id ends the run before any record
fetched since the last good answer is returned. No Kafka library is imported here.

The cost is latency, not throughput: questions are asynchronous (the consumer keeps
fetching), at most one in flight and one every :data:`ASK_INTERVAL_SECONDS` while records
arrive, none while the topic is idle. A record waits at most an interval plus two answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from ..training.ports import SourceRecord
from .identity import LogIdentity

ASK_INTERVAL_SECONDS = 0.05
"""Between two questions while records arrive: a record waits at most this plus two broker
answers (local broker: a few ms each); one small metadata request per interval at most."""

HOLD_LIMIT_RECORDS = 100_000
"""Held records past which the source stops fetching until answers release some: a broker
that answers fetches but not descriptions must not make the trainer's memory grow."""

ANSWER_SLICE_SECONDS = 0.01
"""While an answer is due, how long the consumer's poll may block: the records it answers
for are returned within this of its arrival."""


class Question(Protocol):
    """A question to the broker about the topic's identity, on its way."""

    def done(self) -> bool: ...

    def identity(self) -> LogIdentity | None:
        """The answer (once done); None if the broker did not answer or did not say."""
        ...


class HeldRecords:
    """Fetched records, returned only once the broker confirmed the log after their fetch.

    Parameters
    ----------
    ask : callable
        Starts a question about the topic's identity now; never blocks.
    check : callable
        Raises (e.g. :class:`~.identity.LogReplacedError`) when an identity is not the one
        the positions belong to; returns otherwise.
    clock : callable
        Monotonic seconds.
    interval_seconds : float
        The least time between two questions.
    """

    def __init__(
        self,
        ask: Callable[[], Question],
        check: Callable[[LogIdentity], None],
        clock: Callable[[], float],
        interval_seconds: float = ASK_INTERVAL_SECONDS,
    ) -> None:
        self.ask = ask
        self.check = check
        self.clock = clock
        self.interval_seconds = interval_seconds
        self._held: list[SourceRecord] = []
        self._covered = 0  # the first _covered held records were fetched before _question
        self._question: Question | None = None
        self._next_ask = 0.0

    def __len__(self) -> int:
        return len(self._held)

    @property
    def full(self) -> bool:
        """As many records held as :data:`HOLD_LIMIT_RECORDS`: fetch no more for now."""
        return len(self._held) >= HOLD_LIMIT_RECORDS

    def hold(self, records: Iterable[SourceRecord]) -> None:
        """Records just fetched (in the order they are to be returned)."""
        self._held.extend(records)

    def release(self) -> list[SourceRecord]:
        """The held records a good answer covers, oldest first ([] if none yet); asks again
        when records wait that no question covers. Raises what ``check`` raises."""
        released: list[SourceRecord] = []
        question = self._question
        if question is not None and question.done():
            self._question = None
            identity = question.identity()
            if identity is not None and identity.topic_id is not None:
                self.check(identity)
                released = self._held[: self._covered]
                del self._held[: self._covered]
            self._covered = 0  # no answer: the next question covers them again
        now = self.clock()
        if self._held and self._question is None and now >= self._next_ask:
            self._question = self.ask()
            self._covered = len(self._held)
            self._next_ask = now + self.interval_seconds
        return released

    def confirmed(self) -> list[SourceRecord]:
        """Every held record: the caller checked the identity, with a question asked after
        all of them were fetched, and it was the verified one."""
        released, self._held = self._held, []
        self._covered = 0  # a question on its way now answers for none of what comes next
        return released

    def drop(self, partitions: set[str] | None = None) -> None:
        """Forget the held records of ``partitions`` (all if None): the partitions were
        revoked, assigned again or repositioned, and their records will be fetched again
        from the position the service holds."""
        if partitions is None:
            self._held, self._covered = [], 0
            return
        kept_covered = [r for r in self._held[: self._covered] if r.partition not in partitions]
        rest = [r for r in self._held[self._covered :] if r.partition not in partitions]
        self._held = kept_covered + rest
        self._covered = len(kept_covered)

    def wait_seconds(self, timeout_seconds: float) -> float:
        """How long the consumer's poll may block now: ``timeout_seconds`` while nothing is
        held; else until an answer may have come, or the next question is due."""
        if not self._held:
            return timeout_seconds
        if self._question is not None:
            return min(timeout_seconds, ANSWER_SLICE_SECONDS)
        return min(timeout_seconds, max(self._next_ask - self.clock(), 0.0))
