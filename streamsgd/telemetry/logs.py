"""Logging set-up of the CLI: text or JSON lines on stderr, secrets redacted, the Kafka
client's own loggers quiet unless asked for.

``--log-format json`` writes one object per line with ``ts`` (UTC, ISO 8601), ``level``,
``logger`` and ``message``, plus ``exc`` for a traceback and the structured ``fields`` a
record carries (the progress line's numbers), for Docker and Kubernetes log collectors.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# kafka-python logs every connection at INFO and its protocol at DEBUG; confluent-kafka
# logs through "confluent_kafka" when asked.
KAFKA_LOGGERS = ("kafka", "confluent_kafka")
REDACTED = "***"
RESERVED_KEYS = ("ts", "level", "logger", "message", "exc")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (a single line: newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            document.update({k: v for k, v in fields.items() if k not in RESERVED_KEYS})
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, allow_nan=False)


class SecretFilter(logging.Filter):
    """Replaces every occurrence of the given secrets in a record's message (and the
    traceback text) by ``***`` before any handler formats it."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def configure_logging(
    level: str = "INFO",
    log_format: str = "text",
    *,
    kafka_protocol_debug: bool = False,
    secrets: Sequence[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send the root logger to ``stream`` (stderr) in ``log_format`` at ``level``.

    Replaces handlers installed by an earlier call (the CLI may run several times in one
    process, e.g. in tests). The Kafka clients' loggers are kept at WARNING unless
    ``kafka_protocol_debug``, which lets them through at DEBUG. Returns the handler.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "streamsgd", False)]:
        root.removeHandler(old)
    handler.streamsgd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in KAFKA_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if kafka_protocol_debug else logging.WARNING)
    return handler
