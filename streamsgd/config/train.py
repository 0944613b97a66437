"""The configuration of ``streamsgd train``: its sections together, every option once.

Each option is a field of a frozen dataclass declared with :func:`option`: its type
(:class:`ValueType`), default, help text and choices. From that one declaration come

* the command-line flag ``--<name-with-dashes>`` (``streamsgd.cli.parser`` generates the
  parsers),
* the environment variable ``STREAMSGD_<NAME>`` (``--batch-size`` → ``STREAMSGD_BATCH_SIZE``),
* the key ``<name>`` in the section of a ``--config`` TOML file (``[minibatch] batch_size``),
* the attribute ``config.<section>.<name>`` the code reads.

Precedence: built-in defaults < ``--config`` file < environment < command-line flags.
Every value is checked when a section is constructed, whatever its origin, so a
:class:`TrainConfig` that exists is valid. This module is standard library only: the Python
API, the CLI, bench and the tests all import their defaults from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .distributed import DistributedConfig
from .kafka import KafkaConfig
from .learning import MinibatchConfig, ModelConfig
from .options import AUTO, ConfigError, OptionSpec, Section, specs
from .run import CheckpointConfig, LoggingConfig, ServeConfig
from .source import SourceConfig


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The effective configuration of ``streamsgd train`` (sections = TOML tables)."""

    source: SourceConfig = field(default_factory=SourceConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    minibatch: MinibatchConfig = field(default_factory=MinibatchConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        kind = self.source_kind
        model = self.model
        if self.distributed.distributed != "none" and kind != "kafka":
            raise ConfigError("--distributed mpi needs --source kafka (partitions by rank)")
        if kind == "file" and not self.source.path:
            raise ConfigError("--source file needs --path (a JSON Lines file, or - for stdin)")
        if kind == "kafka" and not (self.kafka.bootstrap_servers and self.kafka.topic):
            raise ConfigError("--source kafka needs --bootstrap-servers and --topic")
        if model.hash_bits is not None:
            if model.n_features is not None and model.n_features != 1 << model.hash_bits:
                raise ConfigError(
                    "--n-features must be 2^--hash-bits (or omitted) with --hash-bits"
                )
            if kind == "synthetic":
                raise ConfigError("the synthetic source is dense: drop --hash-bits")
            if model.standardize:
                raise ConfigError("--standardize needs dense features: drop --hash-bits")
        elif model.n_features is None and kind != "synthetic":
            raise ConfigError(f"--source {kind} needs --n-features (or --hash-bits)")
        if model.adagrad_half_life_samples and self.minibatch.batch_size == 1:
            if model.hash_bits is not None:
                raise ConfigError(
                    "--adagrad-half-life-samples needs --batch-size >= 2 with --hash-bits: at "
                    "m = 1 every hashed coordinate would decay every sample, O(2^bits) a step"
                )
        if self.controlled and model.reduction != "mean":
            raise ConfigError("--batch-size auto and --learning-rate auto need --reduction mean")
        if model.learning_rate == AUTO and self.minibatch.batch_size == 1:
            # AdaGrad at m = 1 needs no controller (η₀ = 0.1, no gain, no cap); SGD's η₀
            # comes from the controller's curvature bound, which needs m >= 2.
            if self.optimizer == "sgd":
                raise ConfigError(
                    "--learning-rate auto with --optimizer sgd needs --batch-size >= 2 (or auto)"
                )

    @property
    def optimizer(self) -> str:
        """``model.optimizer`` with ``auto`` resolved: AdaGrad under ``--learning-rate auto``
        (docs/benchmarks.md#self-tuning-auto---standardize-and-the-peers: it meets the targets
        SGD misses), else SGD."""
        if self.model.optimizer != AUTO:
            return self.model.optimizer
        return "adagrad" if self.model.learning_rate == AUTO else "sgd"

    @property
    def standardize(self) -> bool:
        """``--standardize``, also on for dense features under ``--learning-rate auto`` with
        ``--optimizer auto`` (scale invariance; River's StandardScaler does the same)."""
        automatic = self.model.optimizer == AUTO and self.model.learning_rate == AUTO
        return self.model.standardize or (automatic and self.model.hash_bits is None)

    @property
    def controlled(self) -> bool:
        """Whether the noise controller runs (``auto`` batch size, or ``auto`` learning rate
        at m >= 2: at m = 1 AdaGrad takes η₀ = 0.1 with no controller)."""
        batch_size = self.minibatch.batch_size
        return batch_size == AUTO or (self.model.learning_rate == AUTO and batch_size != 1)

    @property
    def source_kind(self) -> str:
        """``source.source`` with ``auto`` resolved."""
        if self.source.source != "auto":
            return self.source.source
        return "kafka" if self.kafka.bootstrap_servers else "synthetic"

    @property
    def n_features(self) -> int:
        """The model's input width d (2^hash_bits with hashing; 10 for synthetic)."""
        if self.model.hash_bits is not None:
            return 1 << self.model.hash_bits
        return self.model.n_features if self.model.n_features is not None else 10


SECTIONS: dict[str, type[Section]] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(TrainConfig)
}


def train_options() -> Iterator[tuple[str, OptionSpec]]:
    """(section name, option) for every option of ``streamsgd train``'s configuration."""
    for section, cls in SECTIONS.items():
        for spec in specs(cls):
            yield section, spec


def train_config(values: Mapping[str, Any] | None = None, **options: Any) -> TrainConfig:
    """A :class:`TrainConfig` from options named as their flags (``batch_size=8``); the
    others keep their defaults. Raises :class:`ConfigError` for an unknown name or a bad value.

    >>> config = train_config(batch_size=8)
    >>> config.minibatch.batch_size, config.source_kind, config.n_features
    (8, 'synthetic', 10)
    >>> train_config(batch_size=0)
    Traceback (most recent call last):
    ...
    streamsgd.config.options.ConfigError: --batch-size: 0 is not an integer in 1..1048576 or auto
    """
    given = {**(values or {}), **options}
    where = {spec.name: section for section, spec in train_options()}
    unknown = sorted(set(given) - set(where))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}")
    grouped: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for name, value in given.items():
        grouped[where[name]][name] = value
    return TrainConfig(**{s: SECTIONS[s](**kw) for s, kw in grouped.items()})  # type: ignore[arg-type]


def flatten(config: TrainConfig) -> dict[str, Any]:
    """Every option of ``config`` by name (the inverse of :func:`train_config`)."""
    return {
        spec.name: getattr(getattr(config, section), spec.name) for section, spec in train_options()
    }
