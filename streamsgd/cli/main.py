"""``main(argv) -> int`` and the console entry point (``train | evaluate | inspect | produce``).

``main`` never raises for user mistakes: a wrong flag, value, environment variable or config
file, an unreadable checkpoint, prints one line ``streamsgd: error: ...`` and returns 2.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence

from ..config.options import ConfigError
from ..telemetry.logs import configure_logging
from . import train
from .layers import read_config_file
from .parser import build_parser, unknown_environment


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; for ``train|evaluate --config FILE`` (or ``STREAMSGD_CONFIG``) parse
    again with the file's values under the environment's and the flags'."""
    args = build_parser().parse_args(argv)
    if args.command in ("train", "evaluate") and args.config:
        args = build_parser(read_config_file(args.config)).parse_args(argv)
    return args


def _dispatch(args: argparse.Namespace) -> int:
    # The other commands' modules (Kafka producer settings, the evaluation loop) are imported
    # only when used: `train` starts without them.
    if args.command == "inspect":
        from . import inspect

        configure_logging()
        return inspect.run(args.directory, args.json)
    if args.command == "produce":
        from . import produce

        config = produce.config_from_args(args)
        configure_logging(secrets=config.secrets())
        return produce.run(config)
    for warning in unknown_environment(os.environ):
        print(f"streamsgd: warning: {warning}", file=sys.stderr)
    train_config = train.config_from_args(args)
    if args.print_config:
        return train.print_config(train_config)
    settings = train_config.logging
    if args.command == "evaluate":
        from . import evaluate

        configure_logging(settings.log_level, settings.log_format)
        return evaluate.run(train_config, args.json, args.predictions)
    configure_logging(
        settings.log_level,
        settings.log_format,
        kafka_protocol_debug=train_config.kafka.kafka_protocol_debug,
        secrets=train_config.kafka.secrets(),
    )
    return train.run(train_config)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    try:
        return _dispatch(parse(argv))
    except ConfigError as exc:  # UsageError included
        print(f"streamsgd: error: {exc}", file=sys.stderr)
        return 2
    finally:
        # In-process callers (tests) get their logging back as it was.
        for handler in root.handlers[:]:
            if handler not in handlers_before:
                root.removeHandler(handler)


def entry_point() -> None:
    # Every module, class and function of the process is imported by now (≈ 10^5 objects)
    # and lives as long as it does: moved out of the collector's generations, the run loop's
    # collections no longer traverse them again and again (≈ 5 % of the CPU time of a
    # 500 k-record file run at m = 32, measured with farm-bench; bench/named_features.py).
    # In a real process only: a caller of main() in-process keeps its collector as it is.
    gc.freeze()
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (e.g. `streamsgd inspect DIR --json | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
