"""The Kafka source against a real broker (docs/operations.md#running-against-kafka).

Every test compares with something computed independently of the Kafka path: the model
``OnlineLogisticRegression`` trains in-process on the same samples in the same minibatches
(bit-for-bit, ``np.array_equal``), the broker's own end offsets and committed group offsets,
and the records found in the dead-letter topic.

Trainers that must be killed run as real subprocesses (``python -m streamsgd train``); every
wait polls a condition (checkpoint contents, /readyz, process exit) until a deadline.
"""

from __future__ import annotations

import collections
import json
import math
import random
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from streamsgd.codec import encode_binary
from streamsgd.datasets.synthetic_stream import SyntheticStream
from tests.support.helpers import cli_flags, kafka_train_flags
from tests.support.kafka_helpers import (
    Processes,
    assert_checkpoint_equals_reference,
    checkpoint_where,
    cli,
    committed_offsets,
    end_offsets,
    inspect_json,
    load_checkpoint,
    metric,
    produce_file,
    produce_synthetic,
    read_topic,
    reference_fit,
    samples_seen,
    wait_until,
)

pytestmark = pytest.mark.kafka

D = 10  # features


def group_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def train_args(
    bootstrap: str,
    topic: str,
    group: str,
    batch_size: int,
    checkpoint_dir: Path,
    **flags: object,
) -> list[str]:
    """``streamsgd train`` arguments; ``flags``: max_samples=N → ``--max-samples N``."""
    extra = [item for k, v in flags.items() for item in (f"--{k.replace('_', '-')}", v)]
    args = [
        *kafka_train_flags(bootstrap, topic, group, n_features=D, batch_size=batch_size),
        *cli_flags(checkpoint_dir=checkpoint_dir),
        *extra,
    ]
    return [str(a) for a in args]


# --------------------------------------------------------------------------- 1. exact weights


@pytest.mark.parametrize(("samples_per_record", "fmt"), [(1, "json"), (7, "json"), (7, "binary")])
def test_weights_equal_the_reference_trained_on_the_same_samples(
    kafka_bootstrap: str,
    kafka_topic,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    samples_per_record: int,
    fmt: str,
) -> None:
    """Produce N samples with ``streamsgd produce synthetic``, train with --max-samples N:
    exactly N learned, weights bit-equal to OnlineLogisticRegression on SyntheticStream's
    samples 0..N−1 in minibatches of m. N is not a multiple of m (a partial last step) and,
    batched, m = 8 does not divide 7, so minibatches straddle records. The batched runs stop
    once mid-record (--max-samples 2504) and resume from the checkpoint."""
    n, m, seed = 5003, 8, 11
    topic = kafka_topic()
    produce_synthetic(kafka_bootstrap, topic, n, D, seed, samples_per_record, fmt)
    n_records = math.ceil(n / samples_per_record)
    # --samples-per-record K means K samples in every record (the last one the rest).
    assert end_offsets(kafka_bootstrap, topic) == {0: n_records}

    checkpoint = tmp_path / "checkpoint"
    args = train_args(kafka_bootstrap, topic, group_name("exact"), m, checkpoint)
    X, y = SyntheticStream(D, seed).samples(0, n)
    if samples_per_record > 1:
        first = 2504  # = 313 m, and = 357·7 + 5: the run stops inside record 357
        assert cli("train", *args, "--max-samples", first) == 0
        state = load_checkpoint(checkpoint)
        assert state is not None
        assert state["positions"] == {f"{topic}:0": [357, 5]}
        assert state["offsets"] == {f"{topic}:0": 357}
        reference, loss_sum = reference_fit(X[:first], y[:first], m)
        assert_checkpoint_equals_reference(state, reference, loss_sum)

    assert cli("train", *args, "--max-samples", n) == 0

    reference, loss_sum = reference_fit(X, y, m)
    state = load_checkpoint(checkpoint)
    assert state is not None
    assert_checkpoint_equals_reference(state, reference, loss_sum)
    assert state["totals"]["samples_consumed"] == n
    assert state["totals"]["records_rejected"] == 0
    assert state["totals"]["updates_skipped"] == 0
    assert state["positions"] == {f"{topic}:0": [n_records, 0]}

    # What a user sees with `streamsgd inspect --json` (floats round-trip exactly).
    document = inspect_json(checkpoint, capsys)
    assert np.array_equal(np.array(document["coef"]), reference.parameters[:-1])
    assert document["intercept"] == reference.parameters[-1]
    assert document["n_samples_seen"] == n
    assert document["n_updates"] == math.ceil(n / m)
    assert document["offsets"] == {f"{topic}:0": n_records}


