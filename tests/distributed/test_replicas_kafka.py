"""Scale-out end to end (docs/design.md#scaling-out): N replicas under real ``mpiexec`` (ULFM)
reading a real Kafka topic of 6 partitions, with a live producer and malformed records. The oracle
is the step manifest replayed in this process on the records read back from the topic: the job's
model must equal it (rtol 1e-10), every valid record learned once, every malformed one
dead-lettered. Faults are triggered by observation (a metric reaching a step), never by sleeping."""

from __future__ import annotations

import os
import signal
import threading
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
from tests.support.kafka_helpers import end_offsets, read_topic

PARTITIONS = 6
MALFORMED_EVERY = 29


class LiveProducer:
    """Writes ``n`` records round-robin over the partitions from a thread: a valid JSON
    sample, or every ``MALFORMED_EVERY``-th record garbage. ``release(k)`` lets it write
    up to record k (it never runs ahead of the test). A context manager: leaving it closes
    the client, also when the test fails before :meth:`finish` (a client left open keeps
    refreshing metadata from a broker that may be gone, and its errors land in the logs
    of the tests that follow)."""

    def __init__(self, bootstrap: str, topic: str, n: int, seed: int) -> None:
        from kafka import KafkaProducer

        rng = np.random.default_rng(seed)
        w = rng.standard_normal(N_FEATURES)
        self.values: list[bytes] = []
        for i in range(n):
            if i % MALFORMED_EVERY == MALFORMED_EVERY - 1:
                self.values.append(b'{"x": [1, 2], "y": "garbage"')
                continue
            x = rng.standard_normal(N_FEATURES)
            y = float(rng.random() < 1 / (1 + np.exp(-x @ w)))
            self.values.append(encode_dense(x, y))
        self.topic = topic
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        self._gate = 0
        self._sent = 0
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def n_valid(self) -> int:
        return sum(1 for v in self.values if not v.startswith(b'{"x": [1, 2]'))

    @property
    def n_malformed(self) -> int:
        return len(self.values) - self.n_valid

    def release(self, upto: int) -> None:
        with self._cond:
            self._gate = max(self._gate, min(upto, len(self.values)))
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._sent < self._gate or self._closing)
                if self._closing:
                    return
                start, stop = self._sent, self._gate
            for i in range(start, stop):
                self.producer.send(self.topic, self.values[i], partition=i % PARTITIONS)
            self.producer.flush(60)
            with self._cond:
                self._sent = stop
                self._cond.notify_all()
                if stop == len(self.values):
                    return

    def finish(self) -> None:
        self.release(len(self.values))
        with self._cond:
            assert self._cond.wait_for(lambda: self._sent == len(self.values), 120)
        self.close()

    def close(self) -> None:
        """Stops the writing thread (after the batch in flight) and closes the client."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(90)
        self.producer.close(10)

    def __enter__(self) -> LiveProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _learned(job: ReplicaJob, slot: int = 0) -> int:
    """The model's samples (global, restored ones included) as replica ``slot`` serves it."""
    document = job.model(slot)
    return -1 if document is None else int(document["n_samples_seen"])


def _check_run(
    job: ReplicaJob, options: dict, checkpoint_dir: Path, producer: LiveProducer, bootstrap: str
) -> None:
    """Every record produced is learned or dead-lettered exactly once, and the checkpoint
    equals the manifest replay."""
    topic = options["topic"]
    state = final_state(checkpoint_dir)
    assert int(state["model"]["n_samples_seen"]) == producer.n_valid
    assert int(state["totals"]["records_rejected"]) == producer.n_malformed
    ends = end_offsets(bootstrap, topic)
    assert {p: pos[0] for p, pos in state["positions"].items()} == {
        f"{topic}:{p}": end for p, end in ends.items()
    }
    # At least once: a record rejected again after a failure is dead-lettered again.
    dead = read_topic(bootstrap, options["dead_letter_topic"])
    origins = {
        (dict(r.headers)["streamsgd.source.partition"], dict(r.headers)["streamsgd.source.offset"])
        for r in dead
    }
    assert len(origins) == producer.n_malformed
    assert_matches_oracle(state, oracle(options, checkpoint_dir, read_partitions(bootstrap, topic)))


