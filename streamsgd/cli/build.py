"""The composition root: a :class:`TrainConfig` becomes a wired :class:`Trainer`.

Used by ``streamsgd train``, by bench/ and by tests, so that they all run the service the
same way::

    service, resources = build_service(train_config(source="file", path="s.jsonl", n_features=6))
    try:
        service.run()
    finally:
        resources.close()
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..checkpoint import CheckpointError, DirectoryCheckpointStore
from ..codec import Decoder
from ..config import TrainConfig
from ..config.options import AUTO
from ..core.controller import NoiseController
from ..core.model import OnlineLogisticRegression
from ..distributed.collective import Collective
from ..http import HttpServer
from ..sources.file import FileSource
from ..telemetry.kafka_metrics import KafkaOperationsSensor
from ..telemetry.metrics import CollectorRegistry, PrometheusSensor
from ..telemetry.progress import ProgressLog, ProgressReporter
from ..training.ports import DeadLetterSink, Sensor, Source
from ..training.trainer import ServiceConfig, Trainer, progressive_log_loss
from .errors import UsageError
from .replicas import build_collective, replica_arguments, replica_port

log = logging.getLogger("streamsgd")
DEFAULT_LEARNING_RATE = 0.1


@dataclass
class Resources:
    """What :func:`build_service` opened besides the service; :meth:`close` releases it.

    Attributes
    ----------
    registry, metrics : the Prometheus registry and sensor (None with ``metrics=False``).
    source, decoder, dead_letter : the service's adapters.
    progress : the status line or the progress log sensor, if any.
    failed : set when the run failed (``/healthz`` and ``/readyz`` then fail).
    http : the HTTP server once :func:`serve_http` started it.
    """

    source: Source
    decoder: Decoder
    registry: CollectorRegistry | None = None
    metrics: PrometheusSensor | None = None
    dead_letter: Any = None
    progress: ProgressReporter | ProgressLog | None = None
    failed: threading.Event = field(default_factory=threading.Event)
    http: HttpServer | None = None
    checkpoint_store: DirectoryCheckpointStore | None = None
    collective: Collective | None = None

    def is_ready(self) -> bool:
        return bool(self.source.ready) and not self.failed.is_set()

    def close(self, *, failed: bool = False) -> None:
        """Stop the HTTP server, end the status line, close the source and dead-letter sink
        and leave the collective; ``failed``: this process ends in an error it has not
        printed yet, so a replica leaves without waiting for the others
        (:meth:`~streamsgd.distributed.mpi.MpiCollective.close`)."""
        if isinstance(self.progress, ProgressReporter):
            self.progress.close()
        self.source.close()
        if self.dead_letter is not None:
            self.dead_letter.close()
        if self.http is not None:
            self.http.stop()
        if self.checkpoint_store is not None:
            self.checkpoint_store.close()  # releases the directory's writer lock
        if self.collective is not None:
            self.collective.close(failed=failed)


def build_controller(config: TrainConfig) -> NoiseController | None:
    """The noise controller of ``--batch-size auto`` / ``--learning-rate auto`` (None when
    neither is auto). ``--learning-rate X --batch-size auto``: η₀ = X at m₀ =
    ``--min-batch-size``, with the AdaScale gain; ``--learning-rate auto --batch-size N``:
    m fixed at N (= m₀, so the gain is 1), η₀ from the curvature bound."""
    if not config.controlled:
        return None
    b = config.minibatch
    return NoiseController.create(
        b.batch_size,
        adaptive_learning_rate=config.model.learning_rate == AUTO,
        min_batch_size=b.min_batch_size,
        max_batch_size=b.max_batch_size,
        norm_test_theta=b.norm_test_theta,
        max_batch_latency_seconds=b.max_batch_latency_seconds,
        n_features=config.n_features,
        sparse=config.model.hash_bits is not None,
    )


# Bytes per input dimension of the model and its state (weights, optimiser moments,
# gradient and standardisation statistics, the step's work arrays): an estimate, measured at
# about 50 (2^26 dimensions took 3.3 GB).
BYTES_PER_FEATURE = 64
CHECKPOINT_WARNING_BYTES = 256 * 1024**2


def check_model_size(n_features: int) -> None:
    """Refuse a model that cannot fit in this machine's memory (one line), and warn about a
    checkpoint so large that saving it takes seconds."""
    need = BYTES_PER_FEATURE * n_features
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        memory = 0  # unknown: no bound
    if memory and need > memory:
        raise UsageError(
            f"{n_features} input dimensions need about {need / 1e9:.1f} GB for the model, "
            f"more than this machine's {memory / 1e9:.1f} GB: lower --n-features or --hash-bits"
        )
    # The checkpoint: weights and state as base64 of float64 (4/3 × 8 bytes, ~4 arrays).
    checkpoint = 4 * 8 * 4 // 3 * n_features
    if checkpoint > CHECKPOINT_WARNING_BYTES:
        log.warning(
            "%d input dimensions: the model takes about %.1f GB and every checkpoint about "
            "%.0f MB; consider fewer --hash-bits or a longer --checkpoint-interval-seconds",
            n_features,
            need / 1e9,
            checkpoint / 1e6,
        )


def build_model(config: TrainConfig) -> OnlineLogisticRegression:
    """The model of ``config.model`` (with its controller, see :func:`build_controller`)."""
    m = config.model
    # With --learning-rate auto the schedule's η₀ is a stand-in the controller replaces.
    learning_rate = DEFAULT_LEARNING_RATE if m.learning_rate == AUTO else float(m.learning_rate)
    return OnlineLogisticRegression(
        config.n_features,
        learning_rate=learning_rate,
        learning_rate_schedule=m.learning_rate_schedule,
        decay=m.learning_rate_decay,
        power=m.learning_rate_power,
        l2=m.l2,
        l1=m.l1,
        reduction=m.reduction,
        optimizer=config.optimizer,
        adagrad_half_life_samples=m.adagrad_half_life_samples,
        stats_smoothing=m.stats_smoothing,
        clip_norm_ratio=m.clip_norm_ratio,
        max_weight_norm=m.max_weight_norm,
        controller=build_controller(config),
        standardize=config.standardize,
    )


def build_decoder(config: TrainConfig) -> Decoder:
    """The wire-format decoder of ``config`` (dimension, hashing, size and weight limits)."""
    return Decoder(
        config.n_features,
        config.model.hash_bits,
        config.source.max_record_bytes,
        config.source.max_sample_weight,
    )


def service_config(config: TrainConfig) -> ServiceConfig:
    """The loop's settings taken from ``config``."""
    wait_ms = config.minibatch.max_wait_ms
    batch_size = config.minibatch.batch_size
    return ServiceConfig(
        # With auto the model's controller gives m; this is only its starting value.
        batch_size=config.minibatch.min_batch_size if batch_size == AUTO else int(batch_size),
        max_samples=config.source.max_samples,
        max_wait_seconds=None if wait_ms is None else wait_ms / 1000.0,
        # A fixed m stays exact; under auto a partial minibatch keeps the latency budget.
        max_batch_age_seconds=(
            config.minibatch.max_batch_latency_seconds if batch_size == AUTO else None
        ),
        checkpoint_interval_seconds=config.checkpoint.checkpoint_interval_seconds,
        checkpoint_every_updates=config.checkpoint.checkpoint_every_updates,
        online_block_size=config.minibatch.online_block_size,
    )


