"""Keep credentials and record contents out of the Kafka clients' logs, at every level.

kafka-python logs every request and response at DEBUG: the SASL/PLAIN authentication bytes
(user and password in clear) and every fetched record. :func:`guard_client_logs` caps the
clients' loggers at INFO unless protocol logs are asked for (``protocol_debug``), and routes
everything they log through one handler that

* replaces every spelling of a registered secret (the password as text, inside a bytes
  repr, in base64, and the PLAIN authentication bytes) and any ``auth_bytes=...`` field by
  ``***``, in the message and in a traceback, whatever the level and the flag;
* drops the clients' noise (event-loop timing warnings under load, "no partition metadata"
  before the first metadata arrives, a metadata-retry line several times a second while
  the broker is away) unless protocol logs are asked for.

The handler forwards to the root logger's handlers, so the application's format (text or
JSON) applies. Every source, sink and producer calls :func:`guard_client_logs` when it is
created; the guard is process-wide and idempotent (secrets accumulate).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable

# kafka-python logs under "kafka.*"; the confluent source hands librdkafka this logger.
KAFKA_PYTHON_LOGGER = "kafka"
LIBRDKAFKA_LOGGER = "librdkafka"
REDACTED = "***"

_AUTH_BYTES = re.compile(r"auth_bytes=b(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")
# (logger name prefix, text in the message) of warnings that say nothing actionable.
_NOISE = (
    ("kafka.net.selector", "blocking the event loop"),
    ("kafka.net.selector", "left RUNNING after step"),
    ("kafka.coordinator.assignors", "No partition metadata for topic"),
    ("kafka.cluster", "is not available during auto-create"),
    # Repeated several times a second while the broker is away; the connection errors say it.
    ("kafka.cluster", "No node available for metadata refresh"),
)


class _GuardHandler(logging.Handler):
    """Redacts, drops noise, then hands the record to the root logger's handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self.protocol_debug = False
        self.watchers: list[Callable[[BaseException], None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            for watch in list(self.watchers):
                for error in _errors_of(record):
                    watch(error)
            message = record.getMessage()
            if not self.protocol_debug and _is_noise(record.name, message):
                return
            record.msg, record.args = self.redact(message), None
            if record.exc_info:
                formatter = logging.Formatter()
                record.exc_text = self.redact(formatter.formatException(record.exc_info))
                record.exc_info = None
        except Exception:
            self.handleError(record)
            return
        logging.getLogger().handle(record)

    def redact(self, text: str) -> str:
        text = _AUTH_BYTES.sub(f"auth_bytes={REDACTED}", text)
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def _errors_of(record: logging.LogRecord) -> list[BaseException]:
    """The exceptions a log line carries, typed: among its arguments and its exc_info."""
    args = record.args if isinstance(record.args, tuple) else ()
    errors = [a for a in args if isinstance(a, BaseException)]
    if record.exc_info and record.exc_info[1] is not None:
        errors.append(record.exc_info[1])
    return errors


def watch_client_errors(watch: Callable[[BaseException], None]) -> Callable[[], None]:
    """Call ``watch`` with every exception a Kafka client logs (kafka-python reports a
    failed login only in its connection log lines, then retries until a timeout that says
    nothing of the cause); returns the function that stops watching. Installs the guard
    (its settings untouched)."""
    with _lock:
        handler = _install()
        handler.watchers.append(watch)
    return lambda: handler.watchers.remove(watch) if watch in handler.watchers else None


def _is_noise(logger_name: str, message: str) -> bool:
    return any(logger_name.startswith(p) and text in message for p, text in _NOISE)


_lock = threading.Lock()
_handler: _GuardHandler | None = None


def _install() -> _GuardHandler:
    """The guard's handler on the clients' loggers, created once (``_lock`` held)."""
    global _handler
    if _handler is None:
        _handler = _GuardHandler()
        for name in (KAFKA_PYTHON_LOGGER, LIBRDKAFKA_LOGGER):
            logger = logging.getLogger(name)
            logger.addHandler(_handler)
            logger.propagate = False
    return _handler


def guard_client_logs(protocol_debug: bool = False, secrets: Iterable[str] = ()) -> None:
    """Install (once) or update the guard on the Kafka clients' loggers.

    Parameters
    ----------
    protocol_debug : bool
        False: the clients' loggers are capped at INFO (their DEBUG output, which holds the
        requests, responses and records, is never produced). True: they follow the
        application's level (any level set on them before is cleared), so
        ``--log-level DEBUG`` shows the protocol; secrets are still redacted.
    secrets : iterable of str
        Strings never to print (see :meth:`KafkaSecurity.secrets`); added to those already
        registered.
    """
    with _lock:
        handler = _install()
        handler.secrets.update(s for s in secrets if s)
        handler.protocol_debug = protocol_debug
        for name in (KAFKA_PYTHON_LOGGER, LIBRDKAFKA_LOGGER):
            logger = logging.getLogger(name)
            if protocol_debug:
                logger.setLevel(logging.NOTSET)  # follow the application's level
            elif logger.getEffectiveLevel() < logging.INFO:
                logger.setLevel(logging.INFO)
