"""``streamsgd produce``: the parsed command line becomes a :class:`ProduceConfig`, which
:func:`streamsgd.kafka.producer.produce` sends (the synthetic stream or a file's lines)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from ..config.options import specs
from ..config.produce import ProduceConfig, ProduceFile, ProduceSynthetic
from ..datasets.synthetic_stream import demo_stream
from ..kafka.settings import KafkaSecurity
from .errors import UsageError


def config_from_args(args: argparse.Namespace) -> ProduceConfig:
    """The :class:`ProduceConfig` of a parsed ``produce`` command line."""
    records: ProduceSynthetic | ProduceFile
    if args.kind == "synthetic":
        records = ProduceSynthetic(
            **{s.name: getattr(args, s.name) for s in specs(ProduceSynthetic)}
        )
    else:
        records = ProduceFile(path=args.path)
    return ProduceConfig(
        records=records, **{s.name: getattr(args, s.name) for s in specs(ProduceConfig)}
    )


def run(config: ProduceConfig) -> int:
    """Send the records; 0, or 1 if a delivery failed."""
    records = config.records
    if isinstance(records, ProduceFile) and records.path != "-":
        try:
            open(records.path, "rb").close()
        except OSError as exc:
            raise UsageError(f"cannot open {records.path}: {exc.strerror}") from None
    assert config.bootstrap_servers is not None  # ProduceConfig checks it
    # Imported here: kafka-python takes ≈ 0.2–0.4 s to import, which every other command
    # (train on a file, evaluate, inspect) would otherwise pay at start.
    from ..kafka.producer import ProducerError, produce

    values, total = _records(config)
    show = config.progress == "always" or (config.progress == "auto" and sys.stderr.isatty())
    try:
        return produce(
            values,
            bootstrap_servers=config.bootstrap_servers,
            topic=config.topic,
            security=KafkaSecurity.of(config.security()),
            partitions=config.partitions,
            rate=config.rate,
            show_progress=show,
            total=total,
        )
    except ProducerError as exc:
        raise UsageError(str(exc)) from None


def _records(config: ProduceConfig) -> tuple[Iterator[bytes], int | None]:
    """The records to send and their number if known."""
    from ..kafka.producer import file_records, synthetic_records

    spec = config.records
    if isinstance(spec, ProduceSynthetic):
        stream = demo_stream(spec.n_features, spec.seed, spec.label_noise, spec.drift)
        binary = config.format == "binary"
        records = synthetic_records(stream, spec.n, config.samples_per_record, binary)
        return records, -(-spec.n // config.samples_per_record)
    return file_records(spec.path), None
