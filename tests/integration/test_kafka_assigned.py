"""Kafka sources with partitions assigned by rank (docs/design.md#scaling-out) against the real
broker, with both clients: no group membership, starts at given positions or at
``auto_offset_reset`` (never at committed offsets), re-assignment of a live consumer without stale
records, and commits of every partition given, visible as the group's committed offsets.

Records are written to chosen partitions with values ``b"<partition>-<offset>"``, so what
a source returns is checked against what the broker holds, record by record. Every wait
polls the sources until a condition holds or a generous deadline passes.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from streamsgd.distributed.partitions import assign_partitions
from streamsgd.kafka import ConsumerGroupSource, PartitionsUnavailableError
from streamsgd.kafka.confluent import ConfluentKafkaSource
from streamsgd.kafka.source import KafkaSource
from streamsgd.training.buffer import Position
from streamsgd.training.ports import SourceRecord
from tests.support.kafka_fixtures import create_topic, free_port, unique_topic_name
from tests.support.kafka_helpers import committed_offsets, end_offsets, wait_until

pytestmark = pytest.mark.kafka

READ_TIMEOUT_SECONDS = 90.0  # generous: the box is small and shared
Read = tuple[str, int]  # (partition key, offset)
MakeSource = Callable[..., ConsumerGroupSource]


@pytest.fixture(params=[KafkaSource, ConfluentKafkaSource], ids=["kafka-python", "confluent"])
def client(request: pytest.FixtureRequest) -> type[ConsumerGroupSource]:
    cls: type[ConsumerGroupSource] = request.param
    return cls


@pytest.fixture
def make_source(client: type[ConsumerGroupSource], kafka_bootstrap: str) -> Iterator[MakeSource]:
    """Builds sources of the client under test (assigned mode unless told); closes them."""
    made: list[ConsumerGroupSource] = []

    def make(topic: str, group: str, **kwargs: Any) -> ConsumerGroupSource:
        kwargs.setdefault("assigned", True)
        source = client(kafka_bootstrap, topic, group, **kwargs)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def group_name() -> str:
    return f"assigned-{uuid.uuid4().hex[:8]}"


def new_topic(bootstrap: str, partitions: int) -> str:
    return create_topic(bootstrap, partitions, unique_topic_name("assigned"))


def produce(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    """``counts[p]`` more records to partition ``p``; the value of each names its place."""
    ends = end_offsets(bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for partition, count in counts.items():
            for offset in range(ends[partition], ends[partition] + count):
                producer.send(topic, f"{partition}-{offset}".encode(), partition=partition)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    after = end_offsets(bootstrap, topic)
    assert all(after[p] == ends[p] + n for p, n in counts.items()), (ends, after)


def read(sources: list[ConsumerGroupSource], n_records: int, what: str) -> list[list[Read]]:
    """Poll every source in turn until they returned ``n_records`` records in all; per
    source, (partition, offset) of each record in the order returned. Checks each value."""
    records: list[list[SourceRecord]] = [[] for _ in sources]

    def enough() -> bool:
        for source, got in zip(sources, records, strict=True):
            got.extend(source.poll(0.2))
        return sum(map(len, records)) >= n_records

    wait_until(enough, READ_TIMEOUT_SECONDS, what, lambda: f"{sum(map(len, records))} read")
    for got in records:
        for record in got:
            number = int(record.partition.rpartition(":")[2])
            assert record.value == f"{number}-{record.offset}".encode(), record
    return [[(r.partition, r.offset) for r in got] for got in records]


def reads(topic: str, ranges: dict[int, range]) -> list[Read]:
    """Every (partition key, offset) of ``ranges``, by partition then offset."""
    return [(f"{topic}:{p}", offset) for p, offsets in ranges.items() for offset in offsets]


def by_partition(got: list[Read]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for key, offset in got:
        found.setdefault(key, []).append(offset)
    return found


def describe_group(bootstrap: str, group: str) -> dict[str, Any]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamsgd-tests")
    try:
        if hasattr(admin, "describe_groups"):  # kafka-python 3.x
            described: dict[str, Any] = admin.describe_groups([group])[group]
            return described
        legacy = admin.describe_consumer_groups([group])[0]  # kafka-python 2.x
        return {"group_state": legacy.state, "members": list(legacy.members)}
    finally:
        admin.close()


# --------------------------------------------------------------------------- partitions()
def test_partitions_lists_every_partition_in_number_order(
    make_source: MakeSource, kafka_bootstrap: str
) -> None:
    topic = new_topic(kafka_bootstrap, 12)
    assert make_source(topic, group_name()).partitions(60) == [f"{topic}:{p}" for p in range(12)]


def test_partitions_waits_for_the_topic_and_fails_clearly_without_creating_it(
    make_source: MakeSource, kafka_bootstrap: str
) -> None:
    name = unique_topic_name("assigned-missing")
    source = make_source(name, group_name())
    with pytest.raises(PartitionsUnavailableError, match=f"no partitions of topic '{name}'"):
        source.partitions(1.0)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="streamsgd-tests")
    try:
        assert name not in admin.list_topics()  # asking did not auto-create it
    finally:
        admin.close()

    found: list[list[str]] = []
    waiter = threading.Thread(target=lambda: found.append(source.partitions(90)))
    waiter.start()
    create_topic(kafka_bootstrap, 3, name)
    waiter.join(120)
    assert found == [[f"{name}:{p}" for p in range(3)]]


def test_partitions_fails_clearly_when_no_broker_answers(
    client: type[ConsumerGroupSource],
) -> None:
    source = client(f"127.0.0.1:{free_port()}", "orders", group_name(), assigned=True)
    try:
        with pytest.raises(PartitionsUnavailableError, match="no partitions of topic 'orders'"):
            source.partitions(3.0)
        assert not source.ready
    finally:
        source.close()


# --------------------------------------------------------------------------- assign()
def test_two_ranks_read_disjoint_shares_whose_union_is_every_record_once(
    make_source: MakeSource, kafka_bootstrap: str
) -> None:
    topic = new_topic(kafka_bootstrap, 6)
    counts = {p: 40 + p for p in range(6)}
    produce(kafka_bootstrap, topic, counts)
    group = group_name()
    ranks = [make_source(topic, group), make_source(topic, group)]
    every = ranks[0].partitions(60)
    shares = [assign_partitions(rank, 2, every) for rank in range(2)]
    assert shares == [[f"{topic}:{p}" for p in (0, 2, 4)], [f"{topic}:{p}" for p in (1, 3, 5)]]
    for source, share in zip(ranks, shares, strict=True):
        assert source.assign(share, {}) == {key: Position(0) for key in share}

    expected = reads(topic, {p: range(n) for p, n in counts.items()})
    got = read(ranks, len(expected), "every record of the topic")
    for share, share_got in zip(shares, got, strict=True):
        assert {key for key, _ in share_got} == set(share)
    assert sorted(got[0] + got[1]) == sorted(expected)  # every record exactly once
    for source in ranks:
        assert source.poll(1.0) == []  # and nothing more


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_partitions_without_a_position_start_at_auto_offset_reset_not_at_committed_offsets(
    make_source: MakeSource, kafka_bootstrap: str, reset: str
) -> None:
    topic = new_topic(kafka_bootstrap, 3)
    produce(kafka_bootstrap, topic, {0: 20, 1: 20, 2: 20})
    group = group_name()
    keys = [f"{topic}:{p}" for p in range(3)]
    committer = make_source(topic, group)
    committer.commit({key: Position(15) for key in keys})
    assert committed_offsets(kafka_bootstrap, group) == {key: 15 for key in keys}

    source = make_source(topic, group, auto_offset_reset=reset)
    # No position of the topic at all (the job's first start): auto_offset_reset.
    first = source.assign(keys[1:], {})
    assert first == {key: Position(0 if reset == "earliest" else 20) for key in keys[1:]}
    # A position of the topic held: one without is new to the job (a partition added since,
    # docs/operations.md#what-the-trainer-does-for-each-kafka-operation) and starts at its beginning
    # whatever auto_offset_reset says.
    starts = source.assign(keys, {keys[0]: Position(7, skip_samples=2)})
    resolved = 0
    assert starts == {
        keys[0]: Position(7, skip_samples=2),
        keys[1]: Position(resolved),
        keys[2]: Position(resolved),
    }
    if reset == "latest":
        produce(kafka_bootstrap, topic, {1: 5, 2: 5})
    ranges = {0: range(7, 20), 1: range(resolved, 25 if reset == "latest" else 20)}
    ranges[2] = ranges[1]
    expected = reads(topic, ranges)
    (got,) = read([source], len(expected), "the records after the start positions")
    assert sorted(got) == sorted(expected)
    assert {key: offsets[0] for key, offsets in by_partition(got).items()} == {
        key: start.offset for key, start in starts.items()
    }


def test_reassigning_a_live_consumer_drops_what_it_fetched_and_starts_at_the_new_positions(
    make_source: MakeSource, kafka_bootstrap: str
) -> None:
    """Enough records that the client has fetched ahead of what poll() returned when the
    assignment changes: none of those may come out afterwards."""
    topic = new_topic(kafka_bootstrap, 6)
    per_partition = 3000
    produce(kafka_bootstrap, topic, {p: per_partition for p in range(6)})
    source = make_source(topic, group_name())
    every = source.partitions(60)
    source.assign(assign_partitions(0, 2, every), {})
    (first,) = read([source], 1, "the first records of rank 0's share")
    assert {key for key, _ in first} <= {f"{topic}:{p}" for p in (0, 2, 4)}

    # The other rank's share only, from chosen positions.
    starts = {f"{topic}:1": Position(100), f"{topic}:3": Position(2500)}
    assert source.assign(list(starts), starts) == starts
    expected = reads(topic, {1: range(100, per_partition), 3: range(2500, per_partition)})
    (got,) = read([source], len(expected), "partitions 1 and 3 from 100 and 2500")
    assert sorted(got) == sorted(expected)  # nothing of 0, 2, 4; nothing before 100, 2500
    assert all(offsets == sorted(offsets) for offsets in by_partition(got).values())

    # A survivor takes over every partition, each at its replicated position.
    positions = {key: Position(per_partition - 3 - n) for n, key in enumerate(every)}
    assert source.assign(every, positions) == positions
    expected = reads(topic, {p: range(per_partition - 3 - p, per_partition) for p in range(6)})
    (got,) = read([source], len(expected), "the tail of every partition")
    assert sorted(got) == sorted(expected)
    assert source.poll(1.0) == []


def test_seek_moves_assigned_partitions_at_once(
    make_source: MakeSource, kafka_bootstrap: str
) -> None:
    topic = new_topic(kafka_bootstrap, 2)
    produce(kafka_bootstrap, topic, {0: 50, 1: 50})
    source = make_source(topic, group_name())
    keys = source.partitions(60)
    source.assign(keys, {key: Position(50) for key in keys})  # at the end: nothing to read
    assert source.poll(0.5) == []
    source.seek({keys[0]: Position(45)})
    (got,) = read([source], 5, "partition 0 from 45")
    assert got == reads(topic, {0: range(45, 50)})
    assert source.poll(1.0) == []


def test_an_empty_share_is_ready_and_idle_and_says_so_once(
    make_source: MakeSource, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No group-mode "waiting for partitions" notice either, however long it idles."""
    topic = new_topic(kafka_bootstrap, 1)
    produce(kafka_bootstrap, topic, {0: 10})
    now = [0.0]
    source = make_source(topic, group_name(), clock=lambda: now[0], lag_interval_seconds=1.0)
    every = source.partitions(60)
    caplog.set_level(logging.INFO, logger="streamsgd.kafka")
    assert source.assign(assign_partitions(1, 2, every), {}) == {}
    for _ in range(5):
        now[0] += 60.0  # far past the group-mode notice (5 s) and the lag interval
        assert source.poll(0.2) == []
        assert source.ready
    source.assign([], {})
    idle = [r for r in caplog.records if "idles" in r.getMessage()]
    assert len(idle) == 1
    # Only the source's own records: a client thread of an earlier test (another broker's
    # metadata refresh) may log into caplog too, and is not what this test is about.
    ours = [r for r in caplog.records if r.name.startswith("streamsgd")]
    assert not [r for r in ours if r.levelno >= logging.WARNING], caplog.text

    assert source.assign(every, {}) == {every[0]: Position(0)}  # a share again
    (got,) = read([source], 10, "the records once a partition is assigned")
    assert got == reads(topic, {0: range(10)})


