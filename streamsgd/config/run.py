"""The run's own sections of the train configuration: ``[checkpoint]`` (where and how often),
``[serve]`` (the HTTP endpoints) and ``[logging]`` (status line, log lines). Standard library
only."""

from __future__ import annotations

from dataclasses import dataclass

from .options import NON_NEGATIVE_FLOAT, NON_NEGATIVE_INT, PORT, POSITIVE_FLOAT, Section, option


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