def build_service(
    config: TrainConfig,
    *,
    sensors: Sequence[Sensor] = (),
    metrics: bool = True,
    stderr: TextIO | None = None,
) -> tuple[Trainer, Resources]:
    """Wire the service ``config`` describes; nothing runs and no port is opened yet.

    Parameters
    ----------
    sensors : extra sensors (e.g. a benchmark's timing), after the built-in ones.
    metrics : False leaves out the Prometheus sensor and registry (no /metrics).
    stderr : where the status line goes and whose ``isatty()`` chooses it (sys.stderr).

    Raises
    ------
    UsageError : the file cannot be opened, or the confluent client is not installed.
    """
    stderr = sys.stderr if stderr is None else stderr
    check_model_size(config.n_features)  # before the synthetic stream's d-sized arrays too
    collective = build_collective(config)
    # A replica opens the checkpoint directory when it is rank 0 (replicated_trainer).
    store = _checkpoint_store(config) if collective is None else None
    registry = CollectorRegistry() if metrics else None
    sensor = PrometheusSensor(registry) if registry is not None else None
    progress = _progress(config, stderr)
    lag_listeners: list[Callable[[int], None]] = []
    if sensor is not None:
        lag_listeners.append(sensor.set_consumer_lag)
    if isinstance(progress, ProgressLog):
        lag_listeners.append(progress.set_consumer_lag)

    def on_lag(lag_records: int) -> None:
        for listener in lag_listeners:
            listener(lag_records)

    try:
        source, dead_letter, description = _source(config, on_lag, assigned=collective is not None)
    except BaseException:
        if store is not None:
            store.close()
        raise
    decoder = build_decoder(config)
    kafka_sensor = KafkaOperationsSensor(registry) if registry is not None else None
    built = [s for s in (sensor, kafka_sensor, progress) if s is not None]
    common: dict[str, Any] = {
        "dead_letter": dead_letter,
        "sensors": [*built, *sensors],
        "source_description": description,
    }
    model, settings = build_model(config), service_config(config)
    if collective is not None:
        # Imported here: a single process (the usual run) does not need the replica machinery.
        from ..distributed.replicated import replicated_trainer

        extra = replica_arguments(config, collective)
        service = replicated_trainer(model, source, decoder, settings, **common, **extra)  # type: ignore[arg-type]
    else:
        service = Trainer(model, source, decoder, settings, checkpoint_store=store, **common)
    if hasattr(source, "attach"):
        source.attach(service)
    resources = Resources(source, decoder, registry, sensor, dead_letter, progress)
    resources.checkpoint_store = store
    resources.collective = collective
    if sensor is not None:
        sensor.bind_readiness(resources.is_ready)
    return service, resources