# --------------------------------------------------------------------------- 2. SIGKILL


def test_sigkill_at_random_moments_then_restart_gives_the_uninterrupted_model(
    kafka_bootstrap: str, kafka_topic, tmp_path: Path, processes: Processes
) -> None:
    """A live stream of batched binary records (7 samples each, m = 16: checkpoints fall
    mid-record). The trainer is SIGKILLed at random moments — once its checkpoint has passed
    a random sample count, plus a random delay — and restarted with the same checkpoint
    directory, four times. The stream only reaches N after the last kill, so every kill is
    mid-stream. The final model is bit-for-bit the uninterrupted one.

    Each restart uses a fresh consumer group: with the killed member still registered, the
    same group's rebalance would wait out kafka-python's 45 s session timeout. Resuming relies
    on the checkpoint's offsets (a fresh group has no committed offsets to fall back on, and
    auto-offset-reset earliest would re-read everything), so this is the stricter test."""
    n, m, per_record, seed, kills = 9000, 16, 7, 23, 4
    rng_seed = random.randrange(2**32)
    rng = random.Random(rng_seed)
    print(f"kill moments drawn with random seed {rng_seed}")
    topic = kafka_topic()
    X, y = SyntheticStream(D, seed).samples(0, n)
    feeder = processes.feeder(kafka_bootstrap, topic, X, y, per_record, "binary", rate=150)
    checkpoint = tmp_path / "checkpoint"
    base_group = group_name("crash")
    common = {"max_samples": n, "checkpoint_every_updates": 1, "checkpoint_interval_seconds": 0.2}

    lo, hi = int(0.05 * n), int(0.8 * n)
    width = (hi - lo) / kills
    thresholds = [int(lo + width * (i + rng.random())) for i in range(kills)]
    observed: list[tuple[int, list[int], int]] = []
    last_seen = 0
    for i, threshold in enumerate(thresholds):
        # The stream runs on past the threshold (so most kills hit a trainer that is still
        # receiving records) but stops well short of N.
        feeder.open_to(min(threshold + rng.randrange(1000, 2500), int(0.9 * n)))
        trainer = processes.trainer(
            train_args(kafka_bootstrap, topic, f"{base_group}-{i}", m, checkpoint, **common)
        )
        trainer.wait_for(
            lambda t=threshold: samples_seen(load_checkpoint(checkpoint)) >= t,  # type: ignore[misc]
            90,
            f"run {i}: a checkpoint past sample {threshold}",
        )
        # A random kill moment (not a synchronisation): right after the checkpoint was seen
        # (often between the save and the offset commit) or a little later.
        time.sleep(rng.choice([0.0, rng.uniform(0.0, 0.3)]))
        trainer.require_alive()
        assert trainer.kill() == -signal.SIGKILL
        state = load_checkpoint(checkpoint)
        assert state is not None
        seen = samples_seen(state)
        offset, skip = state["positions"][f"{topic}:0"]
        # The checkpoint is consistent: its position is exactly after the last applied sample.
        assert seen == offset * per_record + skip
        assert seen % m == 0 and last_seen <= seen < n
        assert state["totals"]["samples_consumed"] == seen
        observed.append((seen, [offset, skip], feeder.sent_samples()))
        last_seen = seen
    print(
        f"thresholds {thresholds}; at the kills (checkpoint samples, [offset, skip], "
        f"samples written so far): {observed}"
    )

    feeder.open_to(n)
    final = processes.trainer(
        train_args(kafka_bootstrap, topic, f"{base_group}-final", m, checkpoint, **common)
    )
    assert final.wait_exit(120) == 0, final.diagnostics()
    feeder.close()

    state = load_checkpoint(checkpoint)
    assert state is not None
    reference, loss_sum = reference_fit(X, y, m)
    assert_checkpoint_equals_reference(state, reference, loss_sum)
    assert state["totals"]["samples_consumed"] == n
    assert state["positions"] == {f"{topic}:0": [feeder.n_records, 0]}


