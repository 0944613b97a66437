"""Partitions that appear, for replicas
(docs/operations.md#what-the-trainer-does-for-each-kafka-operation, docs/design.md#scaling-out),
under real ``mpiexec`` and the real broker, both clients.

Injects: a job of 2 replicas started with ``--auto-offset-reset latest`` on an empty
2-partition topic; once it learned 100 records there, the topic grown to 4 partitions and
60 records written to each new one at once (before rank 0 can know them: under ``latest`` a
replica that started them at their end would lose these). Then the job stopped, the topic
grown to 6 partitions while no replica runs, 40 records written to each new one, and the job
restarted with 3 replicas.

Must hold: within ``--metadata-max-age-seconds`` rank 0 sees the grown list, every replica
re-assigns by the same rule, and every record of every partition is learned exactly once:
the model's sample count equals the records written, the checkpoint's positions and the
group's committed offsets equal every partition's end offset, and the model equals the step
manifest replayed in this process on the records read back (rtol 1e-10: the replay computes
the same steps in the same order; the tolerance only absorbs numpy's SIMD paths differing
between this process's and a replica's reductions). Before this change a replicated job
never read a partition added while it ran (it waited here until the bound) and started
one added while it was down at its end under ``latest``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamsgd.codec import encode_dense
from tests.distributed.replica_job import (
    N_FEATURES,
    ReplicaJob,
    assert_matches_oracle,
    final_state,
    oracle,
    read_partitions,
    train_options,
)
from tests.support.kafka_fixtures import create_topic
from tests.support.kafka_helpers import committed_offsets, end_offsets
from tests.support.kafka_ops import CLIENTS


def _write(bootstrap: str, topic: str, counts: dict[int, int], seed: int) -> int:
    """``counts[p]`` valid samples written to partition ``p``; the number written."""
    from kafka import KafkaProducer

    rng = np.random.default_rng(seed)
    w = rng.standard_normal(N_FEATURES)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for partition, n in counts.items():
            for _ in range(n):
                x = rng.standard_normal(N_FEATURES)
                y = float(rng.random() < 1 / (1 + np.exp(-x @ w)))
                producer.send(topic, encode_dense(x, y), partition=partition)
        producer.flush(60)
    finally:
        producer.close(10)
    return sum(counts.values())


def _grow(bootstrap: str, topic: str, total: int) -> None:
    from kafka.admin import KafkaAdminClient, NewPartitions

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamsgd-tests")
    try:
        admin.create_partitions({topic: NewPartitions(total_count=total)})
    finally:
        admin.close()


def _learned(job: ReplicaJob) -> int:
    document = job.model(0)
    return -1 if document is None else int(document["n_samples_seen"])


def _assigned_ranks(job: ReplicaJob) -> int:
    """How many ranks logged their assignment (each resolves its start offsets first)."""
    return len(job.pids())


def _lag(job: ReplicaJob, n: int) -> float | None:
    """The lag gauge summed over the replicas (each reports its own partitions)."""
    values = [job.metric(slot, "streamsgd_consumer_lag_records") for slot in range(n)]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _check_checkpoint(options: dict, checkpoint_dir: Path, bootstrap: str, n_written: int) -> None:
    topic = options["topic"]
    state = final_state(checkpoint_dir)
    assert int(state["model"]["n_samples_seen"]) == n_written
    ends = {f"{topic}:{p}": end for p, end in end_offsets(bootstrap, topic).items()}
    assert {p: pos[0] for p, pos in state["positions"].items()} == ends
    committed = committed_offsets(bootstrap, options["group_id"])
    assert {p: o for p, o in committed.items() if p.startswith(f"{topic}:")} == ends
    assert_matches_oracle(state, oracle(options, checkpoint_dir, read_partitions(bootstrap, topic)))


@pytest.mark.parametrize("client", CLIENTS)
def test_partitions_added_to_the_topic_are_read_by_every_replica_once(
    client: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, 2)
    checkpoint_dir = tmp_path / "ckpt"
    rules = {"auto_offset_reset": "latest", "metadata_max_age_seconds": 1}
    options = train_options(
        kafka_bootstrap,
        topic,
        checkpoint_dir,
        kafka_client=client,
        lag_interval_seconds=0.5,
        **rules,
    )
    job = ReplicaJob(2, options, tmp_path / "first.log")
    try:
        job.wait_for(lambda: _assigned_ranks(job) == 2, "both replicas assigned")
        written = _write(kafka_bootstrap, topic, {0: 50, 1: 50}, seed=1)
        job.wait_for(lambda: _learned(job) == written, "the first 100 records")
        _grow(kafka_bootstrap, topic, 4)
        written += _write(kafka_bootstrap, topic, {2: 60, 3: 60}, seed=2)
        job.wait_for(lambda: _learned(job) == written, "the records of partitions 2 and 3")
        # The lag gauges cover the new partitions once assigned: back to 0 when all is read.
        job.wait_for(lambda: _lag(job, 2) == 0, "the replicas' lag to read 0")
        assert f"partitions added to the topic: {topic}:2, {topic}:3" in job.log_text()
        assert job.stop() == 0, job.diagnostics()
    finally:
        job.kill()
    _check_checkpoint(options, checkpoint_dir, kafka_bootstrap, written)

    _grow(kafka_bootstrap, topic, 6)  # while no replica runs
    written += _write(kafka_bootstrap, topic, {4: 40, 5: 40}, seed=3)
    second = ReplicaJob(3, options, tmp_path / "second.log")
    try:
        second.wait_for(lambda: _learned(second) == written, "the records of partitions 4, 5")
        assert second.stop() == 0, second.diagnostics()
    finally:
        second.kill()
    _check_checkpoint(options, checkpoint_dir, kafka_bootstrap, written)
