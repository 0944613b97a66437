"""``streamsgd produce``: the parsed command line becomes a :class:`ProduceConfig`, which
:func:`streamsgd.kafka.producer.produce` sends."""

from __future__ import annotations

import argparse

from ..config import ProduceConfig, ProduceFile, ProduceSynthetic
from ..kafka.producer import ProducerError, produce
from ..options import specs
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
    try:
        return produce(config)
    except ProducerError as exc:
        raise UsageError(str(exc)) from None