def _checkpoint_store(config: TrainConfig) -> DirectoryCheckpointStore | None:
    """The writer of ``--checkpoint-dir``, taken first: a second trainer on the directory
    refuses (one line, exit 2) before it connects anywhere."""
    directory = config.checkpoint.checkpoint_dir
    if not directory:
        return None
    try:
        return DirectoryCheckpointStore(directory, hash_bits=config.model.hash_bits)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None


def _progress(config: TrainConfig, stderr: TextIO) -> ProgressReporter | ProgressLog | None:
    """The status line on a terminal (or with --progress always); else the progress log."""
    mode = config.logging.progress
    if mode == "always" or (mode == "auto" and stderr.isatty()):
        return ProgressReporter(stderr)
    if config.logging.log_interval_seconds > 0:
        return ProgressLog(config.logging.log_interval_seconds)
    return None


def _source(
    config: TrainConfig, on_lag: Callable[[int], None], *, assigned: bool = False
) -> tuple[Source, DeadLetterSink | None, dict[str, Any]]:
    """The source, the dead-letter sink and the source's description for the checkpoint."""
    kind = config.source_kind
    description: dict[str, Any] = {"kind": kind}
    s = config.source
    if kind == "synthetic":
        from ..datasets.synthetic_stream import demo_stream
        from ..sources.synthetic import SyntheticSource

        if s.source == "auto":
            log.info("no --bootstrap-servers: training on the embedded synthetic stream")
        stream = demo_stream(config.n_features, s.seed, s.label_noise, s.drift)
        description.update(seed=s.seed, label_noise=s.label_noise, drift=s.drift)
        return SyntheticSource(stream), None, description
    if kind == "file":
        assert s.path is not None  # TrainConfig checks it
        try:
            source = FileSource(s.path, s.max_record_bytes)
        except OSError as exc:
            raise UsageError(f"cannot open {s.path}: {exc.strerror}") from None
        description.update(path=s.path)
        return source, None, description
    return _kafka_source(config, on_lag, description, assigned)


def _kafka_source(
    config: TrainConfig,
    on_lag: Callable[[int], None],
    description: dict[str, Any],
    assigned: bool = False,
) -> tuple[Source, DeadLetterSink | None, dict[str, Any]]:
    from ..kafka.dead_letter import KafkaDeadLetterSink
    from ..kafka.source import KafkaSource

    k = config.kafka
    source_class: Any = KafkaSource
    if k.kafka_client == "confluent":
        try:
            from ..kafka.confluent import ConfluentKafkaSource
        except ImportError:
            raise UsageError(
                "--kafka-client confluent needs confluent-kafka: pip install 'streamsgd[confluent]'"
            ) from None
        source_class = ConfluentKafkaSource
    assert k.bootstrap_servers is not None and k.topic is not None  # TrainConfig checks them
    source = source_class(
        bootstrap_servers=k.bootstrap_servers,
        topic=k.topic,
        group_id=k.group_id,
        auto_offset_reset=k.auto_offset_reset,
        security=k.security(),
        lag_interval_seconds=k.lag_interval_seconds,
        on_lag=on_lag,
        group_instance_id=k.group_instance_id,
        protocol_debug=k.kafka_protocol_debug,
        accept_new_log=k.accept_new_topic_log,
        metadata_max_age_seconds=k.metadata_max_age_seconds,
        **({"assigned": True} if assigned else {}),
    )
    dead_letter = None
    if k.dead_letter_topic:
        dead_letter = KafkaDeadLetterSink(
            k.bootstrap_servers,
            k.dead_letter_topic,
            k.security(),
            protocol_debug=k.kafka_protocol_debug,
        )
    description.update(topic=k.topic, group_id=k.group_id)
    return source, dead_letter, description


def serve_http(service: Trainer, resources: Resources, config: TrainConfig) -> HttpServer:
    """Start /metrics /healthz /readyz /model /predict on ``config.serve``.

    Raises
    ------
    UsageError : the address cannot be bound.
    """
    host = config.serve.metrics_host
    port = replica_port(config.serve.metrics_port, resources.collective)
    if resources.registry is None:
        raise ValueError("serve_http needs a service built with metrics=True")
    failed = resources.failed
    try:
        server = HttpServer(
            host,
            port,
            resources.registry,
            get_model=lambda: service.model,
            decoder=resources.decoder,
            is_ready=resources.is_ready,
            is_healthy=lambda: not failed.is_set(),
            model_extra=lambda: {
                "progressive_log_loss": _none_if_nan(
                    progressive_log_loss(service.totals, service.model)
                ),
                "offsets": {p: pos.offset for p, pos in service.positions.items()},
            },
        ).start()
    except OSError as exc:
        raise UsageError(f"cannot serve HTTP on {host}:{port}: {exc.strerror}") from None
    resources.http = server
    log.info("serving /metrics /healthz /readyz /model /predict on http://%s:%d", host, server.port)
    return server


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value
