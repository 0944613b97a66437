"""End-to-end Kafka benchmark (issue 5, target 2) on the local broker of ``scripts/kafka-local``.

    .venv/bin/python -m bench.kafka_e2e --quick     # 100 k JSON records, 1 M batched samples
    .venv/bin/python -m bench.kafka_e2e --full      # 1 M JSON records, 10 M batched samples
    .venv/bin/python -m bench.kafka_e2e --bootstrap 127.0.0.1:9092   # use a running broker

Method: pre-fill a topic (one partition), then time a fresh consumer group from its first
``poll`` to its last applied update; the median of ``--repeats`` runs, each in a fresh
interpreter (so no case inherits another's threads or heap). Two clocks per run:
"from first poll" includes joining the group and the first fetch, "from first record" starts
when the first records arrive (the steady-state rate).

* JSON, one sample per record, d = 20: the streamsgd service (``Trainer`` with the
  kafka-python ``KafkaSource`` and the JSON ``Decoder``, m = 256 and m = 1) against the loop a
  user writes by hand: kafka-python ``KafkaConsumer`` + ``json.loads`` per record + River
  ``LogisticRegression.learn_one`` (target: ≥ 3×).
* Batched binary records (the documented ``SSGD`` format), d = 100, 1,024 samples per record:
  the streamsgd service at m = 256 (target: ≥ 1 M samples/s).
* Named features (no target; for information): the hashed sparse stream of ``bench.data``
  as ``{"features": {"f0": "17", ...}, "y": 1}`` records (20 categorical fields, 2^18
  buckets), against the same hand-written loop with River ``learn_one`` on "field=value"
  indicators.

Checkpointing is off in these runs (no checkpoint store): the benchmark measures the data path.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench import machine

REPO = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = REPO / "scripts" / "kafka-local"

MODES = {
    "quick": {"n_json": 100_000, "n_binary": 1_000_000},
    "full": {"n_json": 1_000_000, "n_binary": 10_000_000},
}
RECORD_SAMPLES = 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A broker from scripts/kafka-local on a free port, stopped on exit."""

    def __init__(self) -> None:
        self.env = dict(os.environ, KAFKA_PORT=str(_free_port()))
        self.bootstrap = ""

    def __enter__(self) -> Broker:
        out = subprocess.run(
            [sys.executable, str(KAFKA_LOCAL), "start"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            raise RuntimeError(f"scripts/kafka-local start failed:\n{out.stderr[-2000:]}")
        self.bootstrap = out.stdout.strip().splitlines()[-1].strip()
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            [sys.executable, str(KAFKA_LOCAL), "stop"],
            env=self.env,
            capture_output=True,
            timeout=120,
        )


# ---------------------------------------------------------------------- pre-fill
def _producer(bootstrap: str) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        linger_ms=20,
        batch_size=1 << 20,
        max_request_size=64 << 20,
        acks=1,
    )


