"""Record-to-update latency of the service at a steady 1,000 records/s (issue 5, target 5).

    .venv/bin/python -m bench.latency                 # 60 s at 1,000 records/s, m = 1
    .venv/bin/python -m bench.latency --seconds 20    # shorter
    .venv/bin/python -m bench.latency --bootstrap 127.0.0.1:9092

A producer process sends one JSON sample (d = 20) per record, paced at ``--rate`` records/s,
with ``linger_ms=0``; the record's Kafka timestamp is its producer CreateTime. The streamsgd
service (``Trainer`` + kafka-python ``KafkaSource``, m = 1) consumes the topic; for
every applied update the delay from the record's timestamp to the end of its update is
recorded (m = 1: one record, one update). The first 2 s are warm-up and not counted.
Target: p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import sys
import threading
import time
import uuid
from typing import Any

from bench.kafka_e2e import Broker, _create_topic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bootstrap")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument(
        "--kafka-client", default="kafka-python", choices=("kafka-python", "confluent")
    )
    parser.add_argument(
        "--online-block-size",
        type=int,
        default=32,
        help="m = 1 block size, as the CLI flag (0 = one learn_batch per record)",
    )
    args = parser.parse_args(argv)
    if args.bootstrap:
        return _run(
            args.bootstrap, args.seconds, args.rate, args.online_block_size, args.kafka_client
        )
    with Broker() as broker:
        return _run(
            broker.bootstrap, args.seconds, args.rate, args.online_block_size, args.kafka_client
        )


def _produce(bootstrap: str, topic: str, n: int, rate: float, start: float) -> None:
    from kafka import KafkaProducer

    from streamsgd.codec import encode_dense
    from streamsgd.datasets.synthetic_stream import SyntheticStream

    X, y = SyntheticStream(20, seed=0).samples(0, n)
    values = [encode_dense(X[i], y[i]) for i in range(n)]
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=0, acks=1)
    for i, value in enumerate(values):
        wait = start + i / rate - time.time()
        if wait > 0:
            time.sleep(wait)
        producer.send(topic, value)
    producer.flush()
    producer.close()


def _run(
    bootstrap: str, seconds: float, rate: float, block: int, kafka_client: str = "kafka-python"
) -> int:
    import numpy as np

    from streamsgd.cli import build_service
    from streamsgd.config import train_config
    from streamsgd.training.ports import Sensor

    topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, topic)
    n = int(seconds * rate)
    delays: list[tuple[float, float]] = []  # (wall time of the update, delay in s)
    # Kafka timestamps of the samples handed to the buffer and not yet learned, in order.
    pending: collections.deque[float] = collections.deque()

    def learned(n_samples: int) -> None:
        now = time.time()
        for _ in range(n_samples):
            delays.append((now, now - pending.popleft()))

    class Timing(Sensor):
        def batch_applied(self, stats: Any, model: Any, duration_seconds: float) -> None:
            learned(stats.n_samples)

        def sequence_applied(self, stats: Any, model: Any, duration_seconds: float) -> None:
            learned(stats.n_samples)

    config = train_config(
        source="kafka",
        bootstrap_servers=bootstrap,
        topic=topic,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        kafka_client=kafka_client,
        auto_offset_reset="earliest",
        n_features=20,
        learning_rate=0.01,
        batch_size=1,
        online_block_size=block,
        max_samples=n,
        checkpoint_interval_seconds=1e9,
        progress="never",
        log_interval_seconds=0,
    )
    service, resources = build_service(config, sensors=[Timing()], metrics=False)
    take_in = service.intake.take_in

    def taking_in(records: Any, *args: Any) -> None:
        # Every record here holds one valid sample: all of them reach the buffer.
        pending.extend(record.timestamp_ms / 1000.0 for record in records)
        take_in(records, *args)

    service.intake.take_in = taking_in  # type: ignore[method-assign]
    # A shorter poll than the service's default, so the poll wait adds little to the delay.
    service.config.poll_timeout_seconds = 0.05
    consumer = threading.Thread(target=service.run, daemon=True)
    consumer.start()
    time.sleep(2.0)  # let the consumer join the group before the first record

    # The producer runs in its own process, so that it does not compete with the service for
    # the interpreter lock (which would add its own delays to the measurement).
    start = time.time() + 0.5
    producer = multiprocessing.get_context("spawn").Process(
        target=_produce, args=(bootstrap, topic, n, rate, start)
    )
    producer.start()
    producer.join()
    consumer.join(timeout=60)
    service.request_stop()
    resources.close()
    counted = np.array([d for t, d in delays if t >= start + 2.0])
    if len(counted) == 0:
        print("no updates observed", file=sys.stderr)
        return 1
    p50, p99, worst = np.percentile(counted, [50, 99, 100]) * 1000
    result = {
        "records": n,
        "rate": rate,
        "online_block_size": block,
        "kafka_client": kafka_client,
        "updates_counted": len(counted),
        "p50_ms": round(float(p50), 2),
        "p99_ms": round(float(p99), 2),
        "max_ms": round(float(worst), 2),
    }
    print(json.dumps(result))
    print(
        f"p99 record-timestamp → update: {p99:.1f} ms (target < 50 ms): "
        f"{'met' if p99 < 50 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
