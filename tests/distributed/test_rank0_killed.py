"""Scaling out (docs/design.md#scaling-out): rank 0 — the manifest's and the checkpoint's writer —
killed with SIGKILL under real ``mpiexec`` and Kafka, at a random step or while its manifest appends
fail. The survivors hold every step the file lacks, the new rank 0 writes them, and the manifest
replays to the final checkpoint every time (before the fix, steps went missing and the replay
raised)."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from tests.distributed.replica_job import ReplicaJob, train_options
from tests.distributed.test_replicas_kafka import PARTITIONS, LiveProducer, _check_run, _learned
from tests.support.kafka_fixtures import create_topic

PROGRAM = Path(__file__).parent / "programs" / "faulty_train.py"
FLAG = "fail-manifest"


def _metric(job: ReplicaJob, slot: int, name: str) -> float:
    return job.metric(slot, name) or 0.0


def _survivors_at_two(job: ReplicaJob) -> bool:
    return bool(
        _metric(job, 1, "streamsgd_membership_changes_total")
        and job.metric(1, "streamsgd_world_size") == 2
    )


@pytest.mark.parametrize("fault", ["random-step", "failing-manifest-write"])
def test_rank_0_killed_leaves_no_manifest_gap(
    fault: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    checkpoint_dir = tmp_path / "ckpt"
    options = train_options(kafka_bootstrap, topic, checkpoint_dir)
    producer = LiveProducer(kafka_bootstrap, topic, 1500, seed=21)
    producer.release(900)
    job = ReplicaJob(3, options, tmp_path / "job.log", program=PROGRAM)
    seed = random.randrange(1 << 30)
    kill_at = random.Random(seed).randrange(3, 30)
    try:
        step = "streamsgd_global_step"
        if fault == "random-step":
            job.wait_for(lambda: _metric(job, 0, step) >= kill_at, f"step {kill_at} (seed {seed})")
        else:
            job.wait_for(lambda: _metric(job, 0, step) >= 3, "step 3")
            (checkpoint_dir / FLAG).touch()
            failures = "streamsgd_manifest_write_failures_total"
            job.wait_for(lambda: _metric(job, 0, failures) >= 2, "two failed manifest writes")
        os.kill(job.wait_for(lambda: job.pids().get(0), "rank 0's pid"), signal.SIGKILL)
        job.wait_for(lambda: _survivors_at_two(job), "the survivors at 2 replicas")
        if fault == "failing-manifest-write":
            # The new rank 0 (slot 1) fails to write too (same directory) until the disk is back.
            job.wait_for(
                lambda: _metric(job, 1, "streamsgd_manifest_write_failures_total") > 0,
                "a failed manifest write of the new rank 0",
            )
            (checkpoint_dir / FLAG).unlink()
        producer.finish()
        job.wait_for(lambda: _learned(job, 1) == producer.n_valid, "every valid record learned")
        assert job.stop() == 0, job.diagnostics()
    finally:
        job.kill()
        producer.close()
    # The manifest replays (no gap, no duplicate) to the final checkpoint.
    _check_run(job, options, checkpoint_dir, producer, kafka_bootstrap)