# --------------------------------------------------------------------------- 3. broker restart


def test_broker_stop_and_restart_mid_stream_loses_and_repeats_nothing(
    kafka_broker, kafka_topic, tmp_path: Path, processes: Processes
) -> None:
    """The trainer has learned the first part of the stream (its buffer holds a partial
    minibatch that ends inside a record) when the broker stops. /readyz turns 503 while the
    broker is away and 200 when it is back (same port, same data); then the rest of the stream
    arrives and the final model is bit-for-bit the uninterrupted one."""
    bootstrap = kafka_broker.bootstrap_servers
    n, m, per_record, seed = 6000, 8, 7, 31
    first = 3010  # 430 records; 3008 = 376 m learned, the last 2 samples buffered
    topic = kafka_topic()
    X, y = SyntheticStream(D, seed).samples(0, n)
    feeder = processes.feeder(bootstrap, topic, X, y, per_record, "json", rate=5000)
    feeder.wait_sent(first)
    checkpoint = tmp_path / "checkpoint"
    trainer = processes.trainer(
        train_args(
            bootstrap,
            topic,
            group_name("restart"),
            m,
            checkpoint,
            max_samples=n,
            checkpoint_every_updates=1,
            checkpoint_interval_seconds=0.5,
            lag_interval_seconds=0.5,
        )
    )
    state = trainer.wait_for(
        lambda: checkpoint_where(checkpoint, lambda s: samples_seen(s) == 3008),
        90,
        "the checkpoint of the first part (3008 samples)",
    )
    assert state["positions"] == {f"{topic}:0": [429, 5]}  # 3008 = 429·7 + 5
    trainer.wait_for(lambda: trainer.readyz() == 200, 30, "/readyz 200 before the stop")

    kafka_broker.stop()
    trainer.wait_for(lambda: trainer.readyz() == 503, 60, "/readyz 503 while the broker is down")
    assert trainer.get("/healthz")[0] == 200
    kafka_broker.start()
    trainer.wait_for(lambda: trainer.readyz() == 200, 90, "/readyz 200 after the restart")

    feeder.wait_sent(n)
    assert trainer.wait_exit(120) == 0, trainer.diagnostics()
    feeder.close()

    final = load_checkpoint(checkpoint)
    assert final is not None
    reference, loss_sum = reference_fit(X, y, m)
    assert_checkpoint_equals_reference(final, reference, loss_sum)
    assert final["totals"]["samples_consumed"] == n
    assert final["positions"] == {f"{topic}:0": [feeder.n_records, 0]}


# --------------------------------------------------------------------------- 4. bad records


