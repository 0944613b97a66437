"""Rank 0 never moves a committed offset backwards (docs/operations.md, "Committed offsets
never move backwards"): a replica job restarted from a checkpoint whose positions are behind
the offsets already committed to its group (what a lineage's step rolled back at a cut
leaves) holds those partitions back until its positions pass them, with the real broker.
Both clients. The group's committed offsets are read back at every poll of every wait."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from tests.distributed.replica_job import ReplicaJob, final_state, train_options
from tests.distributed.test_replicas_kafka import MALFORMED_EVERY, PARTITIONS, LiveProducer
from tests.support.kafka_fixtures import create_topic
from tests.support.kafka_ops import CLIENTS

N_RECORDS = 600  # 100 a partition, round-robin
FIRST_RUN = 300  # the first job's checkpoint ends at offset 50 of every partition
AHEAD = 75  # committed to the group beforehand, beyond the checkpoint's 50
BEHIND = 360  # the restarted job's positions reach 60: still behind 75
WAIT_SECONDS = 180


class CommittedOffsets:
    """The group's committed offsets, read with a plain consumer; remembers the lowest
    value seen of each partition after :meth:`floor` set one."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
        )
        self.tps = [TopicPartition(topic, n) for n in range(PARTITIONS)]
        self.lowest: dict[int, int] = {}

    def read(self) -> dict[int, int]:
        found = {}
        for tp in self.tps:
            offset = self.consumer.committed(tp, timeout_ms=30_000)
            found[tp.partition] = -1 if offset is None else int(offset)
        for n, offset in found.items():
            if n in self.lowest:
                self.lowest[n] = min(self.lowest[n], offset)
        return found

    def commit(self, offset: int) -> None:
        self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp in self.tps})
        assert self.read() == dict.fromkeys(range(PARTITIONS), offset)
        self.lowest = dict.fromkeys(range(PARTITIONS), offset)

    def never_below(self, offset: int) -> bool:
        """Checked at every poll: fails the wait the moment an offset went lower."""
        self.read()
        assert min(self.lowest.values()) >= offset, f"committed offsets moved back: {self.lowest}"
        return True


def _valid(records: int) -> int:
    return sum(1 for i in range(records) if i % MALFORMED_EVERY != MALFORMED_EVERY - 1)


def _positions(checkpoint_dir: Path) -> set[int]:
    if not (checkpoint_dir / "checkpoint.json").exists():
        return set()
    return {int(pos[0]) for pos in final_state(checkpoint_dir)["positions"].values()}


@pytest.mark.parametrize("client", CLIENTS)
def test_a_restart_behind_the_committed_offsets_never_commits_lower(
    client: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    checkpoint_dir = tmp_path / "ckpt"
    options = train_options(kafka_bootstrap, topic, checkpoint_dir, kafka_client=client)
    producer = LiveProducer(kafka_bootstrap, topic, N_RECORDS, seed=5)
    committed = CommittedOffsets(kafka_bootstrap, topic, options["group_id"])
    try:
        producer.release(FIRST_RUN)
        first = ReplicaJob(2, options, tmp_path / "first.log")
        try:
            first.wait_for(
                lambda: _positions(checkpoint_dir) == {FIRST_RUN // PARTITIONS},
                "a checkpoint through the first records",
                WAIT_SECONDS,
            )
            assert first.stop() == 0, first.diagnostics()
        finally:
            first.kill()
        assert _positions(checkpoint_dir) == {FIRST_RUN // PARTITIONS}
        # What the old rank 0 of a cut leaves: its group committed beyond this checkpoint.
        committed.commit(AHEAD)

        producer.release(BEHIND)
        second = ReplicaJob(2, options, tmp_path / "second.log")
        try:
            # Checkpointed at 60 (behind 75): every partition held back, said once each.
            second.wait_for(
                lambda: (
                    committed.never_below(AHEAD)
                    and _positions(checkpoint_dir) == {BEHIND // PARTITIONS}
                    and second.log_text().count(f"the group's committed offset is already {AHEAD}")
                    == PARTITIONS
                ),
                "a checkpoint at 60 with every partition held back",
                WAIT_SECONDS,
            )
            assert committed.read() == dict.fromkeys(range(PARTITIONS), AHEAD)
            producer.finish()
            # Past 75 the commits go on, to the end of every partition.
            end = N_RECORDS // PARTITIONS
            second.wait_for(
                lambda: (
                    committed.never_below(AHEAD)
                    and committed.read() == dict.fromkeys(range(PARTITIONS), end)
                ),
                "every partition committed at its end",
                WAIT_SECONDS,
            )
            document = second.wait_for(lambda: second.model(0), "/model of rank 0")
            assert int(document["n_samples_seen"]) == _valid(N_RECORDS)
            assert second.stop() == 0, second.diagnostics()
        finally:
            second.kill()
        assert committed.never_below(AHEAD)
    finally:
        committed.consumer.close()
        producer.finish()
