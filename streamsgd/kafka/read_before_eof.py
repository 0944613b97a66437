"""Hand kafka-python the bytes it read in the same pass as the end of the connection.

kafka-python 3.0's transports read a socket until it would block; when the peer's last bytes
and its close arrive together, ``_sock_recv`` returns both and ``_read_from_sock`` aborts the
connection without passing the bytes on. A broker that refuses a SASL login does exactly
that: it sends the authentication error and closes the connection together, after
``connection.failed.authentication.delay.ms``. The client then sees only "socket
disconnected", retries as if the broker were away, and a wrong password surfaces as the real
error only when a read happens to fall between the response and the close (in the tests: after
1 to 3 minutes of retries, or never within them on a loaded machine).

:func:`keep_bytes_read_before_eof` wraps each transport's ``_sock_recv`` once per process:
bytes read together with the end are returned without the error, so the response is parsed;
the socket stays at its end, and the next read (at once: a closed socket is readable)
reports the disconnect as before. A kafka-python without these methods is left as it is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_done = False

Receive = Callable[[Any], "tuple[bytes, BaseException | None]"]


def deliver_before_error(receive: Receive) -> Receive:
    """``receive`` (a transport's ``_sock_recv``), except that bytes read in the same pass as
    a connection error are returned without it; an empty read keeps its error."""

    def sock_recv(transport: Any) -> tuple[bytes, BaseException | None]:
        data, error = receive(transport)
        if data and error is not None:
            return data, None
        return data, error

    sock_recv.__wrapped__ = receive  # type: ignore[attr-defined]
    return sock_recv


def keep_bytes_read_before_eof() -> None:
    """Install :func:`deliver_before_error` on kafka-python's transports (idempotent)."""
    global _done
    with _lock:
        if _done:
            return
        _done = True
        try:
            from kafka.net import transport
        except ImportError:  # kafka-python 2.x: another network layer, left as it is
            return
        for name in ("KafkaTCPTransport", "KafkaSSLTransport"):
            cls = getattr(transport, name, None)
            receive = getattr(cls, "__dict__", {}).get("_sock_recv")
            if cls is not None and receive is not None:
                cls._sock_recv = deliver_before_error(receive)
