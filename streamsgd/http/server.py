"""The listening side: a threaded HTTP server with a bounded number of connections, a
deadline for reading each request, and one quiet line for a client that went away.

Bounds (docs/operations.md#what-is-guaranteed, bounded resources):

* **At most ``max_connections`` connections are served at once**, one thread each. The accept
  loop waits for a free slot before it hands a connection to a thread, so further clients
  wait in the kernel's listen backlog (``LISTEN_BACKLOG``) — they are answered late, never
  reset and never refused with a 503, and they cost the process no thread and no memory.
* **Per-connection socket timeout** (``read_timeout_seconds``): an idle connection, or a
  read or write that makes no progress for that long, is closed.
* **Request deadline** (``request_timeout_seconds``): a request (line, headers and body) must
  arrive whole within that time of the connection starting to wait for it, else the
  connection is shut down. This bounds a slowloris client that trickles a byte just before
  each socket timeout.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..codec import Decoder
from ..core.model import OnlineLogisticRegression
from ..telemetry.metrics import CollectorRegistry
from .model_cache import ModelDocumentCache, Pacer
from .serving_view import ServingViewCache

log = logging.getLogger("streamsgd.http")

# Connections the kernel queues while every slot is busy (the stdlib default is 5, which made
# 4–8 % of 64 concurrent clients see a reset).
LISTEN_BACKLOG = 128
# How often the deadline watchdog looks for overdue requests, in seconds.
DEADLINE_CHECK_SECONDS = 0.25
# How often the accept loop, waiting for a free slot, checks whether the server is stopping.
SLOT_WAIT_SECONDS = 0.2
# /healthz and /predict answers: idle time per unit of answer CPU (Pacer). Their cost to
# training is more than their CPU (a new connection and thread, the GIL handed over after
# each system call), so they take at most about 1/21 of a core, not /model's 1/11.
SERVING_PACE_FACTOR = 20.0


@dataclass(frozen=True)
class Endpoints:
    """What the request handlers serve (see :class:`streamsgd.http.HttpServer`)."""

    registry: CollectorRegistry
    get_model: Callable[[], OnlineLogisticRegression]
    decoder: Decoder
    is_ready: Callable[[], bool]
    is_healthy: Callable[[], bool]
    model_extra: Callable[[], dict[str, Any]]
    max_body_bytes: int


@dataclass(frozen=True)
class Limits:
    """Connection bounds, in connections and seconds."""

    max_connections: int
    read_timeout_seconds: float
    request_timeout_seconds: float


class RequestDeadlines:
    """Shuts down connections whose request is still being read past its deadline.

    A socket timeout bounds one read; this bounds a whole request. Shutting the socket down
    (rather than closing it, which its handler thread owns) makes the blocked read return
    at once, and the handler then ends the connection by its ordinary path.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[socket.socket, float] = {}

    def arm(self, connection: socket.socket, seconds: float) -> None:
        with self._lock:
            self._due[connection] = time.monotonic() + seconds

    def disarm(self, connection: socket.socket) -> None:
        with self._lock:
            self._due.pop(connection, None)

    def watch(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (the body of the watchdog thread)."""
        while not stop.wait(DEADLINE_CHECK_SECONDS):
            now = time.monotonic()
            with self._lock:
                overdue = [conn for conn, due in self._due.items() if due <= now]
                for conn in overdue:
                    del self._due[conn]
            for conn in overdue:
                log.debug("request not received within its deadline; closing the connection")
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:  # the client already went away
                    pass


class BoundedHTTPServer(ThreadingHTTPServer):
    """A :class:`ThreadingHTTPServer` that serves at most ``limits.max_connections``
    connections at a time and logs a vanished client in one DEBUG line."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        endpoints: Endpoints,
        limits: Limits,
    ) -> None:
        if limits.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.endpoints = endpoints
        self.limits = limits
        self.model_cache = ModelDocumentCache(endpoints.get_model, endpoints.model_extra)
        self.model_answers = threading.Lock()
        self.model_pace = Pacer()
        self.serving_views = ServingViewCache(endpoints.get_model)  # /healthz, /predict
        self.serving_answers = threading.Lock()
        self.serving_pace = Pacer(SERVING_PACE_FACTOR)
        self.deadlines = RequestDeadlines()
        self.stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self._active_lock = threading.Lock()
        self._active = 0
        super().__init__(address, handler)

    @property
    def active_connections(self) -> int:
        """Connections being served right now (at most ``limits.max_connections``)."""
        with self._active_lock:
            return self._active

    def process_request(self, request: Any, client_address: Any) -> None:
        # Waiting here, in the accept loop, keeps later clients in the listen backlog.
        while not self._slots.acquire(timeout=SLOT_WAIT_SECONDS):
            if self.stopping.is_set():
                self.shutdown_request(request)
                return
        with self._active_lock:
            self._active += 1
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: give the slot back
            self._release_slot()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release_slot()

    def _release_slot(self) -> None:
        with self._active_lock:
            self._active -= 1
        self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            # BrokenPipe, ConnectionReset, ConnectionAborted: the client went away, which is
            # its right; not worth more than a line.
            log.debug("client %s went away: %s", client_address[0], type(exc).__name__)
        else:
            log.error("error while serving %s", client_address[0], exc_info=exc)
