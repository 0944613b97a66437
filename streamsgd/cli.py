"""Command line: ``streamsgd train | inspect | produce``; the composition root.

``main(argv) -> int`` never raises for user mistakes: a wrong flag or value prints one line
and returns 2. Every ``train`` flag can also come from ``STREAMSGD_<FLAG_NAME>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import __version__

log = logging.getLogger("streamsgd")
ENV_PREFIX = "STREAMSGD_"
SECRET_FLAGS = {"--sasl-password", "--ssl-password"}


class UsageError(Exception):
    """A mistake in flags, values or environment: reported in one line, exit code 2."""


# ---------------------------------------------------------------------------- value types
def _number(
    kind: Callable[[str], Any], name: str, test: Callable[[Any], bool]
) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}")
        return value

    parse.__name__ = name
    return parse


positive_int = _number(int, "a positive integer", lambda v: v >= 1)
non_negative_int = _number(int, "an integer >= 0", lambda v: v >= 0)
port_number = _number(int, "a port number (0-65535)", lambda v: 0 <= v <= 65535)
hash_bits_type = _number(int, "an integer in 1..30", lambda v: 1 <= v <= 30)
positive_float = _number(float, "a number > 0", lambda v: v > 0)
non_negative_float = _number(float, "a number >= 0", lambda v: v >= 0)
probability = _number(float, "a number in [0, 0.5]", lambda v: 0 <= v <= 0.5)
smoothing_type = _number(float, "a number in (0, 1]", lambda v: 0 < v <= 1)


def _flag_env(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class _EnvHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's environment variable and its built-in default, never the value
    taken from the environment (which may be a secret)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        env = getattr(action, "env_var", None)
        if env:
            text += f" [env: {env}]"
        static = getattr(action, "static_default", None)
        if (
            static not in (None, False, argparse.SUPPRESS)
            and action.option_strings[0] not in SECRET_FLAGS
        ):
            text += f" (default: {static})"
        return text


def _add(group: Any, flag: str, *, env: bool = True, **kwargs: Any) -> argparse.Action:
    """Add a flag whose default comes from STREAMSGD_<FLAG> when that variable is set."""
    static = kwargs.get("default")
    env_var = _flag_env(flag) if env else None
    if env_var and env_var in os.environ:
        raw = os.environ[env_var]
        if kwargs.get("action") == "store_true":
            if raw.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                raise UsageError(f"{env_var}={raw!r} is not a boolean")
            kwargs["default"] = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            kwargs["default"] = raw
    action: argparse.Action = group.add_argument(flag, **kwargs)
    action.env_var = env_var  # type: ignore[attr-defined]
    action.static_default = static  # type: ignore[attr-defined]
    return action


def _add_kafka_connection(group: Any, env: bool) -> None:
    _add(
        group,
        "--bootstrap-servers",
        env=env,
        metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers",
    )
    _add(
        group,
        "--security-protocol",
        env=env,
        default="PLAINTEXT",
        choices=["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        help="Kafka security protocol",
    )
    _add(
        group,
        "--sasl-mechanism",
        env=env,
        choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"],
        help="SASL mechanism",
    )
    _add(group, "--sasl-username", env=env, help="SASL user name")
    _add(
        group,
        "--sasl-password",
        env=True,
        help="SASL password; prefer the environment variable, it is never printed",
    )
    _add(group, "--ssl-cafile", env=env, help="CA bundle (PEM) to verify the brokers")
    _add(group, "--ssl-certfile", env=env, help="client certificate (PEM)")
    _add(group, "--ssl-keyfile", env=env, help="client private key (PEM)")
    _add(group, "--ssl-password", env=True, help="password of the client key; never printed")


def build_parser() -> argparse.ArgumentParser:
    """The full parser (used by main and by the tests that cross-check the deployment)."""
    parser = _Parser(
        prog="streamsgd",
        description="Streaming online logistic regression with minibatch-averaged SGD.",
    )
    parser.add_argument("--version", action="version", version=f"streamsgd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train on a stream and serve metrics",
        formatter_class=_EnvHelpFormatter,
        description="Train on a stream. Every flag can also be set with the environment "
        "variable shown next to it.",
    )
    src = train.add_argument_group("source")
    _add(
        src,
        "--source",
        default="auto",
        choices=["auto", "synthetic", "file", "kafka"],
        help="where samples come from; auto = kafka when --bootstrap-servers is set, "
        "else the embedded synthetic stream",
    )
    _add(src, "--path", help="JSON Lines file for --source file ('-' = stdin)")
    _add(src, "--max-samples", type=positive_int, help="stop after this many samples in total")
    _add(src, "--seed", type=int, default=0, help="synthetic: random seed")
    _add(
        src,
        "--label-noise",
        type=probability,
        default=0.0,
        help="synthetic: probability of flipping a label",
    )
    _add(
        src,
        "--drift",
        type=non_negative_float,
        default=0.0,
        help="synthetic: rotation of the true weights, radians per 100k samples",
    )
    _add(
        src,
        "--max-record-bytes",
        type=positive_int,
        default=16 * 1024 * 1024,
        help="reject larger records",
    )

    model = train.add_argument_group("model")
    _add(
        model,
        "--n-features",
        type=positive_int,
        help="input dimension d (synthetic default 10; 2^hash-bits with --hash-bits)",
    )
    _add(model, "--hash-bits", type=hash_bits_type, help="hash named features into 2^B dimensions")
    _add(model, "--batch-size", type=positive_int, default=32, help="minibatch size m")
    _add(model, "--learning-rate", type=positive_float, default=0.1, help="learning rate eta0")
    _add(
        model,
        "--learning-rate-schedule",
        default="constant",
        choices=["constant", "inverse_scaling"],
        help="inverse_scaling: eta_t = eta0 / (1 + decay*t)^power",
    )
    _add(
        model,
        "--learning-rate-decay",
        type=non_negative_float,
        default=1.0,
        help="decay of inverse_scaling",
    )
    _add(
        model,
        "--learning-rate-power",
        type=non_negative_float,
        default=0.5,
        help="power of inverse_scaling",
    )
    _add(model, "--l2", type=non_negative_float, default=0.0, help="L2 penalty lambda2")
    _add(model, "--l1", type=non_negative_float, default=0.0, help="L1 penalty lambda1 (proximal)")
    _add(
        model,
        "--optimizer",
        default="sgd",
        choices=["sgd", "adagrad"],
        help="step rule applied to the averaged gradient",
    )
    _add(
        model,
        "--reduction",
        default="mean",
        choices=["mean", "sum"],
        help="mean (1/m) or sum of per-sample gradients",
    )
    _add(
        model,
        "--online-block-size",
        type=non_negative_int,
        default=32,
        help="with --batch-size 1: apply the m=1 steps this many at a time (the same steps, "
        "several times faster; a sample may wait for its block or --max-wait-ms); "
        "0 = one learn_batch call per sample",
    )
    _add(
        model,
        "--stats-smoothing",
        type=smoothing_type,
        default=0.05,
        help="EWMA factor alpha of the gradient statistics (window ~ 1/alpha steps)",
    )

    state = train.add_argument_group("checkpoints")
    _add(state, "--checkpoint-dir", help="directory of the atomic checkpoint (resumes from it)")
    _add(
        state,
        "--checkpoint-interval-seconds",
        type=positive_float,
        default=10.0,
        help="checkpoint (then commit offsets) at most this often",
    )
    _add(
        state,
        "--checkpoint-every-updates",
        type=non_negative_int,
        default=0,
        help="also checkpoint once this many updates accumulated "
        "(checked after each poll; 0 = off)",
    )

    kafka = train.add_argument_group("kafka")
    _add_kafka_connection(kafka, env=True)
    _add(kafka, "--topic", help="topic to learn from")
    _add(
        kafka,
        "--kafka-client",
        default="kafka-python",
        choices=["kafka-python", "confluent"],
        help="consumer library; confluent (optional extra streamsgd[confluent]) reads "
        "single-sample records several times faster",
    )
    _add(kafka, "--group-id", default="streamsgd", help="consumer group")
    _add(
        kafka,
        "--group-instance-id",
        help="static group membership: a restarted trainer with the same id gets its "
        "partitions back at once instead of after the session timeout (45 s)",
    )
    _add(kafka, "--dead-letter-topic", help="topic for rejected records (reason in headers)")
    _add(
        kafka,
        "--auto-offset-reset",
        default="earliest",
        choices=["earliest", "latest"],
        help="where to start without a checkpoint or committed offset",
    )
    _add(
        kafka,
        "--max-wait-ms",
        type=positive_int,
        help="apply a partial minibatch after this long without new records",
    )
    _add(
        kafka,
        "--lag-interval-seconds",
        type=positive_float,
        default=5.0,
        help="how often to refresh streamsgd_consumer_lag_records",
    )

    serve = train.add_argument_group("http and output")
    _add(serve, "--metrics-host", default="127.0.0.1", help="address of the HTTP endpoints")
    _add(
        serve,
        "--metrics-port",
        type=port_number,
        default=8000,
        help="port of /metrics /healthz /readyz /model /predict (0 = any free port)",
    )
    _add(
        serve,
        "--progress",
        default="auto",
        choices=["auto", "always", "never"],
        help="status line on stderr (auto = when it is a terminal)",
    )
    _add(
        serve,
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level",
    )

    inspect = commands.add_parser("inspect", help="print a checkpoint")
    inspect.add_argument("directory", help="checkpoint directory")
    inspect.add_argument("--json", action="store_true", help="print the whole checkpoint as JSON")

    produce = commands.add_parser(
        "produce", help="write samples to a Kafka topic", formatter_class=_EnvHelpFormatter
    )
    _add_kafka_connection(produce, env=False)
    produce.add_argument("--topic", required=True, help="topic to write to")
    produce.add_argument(
        "--partitions",
        type=positive_int,
        default=1,
        help="partitions when the topic has to be created",
    )
    produce.add_argument(
        "--rate", type=positive_float, help="records per second (default: as fast as possible)"
    )
    produce.add_argument(
        "--samples-per-record",
        type=positive_int,
        default=1,
        help="samples per record; > 1 uses the batched record form",
    )
    produce.add_argument(
        "--format",
        default="json",
        choices=["json", "binary"],
        help="record encoding for batched records",
    )
    produce.add_argument("--progress", default="auto", choices=["auto", "always", "never"])
    kinds = produce.add_subparsers(dest="kind", metavar="SOURCE", parser_class=_Parser)
    kinds.required = True
    syn = kinds.add_parser("synthetic", help="the seeded synthetic stream")
    syn.add_argument("--n", type=positive_int, required=True, help="number of samples")
    syn.add_argument("--n-features", type=positive_int, default=10, help="dimension d")
    syn.add_argument("--seed", type=int, default=0, help="random seed")
    syn.add_argument("--label-noise", type=probability, default=0.0)
    syn.add_argument("--drift", type=non_negative_float, default=0.0)
    fil = kinds.add_parser("file", help="JSON Lines records, one per line")
    fil.add_argument("path", help="file ('-' = stdin)")
    # The sending options are accepted after the source name too (`... synthetic --rate R`);
    # SUPPRESS keeps a sub-command default from overwriting a value given before it.
    for kind in (syn, fil):
        kind.add_argument(
            "--rate", type=positive_float, default=argparse.SUPPRESS, help="records per second"
        )
        kind.add_argument(
            "--partitions",
            type=positive_int,
            default=argparse.SUPPRESS,
            help="partitions when the topic has to be created",
        )
    syn.add_argument(
        "--samples-per-record",
        type=positive_int,
        default=argparse.SUPPRESS,
        help="samples per record",
    )
    syn.add_argument(
        "--format",
        choices=["json", "binary"],
        default=argparse.SUPPRESS,
        help="record encoding for batched records",
    )
    return parser


def _validate_choices(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    # argparse checks choices on the command line only, not on defaults from the environment.
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
            elif action.choices and hasattr(args, action.dest):
                value = getattr(args, action.dest)
                if value is not None and value not in action.choices:
                    env = getattr(action, "env_var", None)
                    raise UsageError(
                        f"{env or action.option_strings[0]}: invalid choice {value!r} "
                        f"(choose from {', '.join(map(str, action.choices))})"
                    )


# ---------------------------------------------------------------------------- train
def _kafka_security(args: argparse.Namespace) -> dict[str, Any]:
    settings = {
        "security_protocol": args.security_protocol,
        "sasl_mechanism": args.sasl_mechanism,
        "sasl_plain_username": args.sasl_username,
        "sasl_plain_password": args.sasl_password,
        "ssl_cafile": args.ssl_cafile,
        "ssl_certfile": args.ssl_certfile,
        "ssl_keyfile": args.ssl_keyfile,
        "ssl_password": args.ssl_password,
    }
    return {k: v for k, v in settings.items() if v is not None}


def _train(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from .checkpoint import CheckpointError, DirectoryCheckpointStore
    from .codec import Decoder
    from .core.model import OnlineLogisticRegression
    from .http import HttpServer
    from .metrics import PrometheusSensor
    from .progress import ProgressReporter
    from .service import ServiceConfig, Source, TrainingService, progressive_log_loss
    from .sources.file import FileSource
    from .sources.synthetic import SyntheticSource
    from .synthetic import SyntheticStream

    source_kind = args.source
    if source_kind == "auto":
        source_kind = "kafka" if args.bootstrap_servers else "synthetic"
        if source_kind == "synthetic":
            log.info("no --bootstrap-servers: training on the embedded synthetic stream")
    if source_kind == "file" and not args.path:
        raise UsageError("--source file needs --path (a JSON Lines file, or - for stdin)")
    if source_kind == "kafka" and not (args.bootstrap_servers and args.topic):
        raise UsageError("--source kafka needs --bootstrap-servers and --topic")
    if args.hash_bits is not None:
        if args.n_features is not None and args.n_features != 1 << args.hash_bits:
            raise UsageError("--n-features must be 2^--hash-bits (or omitted) with --hash-bits")
        n_features = 1 << args.hash_bits
    elif args.n_features is not None:
        n_features = args.n_features
    elif source_kind == "synthetic":
        n_features = 10
    else:
        raise UsageError(f"--source {source_kind} needs --n-features (or --hash-bits)")
    if source_kind == "synthetic" and args.hash_bits is not None:
        raise UsageError("the synthetic source is dense: drop --hash-bits")

    model = OnlineLogisticRegression(
        n_features,
        learning_rate=args.learning_rate,
        learning_rate_schedule=args.learning_rate_schedule,
        decay=args.learning_rate_decay,
        power=args.learning_rate_power,
        l2=args.l2,
        l1=args.l1,
        reduction=args.reduction,
        optimizer=args.optimizer,
        stats_smoothing=args.stats_smoothing,
    )
    decoder = Decoder(n_features, args.hash_bits, args.max_record_bytes)
    registry = CollectorRegistry()
    sensor = PrometheusSensor(registry)
    sensors: list[Any] = [sensor]
    progress = None
    if args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty()):
        progress = ProgressReporter(sys.stderr)
        sensors.append(progress)

    dead_letter = None
    description: dict[str, Any] = {"kind": source_kind}
    source: Source
    if source_kind == "synthetic":
        stream = SyntheticStream(n_features, args.seed, args.label_noise, args.drift)
        source = SyntheticSource(stream)
        description.update(seed=args.seed, label_noise=args.label_noise, drift=args.drift)
    elif source_kind == "file":
        try:
            source = FileSource(args.path)
        except OSError as exc:
            raise UsageError(f"cannot open {args.path}: {exc.strerror}") from None
        description.update(path=args.path)
    else:
        from .kafka.dead_letter import KafkaDeadLetterSink
        from .kafka.source import KafkaSource

        security = _kafka_security(args)
        source_class: Any = KafkaSource
        if args.kafka_client == "confluent":
            try:
                from .kafka.confluent import ConfluentKafkaSource
            except ImportError:
                raise UsageError(
                    "--kafka-client confluent needs confluent-kafka: "
                    "pip install 'streamsgd[confluent]'"
                ) from None
            source_class = ConfluentKafkaSource
        source = source_class(
            bootstrap_servers=args.bootstrap_servers,
            topic=args.topic,
            group_id=args.group_id,
            auto_offset_reset=args.auto_offset_reset,
            security=security,
            lag_interval_seconds=args.lag_interval_seconds,
            on_lag=sensor.set_consumer_lag,
            group_instance_id=args.group_instance_id,
        )
        if args.dead_letter_topic:
            dead_letter = KafkaDeadLetterSink(
                args.bootstrap_servers, args.dead_letter_topic, security
            )
        description.update(topic=args.topic, group_id=args.group_id)

    store = DirectoryCheckpointStore(args.checkpoint_dir) if args.checkpoint_dir else None
    config = ServiceConfig(
        batch_size=args.batch_size,
        max_samples=args.max_samples,
        max_wait_seconds=None if args.max_wait_ms is None else args.max_wait_ms / 1000.0,
        checkpoint_interval_seconds=args.checkpoint_interval_seconds,
        checkpoint_every_updates=args.checkpoint_every_updates,
        online_block_size=args.online_block_size,
    )
    service = TrainingService(
        model,
        source,
        decoder,
        config,
        checkpoint_store=store,
        dead_letter=dead_letter,
        sensors=sensors,
        source_description=description,
    )
    if hasattr(source, "attach"):
        source.attach(service)
    failed = threading.Event()

    def is_ready() -> bool:
        return bool(source.ready) and not failed.is_set()

    sensor.bind_readiness(is_ready)
    server = None
    if args.metrics_port is not None:
        try:
            server = HttpServer(
                args.metrics_host,
                args.metrics_port,
                registry,
                get_model=lambda: service.model,
                decoder=decoder,
                is_ready=is_ready,
                is_healthy=lambda: not failed.is_set(),
                model_extra=lambda: {
                    "progressive_log_loss": _none_if_nan(
                        progressive_log_loss(service.totals, service.model)
                    ),
                    "offsets": {p: pos.offset for p, pos in service.buffer.positions.items()},
                },
            ).start()
        except OSError as exc:
            raise UsageError(
                f"cannot serve HTTP on {args.metrics_host}:{args.metrics_port}: {exc.strerror}"
            ) from None
        log.info(
            "serving /metrics /healthz /readyz /model /predict on http://%s:%d",
            args.metrics_host,
            server.port,
        )

    def stop(signum: int, _frame: Any) -> None:
        log.info(
            "received %s: finishing the current step, checkpointing, committing",
            signal.Signals(signum).name,
        )
        service.request_stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.run()
    except CheckpointError as exc:
        failed.set()
        raise UsageError(str(exc)) from None
    except Exception:
        failed.set()
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if progress is not None:
            progress.close()
        source.close()
        if dead_letter is not None:
            dead_letter.close()
        if server is not None:
            server.stop()
    loss = progressive_log_loss(service.totals, service.model)
    log.info(
        "done: %d samples in %d updates, progressive log loss %.6f, %d records rejected",
        service.model.n_samples_seen,
        service.model.n_updates,
        loss,
        service.totals.records_rejected,
    )
    return 0


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


# ---------------------------------------------------------------------------- inspect
def _inspect(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError, DirectoryCheckpointStore

    try:
        state = DirectoryCheckpointStore(args.directory).load()
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    if state is None:
        raise UsageError(f"no checkpoint in {args.directory}")
    model = state["model"]
    theta = model["theta"]
    document = {
        "coef": theta[:-1].tolist(),
        "intercept": float(theta[-1]),
        "n_updates": model["n_updates"],
        "n_samples_seen": model["n_samples_seen"],
        "offsets": state["offsets"],
        "positions": state["positions"],
        "params": model["params"],
        "totals": state["totals"],
        "source": state["source"],
        "batch_size": state["batch_size"],
    }
    if args.json:
        print(json.dumps(document, indent=2, allow_nan=True))
        return 0
    n = document["n_samples_seen"]
    loss = document["totals"]["progressive_loss_sum"] / n if n else math.nan
    print(f"checkpoint      {args.directory}")
    print(f"features        {model['params']['n_features']}")
    print(f"updates         {document['n_updates']}")
    print(f"samples         {n}")
    print(f"progressive loss {loss:.6f}")
    print(f"intercept       {document['intercept']:.6g}")
    print(f"offsets         {json.dumps(document['offsets'])}")
    return 0


# ---------------------------------------------------------------------------- produce
def _produce(args: argparse.Namespace) -> int:
    from .producer import produce

    return produce(args, _kafka_security(args))


# ---------------------------------------------------------------------------- entry points
def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        _validate_choices(parser, args)
        logging.basicConfig(
            level=getattr(args, "log_level", "INFO"),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        # kafka-python logs every connection at INFO; keep it for --log-level DEBUG.
        if getattr(args, "log_level", "INFO") != "DEBUG":
            logging.getLogger("kafka").setLevel(logging.WARNING)
        if args.command == "train":
            return _train(args)
        if args.command == "inspect":
            return _inspect(args)
        return _produce(args)
    except UsageError as exc:
        print(f"streamsgd: error: {exc}", file=sys.stderr)
        return 2


def entry_point() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (e.g. `streamsgd inspect DIR --json | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
