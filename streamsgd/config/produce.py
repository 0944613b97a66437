"""The configuration of ``streamsgd produce`` (where to send, how, and what), declared with
the same option machinery as the trainer's (:mod:`streamsgd.config`), so its flags, defaults and
validation have one home too."""

from __future__ import annotations

from dataclasses import dataclass, field

from .kafka import KafkaConnection
from .options import POSITIVE_FLOAT, POSITIVE_INT, ConfigError, Section, option
from .run import PROGRESS_CHOICES
from .source import SyntheticStreamOptions


@dataclass(frozen=True, kw_only=True)
class ProduceSynthetic(SyntheticStreamOptions):
    n: int = option(None, "number of samples", POSITIVE_INT, required=True)
    n_features: int = option(10, "dimension d", POSITIVE_INT)


@dataclass(frozen=True, kw_only=True)
class ProduceFile(Section):
    path: str = option(None, "file ('-' = stdin)", positional=True)


@dataclass(frozen=True, kw_only=True)
class ProduceConfig(KafkaConnection):
    """``streamsgd produce``: where to send and how; ``records`` is what to send.

    Only the two passwords are read from the environment here (``STREAMSGD_SASL_PASSWORD``,
    ``STREAMSGD_SSL_PASSWORD``): the other ``STREAMSGD_*`` variables configure the trainer.
    """

    topic: str = option(None, "topic to write to", required=True)
    partitions: int = option(1, "partitions when the topic has to be created", POSITIVE_INT)
    rate: float | None = option(
        None, "records per second (default: as fast as possible)", POSITIVE_FLOAT
    )
    samples_per_record: int = option(
        1, "samples per record; > 1 uses the batched record form", POSITIVE_INT
    )
    format: str = option("json", "record encoding for batched records", choices=("json", "binary"))
    progress: str = option("auto", "status line on stderr", choices=PROGRESS_CHOICES)
    records: ProduceSynthetic | ProduceFile = field(default_factory=lambda: ProduceFile(path="-"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.bootstrap_servers:
            raise ConfigError("produce needs --bootstrap-servers")
        if not self.topic:
            raise ConfigError("produce needs --topic")


# Options of `produce` accepted after the source name too (`... synthetic --rate R`).
PRODUCE_OPTIONS_AFTER_SOURCE = {
    "synthetic": ("rate", "partitions", "samples_per_record", "format"),
    "file": ("rate", "partitions"),
}
