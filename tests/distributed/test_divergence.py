"""Scaling out (docs/design.md#scaling-out) under real ``mpiexec``: rank 1's θ is changed by one ulp
mid-run (as a host whose CPU rounds differently would); the next digest check finds it, every
replica adopts rank 0's model and counts it, and the run still equals its manifest replay."""

from __future__ import annotations

from pathlib import Path

from tests.distributed.replica_job import ReplicaJob, train_options
from tests.distributed.test_rank0_killed import PROGRAM
from tests.distributed.test_replicas_kafka import (
    PARTITIONS,
    LiveProducer,
    _check_run,
    _digests,
    _learned,
)
from tests.support.kafka_fixtures import create_topic

DIVERGENCES = "streamsgd_replica_divergences_total"


def test_a_divergent_replica_adopts_rank_0s_model(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    checkpoint_dir = tmp_path / "ckpt"
    options = train_options(kafka_bootstrap, topic, checkpoint_dir, replica_check_steps=3)
    producer = LiveProducer(kafka_bootstrap, topic, 1200, seed=51)
    producer.release(700)
    job = ReplicaJob(2, options, tmp_path / "job.log", program=PROGRAM)
    try:
        job.wait_for(lambda: (job.metric(0, "streamsgd_global_step") or 0) >= 4, "step 4")
        assert job.metric(0, DIVERGENCES) == 0
        (checkpoint_dir / "perturb-rank-1").touch()
        # Steps must still come after the flag: under load the job may already have learned
        # all 700 released records by now, and with no new record there is no step, so no
        # digest check (seen once in a loaded CI run). 250 more records = about 10 steps of
        # 24, over three checks at --replica-check-steps 3.
        producer.release(950)
        for slot in (0, 1):
            job.wait_for(lambda s=slot: (job.metric(s, DIVERGENCES) or 0) >= 1, "a divergence")
        producer.finish()
        job.wait_for(lambda: _learned(job) == producer.n_valid, "every valid record learned")
        assert len(_digests(job, range(2))) == 1, "replicas hold different models"
        assert job.metric(0, DIVERGENCES) == job.metric(1, DIVERGENCES) == 1
        assert "replicas diverged before step" in job.log_text()
        assert job.stop() == 0, job.diagnostics()
    finally:
        job.kill()
        producer.close()
    _check_run(job, options, checkpoint_dir, producer, kafka_bootstrap)
