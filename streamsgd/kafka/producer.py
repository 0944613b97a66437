"""``streamsgd produce``: write the synthetic stream or a JSON Lines file to a topic.

The synthetic producer writes exactly the samples of the embedded synthetic source with the
same seed, so a Kafka-fed model can be compared with an embedded one.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator

from kafka import KafkaProducer
from kafka.errors import KafkaError

from ..codec import encode_binary, encode_dense, encode_dense_batch
from ..datasets.synthetic_stream import SyntheticStream
from .client_logs import guard_client_logs
from .dead_letter import ensure_topic
from .read_before_eof import keep_bytes_read_before_eof
from .settings import KafkaSecurity

log = logging.getLogger("streamsgd.produce")


class ProducerError(RuntimeError):
    """Kafka cannot be reached to create the topic or to send (one-line message)."""


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


def produce(
    records: Iterable[bytes],
    *,
    bootstrap_servers: str,
    topic: str,
    security: KafkaSecurity,
    partitions: int = 1,
    rate: float | None = None,
    show_progress: bool = False,
    total: int | None = None,
) -> int:
    """Send ``records`` to ``topic`` (created with ``partitions`` if missing), paced to
    ``rate`` records/s; waits for every delivery. Returns 0, or 1 if any failed.

    ``show_progress`` draws a status line on stderr (``total`` records expected, if known).

    Raises
    ------
    ProducerError
        The brokers cannot be reached to create the topic or to start the producer.
    """
    # Before any client exists: at DEBUG kafka-python would log the SASL password.
    guard_client_logs(protocol_debug=False, secrets=security.secrets())
    keep_bytes_read_before_eof()
    try:
        if ensure_topic(bootstrap_servers, topic, security, partitions):
            log.info("created topic %s with %d partitions", topic, partitions)
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            acks="all",
            linger_ms=10,
            batch_size=256 * 1024,
            max_request_size=32 * 1024 * 1024,
            **security.kafka_python(),
        )
    except KafkaError as exc:
        raise ProducerError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from None
    failures: list[BaseException] = []
    show = show_progress
    start = time.monotonic()
    last_shown = start
    sent = 0
    for value in records:
        if rate:
            # Pace to the requested rate: record k goes out no earlier than start + k / rate.
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.send(topic, value=value).add_errback(failures.append)
        sent += 1
        if show and time.monotonic() - last_shown >= 0.5:
            last_shown = time.monotonic()
            of = f"/{total:,}" if total else ""
            sent_rate = sent / (last_shown - start)
            sys.stderr.write(f"\r{sent:,}{of} records  {sent_rate:,.0f} records/s ")
            sys.stderr.flush()
    producer.flush()
    producer.close()
    if show:
        sys.stderr.write("\n")
    if failures:
        print(
            f"streamsgd: {len(failures)} of {sent} records failed: {failures[0]}",
            file=sys.stderr,
        )
        return 1
    log.info("sent %d records to %s in %.2f s", sent, topic, time.monotonic() - start)
    return 0
