"""Declaring options once: value types, :func:`option` fields and the :class:`Section` base.

An option is a field of a frozen dataclass whose metadata holds its :class:`OptionSpec`
(type, default, help, choices, secrecy). :mod:`streamsgd.config` declares the options;
``streamsgd.cli.parser`` turns them into flags and environment variables. Standard library only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "STREAMSGD_"
MASK = "***"
AUTO = "auto"  # the value of an option chosen by the noise controller


class ConfigError(ValueError):
    """A wrong option value, file or combination; its message is one line."""


# ---------------------------------------------------------------------------- value types
@dataclass(frozen=True)
class ValueType:
    """What an option holds: a Python type and a range test, named for error messages."""

    name: str
    kind: type
    test: Callable[[Any], bool] = lambda value: True
    auto: bool = False  # the word "auto" is a value too

    def accepts(self, value: Any) -> bool:
        """True if ``value`` (already a Python value, e.g. from TOML) is valid."""
        if self.auto and isinstance(value, str):
            return value == AUTO
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return bool(self.test(value))

    def parse(self, text: str) -> Any:
        """The value written as ``text`` (a flag or an environment variable)."""
        if self.auto and text.strip().lower() == AUTO:
            return AUTO
        if self.kind is bool:
            word = text.strip().lower()
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off", ""):
                return False
            raise ConfigError(f"{text!r} is not {self.name}")
        try:
            value = self.kind(text)
        except ValueError:
            raise ConfigError(f"{text!r} is not {self.name}") from None
        if not self.accepts(value):
            raise ConfigError(f"{text!r} is not {self.name}")
        return value


TEXT = ValueType("a string", str)
BOOLEAN = ValueType("a boolean (true/false, 1/0, yes/no, on/off)", bool)
INTEGER = ValueType("an integer", int)
POSITIVE_INT = ValueType("a positive integer", int, lambda v: v >= 1)
NON_NEGATIVE_INT = ValueType("an integer >= 0", int, lambda v: v >= 0)
PORT = ValueType("a port number (0-65535)", int, lambda v: 0 <= v <= 65535)
HASH_BITS = ValueType("an integer in 1..30", int, lambda v: 1 <= v <= 30)
POSITIVE_FLOAT = ValueType("a number > 0", float, lambda v: v > 0)
NON_NEGATIVE_FLOAT = ValueType("a number >= 0", float, lambda v: v >= 0)
PROBABILITY = ValueType("a number in [0, 0.5]", float, lambda v: 0 <= v <= 0.5)
SMOOTHING = ValueType("a number in (0, 1]", float, lambda v: 0 < v <= 1)
OPEN_UNIT = ValueType("a number in (0, 1)", float, lambda v: 0 < v < 1)
LATENCY_SECONDS = ValueType("a number of seconds in (0, 3600]", float, lambda v: 0 < v <= 3600)
POSITIVE_INT_OR_AUTO = ValueType("a positive integer or auto", int, lambda v: v >= 1, auto=True)
# Batch sizes and blocks: a buffer of 2^20 samples is already far beyond any useful m, and an
# unbounded one grew memory without limit (docs/operations.md#what-is-guaranteed, bounded
# resources).
MAX_BATCH = 2**20
BATCH = ValueType(f"an integer in 1..{MAX_BATCH}", int, lambda v: 1 <= v <= MAX_BATCH)
BATCH_OR_AUTO = ValueType(
    f"an integer in 1..{MAX_BATCH} or auto", int, lambda v: 1 <= v <= MAX_BATCH, auto=True
)
BLOCK = ValueType(f"an integer in 0..{MAX_BATCH}", int, lambda v: 0 <= v <= MAX_BATCH)
POSITIVE_FLOAT_OR_AUTO = ValueType("a number > 0 or auto", float, lambda v: v > 0, auto=True)


@dataclass(frozen=True)
class OptionSpec:
    """The declaration of one option (kept in the dataclass field's metadata)."""

    name: str
    value_type: ValueType
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    secret: bool = False  # never printed: not in --help defaults, masked by --print-config
    required: bool = False
    positional: bool = False
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def check(self, value: Any) -> None:
        """Raise :class:`ConfigError` unless ``value`` is valid (None: unset, allowed)."""
        if value is None:
            return
        shown = "***" if self.secret else repr(value)  # a secret is never echoed
        if not self.value_type.accepts(value):
            raise ConfigError(f"{self.flag}: {shown} is not {self.value_type.name}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{self.flag}: invalid choice {shown} (choose from {', '.join(self.choices)})"
            )

    def parse(self, text: str) -> Any:
        """``text`` as this option's value; raises :class:`ConfigError` naming the problem."""
        value = text if self.value_type is TEXT else self.value_type.parse(text)
        self.check(value)
        return value


def option(
    default: Any,
    help: str,
    value_type: ValueType = TEXT,
    **details: Any,
) -> Any:
    """A dataclass field that is an option (see :class:`OptionSpec` for ``details``)."""
    spec = {"value_type": value_type, "default": default, "help": help, **details}
    return field(default=default, metadata={"option": spec})


def specs(section: type | Any) -> Iterator[OptionSpec]:
    """The options of a section dataclass (class or instance), in declaration order."""
    for f in dataclasses.fields(section):
        if "option" in f.metadata:
            yield OptionSpec(name=f.name, **f.metadata["option"])


class Section:
    """Base of the option groups: every value is checked at construction."""

    def __post_init__(self) -> None:
        for spec in specs(self):
            spec.check(getattr(self, spec.name))