def _create_topic(bootstrap: str, topic: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()


def fill_json(bootstrap: str, topic: str, n: int, seed: int) -> None:
    from streamsgd.codec import encode_dense
    from streamsgd.datasets.synthetic_stream import SyntheticStream

    _create_topic(bootstrap, topic)
    producer = _producer(bootstrap)
    stream = SyntheticStream(20, seed=seed)
    for lo in range(0, n, 65_536):
        X, y = stream.samples(lo, min(lo + 65_536, n))
        for x, label in zip(X, y, strict=True):
            producer.send(topic, encode_dense(x, label))
    producer.flush()
    producer.close()


def fill_named(bootstrap: str, topic: str, n: int, seed: int) -> None:
    """The hashed sparse stream of bench.data as named-feature JSON records (20 fields)."""
    from bench.data import sparse_named_records

    _create_topic(bootstrap, topic)
    producer = _producer(bootstrap)
    for record in sparse_named_records(n, seed):
        producer.send(topic, json.dumps(record, separators=(",", ":")).encode())
    producer.flush()
    producer.close()


def fill_binary(bootstrap: str, topic: str, n: int, seed: int) -> None:
    from streamsgd.codec import encode_binary
    from streamsgd.datasets.synthetic_stream import SyntheticStream

    _create_topic(bootstrap, topic)
    producer = _producer(bootstrap)
    stream = SyntheticStream(100, seed=seed)
    for lo in range(0, n, RECORD_SAMPLES):
        X, y = stream.samples(lo, min(lo + RECORD_SAMPLES, n))
        producer.send(topic, encode_binary(X, y))
    producer.flush()
    producer.close()


# ---------------------------------------------------------------------- consumers
def run_streamsgd(
    bootstrap: str,
    topic: str,
    n: int,
    d: int,
    m: int,
    client: str = "kafka-python",
    hash_bits: int | None = None,
) -> dict[str, float]:
    from streamsgd.cli import build_service
    from streamsgd.config import train_config
    from streamsgd.training.ports import Sensor

    marks: dict[str, float] = {}

    class Timing(Sensor):
        def records_consumed(self, n_records: int) -> None:
            marks.setdefault("first_record", time.perf_counter())

        def batch_applied(self, stats: Any, model: Any, duration_seconds: float) -> None:
            marks["last_update"] = time.perf_counter()

        def sequence_applied(self, stats: Any, model: Any, duration_seconds: float) -> None:
            marks["last_update"] = time.perf_counter()

    # The service as `streamsgd train` wires it; m = 1 runs aligned learn_sequence blocks of
    # 32 (the CLI default). Without the Prometheus sensor, as the figures were measured.
    config = train_config(
        source="kafka",
        bootstrap_servers=bootstrap,
        topic=topic,
        kafka_client=client,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        n_features=d,
        hash_bits=hash_bits,
        learning_rate=0.01 if m == 1 else 0.1,
        batch_size=m,
        max_samples=n,
        checkpoint_interval_seconds=1e9,
        progress="never",
        log_interval_seconds=0,
    )
    service, resources = build_service(config, sensors=[Timing()], metrics=False)
    # run() polls right after seeking to the (empty) checkpoint positions: its start is the
    # first poll.
    marks["first_poll"] = time.perf_counter()
    try:
        service.run()
    finally:
        resources.close()
    if service.model.n_samples_seen != n:
        raise RuntimeError(f"learned {service.model.n_samples_seen} samples, expected {n}")
    return {
        "from_first_poll": n / (marks["last_update"] - marks["first_poll"]),
        "from_first_record": n / (marks["last_update"] - marks["first_record"]),
    }


def _peer_consumer(bootstrap: str, topic: str, **overrides: Any) -> Any:
    """A kafka-python consumer as every hand-written peer loop opens it: a group of its own,
    from the start of the topic, up to 5,000 records a poll."""
    from kafka import KafkaConsumer

    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        **overrides,
    )


def _rates(n: int, first_poll: float, first_record: float | None, last: float) -> dict[str, float]:
    """Records per second of a peer loop, from its first poll and from its first record."""
    assert first_record is not None
    return {
        "from_first_poll": n / (last - first_poll),
        "from_first_record": n / (last - first_record),
    }


def run_baseline(bootstrap: str, topic: str, n: int, named: bool = False) -> dict[str, float]:
    """kafka-python consumer, json.loads per record, River learn_one. ``named``: the record
    holds named features, given to River as it takes them (a dict of "field=value"
    indicators, River's own one-hot form)."""
    from river import linear_model

    consumer = _peer_consumer(bootstrap, topic)
    model = linear_model.LogisticRegression()
    learned = 0
    first_poll = time.perf_counter()
    first_record = None
    last = first_poll
    while learned < n:
        batches = consumer.poll(timeout_ms=200)
        for messages in batches.values():
            if first_record is None and messages:
                first_record = time.perf_counter()
            for msg in messages:
                obj = json.loads(msg.value)
                if named:
                    x = {f"{k}={v}": 1.0 for k, v in obj["features"].items()}
                else:
                    x = dict(enumerate(obj["x"]))
                model.learn_one(x, obj["y"] == 1)
                learned += 1
                if learned >= n:
                    break
        last = time.perf_counter()
    consumer.close()
    return _rates(n, first_poll, first_record, last)


