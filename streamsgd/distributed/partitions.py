"""Which replica reads which partition: a pure function of (rank, world size, partitions).

N replicas of one trainer split a topic's partitions among themselves without consumer-group
rebalancing (docs/design.md#scaling-out): each replica computes its share from the same inputs, so
every replica agrees on the whole assignment without talking to Kafka's group coordinator, and a
membership change is a new call with the new world size. No I/O and no Kafka import here.

Partition names are those of checkpoints and buffers, ``"topic:3"``.
"""

from __future__ import annotations

from collections.abc import Sequence


def partition_number(key: str) -> tuple[str, int]:
    """Split a partition name ``"topic:3"`` into ``("topic", 3)``.

    The topic is everything before the last colon (a Kafka topic name has no colon, but a
    file source's partition name may). Raises ``ValueError`` for a name without a
    non-negative partition number after its last colon.
    """
    topic, colon, number = key.rpartition(":")
    if not colon or not number.isdigit():
        raise ValueError(f"not a partition name of the form 'topic:N': {key!r}")
    return topic, int(number)


def sorted_partitions(partitions: Sequence[str]) -> list[str]:
    """The partition names in the order every replica numbers them: by topic, then by
    partition number (``"t:9"`` before ``"t:10"``, unlike a lexicographic sort). Duplicates
    are dropped."""
    return sorted(set(partitions), key=partition_number)


def assign_partitions(rank: int, world_size: int, partitions: Sequence[str]) -> list[str]:
    """The partitions replica ``rank`` of ``world_size`` reads.

    With the partitions in the order of :func:`sorted_partitions`, partition ``i`` goes to
    rank ``i mod world_size``: every partition to exactly one rank, and the ranks' shares
    differ in size by at most one. A rank at or beyond the number of partitions gets none.

    Parameters
    ----------
    rank : int
        0 ≤ rank < world_size.
    world_size : int
        The number of replicas, ≥ 1.
    partitions : sequence of str
        Every partition of the topic(s), ``"topic:N"``, in any order.

    Returns
    -------
    list of str
        This rank's partitions, in the sorted order.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return sorted_partitions(partitions)[rank::world_size]
