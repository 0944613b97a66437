"""In-process stand-ins for unit tests of the replicated loop (tests/unit/test_replicated.py):
a collective of N threads and a partitioned in-memory source. Not a substitute for MPI or
the broker: the end-to-end tests (tests/distributed) run real mpiexec and real Kafka."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np

from streamsgd.training.buffer import Position
from streamsgd.training.ports import SourceRecord


class ThreadCollective:
    """Member ``rank`` of a collective of ``size`` threads sharing ``room``."""

    def __init__(self, room: ThreadRoom, rank: int) -> None:
        self.room, self.rank, self.size = room, rank, room.size
        self.joined = False
        self.membership_changes = 0

    def allreduce_sum(self, buffer: np.ndarray) -> np.ndarray:
        parts = self.room.exchange(self.rank, np.array(buffer, dtype=np.float64))
        total = np.zeros_like(parts[0])
        for part in parts:  # the same order on every member: identical sums
            total += part
        return total

    def broadcast(self, value: Any, root: int = 0) -> Any:
        parts = self.room.exchange(self.rank, pickle.dumps(value) if self.rank == root else None)
        return pickle.loads(parts[root])

    def recover(self) -> None:
        raise AssertionError("threads do not fail")

    def close(self, *, failed: bool = False) -> None:
        pass


class ThreadRoom:
    """Where the threads of a :class:`ThreadCollective` meet (a two-phase barrier)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.slots: list[Any] = [None] * size
        self.barrier = threading.Barrier(size, timeout=120)

    def member(self, rank: int) -> ThreadCollective:
        return ThreadCollective(self, rank)

    def exchange(self, rank: int, value: Any) -> list[Any]:
        self.slots[rank] = value
        self.barrier.wait()
        parts = list(self.slots)
        self.barrier.wait()
        return parts


class PartitionedMemorySource:
    """Records ``values[p]`` of each partition ``p``, served from assigned partitions only,
    ``per_poll`` records of each per poll; exhausted when every assigned one is read."""

    def __init__(self, values: dict[str, list[bytes]], per_poll: int = 5) -> None:
        self.values = values
        self.per_poll = per_poll
        self.next: dict[str, int] = {}
        self.committed: dict[str, Position] = {}

    def partitions(self, timeout_seconds: float) -> list[str]:
        return list(self.values)

    def assign(self, keys: list[str], positions: dict[str, Position]) -> dict[str, Position]:
        self.next = {p: positions[p].offset if p in positions else 0 for p in keys}
        return {p: positions.get(p, Position(0)) for p in keys}

    def seek(self, positions: dict[str, Position]) -> None:
        raise AssertionError("replicas assign, they do not seek")

    def poll(self, timeout_seconds: float) -> list[SourceRecord]:
        records = []
        for p, start in self.next.items():
            chunk = self.values[p][start : start + self.per_poll]
            records += [SourceRecord(p, start + i, value=v) for i, v in enumerate(chunk)]
            self.next[p] = start + len(chunk)
        return records

    @property
    def exhausted(self) -> bool:
        return all(n >= len(self.values[p]) for p, n in self.next.items())

    @property
    def ready(self) -> bool:
        return True

    def commit(self, positions: dict[str, Position]) -> None:
        self.committed = dict(positions)

    def close(self) -> None:
        pass

    def read(self, partition: str, first: int, last: int) -> list[SourceRecord]:
        """The records of ``partition`` at offsets first..last (the replay's reader)."""
        return [
            SourceRecord(partition, o, value=self.values[partition][o])
            for o in range(first, last + 1)
        ]


class MemoryManifest:
    """A :class:`~streamsgd.training.ports.ManifestLog` in a list."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def append(self, entries: list[dict[str, Any]]) -> None:
        self.entries += pickle.loads(pickle.dumps(entries))

    def truncate(self, n_steps: int) -> None:
        self.entries = [e for e in self.entries if e.get("step", 0) <= n_steps]

    def read(self) -> list[dict[str, Any]]:
        return list(self.entries)
