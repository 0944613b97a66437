"""The configuration of ``streamsgd train`` and ``streamsgd produce``: every option, once.

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

from .config_distributed import DistributedConfig
from .config_minibatch import MinibatchConfig
from .options import (
    AUTO,
    BOOLEAN,
    HASH_BITS,
    INTEGER,
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    PORT,
    POSITIVE_FLOAT,
    POSITIVE_FLOAT_OR_AUTO,
    POSITIVE_INT,
    PROBABILITY,
    SMOOTHING,
    ConfigError,
    OptionSpec,
    Section,
    option,
    specs,
)

__all__ = [
    "CheckpointConfig",
    "ConfigError",
    "DistributedConfig",
    "KafkaConfig",
    "KafkaConnection",
    "LoggingConfig",
    "MinibatchConfig",
    "ModelConfig",
    "ServeConfig",
    "SourceConfig",
    "TrainConfig",
    "flatten",
    "train_config",
    "train_options",
]


# ---------------------------------------------------------------------------- train
@dataclass(frozen=True, kw_only=True)
class SyntheticStreamOptions(Section):
    """The embedded synthetic stream (train's synthetic source and ``produce synthetic``)."""

    seed: int = option(0, "synthetic: random seed", INTEGER)
    label_noise: float = option(0.0, "synthetic: probability of flipping a label", PROBABILITY)
    drift: float = option(
        0.0, "synthetic: rotation of the true weights, radians per 100k samples", NON_NEGATIVE_FLOAT
    )


SOURCE_KINDS = ("auto", "synthetic", "file", "kafka")


@dataclass(frozen=True, kw_only=True)
class _SourceChoice(Section):
    source: str = option(
        "auto",
        "where samples come from; auto = kafka when --bootstrap-servers is set, "
        "else the embedded synthetic stream",
        choices=SOURCE_KINDS,
    )
    path: str | None = option(None, "JSON Lines file for --source file ('-' = stdin)")


@dataclass(frozen=True, kw_only=True)
class SourceConfig(SyntheticStreamOptions, _SourceChoice):
    """Where samples come from (fields in this order: source, path, the synthetic stream's,
    then these)."""

    max_samples: int | None = option(None, "stop after this many samples in total", POSITIVE_INT)
    max_record_bytes: int = option(16 * 1024 * 1024, "reject larger records", POSITIVE_INT)
    max_sample_weight: float = option(
        1000.0,
        "reject importance weights above this (one record counts as at most this many samples)",
        POSITIVE_FLOAT,
    )


@dataclass(frozen=True, kw_only=True)
class KafkaConnection(Section):
    """How to reach the brokers (train's kafka section and ``produce``)."""

    bootstrap_servers: str | None = option(
        None, "Kafka bootstrap servers", metavar="HOST:PORT[,...]"
    )
    security_protocol: str = option(
        "PLAINTEXT",
        "Kafka security protocol",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    sasl_mechanism: str | None = option(
        None, "SASL mechanism", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
    )
    sasl_username: str | None = option(None, "SASL user name")
    sasl_password: str | None = option(
        None, "SASL password; prefer the environment variable, it is never printed", secret=True
    )
    ssl_cafile: str | None = option(None, "CA bundle (PEM) to verify the brokers")
    ssl_certfile: str | None = option(None, "client certificate (PEM)")
    ssl_keyfile: str | None = option(None, "client private key (PEM)")
    ssl_password: str | None = option(
        None, "password of the client key; never printed", secret=True
    )

    def security(self) -> dict[str, Any]:
        """The kafka-python security settings that are set."""
        settings = {
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password,
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
            "ssl_password": self.ssl_password,
        }
        return {k: v for k, v in settings.items() if v is not None}

    def secrets(self) -> list[str]:
        """The secret values that are set (for redaction in logs)."""
        return [getattr(self, s.name) for s in specs(self) if s.secret and getattr(self, s.name)]


@dataclass(frozen=True, kw_only=True)
class KafkaConfig(KafkaConnection):
    topic: str | None = option(None, "topic to learn from")
    kafka_client: str = option(
        "kafka-python",
        "consumer library; confluent (optional extra streamsgd[confluent]) reads "
        "single-sample records several times faster",
        choices=("kafka-python", "confluent"),
    )
    group_id: str = option("streamsgd", "consumer group")
    group_instance_id: str | None = option(
        None,
        "static group membership: a restarted trainer with the same id gets its "
        "partitions back at once instead of after the session timeout (45 s)",
    )
    dead_letter_topic: str | None = option(None, "topic for rejected records (reason in headers)")
    auto_offset_reset: str = option(
        "earliest",
        "where to start without a checkpoint or committed offset",
        choices=("earliest", "latest"),
    )
    lag_interval_seconds: float = option(
        5.0, "how often to refresh streamsgd_consumer_lag_records", POSITIVE_FLOAT
    )
    metadata_max_age_seconds: float = option(
        15.0, "refresh the topic's metadata this often: partitions added are read within it",
        POSITIVE_FLOAT,
    )  # fmt: skip
    accept_new_topic_log: bool = option(
        False,
        "the checkpoint's topic id or cluster id differs from the broker's (topic recreated, "
        "broker wiped): keep the model and read the new log from its beginning",
        BOOLEAN,
    )
    kafka_protocol_debug: bool = option(
        False,
        "let the Kafka client's protocol loggers through at DEBUG (secrets still redacted)",
        BOOLEAN,
    )


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Section):
    """The model's keyword arguments (``OnlineLogisticRegression``) and its input width."""

    n_features: int | None = option(
        None,
        "input dimension d (synthetic default 10; 2^hash-bits with --hash-bits)",
        POSITIVE_INT,
    )
    hash_bits: int | None = option(None, "hash named features into 2^B dimensions", HASH_BITS)
    learning_rate: float | str = option(
        0.1,
        "learning rate eta0; auto = chosen from the curvature bound, with the AdaScale gain",
        POSITIVE_FLOAT_OR_AUTO,
    )
    learning_rate_schedule: str = option(
        "constant",
        "inverse_scaling: eta_t = eta0 / (1 + decay*t)^power",
        choices=("constant", "inverse_scaling"),
    )
    learning_rate_decay: float = option(1.0, "decay of inverse_scaling", NON_NEGATIVE_FLOAT)
    learning_rate_power: float = option(0.5, "power of inverse_scaling", NON_NEGATIVE_FLOAT)
    l2: float = option(0.0, "L2 penalty lambda2", NON_NEGATIVE_FLOAT)
    l1: float = option(0.0, "L1 penalty lambda1 (proximal)", NON_NEGATIVE_FLOAT)
    optimizer: str = option(
        AUTO,
        "step rule applied to the averaged gradient; auto = sgd, or with --learning-rate "
        "auto adagrad (and --standardize for dense features): what the benchmarks show wins",
        choices=(AUTO, "sgd", "adagrad"),
    )
    reduction: str = option(
        "mean", "mean (1/m) or sum of per-sample gradients", choices=("mean", "sum")
    )
    stats_smoothing: float = option(
        0.05, "EWMA factor alpha of the gradient statistics (window ~ 1/alpha steps)", SMOOTHING
    )
    clip_norm_ratio: float = option(
        10.0,
        "scale a sample whose norm ||[x;1]|| exceeds this many times the running typical "
        "norm down to that bound (0 = off)",
        NON_NEGATIVE_FLOAT,
    )
    max_weight_norm: float = option(
        1e6, "the model is unhealthy when ||w|| exceeds this", POSITIVE_FLOAT
    )
    standardize: bool = option(False, "learn on features standardised online (dense only)", BOOLEAN)


@dataclass(frozen=True, kw_only=True)
class CheckpointConfig(Section):
    checkpoint_dir: str | None = option(
        None, "directory of the atomic checkpoint (resumes from it)"
    )
    checkpoint_interval_seconds: float = option(
        10.0, "checkpoint (then commit offsets) at most this often", POSITIVE_FLOAT
    )
    checkpoint_every_updates: int = option(
        0,
        "also checkpoint once this many updates accumulated (checked after each poll; 0 = off)",
        NON_NEGATIVE_INT,
    )


@dataclass(frozen=True, kw_only=True)
class ServeConfig(Section):
    metrics_host: str = option("127.0.0.1", "address of the HTTP endpoints")
    metrics_port: int = option(
        8000, "port of /metrics /healthz /readyz /model /predict (0 = any free port)", PORT
    )


PROGRESS_CHOICES = ("auto", "always", "never")


@dataclass(frozen=True, kw_only=True)
class LoggingConfig(Section):
    progress: str = option(
        "auto",
        "rewritten status line on stderr (auto = when it is a terminal)",
        choices=PROGRESS_CHOICES,
    )
    log_level: str = option("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_interval_seconds: float = option(
        10.0,
        "without the status line, log a progress line (samples, rate, loss, lag) this "
        "often (0 = off)",
        NON_NEGATIVE_FLOAT,
    )
    log_format: str = option(
        "text", "text, or json: one JSON object per line", choices=("text", "json")
    )


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
        if self.distributed.distributed != "none":
            if kind != "kafka":
                raise ConfigError("--distributed mpi needs --source kafka (partitions by rank)")
            if self.minibatch.batch_size == 1:
                raise ConfigError(
                    "--distributed mpi needs --batch-size >= 2: with 1, every sample costs a "
                    "round trip between replicas"
                )
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
        if self.controlled and model.reduction != "mean":
            raise ConfigError("--batch-size auto and --learning-rate auto need --reduction mean")
        if model.learning_rate == AUTO and self.minibatch.batch_size == 1:
            raise ConfigError("--learning-rate auto needs --batch-size >= 2 (or auto)")

    @property
    def optimizer(self) -> str:
        """``model.optimizer`` with ``auto`` resolved: AdaGrad under ``--learning-rate auto``
        (docs/benchmarks.md: it meets the issue-10 targets SGD misses), else SGD."""
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
        """Whether the noise controller runs (``auto`` batch size or learning rate)."""
        return AUTO in (self.minibatch.batch_size, self.model.learning_rate)

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
