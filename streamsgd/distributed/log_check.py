"""Which log a replica job's positions belong to (docs/operations.md#what-the-trainer-does-
for-each-kafka-operation): the topic id and cluster id, checked by rank 0 at the job's start.

The single trainer's Kafka source guards its own log; a replica's source reads assigned
partitions and has no guard. Rank 0 reads the checkpoint, so rank 0 asks the source to compare
the broker's identity with the one stored beside the positions
(:meth:`~streamsgd.kafka.identity.ReplicaLogCheck.check_log_at_start`) before any replica
reads a record, and every replica receives the verdict in the start's broadcast
(:mod:`.membership`): all refuse together, or all start from the same positions (the new
log from its beginning under ``--accept-new-topic-log``).
"""

from __future__ import annotations

from typing import Any

from ..training.ports import CheckpointError


def check_log(source: Any, state: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0: the verdict on the log (``identity``, ``refusal``, ``new_log``); a source
    that cannot tell (not Kafka) is not checked. A new log accepted drops ``state``'s
    positions of the topic (in place)."""
    check = getattr(source, "check_log_at_start", None)
    if check is None:
        return {}
    verdict: dict[str, Any] = check(None if state is None else state["source"])
    if verdict.get("new_log") and state is not None:
        prefix = f"{source.settings.topic}:"
        for name in ("positions", "offsets"):
            kept = state.get(name, {}).items()
            state[name] = {k: v for k, v in kept if not k.startswith(prefix)}
    return verdict


def adopt_verdict(source: Any, verdict: dict[str, Any]) -> dict[str, str]:
    """Every replica: raise the refusal (one line, exit 2), or note a new log; returns the
    identity every checkpoint stores."""
    if verdict.get("refusal"):
        raise CheckpointError(verdict["refusal"])
    if verdict.get("new_log"):
        source.read_new_log_from_beginning()
    return dict(verdict.get("identity") or {})