def _digests(job: ReplicaJob, slots: range) -> set[str]:
    return {job.wait_for(lambda s=s: job.model(s), f"/model of slot {s}")["digest"] for s in slots}


@pytest.mark.parametrize("n_replicas", [2, 3])
def test_replicas_learn_every_record_once_and_agree(
    n_replicas: int, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    options = train_options(
        kafka_bootstrap, topic, tmp_path / "ckpt", dead_letter_topic=f"{topic}-dlq"
    )
    producer = LiveProducer(kafka_bootstrap, topic, 1500, seed=n_replicas)
    producer.release(600)
    job = ReplicaJob(n_replicas, options, tmp_path / "job.log")
    try:
        job.wait_for(lambda: _learned(job) > 0, "the first steps")
        producer.finish()  # the rest arrives while the replicas train
        job.wait_for(lambda: _learned(job) == producer.n_valid, "every valid record learned")
        assert len(_digests(job, range(n_replicas))) == 1, "replicas hold different models"
        for slot in range(n_replicas):
            assert job.metric(slot, "streamsgd_world_size") == n_replicas
            # Each replica reads partitions of its own: it saw their records' timestamps.
            assert (job.metric(slot, "streamsgd_last_record_timestamp_seconds") or 0) > 0
        assert job.stop() == 0, job.diagnostics()
    finally:
        job.kill()
        producer.close()
    _check_run(job, options, tmp_path / "ckpt", producer, kafka_bootstrap)


@pytest.mark.parametrize("respawn", [False, True])
def test_a_replica_killed_mid_run(respawn: bool, kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    options = train_options(kafka_bootstrap, topic, tmp_path / "ckpt", respawn=respawn)
    producer = LiveProducer(kafka_bootstrap, topic, 1500, seed=5)
    producer.release(700)
    job = ReplicaJob(3, options, tmp_path / "job.log")
    try:
        job.wait_for(lambda: (job.metric(0, "streamsgd_global_step") or 0) >= 5, "step 5")
        victim = job.wait_for(lambda: job.pids().get(2), "rank 2's pid")
        os.kill(victim, signal.SIGKILL)
        expected_size = 3 if respawn else 2
        job.wait_for(
            lambda: (
                job.metric(0, "streamsgd_membership_changes_total")
                and job.metric(0, "streamsgd_world_size") == expected_size
            ),
            f"the survivors at {expected_size} replicas",
        )
        producer.finish()
        job.wait_for(lambda: _learned(job) == producer.n_valid, "every valid record learned")
        assert len(_digests(job, range(expected_size))) == 1
        assert job.stop() == 0, job.diagnostics()
    finally:
        job.kill()
        producer.close()
    _check_run(job, options, tmp_path / "ckpt", producer, kafka_bootstrap)


def test_the_whole_job_killed_then_restarted_with_another_n(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    options = train_options(
        kafka_bootstrap, topic, tmp_path / "ckpt", dead_letter_topic=f"{topic}-dlq"
    )
    producer = LiveProducer(kafka_bootstrap, topic, 1500, seed=9)
    producer.release(800)
    with producer:
        first = ReplicaJob(3, options, tmp_path / "first.log")
        try:
            first.wait_for(
                lambda: final_state_step(tmp_path / "ckpt") >= 10, "a checkpoint past step 10"
            )
        finally:
            first.kill()  # SIGKILL: no final checkpoint, steps after the last one are re-done
        producer.finish()
    second = ReplicaJob(2, options, tmp_path / "second.log")
    try:
        second.wait_for(lambda: _learned(second) == producer.n_valid, "every valid record learned")
        assert second.stop() == 0, second.diagnostics()
    finally:
        second.kill()
    _check_run(second, options, tmp_path / "ckpt", producer, kafka_bootstrap)


def final_state_step(checkpoint_dir: Path) -> int:
    if not (checkpoint_dir / "checkpoint.json").exists():
        return -1
    return int(final_state(checkpoint_dir).get("global_step", -1))