def _bad_records() -> list[tuple[bytes, str]]:
    """(record value, reason it must be rejected with) for d = 10."""
    zeros = ",".join(["0.5"] * (D - 1))
    return [
        (b'{"x": [1.0, 2.0', "invalid_json"),
        (b"\xff\xfe{not utf-8", "invalid_json"),
        (b'{"x": [0.1, 0.2, 0.3], "y": 1}', "wrong_dimension"),
        (f'{{"x": [NaN,{zeros}], "y": 1}}'.encode(), "non_finite"),
        (f'{{"x": [{zeros},-Infinity], "y": 0}}'.encode(), "non_finite"),
        (f'{{"x": [{zeros},0.5], "y": 2}}'.encode(), "invalid_label"),
        (f'{{"x": [{zeros},0.5], "y": "1"}}'.encode(), "invalid_label"),
        (f'{{"x": [{zeros},0.5]}}'.encode(), "missing_label"),
        (b'{"y": 1, "x": ' + b"[" * 1800 + b"]" * 1800 + b"}", "too_deep"),
        (f'{{"x": ["a",{zeros}], "y": 1}}'.encode(), "invalid_schema"),
        (f'{{"x": [true,{zeros}], "y": 1}}'.encode(), "invalid_schema"),
        (b"[1, 2, 3]", "invalid_schema"),
        (f'{{"X": [[{zeros},1], [{zeros},2]], "y": [1]}}'.encode(), "invalid_schema"),
        (f'{{"x": [{zeros},0.5], "y": 1, "weight": -1}}'.encode(), "invalid_weight"),
        (f'{{"x": [{zeros},0.5], "y": 1, "pad": "{"p" * 5000}"}}'.encode(), "too_large"),
        (b"SSGD\x01", "invalid_binary"),
        (encode_binary(np.array([[1.0, 2.0, 3.0]]), np.array([1.0])), "wrong_dimension"),
    ]


def test_bad_records_go_to_the_dead_letter_topic_and_never_reach_the_model(
    kafka_bootstrap: str, kafka_topic, tmp_path: Path, processes: Processes
) -> None:
    """A JSON Lines file mixing valid records (single samples with labels 1/0/true/false/−1,
    weighted samples, 3-sample batches) with one of each kind of bad record, fed with
    `streamsgd produce file`, plus an empty value sent directly (the file producer skips
    empty lines; a null value is the separate test below).
    Every bad record is in the dead-letter topic, unchanged, with its reason and its source
    topic/partition/offset in headers; /metrics counts them by reason; the model is
    bit-for-bit the reference trained on the valid samples only."""
    from kafka import KafkaProducer

    m, n_valid, seed = 8, 200, 5
    topic, dead_letters = kafka_topic(), kafka_topic()
    X, y = SyntheticStream(D, seed).samples(0, n_valid)
    bad = _bad_records()

    def num(v: float) -> str:
        return repr(float(v))

    # The stream, in order: each entry is (value, reason or None for valid).
    lines: list[tuple[bytes | None, str | None]] = []
    weights: list[float | None] = []
    i = k = 0
    while i < n_valid:
        kind = k % 6
        row = f"[{','.join(num(v) for v in X[i])}]"
        label = int(y[i])
        if kind == 3 and i + 3 <= n_valid:
            rows = ",".join(f"[{','.join(num(v) for v in X[j])}]" for j in range(i, i + 3))
            labels = ",".join(str(int(v)) for v in y[i : i + 3])
            lines.append((f'{{"X": [{rows}], "y": [{labels}]}}'.encode(), None))
            weights += [None] * 3
            i += 3
        else:
            if kind == 1:
                text = ("true" if label else "false") if k % 12 == 1 else ("1" if label else "-1")
                value = f'{{"x": {row}, "y": {text}}}'
            elif kind == 5:
                w = 0.5 if k % 12 == 5 else 2.0
                value = f'{{"y": {label}, "x": {row}, "weight": {w}}}'
                weights.append(w)
            else:
                value = f'{{"x": {row}, "y": {label}}}'
            if kind != 5:
                weights.append(None)
            lines.append((value.encode(), None))
            i += 1
        if k % 2 == 1 and bad:
            lines.append(bad.pop(0))
        k += 1
    assert not bad, "the stream must hold every bad record"
    assert lines[-1][1] is None, "the stream must end with a valid record"

    # Empty lines cannot be fed through the file producer (it skips them): an empty value
    # goes in directly, between the two halves of the file.
    half = len(lines) // 2
    first_file, second_file = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first_file.write_bytes(b"".join(v + b"\n" for v, _ in lines[:half]))  # type: ignore[operator]
    second_file.write_bytes(b"".join(v + b"\n" for v, _ in lines[half:]))  # type: ignore[operator]
    lines[half:half] = [(b"", "empty")]

    produce_file(kafka_bootstrap, topic, first_file)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        producer.send(topic, value=b"").get(30)
    finally:
        producer.close()
    produce_file(kafka_bootstrap, topic, second_file)
    assert end_offsets(kafka_bootstrap, topic) == {0: len(lines)}

    checkpoint = tmp_path / "checkpoint"
    trainer = processes.trainer(
        train_args(
            kafka_bootstrap,
            topic,
            group_name("bad"),
            m,
            checkpoint,
            dead_letter_topic=dead_letters,
            max_record_bytes=4096,
            checkpoint_every_updates=1,
            checkpoint_interval_seconds=0.5,
        )
    )
    # n_valid is a multiple of m and the last record is valid: when the checkpoint holds all
    # n_valid samples, every record has been handled.
    state = trainer.wait_for(
        lambda: checkpoint_where(
            checkpoint,
            lambda s: samples_seen(s) == n_valid and s["offsets"] == {f"{topic}:0": len(lines)},
        ),
        90,
        "a checkpoint covering the whole stream",
    )
    expected_bad = [(offset, v, r) for offset, (v, r) in enumerate(lines) if r is not None]
    assert state["totals"]["records_rejected"] == len(expected_bad)

    values = trainer.metrics()
    by_reason = collections.Counter(r for _, _, r in expected_bad)
    from streamsgd.codec import REJECT_REASONS

    for reason in REJECT_REASONS:
        assert (
            metric(values, "streamsgd_records_rejected_total", reason=reason) == by_reason[reason]
        ), reason
    assert metric(values, "streamsgd_dead_letter_records_total") == len(expected_bad)
    assert metric(values, "streamsgd_samples_learned_total") == n_valid
    assert metric(values, "streamsgd_updates_total") == n_valid // m
    assert metric(values, "streamsgd_records_consumed_total") == len(lines)

    trainer.send(signal.SIGTERM)
    assert trainer.wait_exit(60) == 0, trainer.diagnostics()

    letters = read_topic(kafka_bootstrap, dead_letters)
    assert len(letters) == len(expected_bad)
    for letter, (offset, original, reason) in zip(letters, expected_bad, strict=True):
        headers = {k: v.decode() for k, v in letter.headers}
        assert headers["streamsgd.reason"] == reason, (offset, original)
        assert headers["streamsgd.detail"]
        assert headers["streamsgd.source.topic"] == topic
        assert headers["streamsgd.source.partition"] == "0"
        assert headers["streamsgd.source.offset"] == str(offset)
        assert letter.value == original

    final = load_checkpoint(checkpoint)
    assert final is not None
    reference, loss_sum = reference_fit(X, y, m, weights)
    assert_checkpoint_equals_reference(final, reference, loss_sum)