def run_vw_loop(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    """The loop of :func:`run_baseline` on named-feature records with Vowpal Wabbit as the
    learner: kafka-python, json.loads, the record written as a VW text line ("f0=17" string
    features as indicators, numbers as ``name:value``), ``pyvw`` learn per example
    (``-b 18 --loss_function logistic``, VW's defaults otherwise)."""
    import vowpalwabbit

    consumer = _peer_consumer(bootstrap, topic)
    vw = vowpalwabbit.Workspace("--loss_function logistic -b 18 --quiet")
    learned, first_record, first_poll = 0, None, time.perf_counter()
    last = first_poll
    while learned < n:
        for messages in consumer.poll(timeout_ms=200).values():
            if first_record is None and messages:
                first_record = time.perf_counter()
            for msg in messages[: n - learned]:
                obj = json.loads(msg.value)
                fields = " ".join(
                    f"{k}={v}" if isinstance(v, str) else f"{k}:{v}"
                    for k, v in obj["features"].items()
                )
                vw.learn(f"{1 if obj['y'] == 1 else -1} |f {fields}")
                learned += 1
        last = time.perf_counter()
    consumer.close()
    vw.finish()
    return _rates(n, first_poll, first_record, last)


def run_raw_kafka_python(bootstrap: str, topic: str, n_records: int) -> dict[str, float]:
    """Reference: kafka-python alone, records polled and dropped (no decoding, no learning)."""

    consumer = _peer_consumer(
        bootstrap, topic, max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20
    )
    got = 0
    first_poll = time.perf_counter()
    first_record = None
    while got < n_records:
        for messages in consumer.poll(timeout_ms=200).values():
            if first_record is None and messages:
                first_record = time.perf_counter()
            got += len(messages)
    last = time.perf_counter()
    consumer.close()
    return _rates(got, first_poll, first_record, last)


def run_raw_confluent(bootstrap: str, topic: str, n_records: int) -> dict[str, float] | None:
    """Reference: confluent-kafka (librdkafka) alone, records consumed and dropped."""
    try:
        from confluent_kafka import Consumer
    except ImportError:
        return None
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.message.max.bytes": 16 << 20,
        }
    )
    consumer.subscribe([topic])
    got = 0
    first_poll = time.perf_counter()
    first_record = None
    while got < n_records:
        first = consumer.poll(0.2)  # then drain without waiting, as the source does
        msgs = [] if first is None else [first, *consumer.consume(num_messages=4999, timeout=0)]
        if msgs and first_record is None:
            first_record = time.perf_counter()
        got += sum(1 for m in msgs if m.error() is None)
    last = time.perf_counter()
    consumer.close()
    return _rates(got, first_poll, first_record, last)


def _scale(result: dict[str, float], factor: int) -> dict[str, float]:
    return {k: v * factor for k, v in result.items()}


