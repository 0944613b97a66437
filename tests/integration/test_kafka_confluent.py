"""The optional confluent-kafka backend (--kafka-client confluent) against the real broker:
the same exact model as the reference, across a SIGKILL and restart too."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from streamsgd.datasets.synthetic_stream import SyntheticStream
from tests.support.helpers import cli_flags, kafka_train_flags
from tests.support.kafka_helpers import (
    Processes,
    assert_checkpoint_equals_reference,
    cli,
    committed_offsets,
    load_checkpoint,
    produce_synthetic,
    reference_fit,
    samples_seen,
)

pytestmark = pytest.mark.kafka

D = 6


def args(bootstrap: str, topic: str, group: str, m: int, checkpoint: Path, n: int) -> list[str]:
    flags = [
        *kafka_train_flags(bootstrap, topic, group, kafka_client="confluent", n_features=D),
        *cli_flags(batch_size=m, checkpoint_dir=checkpoint, max_samples=n),
    ]
    return [str(flag) for flag in flags]


@pytest.mark.parametrize(("samples_per_record", "fmt"), [(1, "json"), (5, "binary")])
def test_confluent_backend_learns_exactly_the_reference_model(
    kafka_bootstrap: str, kafka_topic, tmp_path: Path, samples_per_record: int, fmt: str
) -> None:
    n, m, seed = 3001, 8, 4
    topic = kafka_topic()
    produce_synthetic(kafka_bootstrap, topic, n, D, seed, samples_per_record, fmt)
    checkpoint = tmp_path / "ck"
    group = f"confluent-{uuid.uuid4().hex[:8]}"
    assert cli("train", *args(kafka_bootstrap, topic, group, m, checkpoint, n)) == 0
    state = load_checkpoint(checkpoint)
    assert state is not None
    X, y = SyntheticStream(D, seed).samples(0, n)
    reference, loss_sum = reference_fit(X, y, m)
    assert_checkpoint_equals_reference(state, reference, loss_sum)
    n_records = -(-n // samples_per_record)
    assert state["offsets"] == {f"{topic}:0": n_records}
    assert committed_offsets(kafka_bootstrap, group) == {f"{topic}:0": n_records}


def test_confluent_backend_resumes_exactly_after_sigkill(
    kafka_bootstrap: str, kafka_topic, tmp_path: Path, processes: Processes
) -> None:
    """A live stream held below N, so the kill is mid-stream; the restart finishes the same
    model bit for bit."""
    n, m, seed = 6000, 16, 9
    topic = kafka_topic()
    X, y = SyntheticStream(D, seed).samples(0, n)
    feeder = processes.feeder(kafka_bootstrap, topic, X, y, 3, "binary", rate=2000)
    feeder.open_to(3000)
    checkpoint = tmp_path / "ck"
    base = f"confluent-kill-{uuid.uuid4().hex[:8]}"
    first = args(kafka_bootstrap, topic, f"{base}-0", m, checkpoint, n)
    trainer = processes.trainer([*first, "--checkpoint-every-updates", "1"])
    trainer.wait_for(
        lambda: samples_seen(load_checkpoint(checkpoint)) >= 1000, 90, "a checkpoint past 1000"
    )
    trainer.require_alive()
    assert trainer.kill() == -signal.SIGKILL
    feeder.open_to(n)
    assert cli("train", *args(kafka_bootstrap, topic, f"{base}-1", m, checkpoint, n)) == 0
    feeder.close()
    state = load_checkpoint(checkpoint)
    assert state is not None
    reference, loss_sum = reference_fit(X, y, m)
    assert_checkpoint_equals_reference(state, reference, loss_sum)
