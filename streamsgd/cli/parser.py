"""The argparse parsers, generated from the option declarations of :mod:`streamsgd.config`.

``streamsgd train``: one argument group per configuration section; every flag's default is
the built-in default, overridden by the ``--config`` file, overridden by ``STREAMSGD_<NAME>``
(all already checked); a flag on the command line wins over all of them.
``streamsgd evaluate``: the options of train (same generation, same sources of values),
plus ``--json`` and ``--predictions``.
``streamsgd produce``: the same generation; only the passwords come from the environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from .. import __version__
from ..config import SECTIONS, train_options
from ..config.options import BOOLEAN, TEXT, OptionSpec, Section, option, specs
from ..config.produce import (
    PRODUCE_OPTIONS_AFTER_SOURCE,
    ProduceConfig,
    ProduceFile,
    ProduceSynthetic,
)
from .errors import UsageError
from .layers import environment_values


@dataclass(frozen=True, kw_only=True)
class TrainCommandOptions(Section):
    """Options of ``streamsgd train`` that are not configuration."""

    config: str | None = option(
        None,
        "TOML file of options: tables are the sections printed by --print-config, keys "
        "the option names; precedence: defaults < file < environment < flags",
        metavar="FILE",
    )
    print_config: bool = option(
        False,
        "print the effective configuration as TOML (secrets masked) and exit",
        BOOLEAN,
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class _EnvHelpFormatter(argparse.HelpFormatter):
    """Shows each flag's environment variable and its built-in default, never the value
    taken from the environment or a file (which may be a secret)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        spec: OptionSpec | None = getattr(action, "spec", None)
        if spec is None:
            return text
        if getattr(action, "env_var", None):
            text += f" [env: {spec.env_var}]"
        if spec.default not in (None, False) and not spec.secret:
            text += f" (default: {spec.default})"
        return text


def _value_parser(spec: OptionSpec) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return spec.value_type.parse(text)
        except ValueError as exc:  # ConfigError: argparse prefixes the flag
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = spec.value_type.name
    return parse


def add_option(
    group: Any, spec: OptionSpec, default: Any, *, env: bool, hide_default: bool = False
) -> argparse.Action:
    """Add ``spec`` to ``group`` with ``default`` (already resolved from file/environment)."""
    kwargs: dict[str, Any] = {
        "help": spec.help,
        "default": argparse.SUPPRESS if hide_default else default,
    }
    if spec.value_type is BOOLEAN:
        kwargs["action"] = "store_true"
    else:
        if spec.value_type is not TEXT:
            kwargs["type"] = _value_parser(spec)
        kwargs["choices"] = spec.choices
        kwargs["metavar"] = spec.metavar
    if spec.positional:
        kwargs.pop("default")
        action: argparse.Action = group.add_argument(spec.name, **kwargs)
    else:
        kwargs["required"] = spec.required
        action = group.add_argument(spec.flag, **kwargs)
    action.spec = spec  # type: ignore[attr-defined]
    action.env_var = spec.env_var if env else None  # type: ignore[attr-defined]
    return action


