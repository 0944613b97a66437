"""Which log a replica job's positions belong to (docs/operations.md#what-the-trainer-does-
for-each-kafka-operation): the topic id and cluster id, checked by rank 0 at the job's start.

The single trainer's Kafka source guards its own log (:class:`~streamsgd.kafka.identity.
LogGuard`); a replica's source reads assigned partitions and has no guard. Rank 0 reads the
checkpoint, so rank 0 compares the broker's identity with the one stored beside the
positions, before any replica reads a record, and every replica receives the verdict in the
start's broadcast (:mod:`.membership`): all refuse together, or all start from the same
positions (from the new log's beginning under ``--accept-new-topic-log``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..kafka.identity import LogChangedError, LogGuard, LogIdentity

log = logging.getLogger("streamsgd.replicated")

IDENTITY_TIMEOUT_SECONDS = 60.0
ASK_EVERY_SECONDS = 0.2  # LogGuard paces the broker's answers itself (once a second)


@dataclass
class LogVerdict:
    """Rank 0's answer, broadcast at the start: the identity the job's checkpoints store,
    and the refusal every replica raises (None: go on)."""

    identity: dict[str, str] = field(default_factory=dict)
    refusal: str | None = None
    new_log: bool = False  # accepted: every replica reads the topic from its beginning


def check_log(
    source: Any,
    state: dict[str, Any] | None,
    timeout_seconds: float = IDENTITY_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> LogVerdict:
    """Rank 0: compare the broker's identity of ``source``'s topic with ``state``'s (the
    checkpoint's, None at a first start). A source that cannot tell (not Kafka) is not
    checked; a broker that does not tell within ``timeout_seconds`` leaves the job unchecked,
    with a warning. Under ``--accept-new-topic-log`` a new log drops ``state``'s positions of
    the topic (in place)."""
    describe = getattr(source, "_describe_log", None)
    settings = getattr(source, "settings", None)
    if describe is None or settings is None:
        return LogVerdict()
    dropped: list[bool] = []
    guard = LogGuard(
        settings.topic,
        settings.bootstrap_servers,
        settings.accept_new_log,
        describe,
        lambda: dropped.append(True),
        clock,
    )
    guard.expect(None if state is None else LogIdentity.from_checkpoint(state["source"]))
    deadline = clock() + timeout_seconds
    try:
        while not guard.verified():
            if clock() >= deadline:
                log.warning(
                    "the broker did not tell the identity of topic %s within %.0f s: a "
                    "recreated topic cannot be recognised at this start",
                    settings.topic,
                    timeout_seconds,
                )
                return LogVerdict()
            time.sleep(ASK_EVERY_SECONDS)  # pacing the broker's answers
    except LogChangedError as exc:
        return LogVerdict(refusal=str(exc))
    assert guard.known is not None
    if dropped and state is not None:
        _drop_positions(state, settings.topic)
    return LogVerdict(guard.known.as_checkpoint(), None, bool(dropped))


def _drop_positions(state: dict[str, Any], topic: str) -> None:
    prefix = f"{topic}:"
    for name in ("positions", "offsets"):
        state[name] = {k: v for k, v in state.get(name, {}).items() if not k.startswith(prefix)}


def adopt_verdict(source: Any, verdict: dict[str, Any]) -> dict[str, str]:
    """Every replica: raise the refusal, or note a new log; returns the identity to store."""
    if verdict.get("refusal"):
        raise LogChangedError(verdict["refusal"])
    if verdict.get("new_log"):
        rule = getattr(source, "_start_rule", None)
        if rule is not None:
            rule.from_beginning = True  # not auto_offset_reset: none of the new log is lost
    return dict(verdict.get("identity") or {})