def test_a_null_value_record_is_dead_lettered_not_fatal(
    kafka_bootstrap: str, kafka_topic, tmp_path: Path, processes: Processes
) -> None:
    """A tombstone (key, null value) between valid records is rejected as ``empty`` and
    dead-lettered like any bad record; the trainer keeps going."""
    from kafka import KafkaProducer

    m, seed = 4, 7
    topic, dead_letters = kafka_topic(), kafka_topic()
    X, y = SyntheticStream(D, seed).samples(0, 8)
    feeder = processes.feeder(kafka_bootstrap, topic, X[:4], y[:4], 1, "json")
    feeder.wait_sent(4)
    feeder.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        producer.send(topic, key=b"tombstone", value=None).get(30)
    finally:
        producer.close()
    feeder = processes.feeder(kafka_bootstrap, topic, X[4:], y[4:], 1, "json")
    feeder.wait_sent(4)
    feeder.close()

    checkpoint = tmp_path / "checkpoint"
    trainer = processes.trainer(
        train_args(
            kafka_bootstrap,
            topic,
            group_name("tombstone"),
            m,
            checkpoint,
            dead_letter_topic=dead_letters,
            max_samples=8,
        )
    )
    assert trainer.wait_exit(60) == 0, trainer.diagnostics()
    letters = read_topic(kafka_bootstrap, dead_letters)
    assert len(letters) == 1
    headers = {k: v.decode() for k, v in letters[0].headers}
    assert headers["streamsgd.reason"] == "empty"
    assert headers["streamsgd.source.offset"] == "4"
    state = load_checkpoint(checkpoint)
    assert state is not None
    reference, loss_sum = reference_fit(X, y, m)
    assert_checkpoint_equals_reference(state, reference, loss_sum)


