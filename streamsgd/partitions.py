"""Which replica reads which partition: a pure function of (rank, world size, partitions)."""

from __future__ import annotations

from collections.abc import Sequence


def assign_partitions(rank: int, world_size: int, partitions: Sequence[str]) -> list[str]:
    """Partition i (in the given order) goes to rank i mod N; ranks ≥ P get none."""
    return [p for i, p in enumerate(partitions) if i % world_size == rank]
