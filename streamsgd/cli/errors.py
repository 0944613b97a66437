"""The CLI's error types: each is reported as one line ``streamsgd: error: ...``."""

from __future__ import annotations

from ..config.options import ConfigError

__all__ = ["ConfigError", "UsageError"]


class UsageError(ConfigError):
    """A mistake in flags, values, environment or files: one line, exit code 2.

    A :class:`~streamsgd.config.options.ConfigError` (a bad option value or combination, raised by
    :mod:`streamsgd.config`) is one too; the CLI reports both the same way.
    """
