"""The configuration, one package split by concept: every option declared once, as a field of
a frozen section (:mod:`.options` holds the machinery). The sections of ``streamsgd train``:
:mod:`.source` (where samples come from), :mod:`.kafka` (brokers and topic), :mod:`.learning`
(model and minibatch), :mod:`.run` (checkpoint, HTTP, logging) and :mod:`.distributed`
(replicas); :mod:`.train` puts them together (:class:`TrainConfig`); :mod:`.produce` is
``streamsgd produce``'s. Standard library only: the Python API, the CLI, bench and the tests
all import their defaults from here."""

from .distributed import DISTRIBUTED_CHOICES, DistributedConfig
from .kafka import KafkaConfig, KafkaConnection
from .learning import MinibatchConfig, ModelConfig
from .options import ConfigError
from .run import PROGRESS_CHOICES, CheckpointConfig, LoggingConfig, ServeConfig
from .source import SOURCE_KINDS, SourceConfig, SyntheticStreamOptions
from .train import SECTIONS, TrainConfig, flatten, train_config, train_options

__all__ = [
    "DISTRIBUTED_CHOICES",
    "PROGRESS_CHOICES",
    "SECTIONS",
    "SOURCE_KINDS",
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
    "SyntheticStreamOptions",
    "TrainConfig",
    "flatten",
    "train_config",
    "train_options",
]
