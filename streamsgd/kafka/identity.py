"""Which log the positions belong to: the topic id and the cluster id
(docs/operations.md#what-the-trainer-does-for-each-kafka-operation).

A checkpoint's positions are offsets in one log. A topic deleted and recreated under the
same name, or a broker wiped (a new cluster), is another log whose offsets mean other
records: resuming at the stored offsets would skip or re-learn records without a trace.
The source stores the identity of the log beside the positions (in the checkpoint's
``source``), compares it with the broker's before it returns the first record, and keeps
comparing while it runs. No Kafka library is imported here; each client reads the identity
its own way (:meth:`LogGuard.describe`).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..training.ports import CheckpointError, SourceFailed

log = logging.getLogger("streamsgd.kafka")

ACCEPT_OPTION = "--accept-new-topic-log"
# Between two attempts to read the identity while it is unknown (broker away, no topic).
RETRY_SECONDS = 1.0


def topic_id_text(raw: bytes) -> str:
    """A topic id's 16 bytes as Kafka's tools print it (URL-safe base64, no padding), the
    same whichever client read it."""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class LogIdentity:
    """The topic id and the cluster id of a log; None where the broker did not say."""

    topic_id: str | None = None
    cluster_id: str | None = None

    def as_checkpoint(self) -> dict[str, str]:
        """The fields to store in the checkpoint's ``source`` mapping."""
        found = {"topic_id": self.topic_id, "cluster_id": self.cluster_id}
        return {k: v for k, v in found.items() if v}

    @classmethod
    def from_checkpoint(cls, source: Mapping[str, Any]) -> LogIdentity | None:
        """The identity stored in a checkpoint's ``source``; None if it holds none (a
        checkpoint written before topic ids were recorded)."""
        topic_id, cluster_id = source.get("topic_id"), source.get("cluster_id")
        if not isinstance(topic_id, str) and not isinstance(cluster_id, str):
            return None
        return cls(
            topic_id if isinstance(topic_id, str) else None,
            cluster_id if isinstance(cluster_id, str) else None,
        )

    def differences(self, other: LogIdentity) -> list[str]:
        """What differs from ``other``, compared only where both are known."""
        out = []
        for name in ("cluster_id", "topic_id"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine and theirs and mine != theirs:
                out.append(f"{name.replace('_', ' ')} {mine} then, {theirs} now")
        return out


class LogChangedError(CheckpointError):
    """At start: the checkpoint's positions belong to another log than the broker's."""


class LogReplacedError(SourceFailed):
    """While running: the topic was recreated or the cluster replaced."""


class LogGuard:
    """Checks that the records returned come from the log the positions belong to.

    Parameters
    ----------
    topic, bootstrap_servers : str
        For the messages.
    accept_new_log : bool
        At start, a checkpoint of another log is accepted: ``forget`` is called and the
        partitions are read from their beginning.
    describe : callable
        Reads the broker's current identity; None when it cannot (yet).
    forget : callable
        Drops the checkpoint's positions of the topic (accepting a new log).
    clock : callable
        Monotonic seconds.
    """

    def __init__(
        self,
        topic: str,
        bootstrap_servers: str,
        accept_new_log: bool,
        describe: Callable[[], LogIdentity | None],
        forget: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.accept_new_log = accept_new_log
        self.describe = describe
        self.forget = forget
        self.clock = clock
        self.expected: LogIdentity | None = None
        self.known: LogIdentity | None = None
        self._next_try = 0.0

    def expect(self, stored: LogIdentity | None) -> None:
        """The identity the checkpoint's positions belong to (None: no checkpoint, or one
        without an identity, which then adopts the broker's)."""
        self.expected = stored

    def verified(self) -> bool:
        """True once the broker's identity is known and the checkpoint's positions belong
        to it (or were dropped with ``accept_new_log``). Raises :class:`LogChangedError`
        when they belong to another log. Paced: asks the broker at most once a second."""
        if self.known is not None:
            return True
        now = self.clock()
        if now < self._next_try:
            return False
        current = self.describe()
        if current is None or current.topic_id is None:
            self._next_try = now + RETRY_SECONDS
            return False
        differences = self.expected.differences(current) if self.expected else []
        if differences and not self.accept_new_log:
            raise LogChangedError(
                f"topic {self.topic!r} at {self.bootstrap_servers} is not the log the "
                f"checkpoint's positions belong to ({'; '.join(differences)}): the topic "
                "was deleted and recreated, or this is another cluster. Use another "
                f"--checkpoint-dir, or {ACCEPT_OPTION} to keep the model and read the new "
                "log from its beginning"
            )
        if differences:
            log.warning(
                "topic %s is a new log (%s); %s: the checkpoint's positions are dropped and "
                "every partition is read from its beginning",
                self.topic,
                "; ".join(differences),
                ACCEPT_OPTION,
            )
            self.forget()
        self.known = current
        return True

    def check_unchanged(self, current: LogIdentity | None) -> None:
        """While running: raise :class:`LogReplacedError` if ``current`` (the broker's
        identity now, None if unknown) differs from the one verified at start."""
        if self.known is None or current is None:
            return
        differences = self.known.differences(current)
        if differences:
            raise LogReplacedError(
                f"topic {self.topic!r} at {self.bootstrap_servers} was replaced while the "
                f"trainer ran ({'; '.join(differences)}): the topic was recreated or the "
                "cluster changed; stopping before learning a record of the new log. A "
                f"restart refuses the new log, unless {ACCEPT_OPTION} accepts it"
            )


IDENTITY_TIMEOUT_SECONDS = 60.0  # a replica job's start: how long rank 0 waits for it
ASK_EVERY_SECONDS = 0.2  # the guard paces the broker's answers itself (once a second)


class ReplicaLogCheck:
    """A source's part in a replica job's identity check (:mod:`streamsgd.distributed.
    membership`). In assigned mode the source has no guard of its own: rank 0 reads the
    checkpoint and asks :meth:`check_log_at_start` before any replica reads a record; every
    replica receives the verdict in the start's broadcast."""

    settings: Any  # ConsumerSettings
    clock: Callable[[], float]
    _start_rule: Any  # jumps.StartRule

    def _describe_log(self) -> LogIdentity | None:
        raise NotImplementedError

    def check_log_at_start(
        self,
        stored_source: Mapping[str, Any] | None,
        timeout_seconds: float = IDENTITY_TIMEOUT_SECONDS,
    ) -> dict[str, Any]:
        """Rank 0: the broker's identity compared with ``stored_source`` (the checkpoint's
        ``source``; None at a first start). Returns ``identity`` (what checkpoints store),
        ``refusal`` (the one line every replica raises, or None) and ``new_log`` (accepted
        with ``--accept-new-topic-log``: the caller drops the topic's positions). A broker
        that does not tell within ``timeout_seconds`` leaves the start unchecked (a warning)."""
        dropped: list[bool] = []
        s = self.settings
        guard = LogGuard(
            s.topic,
            s.bootstrap_servers,
            s.accept_new_log,
            self._describe_log,
            lambda: dropped.append(True),
            self.clock,
        )
        guard.expect(None if stored_source is None else LogIdentity.from_checkpoint(stored_source))
        deadline = self.clock() + timeout_seconds
        try:
            while not guard.verified():
                if self.clock() >= deadline:
                    log.warning(
                        "the broker did not tell the identity of topic %s within %.0f s: a "
                        "recreated topic cannot be recognised at this start",
                        s.topic,
                        timeout_seconds,
                    )
                    return {"identity": {}, "refusal": None, "new_log": False}
                time.sleep(ASK_EVERY_SECONDS)  # pacing the broker's answers
        except LogChangedError as exc:
            return {"identity": {}, "refusal": str(exc), "new_log": False}
        assert guard.known is not None
        return {"identity": guard.known.as_checkpoint(), "refusal": None, "new_log": bool(dropped)}

    def read_new_log_from_beginning(self) -> None:
        """Every replica, a new log accepted: a partition without a position starts at its
        beginning, not after ``auto_offset_reset`` (none of the new log is lost)."""
        self._start_rule.from_beginning = True
