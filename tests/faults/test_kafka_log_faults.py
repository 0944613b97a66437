"""Kafka operations of issue 21 against the real broker: what a transactional producer, a
recreated topic and retention past the checkpoint do to a long-running trainer (both clients).

Each test injects the operation and checks that no record is lost or learned silently: the
trainer learns exactly the records it should (model bit-identical to a reference fit), or
refuses / ends with one line, or accounts the records it can no longer read.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.support.kafka_helpers import (
    Processes,
    Trainer,
    assert_checkpoint_equals_reference,
    load_checkpoint,
    metric,
    reference_fit,
)

pytestmark = pytest.mark.kafka

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
    return [
        "--source", "kafka", "--kafka-client", client, "--bootstrap-servers", bootstrap,
        "--topic", topic, "--group-id", f"g-{uuid.uuid4().hex[:8]}", "--n-features", D,
        "--batch-size", 8, "--checkpoint-dir", checkpoint, "--lag-interval-seconds", 0.5,
        "--metrics-port", "0", "--progress", "never",
    ]  # fmt: skip


def model_samples(trainer: Trainer) -> int:
    return int(json.loads(trainer.get("/model")[1])["n_samples_seen"])


def lag(trainer: Trainer) -> float:
    return metric(trainer.metrics(), "streamsgd_consumer_lag_records")


# --------------------------------------------------------------------------- transactions


def write_transactions(
    bootstrap: str, topic: str, n_transactions: int, per_transaction: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n_transactions`` transactions of ``per_transaction`` samples each, every second one
    aborted (the first committed); returns the samples of the committed ones, in order."""
    from kafka import KafkaProducer

    X, y = samples(n_transactions * per_transaction, seed)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"tx-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
        acks="all",
    )
    committed = []
    try:
        producer.init_transactions()
        for t in range(n_transactions):
            rows = range(t * per_transaction, (t + 1) * per_transaction)
            producer.begin_transaction()
            for i in rows:
                producer.send(topic, encode(X[i], y[i]))
            producer.flush(60)
            if t % 2 == 0:
                producer.commit_transaction()
                committed.extend(rows)
            else:
                producer.abort_transaction()
    finally:
        producer.close()
    return X[committed], y[committed]


@pytest.mark.parametrize("client", CLIENTS)
def test_aborted_transactions_are_never_learned_and_lag_returns_to_zero(
    kafka_bootstrap: str, kafka_topic, tmp_path: Path, processes: Processes, client: str
) -> None:
    """Injects: 20 transactions of 48 records, every second one aborted (issue 21, item 2:
    kafka-python learned every record, confluent the committed ones). Must hold: each
    client learns exactly the committed records, in order, so its model is bit-identical to
    a reference fit on them (hence both clients give the same model), and the lag gauge
    returns to 0 once caught up, although the log ends with a transaction marker."""
    topic = kafka_topic()
    X, y = write_transactions(kafka_bootstrap, topic, 20, 48, seed=21)
    n = len(y)
    checkpoint = tmp_path / "ck"
    trainer = processes.trainer(train_args(kafka_bootstrap, client, topic, checkpoint))
    trainer.wait_for(lambda: model_samples(trainer) >= n, 120, f"the trainer to learn {n}")
    trainer.wait_for(lambda: lag(trainer) == 0, 60, "the consumer lag to read 0")
    assert model_samples(trainer) == n
    trainer.send(signal.SIGTERM)
    assert trainer.wait_exit(60) == 0, trainer.diagnostics()
    state = load_checkpoint(checkpoint)
    assert state is not None
    reference, loss_sum = reference_fit(X, y, 8)
    assert_checkpoint_equals_reference(state, reference, loss_sum)