# --------------------------------------------------------------------------- 5. partitions


def test_four_partitions_every_record_learned_exactly_once(
    kafka_bootstrap: str, kafka_topic, tmp_path: Path
) -> None:
    """N samples in batched records spread over 4 partitions. With --max-samples N a record
    learned twice would stop the run before some partition's end, a lost one would never let
    it finish: so the checkpoint's offsets equal every partition's end offset, N samples are
    learned, and the group's committed offsets equal the checkpoint's."""
    n, m, per_record, seed = 6000, 8, 3, 41
    topic = kafka_topic(4)
    produce_synthetic(kafka_bootstrap, topic, n, D, seed, per_record, "json")
    ends = end_offsets(kafka_bootstrap, topic)
    assert sorted(ends) == [0, 1, 2, 3]
    assert all(end > 0 for end in ends.values()), f"a partition got no records: {ends}"
    assert sum(ends.values()) == math.ceil(n / per_record)

    checkpoint = tmp_path / "checkpoint"
    group = group_name("partitions")
    args = train_args(
        kafka_bootstrap, topic, group, m, checkpoint, max_samples=n, checkpoint_every_updates=10
    )
    assert cli("train", *args) == 0

    state = load_checkpoint(checkpoint)
    assert state is not None
    expected = {f"{topic}:{p}": end for p, end in ends.items()}
    assert state["offsets"] == expected
    assert sum(state["offsets"].values()) == sum(ends.values())
    assert state["positions"] == {key: [end, 0] for key, end in expected.items()}
    assert state["model"]["n_samples_seen"] == n
    assert state["model"]["n_updates"] == n // m
    assert state["totals"]["samples_consumed"] == n
    assert state["totals"]["records_rejected"] == 0
    assert committed_offsets(kafka_bootstrap, group) == expected


def test_a_rebalance_checkpoints_then_commits_what_the_checkpoint_covers(
    kafka_bootstrap: str, kafka_topic, tmp_path: Path, processes: Processes
) -> None:
    """On revocation (docs/operations.md#running-against-kafka): "On revocation ...: finish the
    current step, checkpoint, commit". A second member joins the trainer's group; the trainer's
    partitions are revoked; the checkpoint it writes then (the only one: the interval is an hour)
    covers what it learned, and the group's committed offsets equal it."""
    from kafka import KafkaConsumer

    n, m, seed = 400, 8, 61
    topic = kafka_topic()
    X, y = SyntheticStream(D, seed).samples(0, n)
    feeder = processes.feeder(kafka_bootstrap, topic, X, y, 1, "json")
    feeder.wait_sent(n)
    feeder.close()
    checkpoint, group = tmp_path / "checkpoint", group_name("revoke")
    trainer = processes.trainer(
        train_args(kafka_bootstrap, topic, group, m, checkpoint, checkpoint_interval_seconds=3600)
    )
    trainer.wait_for(
        lambda: json.loads(trainer.get("/model")[1])["n_samples_seen"] == n,
        60,
        "the trainer to learn the whole topic",
    )
    assert load_checkpoint(checkpoint) is None

    other = KafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )

    def revocation_checkpoint() -> dict | None:
        other.poll(timeout_ms=100)  # the new member joins while it polls
        return load_checkpoint(checkpoint)

    try:
        state = trainer.wait_for(
            revocation_checkpoint,
            60,
            "the checkpoint written on revocation",
        )
        assert samples_seen(state) == n and state["offsets"] == {f"{topic}:0": n}
        wait_until(
            lambda: (
                other.poll(timeout_ms=100) is not None
                and committed_offsets(kafka_bootstrap, group) == state["offsets"]
            ),
            8,
            "the revocation's commit",
            lambda: (
                f"committed {committed_offsets(kafka_bootstrap, group)}\n" + trainer.diagnostics()
            ),
        )
    finally:
        other.close(autocommit=False)