def test_lag_is_reported_over_the_assigned_partitions_only(
    make_source: MakeSource, kafka_bootstrap: str
) -> None:
    topic = new_topic(kafka_bootstrap, 4)
    produce(kafka_bootstrap, topic, {p: 30 for p in range(4)})
    lags: list[int] = []
    source = make_source(topic, group_name(), on_lag=lags.append, lag_interval_seconds=0.0)
    source.assign([f"{topic}:0", f"{topic}:1"], {})
    read([source], 60, "the assigned partitions")
    wait_until(lambda: source.poll(0.1) == [] and lags and lags[-1] == 0, 60, "lag 0")
    assert max(lags) <= 60  # never the 60 records of the partitions not assigned


# --------------------------------------------------------------------------- commit()
def test_commit_writes_every_partition_given_as_the_groups_committed_offsets(
    make_source: MakeSource, kafka_bootstrap: str
) -> None:
    topic = new_topic(kafka_bootstrap, 6)
    produce(kafka_bootstrap, topic, {p: 10 for p in range(6)})
    group = group_name()
    source = make_source(topic, group)
    source.assign([f"{topic}:0"], {})  # rank 0 of 6 commits for everyone
    positions = {f"{topic}:{p}": Position(p + 1, skip_samples=p % 2) for p in range(6)}
    source.commit(positions)
    assert committed_offsets(kafka_bootstrap, group) == {f"{topic}:{p}": p + 1 for p in range(6)}
    source.commit({f"{topic}:4": Position(9)})
    assert committed_offsets(kafka_bootstrap, group)[f"{topic}:4"] == 9