def _limit_blas() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """Run one measurement in a new interpreter, so that what an earlier case leaves behind
    (client threads, a larger heap, River's imports) cannot slow a later one: measured in
    one process, the confluent JSON case ran 223 k samples/s first and 160 k after the
    kafka-python cases."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=_limit_blas) as pool:
        return pool.submit(fn, *args).result()


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.kafka_e2e",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick")
    mode.add_argument("--full", action="store_const", dest="mode", const="full")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    sizes = MODES[args.mode or "quick"]
    import numpy  # noqa: F401  (load BLAS so that the limit below applies to it)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    info = machine.describe()
    results: list[tuple[str, dict[str, float]]] = []

    def bench(bootstrap: str) -> None:
        run = uuid.uuid4().hex[:8]
        json_topic, bin_topic = f"bench-json-{run}", f"bench-binary-{run}"
        named_topic = f"bench-named-{run}"
        t0 = time.perf_counter()
        fill_json(bootstrap, json_topic, sizes["n_json"], args.seed)
        log(
            f"filled {json_topic}: {sizes['n_json']:,} JSON records "
            f"({time.perf_counter() - t0:.0f}s)"
        )
        t0 = time.perf_counter()
        fill_named(bootstrap, named_topic, sizes["n_json"], args.seed)
        log(
            f"filled {named_topic}: {sizes['n_json']:,} named-feature JSON records "
            f"({time.perf_counter() - t0:.0f}s)"
        )
        t0 = time.perf_counter()
        fill_binary(bootstrap, bin_topic, sizes["n_binary"], args.seed)
        log(
            f"filled {bin_topic}: {sizes['n_binary']:,} samples in binary records "
            f"({time.perf_counter() - t0:.0f}s)"
        )
        n_json, n_binary = sizes["n_json"], sizes["n_binary"]
        n_bin_records = -(-n_binary // RECORD_SAMPLES)
        # (name, function, arguments, samples per record counted by the function)
        cases: list[tuple[str, Callable[..., dict[str, float] | None], tuple[Any, ...], int]] = [
            (
                "hand-written: kafka-python + json.loads + River learn_one",
                run_baseline,
                (bootstrap, json_topic, n_json),
                1,
            ),
            (
                "streamsgd service, JSON records d=20, m=256",
                run_streamsgd,
                (bootstrap, json_topic, n_json, 20, 256),
                1,
            ),
            (
                "streamsgd service, JSON records d=20, m=1",
                run_streamsgd,
                (bootstrap, json_topic, n_json, 20, 1),
                1,
            ),
            (
                "streamsgd service, binary batched records d=100, m=256",
                run_streamsgd,
                (bootstrap, bin_topic, n_binary, 100, 256),
                1,
            ),
            (
                "streamsgd service --kafka-client confluent, JSON records d=20, m=256",
                run_streamsgd,
                (bootstrap, json_topic, n_json, 20, 256, "confluent"),
                1,
            ),
            (
                "streamsgd service --kafka-client confluent, JSON records d=20, m=1",
                run_streamsgd,
                (bootstrap, json_topic, n_json, 20, 1, "confluent"),
                1,
            ),
            (
                "streamsgd service --kafka-client confluent, binary batched records d=100, m=256",
                run_streamsgd,
                (bootstrap, bin_topic, n_binary, 100, 256, "confluent"),
                1,
            ),
            (
                "hand-written, named features: kafka-python + json.loads + River learn_one",
                run_baseline,
                (bootstrap, named_topic, n_json, True),
                1,
            ),
            (
                "streamsgd service, named features (20 fields, 2^18 buckets), m=256",
                run_streamsgd,
                (bootstrap, named_topic, n_json, 1 << 18, 256, "kafka-python", 18),
                1,
            ),
            (
                "streamsgd service --kafka-client confluent, named features (20 fields, 2^18 "
                "buckets), m=256",
                run_streamsgd,
                (bootstrap, named_topic, n_json, 1 << 18, 256, "confluent", 18),
                1,
            ),
            (
                "reference: kafka-python poll only, JSON topic (records/s)",
                run_raw_kafka_python,
                (bootstrap, json_topic, n_json),
                1,
            ),
            (
                "reference: confluent-kafka consume only, JSON topic (records/s)",
                run_raw_confluent,
                (bootstrap, json_topic, n_json),
                1,
            ),
            (
                "reference: kafka-python poll only, binary topic (samples/s)",
                run_raw_kafka_python,
                (bootstrap, bin_topic, n_bin_records),
                RECORD_SAMPLES,
            ),
            (
                "reference: confluent-kafka consume only, binary topic (samples/s)",
                run_raw_confluent,
                (bootstrap, bin_topic, n_bin_records),
                RECORD_SAMPLES,
            ),
        ]
        for name, fn, fn_args, per_record in cases:
            runs = []
            for _ in range(args.repeats):
                out = _in_fresh_process(fn, *fn_args)
                if out is None:
                    break
                runs.append(_scale(out, per_record))
            if not runs:
                log(f"  {name}: not available")
                continue
            res = _median(runs)
            results.append((name, res))
            log(
                f"  {name}: {res['from_first_record']:,.0f} samples/s from first record, "
                f"{res['from_first_poll']:,.0f} from first poll"
            )

    if args.bootstrap:
        bench(args.bootstrap)
    else:
        with Broker() as broker:
            log(f"broker at {broker.bootstrap}")
            bench(broker.bootstrap)

    lines = ["## Machine", ""] + [f"* {k}: {v}" for k, v in info.items()]
    lines += [f"* mode: {args.mode or 'quick'}, repeats: {args.repeats}, {sizes}", ""]
    lines += [
        "| consumer | samples/s from first record | samples/s from first poll |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {r['from_first_record']:,.0f} | {r['from_first_poll']:,.0f} |"
        for name, r in results
    ]
    base = results[0][1]
    lines += ["", "| target | required | measured | verdict |", "|---|---|---|---|"]
    named_base = next((r for name, r in results if name.startswith("hand-written, named")), None)
    for name, r in results[1:]:
        if not name.startswith("streamsgd"):
            continue
        if "named features" in name:  # no target in the issue: for information
            if named_base is not None:
                ratio = r["from_first_record"] / named_base["from_first_record"]
                lines.append(f"| ({name} vs hand-written, named) | (info) | {ratio:.2f}× | – |")
        elif "JSON" in name:
            ratio = r["from_first_record"] / base["from_first_record"]
            lines.append(
                f"| 2. {name} vs hand-written | ≥ 3× | {ratio:.2f}× | "
                f"{'met' if ratio >= 3 else 'NOT met'} |"
            )
        else:
            rate = r["from_first_record"]
            lines.append(
                f"| 2. {name} | ≥ 1 M samples/s | {rate / 1e6:.2f} M/s | "
                f"{'met' if rate >= 1e6 else 'NOT met'} |"
            )
    report = "\n".join(lines)
    print(report)
    if args.markdown:
        args.markdown.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
