"""Request handling: routing, request-body limits, the JSON answers of each endpoint.

Every answer that is not a success is a JSON object with ``error`` (a sentence) and
``reason`` (a stable slug), except ``GET /readyz``, whose 503 ``{"ready": false}`` is a state,
not an error. Every JSON answer is valid JSON: a non-finite number is sent as ``null``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import orjson

from ..codec import RecordRejected
from ..core.types import FloatArray
from ..telemetry.metrics import exposition
from .model_cache import Pacer
from .server import BoundedHTTPServer, Endpoints

log = logging.getLogger("streamsgd.http")

# Paths and the methods each allows (HEAD wherever GET is allowed).
ROUTES: dict[str, tuple[str, ...]] = {
    "/metrics": ("GET", "HEAD"),
    "/healthz": ("GET", "HEAD"),
    "/readyz": ("GET", "HEAD"),
    "/model": ("GET", "HEAD"),
    "/predict": ("POST",),
}
# After refusing a body without reading it, the connection is closed gracefully: stop
# writing, then discard what the client still sends for at most this long and this many
# bytes. Closing with unread input would make the kernel send a reset, which can destroy
# the refusal before the client reads it.
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 4 * 1024 * 1024
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
# The answer's write buffer: headers and a body that fit go out in one system call when the
# handler flushes after the answer (the stdlib writes unbuffered: two calls, and a wait for the
# GIL after each, per answer); a larger body (/model) is written through, not copied.
WRITE_BUFFER_BYTES = 64 * 1024


class RequestHandler(BaseHTTPRequestHandler):
    """One connection of a :class:`BoundedHTTPServer`."""

    server_version = "streamsgd"
    # A request line without a version (HTTP/0.9) is answered with a status line and
    # headers too, so that every refusal is a readable HTTP/1.0 answer with a JSON body.
    default_request_version = "HTTP/1.0"
    wbufsize = WRITE_BUFFER_BYTES
    _discard_input = False

    @property
    def _http_server(self) -> BoundedHTTPServer:
        server = self.server
        assert isinstance(server, BoundedHTTPServer)
        return server

    @property
    def _endpoints(self) -> Endpoints:
        return self._http_server.endpoints

    # ------------------------------------------------------------ connection life
    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self._http_server.limits.read_timeout_seconds)

    def handle_one_request(self) -> None:
        server = self._http_server
        server.deadlines.arm(self.connection, server.limits.request_timeout_seconds)
        self._cpu_started = time.thread_time()  # the whole request's CPU paces /healthz
        try:
            super().handle_one_request()
        finally:
            server.deadlines.disarm(self.connection)

    def finish(self) -> None:
        super().finish()
        if self._discard_input:
            self._linger()

    def _linger(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            discarded = 0
            while discarded < LINGER_MAX_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.connection.settimeout(remaining)
                chunk = self.connection.recv(64 * 1024)
                if not chunk:
                    break
                discarded += len(chunk)
        except OSError:  # includes the timeout: the connection closes either way
            pass

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):  # every answer calls it: format only if shown
            log.debug("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------ answers
    def _send(
        self,
        status: int,
        body: bytes | list[bytes],
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer; a list body is sent chunk after chunk (a cached /model is not copied)."""
        chunks = body if isinstance(body, list) else [body]
        # The request is in: from here on only the socket timeout bounds a slow reader.
        self._http_server.deadlines.disarm(self.connection)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(len(chunk) for chunk in chunks)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self._discard_input:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            for chunk in chunks:
                self.wfile.write(chunk)

    def _json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        # orjson writes NaN and ±Infinity as null, so the body is valid JSON whatever it holds.
        self._send(
            status, orjson.dumps(document, option=_JSON_OPTIONS), "application/json", headers
        )

    def _error(
        self, status: int, reason: str, error: str, headers: dict[str, str] | None = None
    ) -> None:
        self._json(status, {"error": error, "reason": reason}, headers)

    def _refuse(self, status: int, reason: str, error: str) -> None:
        """An error answered without reading the request body: the connection then closes."""
        self._discard_input = True
        self._error(status, reason, error)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (malformed request line, oversize headers, unknown
        method, …) in the same JSON form as ours."""
        log.debug("refused %s: %s", self.address_string(), message or code)
        phrase = HTTPStatus(code).phrase
        self._discard_input = True
        self._error(code, phrase.lower().replace(" ", "_").replace("-", "_"), message or phrase)

    # ------------------------------------------------------------ routing
    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        allowed = ROUTES.get(path)
        if allowed is None:
            self._unread_body_closes()
            self._error(404, "not_found", f"no such endpoint: {path}")
        elif self.command not in allowed:
            self._unread_body_closes()
            self._error(
                405,
                "method_not_allowed",
                f"{self.command} is not allowed on {path}; use {', '.join(allowed)}",
                {"Allow": ", ".join(allowed)},
            )
        elif path == "/predict":
            self._predict()
        else:
            self._unread_body_closes()
            getattr(self, "_get_" + path[1:])()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def _unread_body_closes(self) -> None:
        # A body we do not read would be taken for the next request on this connection.
        if "Transfer-Encoding" in self.headers or self.headers.get("Content-Length", "0") != "0":
            self._discard_input = True

    # ------------------------------------------------------------ GET endpoints
    def _get_metrics(self) -> None:
        self._send(200, *exposition(self._endpoints.registry))

    def _paced(self) -> _PacedAnswer:
        """/healthz and /predict answers one at a time, each ``Pacer.factor`` times its
        request's CPU (line, headers, body, answer) after the previous one."""
        server = self._http_server
        return _PacedAnswer(server.serving_answers, server.serving_pace, self._cpu_started)

    def _get_healthz(self) -> None:
        with self._paced():
            self._answer_healthz()

    def _answer_healthz(self) -> None:
        endpoints = self._endpoints
        if not endpoints.is_healthy():
            self._json(
                503,
                {
                    "status": "failed",
                    "reason": "service_failed",
                    "error": "the training loop has failed",
                },
            )
            return
        reason = self._http_server.serving_views.current().health  # no O(d) per request
        if reason is not None:
            self._json(
                503,
                {"status": "unhealthy", "reason": reason, "error": f"model unhealthy: {reason}"},
            )
            return
        self._json(200, {"status": "ok"})

    def _get_readyz(self) -> None:
        ready = self._endpoints.is_ready()
        self._json(200 if ready else 503, {"ready": ready})

    def _get_model(self) -> None:
        endpoints = self._endpoints
        query = parse_qs(self.path.partition("?")[2])
        form = query.get("coef", ["sparse" if endpoints.decoder.sparse else "dense"])[-1]
        if form not in ("sparse", "dense"):
            self._error(400, "invalid_query", f"coef must be sparse or dense, not {form!r}")
            return
        server = self._http_server
        # One /model answer at a time (built and sent), paced by its CPU cost: concurrent
        # answers would not come sooner, and every thread holding the GIL starves training.
        with server.model_answers:
            cpu_start = server.model_pace.wait()
            try:
                body = server.model_cache.body(sparse=form == "sparse")
                self._send(200, body, "application/json")
            finally:
                server.model_pace.spent(cpu_start)

    # ------------------------------------------------------------ POST /predict
    def _read_body(self) -> bytes | None:
        """The request body, or None after answering why it is refused (unread)."""
        if "Transfer-Encoding" in self.headers:
            self._refuse(
                411, "length_required", "chunked bodies are not accepted; send Content-Length"
            )
            return None
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self._refuse(400, "missing_content_length", "POST needs a Content-Length header")
            return None
        raw = lengths[0].strip()
        # int() would also take "-1", "+5", "1_0" and non-ASCII digits.
        if len(set(lengths)) > 1 or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            self._refuse(400, "invalid_content_length", f"invalid Content-Length: {raw!r}")
            return None
        length = int(raw)
        limit = self._endpoints.max_body_bytes
        if length > limit:
            self._refuse(413, "body_too_large", f"body of {length} bytes over {limit} bytes")
            return None
        body: bytes = self.rfile.read(length)
        if len(body) < length:
            self._refuse(400, "incomplete_body", f"body ended after {len(body)} of {length} bytes")
            return None
        return body

    def _predict(self) -> None:
        body = self._read_body()
        if body is None:
            return
        endpoints = self._endpoints
        try:
            # The stream's own parsing, so a body is refused for the same reasons as a record.
            features = endpoints.decoder.decode_unlabelled(endpoints.decoder.parse(body))
        except RecordRejected as exc:
            self._error(400, exc.reason, exc.detail)
            return
        # The body is read: a slow client holds no other answer. The answer is sent inside,
        # so that its CPU (a third of the request's) counts in the pace, as for /healthz.
        with self._paced():
            view = self._http_server.serving_views.current()  # θ once per version
            health = view.health
            probabilities: FloatArray | None = None
            if health is None:
                probabilities = view.probabilities(features)
                if not np.isfinite(probabilities).all():  # overflowing scores of a finite θ
                    health = "non_finite"
            if health is not None or probabilities is None:
                self._error(503, "model_unhealthy", f"the model is not fit to serve: {health}")
                return
            self._json(200, {"probabilities": probabilities})


class _PacedAnswer:
    """``with``: hold ``lock``, wait for ``pace``; after: record the CPU since ``cpu_started``."""

    def __init__(self, lock: threading.Lock, pace: Pacer, cpu_started: float) -> None:
        self.lock, self.pace, self.cpu_started = lock, pace, cpu_started

    def __enter__(self) -> None:
        self.lock.acquire()
        self.pace.wait()

    def __exit__(self, *exc: object) -> None:
        try:
            self.pace.spent(self.cpu_started)
        finally:
            self.lock.release()
