"""assign_partitions: every partition to exactly one rank, balanced, by partition number."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamsgd.distributed.partitions import assign_partitions, partition_number, sorted_partitions


def test_partition_i_of_the_numeric_order_goes_to_rank_i_mod_n() -> None:
    partitions = [f"t:{p}" for p in (10, 3, 0, 9, 1, 11, 2)]  # shuffled on purpose
    # sorted: t:0 t:1 t:2 t:3 t:9 t:10 t:11
    assert assign_partitions(0, 3, partitions) == ["t:0", "t:3", "t:11"]
    assert assign_partitions(1, 3, partitions) == ["t:1", "t:9"]
    assert assign_partitions(2, 3, partitions) == ["t:2", "t:10"]


def test_numbers_sort_numerically_not_as_text() -> None:
    assert sorted_partitions(["t:10", "t:9", "t:100", "t:2"]) == ["t:2", "t:9", "t:10", "t:100"]


def test_topics_sort_first_then_numbers() -> None:
    partitions = ["b:0", "a:10", "a:2", "b:1"]
    assert sorted_partitions(partitions) == ["a:2", "a:10", "b:0", "b:1"]
    assert assign_partitions(1, 2, partitions) == ["a:10", "b:1"]


def test_ranks_beyond_the_partition_count_get_nothing() -> None:
    partitions = ["t:0", "t:1"]
    assert [assign_partitions(r, 4, partitions) for r in range(4)] == [["t:0"], ["t:1"], [], []]


def test_one_replica_reads_everything() -> None:
    assert assign_partitions(0, 1, ["t:1", "t:0"]) == ["t:0", "t:1"]


def test_the_order_of_the_input_does_not_matter() -> None:
    partitions = [f"t:{p}" for p in range(12)]
    assert assign_partitions(2, 5, partitions) == assign_partitions(2, 5, partitions[::-1])


@given(
    n_partitions=st.integers(0, 40),
    world_size=st.integers(1, 12),
    topics=st.lists(st.sampled_from(["a", "b", "orders.v2"]), min_size=1, max_size=3),
)
def test_the_ranks_partition_the_set_and_are_balanced(
    n_partitions: int, world_size: int, topics: list[str]
) -> None:
    partitions = [f"{t}:{p}" for t in set(topics) for p in range(n_partitions)]
    shares = [assign_partitions(r, world_size, partitions) for r in range(world_size)]
    flat = [key for share in shares for key in share]
    assert len(flat) == len(set(flat))  # no partition on two ranks
    assert set(flat) == set(partitions)  # none left out
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the lower ranks take the remainder


def test_partition_number_splits_at_the_last_colon() -> None:
    assert partition_number("orders:12") == ("orders", 12)
    assert partition_number("dir/a:b:3") == ("dir/a:b", 3)


@pytest.mark.parametrize("bad", ["orders", "orders:", "orders:x", "orders:-1"])
def test_partition_number_refuses_a_name_without_a_number(bad: str) -> None:
    with pytest.raises(ValueError, match="topic:N"):
        partition_number(bad)


@pytest.mark.parametrize(("rank", "world_size"), [(-1, 2), (2, 2), (0, 0)])
def test_a_rank_outside_the_world_is_refused(rank: int, world_size: int) -> None:
    with pytest.raises(ValueError):
        assign_partitions(rank, world_size, ["t:0"])
