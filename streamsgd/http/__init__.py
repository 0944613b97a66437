"""HTTP endpoints on one port: /metrics, /healthz, /readyz, /model and POST /predict.

The only package that runs an HTTP server. Requests read the model's current parameters as
one immutable array (each SGD step replaces it), so a scrape or a prediction never blocks
training or sees a half-written update.

* :mod:`.server` — connection bounds: at most ``max_connections`` served at once (the rest
  wait in a listen backlog of 128), a socket timeout per connection, a deadline per request,
  one DEBUG line for a client that went away.
* :mod:`.handler` — routing (404, 405 with ``Allow``), body limits (400 for a missing, invalid
  or negative ``Content-Length``, 411 for a chunked body, 413 above ``max_body_bytes``, each
  answered without reading the body), the endpoints' JSON (always valid JSON; every error
  carries ``error`` and ``reason``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..codec import Decoder
from ..core.model import OnlineLogisticRegression
from ..telemetry.metrics import CollectorRegistry
from .handler import RequestHandler
from .model_document import model_document
from .server import BoundedHTTPServer, Endpoints, Limits

__all__ = ["HttpServer", "model_document"]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_READ_TIMEOUT_SECONDS = 10.0
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0


class HttpServer:
    """Serves the endpoints from a daemon thread.

    Parameters
    ----------
    host, port : str, int
        Port 0 picks a free port (see :attr:`port`).
    registry : CollectorRegistry
        What /metrics exposes.
    get_model : callable
        Returns the current model (the training loop may replace the object).
    decoder : Decoder
        Parses /predict bodies (dense or hashed named features), as it parses the stream.
    is_ready, is_healthy : callable
        Back /readyz and /healthz (/healthz also fails while the model is unhealthy, see
        :meth:`OnlineLogisticRegression.health`).
    model_extra : callable
        Extra fields for /model (for example the progressive loss).
    max_body_bytes : int
        Larger /predict bodies are refused with 413 before they are read.
    max_connections : int
        Connections served at once; later ones wait in the listen backlog.
    read_timeout_seconds : float
        A connection whose read or write makes no progress for this long is closed.
    request_timeout_seconds : float
        A request must arrive whole (line, headers, body) within this time.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        get_model: Callable[[], OnlineLogisticRegression],
        decoder: Decoder,
        is_ready: Callable[[], bool],
        is_healthy: Callable[[], bool],
        model_extra: Callable[[], dict[str, Any]] = dict,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        endpoints = Endpoints(
            registry, get_model, decoder, is_ready, is_healthy, model_extra, max_body_bytes
        )
        limits = Limits(max_connections, read_timeout_seconds, request_timeout_seconds)
        self._server = BoundedHTTPServer((host, port), RequestHandler, endpoints, limits)
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="streamsgd-http", daemon=True),
            threading.Thread(
                target=self._server.deadlines.watch,
                args=(self._server.stopping,),
                name="streamsgd-http-deadlines",
                daemon=True,
            ),
        ]

    @property
    def max_body_bytes(self) -> int:
        return self._server.endpoints.max_body_bytes

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def active_connections(self) -> int:
        """Connections being served right now (at most ``max_connections``)."""
        return self._server.active_connections

    def start(self) -> HttpServer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and close the listening socket; connections being served finish
        on their own threads within their timeouts."""
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
