"""Helpers of the Kafka-operations fault tests
(docs/operations.md#what-the-trainer-does-for-each-kafka-operation): samples with a known reference,
the trainer's arguments, and what the tests read from a running trainer."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from tests.support.helpers import kafka_train_flags
from tests.support.kafka_helpers import Trainer, metric

D = 3
CLIENTS = ["kafka-python", "confluent"]


def samples(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` dense samples (features, 0/1 labels) of a separable-ish stream."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=n) > 0).astype(np.float64)
    return X, y


def encode(x: np.ndarray, label: float) -> bytes:
    return json.dumps({"x": [float(v) for v in x], "y": int(label)}).encode()


def train_args(bootstrap: str, client: str, topic: str, checkpoint: Path) -> list[object]:
    group = f"g-{uuid.uuid4().hex[:8]}"
    options = {"n_features": D, "batch_size": 8, "lag_interval_seconds": 0.5}
    return kafka_train_flags(
        bootstrap, topic, group, kafka_client=client, checkpoint_dir=checkpoint, **options
    )


def model_samples(trainer: Trainer) -> int:
    """Samples the trainer's model has seen; -1 when it did not answer in time (two loaded
    cores: a slow answer is no failure, the waits poll again)."""
    try:
        return int(json.loads(trainer.get("/model", timeout=30)[1])["n_samples_seen"])
    except OSError:  # URLError, a reset or timed-out connection
        return -1


def lag(trainer: Trainer) -> float:
    """The consumer lag gauge; NaN when the trainer did not answer in time."""
    try:
        return metric(trainer.metrics(), "streamsgd_consumer_lag_records")
    except OSError:
        return float("nan")


def write_samples(bootstrap: str, topic: str, X: np.ndarray, y: np.ndarray) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for row, label in zip(X, y, strict=True):
            producer.send(topic, encode(row, label))
        producer.flush(60)
    finally:
        producer.close()
