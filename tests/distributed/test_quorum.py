"""Scaling out (docs/design.md#scaling-out) under real ``mpiexec``: with Open MPI's failure detector
on, rank 0 stopped (SIGSTOP: alive, holding the checkpoint lock, silent — as if cut off) is declared
failed by rank 1; 1 of 2 is no majority and the lock (the lease) is not rank 1's, so rank 1 stops
with one line instead of becoming a second rank 0."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.distributed.replica_job import ReplicaJob, train_options
from tests.distributed.test_replicas_kafka import PARTITIONS, LiveProducer
from tests.support.kafka_fixtures import create_topic

DETECTOR = ("--mca", "mpi_ft_detector", "true")


def test_half_of_the_job_without_the_lease_stops(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    options = train_options(kafka_bootstrap, topic, tmp_path / "ckpt")
    producer = LiveProducer(kafka_bootstrap, topic, 600, seed=41)
    producer.release(600)
    job = ReplicaJob(2, options, tmp_path / "job.log", mpi_args=DETECTOR)
    rank0 = None
    try:
        job.wait_for(lambda: (job.metric(1, "streamsgd_global_step") or 0) >= 5, "step 5")
        rank0 = job.wait_for(lambda: job.pids().get(0), "rank 0's pid")
        os.kill(rank0, signal.SIGSTOP)
        code = job.wait_exit()
    finally:
        if rank0 is not None:
            try:
                os.kill(rank0, signal.SIGCONT)
            except ProcessLookupError:
                pass
        job.kill()
        producer.close()
    text = job.log_text()
    assert code != 0, job.diagnostics()
    assert (
        "streamsgd: error: 1 of the last 2 replicas are left on this side (half, and the "
        "checkpoint lock is not ours)" in text
    ), job.diagnostics()
    assert "this one is rank 0" not in text.split("replica failed")[-1], "rank 1 took over"
