"""Where option values come from besides flags: the ``--config`` TOML file and the
environment; and the TOML the effective configuration is printed as (``--print-config``).

Both readers return ``{option name: value}`` with every value already checked, so the
parser can use them as defaults: built-in < file < environment < command line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..config import SECTIONS, TrainConfig, train_options
from ..config.options import MASK, ConfigError, OptionSpec
from .errors import UsageError


def read_config_file(path: str) -> dict[str, Any]:
    """The options set in the TOML file ``path`` (tables = the sections of TrainConfig).

    Raises
    ------
    UsageError
        One line naming the file and the problem: unreadable, not TOML, an unknown table or
        key, a value of the wrong type or out of range.
    """
    import tomllib  # here: only a run with a config file reads TOML (start-up time)

    try:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    except ValueError as exc:  # a NUL in the path (open), invalid UTF-8 (tomllib)
        detail = "not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
        if isinstance(exc, tomllib.TOMLDecodeError):
            detail = f"not valid TOML: {exc}"
        raise UsageError(f"cannot read config file {path!r}: {detail}") from None
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    options = {section: {s.name: s for s in specs} for section, specs in _by_section().items()}
    values: dict[str, Any] = {}
    for section, table in document.items():
        if section not in options or not isinstance(table, dict):
            known = ", ".join(f"[{name}]" for name in SECTIONS)
            raise UsageError(f"{path}: unknown section {section!r} (sections: {known})")
        for key, value in table.items():
            spec = options[section].get(key)
            if spec is None:
                raise UsageError(f"{path}: unknown key {key!r} in [{section}]")
            if isinstance(value, str) and "\x00" in value:
                # No file name, host or topic holds a NUL; open() would raise on it later.
                raise UsageError(f"{path}: [{section}] {key}: the value holds a NUL character")
            try:
                spec.check(value)
            except ConfigError as exc:
                raise UsageError(f"{path}: [{section}] {key}: {exc}") from None
            values[key] = value
    return values


def environment_values(options: Iterable[OptionSpec], environ: Mapping[str, str]) -> dict[str, Any]:
    """The options set through ``STREAMSGD_<NAME>`` variables, parsed and checked."""
    values: dict[str, Any] = {}
    for spec in options:
        raw = environ.get(spec.env_var)
        if raw is None:
            continue
        try:
            values[spec.name] = spec.parse(raw)
        except ConfigError as exc:
            detail = str(exc).removeprefix(f"{spec.flag}: ")
            if spec.secret:
                detail = detail.replace(raw, MASK)
            raise UsageError(f"{spec.env_var} ({spec.flag}): {detail}") from None
    return values


def render_toml(config: TrainConfig) -> str:
    """``config`` as a TOML document that ``--config`` reads back; secrets are masked and
    unset options are comments."""
    lines = [
        "# streamsgd train: effective configuration "
        "(defaults < --config file < environment < flags)"
    ]
    for section, specs in _by_section().items():
        lines += ["", f"[{section}]"]
        for spec in specs:
            value = getattr(getattr(config, section), spec.name)
            if value is None:
                lines.append(f"# {spec.name} is not set")
            elif spec.secret:
                lines.append(f"{spec.name} = {json.dumps(MASK)}")
            else:
                text = _toml_value(value)
                lines.append(
                    f"{spec.name} = {text}"
                    if text is not None
                    else f"# {spec.name} holds bytes that are not UTF-8: not writable as TOML"
                )
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str | None:
    """``value`` as a TOML value, or None for a string TOML cannot hold (a lone surrogate:
    an argument's undecodable bytes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return toml_string(str(value))


def toml_string(text: str) -> str | None:
    """``text`` as an ASCII TOML basic string: \\uXXXX or \\UXXXXXXXX for everything outside
    printable ASCII (JSON's surrogate pairs for non-BMP characters are not TOML); None when
    ``text`` holds a lone surrogate, which no TOML string can."""
    out = []
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            return None
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        else:
            out.append(f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}")
    return '"' + "".join(out) + '"'


def _by_section() -> dict[str, list[OptionSpec]]:
    grouped: dict[str, list[OptionSpec]] = {section: [] for section in SECTIONS}
    for section, spec in train_options():
        grouped[section].append(spec)
    return grouped
