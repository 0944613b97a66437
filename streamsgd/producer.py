"""``streamsgd produce``: write the synthetic stream or a JSON Lines file to a topic.

The only module that imports kafka-python's producer and admin sides for feeding topics.
The synthetic producer writes exactly the samples of the embedded synthetic source with the
same seed, so a Kafka-fed model can be compared with an embedded one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from .codec import encode_binary, encode_dense, encode_dense_batch
from .synthetic import SyntheticStream, demo_stream

log = logging.getLogger("streamsgd.produce")


def ensure_topic(
    bootstrap_servers: str, topic: str, partitions: int, security: dict[str, Any]
) -> bool:
    """Create ``topic`` with ``partitions`` partitions unless it exists; True if created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), **security)
    try:
        if topic in admin.list_topics():
            return False
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()


def synthetic_records(
    stream: SyntheticStream, n: int, samples_per_record: int, binary: bool
) -> Iterator[bytes]:
    """Records holding samples 0..n−1 of ``stream`` in order, ``samples_per_record`` in
    each (the last one the rest)."""
    # Chunks are a whole number of records, so no record is cut short at a chunk boundary.
    chunk_size = samples_per_record * -(-1024 // samples_per_record)
    for _, X, y in stream.iter_chunks(0, n, chunk_size=chunk_size):
        if samples_per_record == 1:
            for i in range(len(y)):
                yield encode_dense(X[i], y[i])
            continue
        for lo in range(0, len(y), samples_per_record):
            hi = lo + samples_per_record
            yield (
                encode_binary(X[lo:hi], y[lo:hi])
                if binary
                else encode_dense_batch(X[lo:hi], y[lo:hi])
            )


def file_records(path: str) -> Iterator[bytes]:
    fh = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line:
                yield line
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def produce(args: argparse.Namespace, security: dict[str, Any]) -> int:
    """Send the records; waits for every delivery. Returns 0, or 1 if any failed."""
    from .cli import UsageError

    if not args.bootstrap_servers:
        raise UsageError("produce needs --bootstrap-servers")
    if args.kind == "synthetic":
        stream = demo_stream(args.n_features, args.seed, args.label_noise, args.drift)
        records = synthetic_records(
            stream, args.n, args.samples_per_record, args.format == "binary"
        )
        total: int | None = -(-args.n // args.samples_per_record)
    else:
        try:
            open(args.path, "rb").close() if args.path != "-" else None
        except OSError as exc:
            raise UsageError(f"cannot open {args.path}: {exc.strerror}") from None
        records = file_records(args.path)
        total = None
    try:
        if ensure_topic(args.bootstrap_servers, args.topic, args.partitions, security):
            log.info("created topic %s with %d partitions", args.topic, args.partitions)
        producer = KafkaProducer(
            bootstrap_servers=args.bootstrap_servers.split(","),
            acks="all",
            linger_ms=10,
            batch_size=256 * 1024,
            max_request_size=32 * 1024 * 1024,
            **security,
        )
    except KafkaError as exc:
        raise UsageError(f"cannot reach Kafka at {args.bootstrap_servers}: {exc}") from None

    failures: list[BaseException] = []
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    start = time.monotonic()
    last_shown = start
    sent = 0
    for value in records:
        if args.rate:
            # Pace to the requested rate: record k goes out no earlier than start + k / rate.
            delay = start + sent / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.send(args.topic, value=value).add_errback(failures.append)
        sent += 1
        if show and time.monotonic() - last_shown >= 0.5:
            last_shown = time.monotonic()
            of = f"/{total:,}" if total else ""
            rate = sent / (last_shown - start)
            sys.stderr.write(f"\r{sent:,}{of} records  {rate:,.0f} records/s ")
            sys.stderr.flush()
    producer.flush()
    producer.close()
    if show:
        sys.stderr.write("\n")
    elapsed = time.monotonic() - start
    if failures:
        print(
            f"streamsgd: {len(failures)} of {sent} records failed: {failures[0]}",
            file=sys.stderr,
        )
        return 1
    log.info("sent %d records to %s in %.2f s", sent, args.topic, elapsed)
    return 0