def test_assigned_consumers_never_join_the_group(
    make_source: MakeSource, kafka_bootstrap: str
) -> None:
    topic = new_topic(kafka_bootstrap, 6)
    produce(kafka_bootstrap, topic, {p: 10 for p in range(6)})
    group = group_name()
    ranks = [make_source(topic, group), make_source(topic, group)]
    every = ranks[0].partitions(60)
    for rank, source in enumerate(ranks):
        source.assign(assign_partitions(rank, 2, every), {})
    read(ranks, 60, "every record")
    ranks[0].commit({key: Position(10) for key in every})  # the group exists now
    for source in ranks:
        source.poll(0.5)
    described = describe_group(kafka_bootstrap, group)
    assert described["members"] == []
    assert described["group_state"] == "Empty"
    assert committed_offsets(kafka_bootstrap, group) == {key: 10 for key in every}


# --------------------------------------------------------------------------- misuse
def test_misuse_is_refused_with_a_clear_error(make_source: MakeSource) -> None:
    with pytest.raises(ValueError, match="static membership"):
        make_source("orders", group_name(), group_instance_id="trainer-0")
    with pytest.raises(RuntimeError, match="assigned=True"):
        make_source("orders", group_name(), assigned=False).assign(["orders:0"], {})
    source = make_source("orders", group_name())
    with pytest.raises(ValueError, match="not a partition of topic 'orders'"):
        source.assign(["payments:0"], {"payments:0": Position(0)})
    with pytest.raises(ValueError, match="topic:N"):
        source.assign(["orders"], {"orders": Position(0)})