# --------------------------------------------------------------------------- 6. SIGTERM


def test_sigterm_exits_cleanly_with_a_final_checkpoint_and_matching_commits(
    kafka_bootstrap: str, kafka_topic, tmp_path: Path, processes: Processes
) -> None:
    """SIGTERM mid-stream (more records follow after it): exit 0, a final checkpoint whose
    position is exactly after the last applied step, committed offsets equal to it. Resuming
    from it (same group) up to N gives the uninterrupted model bit-for-bit: the shutdown lost
    and repeated nothing."""
    n, m, seed = 12000, 8, 53
    topic = kafka_topic()
    X, y = SyntheticStream(D, seed).samples(0, n)
    feeder = processes.feeder(kafka_bootstrap, topic, X, y, 1, "json", rate=1500)
    feeder.open_to(n - 2000)
    checkpoint = tmp_path / "checkpoint"
    group = group_name("sigterm")
    args = train_args(
        kafka_bootstrap,
        topic,
        group,
        m,
        checkpoint,
        checkpoint_every_updates=5,
        checkpoint_interval_seconds=1,
    )
    trainer = processes.trainer(args)
    trainer.wait_for(
        lambda: samples_seen(load_checkpoint(checkpoint)) >= 2000, 90, "progress past 2000"
    )
    # The gate holds the last 2000 samples back until after the stop, so the stream goes on
    # past SIGTERM whatever the machine's speed. (Asserting that the feeder is still sending
    # at this moment raced the trainer: on a loaded machine the feeder reached its gate
    # before the trainer had learned 2000 samples.)
    trainer.send(signal.SIGTERM)
    assert trainer.wait_exit(60) == 0, trainer.diagnostics()
    assert "received SIGTERM" in trainer.log_text()
    assert "Traceback" not in trainer.log_text()

    state = load_checkpoint(checkpoint)
    assert state is not None
    seen = samples_seen(state)
    assert seen >= 2000 and seen % m == 0  # a partial minibatch is not applied on stop
    assert state["positions"] == {f"{topic}:0": [seen, 0]}  # one sample per record
    assert committed_offsets(kafka_bootstrap, group) == state["offsets"] == {f"{topic}:0": seen}

    feeder.wait_sent(n)
    resumed = processes.trainer([*args, "--max-samples", str(n)])
    assert resumed.wait_exit(120) == 0, resumed.diagnostics()
    feeder.close()
    state = load_checkpoint(checkpoint)
    assert state is not None
    reference, loss_sum = reference_fit(X, y, m)
    assert_checkpoint_equals_reference(state, reference, loss_sum)
    assert committed_offsets(kafka_bootstrap, group) == {f"{topic}:0": n}


def test_reference_helpers_would_notice_a_difference() -> None:
    """The comparisons above can fail: one sample's label or the batch size changes the
    weights, and the comparison reports it."""
    X, y = SyntheticStream(D, 1).samples(0, 300)
    reference, loss_sum = reference_fit(X, y, 8)
    state = {
        "model": reference.get_state(),
        "totals": {"progressive_loss_sum": loss_sum},
    }
    assert_checkpoint_equals_reference(state, reference, loss_sum)
    flipped = y.copy()
    flipped[137] = 1 - flipped[137]
    other, other_loss = reference_fit(X, flipped, 8)
    with pytest.raises(AssertionError):
        assert_checkpoint_equals_reference(state, other, other_loss)
    other, other_loss = reference_fit(X, y, 7)
    with pytest.raises(AssertionError):
        assert_checkpoint_equals_reference(state, other, other_loss)
