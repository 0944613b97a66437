"""Scaling out (docs/design.md#scaling-out): the exit code of a replicated job stopped with SIGUSR1
after failures, as docs/operations.md's table documents it: 137 once a replacement spawned by
``--respawn`` was itself killed (mpiexec reports the spawned job's killed process; ``pmix.recover``
and ``PMIX_JOB_RECOVERABLE`` in the spawn's info do not change it in Open MPI 5.0), though the final
checkpoint is written and exact."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.distributed.replica_job import ReplicaJob, train_options
from tests.distributed.test_replicas_kafka import PARTITIONS, LiveProducer, _check_run, _learned
from tests.support.kafka_fixtures import create_topic


def _membership(job: ReplicaJob, changes: int, size: int) -> bool:
    return (job.metric(0, "streamsgd_membership_changes_total") or 0) >= changes and (
        job.metric(0, "streamsgd_world_size") == size
    )


def test_a_killed_replacement_then_a_graceful_stop_exits_137(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    options = train_options(kafka_bootstrap, topic, tmp_path / "ckpt", respawn=True)
    producer = LiveProducer(kafka_bootstrap, topic, 1200, seed=31)
    producer.release(600)
    job = ReplicaJob(3, options, tmp_path / "job.log")
    try:
        job.wait_for(lambda: (job.metric(0, "streamsgd_global_step") or 0) >= 5, "step 5")
        first = job.wait_for(lambda: job.pids().get(2), "rank 2's pid")
        os.kill(first, signal.SIGKILL)
        job.wait_for(lambda: _membership(job, 2, 3), "a replacement at 3 replicas")
        replacement = job.wait_for(
            lambda: job.pids().get(2) if job.pids().get(2) != first else None,
            "the replacement's pid",
        )
        os.kill(replacement, signal.SIGKILL)
        job.wait_for(lambda: _membership(job, 4, 3), "a second replacement at 3 replicas")
        producer.finish()
        job.wait_for(lambda: _learned(job) == producer.n_valid, "every valid record learned")
        code = job.stop()
    finally:
        job.kill()
        producer.close()
    _check_run(job, options, tmp_path / "ckpt", producer, kafka_bootstrap)
    assert code == 137, job.diagnostics()