def build_parser(
    file_values: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    """The full parser. ``file_values``: options from a ``--config`` file; ``environ``:
    the environment to read (default ``os.environ``). Raises :class:`UsageError` for a bad
    environment value."""
    environ = os.environ if environ is None else environ
    parser = _Parser(
        prog="streamsgd",
        description="Streaming online logistic regression with minibatch-averaged SGD.",
    )
    parser.add_argument("--version", action="version", version=f"streamsgd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    _add_train(commands, file_values or {}, environ)
    _add_evaluate(commands, file_values or {}, environ)
    inspect = commands.add_parser("inspect", help="print a checkpoint")
    inspect.add_argument("directory", help="checkpoint directory")
    inspect.add_argument("--json", action="store_true", help="print the whole checkpoint as JSON")
    _add_produce(commands, environ)
    return parser


def _add_train(commands: Any, file_values: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    train = commands.add_parser(
        "train",
        help="train on a stream and serve metrics",
        formatter_class=_EnvHelpFormatter,
        description="Train on a stream. Every flag can also be set with the environment "
        "variable shown next to it, or in a --config file.",
    )
    _add_train_options(train, file_values, environ)


def _add_evaluate(
    commands: Any, file_values: Mapping[str, Any], environ: Mapping[str, str]
) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="progressive validation (test-then-train) of a labelled stream",
        formatter_class=_EnvHelpFormatter,
        description="Score every sample with the weights before the step that learns it, "
        "then learn it; print accuracy, log loss and ROC AUC of those scores. Takes every "
        "flag of train (environment variables and --config too); reads --source file or "
        "synthetic (with --max-samples); writes no checkpoint and serves nothing.",
    )
    _add_train_options(evaluate, file_values, environ)
    _add_evaluate_arguments(evaluate)


def _add_train_options(
    command: argparse.ArgumentParser, file_values: Mapping[str, Any], environ: Mapping[str, str]
) -> None:
    """Every configuration option of train (grouped by section) and --config/--print-config."""
    train = command
    every = [spec for _, spec in train_options()]
    command_options = list(specs(TrainCommandOptions))
    defaults = {spec.name: spec.default for spec in every + command_options}
    defaults.update(file_values)
    # --print-config is a flag only: from the environment it turned every `train` into
    # print-and-exit-0.
    from_environment = [s for s in every + command_options if s.name != "print_config"]
    defaults.update(environment_values(from_environment, environ))
    groups = {section: train.add_argument_group(section) for section in SECTIONS}
    for section, spec in train_options():
        add_option(groups[section], spec, defaults[spec.name], env=True)
    for spec in command_options:
        add_option(train, spec, defaults[spec.name], env=spec.name != "print_config")


# STREAMSGD_* variables that are not options: the config file, and the scripts' and tests'.
_OTHER_VARIABLES = (
    "STREAMSGD_CONFIG",
    "STREAMSGD_BENCH_CACHE",
    "STREAMSGD_CACHE_DIR",
    "STREAMSGD_KAFKA_CACHE",
    "STREAMSGD_REPLICAS",
)
_OTHER_PREFIXES = ("STREAMSGD_TEST_", "STREAMSGD_MPI_")


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """One warning per ``STREAMSGD_*`` variable that names no option of train, with the
    closest option's variable (a misspelt variable was silently ignored)."""
    known = {spec.env_var for _, spec in train_options()}
    known |= {spec.env_var for spec in specs(TrainCommandOptions)} | set(_OTHER_VARIABLES)
    warnings = []
    for name in sorted(environ):
        if not name.startswith("STREAMSGD_") or name in known:
            continue
        if name.startswith(_OTHER_PREFIXES):
            continue
        import difflib  # here: only a misspelt variable needs it (start-up time)

        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"{name} is not a streamsgd option and is ignored{hint}")
    return warnings


def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``evaluate`` besides the train flags (here, not in
    :mod:`.evaluate`, so that building the parser does not import what evaluate runs)."""
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument(
        "--predictions",
        metavar="PATH",
        help="write each sample's pre-step probability p(y=1|x), one per line in stream "
        "order (rejected records have no line)",
    )


def _add_produce(commands: Any, environ: Mapping[str, str]) -> None:
    produce = commands.add_parser(
        "produce", help="write samples to a Kafka topic", formatter_class=_EnvHelpFormatter
    )
    own = [s for s in specs(ProduceConfig)]
    secrets = environment_values([s for s in own if s.secret], environ)
    for spec in own:
        add_option(produce, spec, secrets.get(spec.name, spec.default), env=spec.secret)
    kinds = produce.add_subparsers(dest="kind", metavar="SOURCE", parser_class=_Parser)
    kinds.required = True
    helps = {"synthetic": "the seeded synthetic stream", "file": "JSON Lines records, one per line"}
    by_name = {spec.name: spec for spec in own}
    for kind, section in (("synthetic", ProduceSynthetic), ("file", ProduceFile)):
        sub = kinds.add_parser(kind, help=helps[kind], formatter_class=_EnvHelpFormatter)
        for spec in specs(section):
            add_option(sub, spec, spec.default, env=False)
        # SUPPRESS: a value given before the source name is not overwritten by a default.
        for name in PRODUCE_OPTIONS_AFTER_SOURCE[kind]:
            add_option(sub, by_name[name], None, env=False, hide_default=True)
