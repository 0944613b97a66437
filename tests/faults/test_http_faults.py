"""Bounded HTTP (docs/operations.md#what-is-guaranteed): hostile and broken clients against a real
server on 127.0.0.1, spoken to over raw sockets where the request must be malformed."""

from __future__ import annotations

import json
import logging
import select
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamsgd import OnlineLogisticRegression
from streamsgd.codec import Decoder, RecordRejected
from streamsgd.http import HttpServer
from tests.support.kafka_helpers import wait_until

N_FEATURES = 4
# Generous bounds for a loaded 2-core machine; they only limit how long a failure takes.
SOCKET_TIMEOUT_SECONDS = 60.0
WAIT_SECONDS = 60.0


def make_server(
    model: OnlineLogisticRegression | None = None, **kwargs: Any
) -> tuple[HttpServer, OnlineLogisticRegression]:
    model = model or OnlineLogisticRegression(N_FEATURES, learning_rate=0.5)
    server = HttpServer(
        "127.0.0.1",
        0,
        CollectorRegistry(),
        get_model=lambda: model,
        decoder=Decoder(N_FEATURES),
        is_ready=lambda: True,
        is_healthy=lambda: True,
        **kwargs,
    ).start()
    return server, model


@pytest.fixture
def server() -> Iterator[HttpServer]:
    srv, _ = make_server(max_body_bytes=4096)
    yield srv
    srv.stop()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_SECONDS)


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` (and nothing more), read the answer until the server closes."""
    with connect(port) as sock:
        sock.sendall(request)
        return parse_response(read_until_closed(sock))


def strict_json(body: bytes) -> Any:
    """json.loads that refuses NaN and ±Infinity, which are not JSON."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a JSON answer")

    return json.loads(body, parse_constant=refuse)


def post_predict(port: int, body: bytes) -> tuple[int, dict[str, str], bytes]:
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return exchange(port, head.encode() + body)


# ---------------------------------------------------------------------- request bodies
@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Content-Length: -1\r\n", "invalid_content_length"),
        ("Content-Length: abc\r\n", "invalid_content_length"),
        ("Content-Length: +5\r\n", "invalid_content_length"),
        ("Content-Length: 1_0\r\n", "invalid_content_length"),
        ("Content-Length: 5\r\nContent-Length: 6\r\n", "invalid_content_length"),
        ("", "missing_content_length"),
    ],
)
def test_bad_content_length_is_400_before_any_body_is_read(
    server: HttpServer, header: str, reason: str
) -> None:
    """Injects a POST /predict whose Content-Length is negative, not a number, ambiguous or
    absent, and sends no body. Must hold: a 400 with the reason arrives while the client
    still sends nothing (with Content-Length: -1 the old server read until EOF, so it
    never answered), and the connection closes."""
    status, headers, body = exchange(
        server.port, f"POST /predict HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode()
    )
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert strict_json(body)["reason"] == reason


def test_oversize_body_is_413_without_reading_it(server: HttpServer) -> None:
    """Injects a Content-Length of 10 MiB (limit 4096) and sends no body. Must hold: 413
    arrives at once, so the server did not wait for (or buffer) the body."""
    status, _, body = exchange(
        server.port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n"
    )
    assert status == 413 and strict_json(body)["reason"] == "body_too_large"


def test_chunked_body_is_411(server: HttpServer) -> None:
    """Injects a chunked POST (no Content-Length). Must hold: 411 length_required; the
    body is not read."""
    status, _, body = exchange(
        server.port,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    assert status == 411 and strict_json(body)["reason"] == "length_required"


@pytest.mark.parametrize(
    "body",
    [
        b'\xef\xbb\xbf{"x": [1, 2, 3, 4], "y": 1}',  # UTF-8 byte-order mark
        '{"x": [1, 2, 3, 4], "y": 1}'.encode("utf-16"),
        '{"x": [1, 2, 3, 4], "y": 1}'.encode("utf-16-le"),
        b'{"x": [1, 2, 3, 4], "y": 1, "note": "\xff"}',  # not UTF-8
        b"",
        b"[" * 2000 + b"]" * 2000,  # beyond the parsers' nesting limits, under 4096 bytes
    ],
    ids=["utf8-bom", "utf16-bom", "utf16-le", "latin1", "empty", "deep"],
)
def test_predict_decodes_bytes_as_the_stream_does(server: HttpServer, body: bytes) -> None:
    """Injects the same bytes as a /predict body and as a stream record. Must hold: both
    refuse them, with the same reason (the stream's decoder is the reference)."""
    try:
        Decoder(N_FEATURES).decode(body)
    except RecordRejected as exc:
        stream_reason = exc.reason
    else:
        pytest.fail("the stream's decoder accepted the bytes")
    status, _, answer = post_predict(server.port, body)
    assert status == 400
    assert strict_json(answer)["reason"] == stream_reason


# ---------------------------------------------------------------------- routing
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/predict", "POST"),
        ("PUT", "/predict", "POST"),
        ("POST", "/metrics", "GET, HEAD"),
        ("DELETE", "/model", "GET, HEAD"),
        ("PATCH", "/healthz", "GET, HEAD"),
    ],
)
def test_wrong_method_on_a_known_path_is_405_with_allow(
    server: HttpServer, method: str, path: str, allow: str
) -> None:
    """Injects a method the path does not serve. Must hold: 405, an Allow header listing
    the methods it does serve, a JSON error body."""
    status, headers, body = exchange(
        server.port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert status == 405 and headers["allow"] == allow
    assert strict_json(body)["reason"] == "method_not_allowed"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /predict HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nope",
        b"BREW /model HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /model HTTP/9.9\r\nHost: x\r\n\r\n",
        b"complete nonsense\r\n\r\n",
        b"GET /model HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    ],
    ids=[
        "404",
        "404-post",
        "405",
        "negative-length",
        "413",
        "chunked",
        "bad-json",
        "unknown-method",
        "bad-version",
        "nonsense",
        "header-too-long",
        "uri-too-long",
    ],
)
def test_every_error_body_is_json_with_error_and_reason(
    server: HttpServer, request_bytes: bytes
) -> None:
    """Injects a malformed or refused request (including the stdlib's own refusals of a
    bad request line, version or method). Must hold: a 4xx/5xx whose body is a JSON object
    with the keys error and reason."""
    status, headers, body = exchange(server.port, request_bytes)
    assert status >= 400
    assert headers["content-type"] == "application/json"
    document = strict_json(body)
    assert isinstance(document["error"], str) and document["error"]
    assert isinstance(document["reason"], str) and document["reason"]


# ---------------------------------------------------------------------- a broken model
def nan_model() -> OnlineLogisticRegression:
    state = OnlineLogisticRegression(N_FEATURES).get_state()
    state["theta"] = np.array([np.nan, 1.0, np.inf, 0.0, np.nan])
    return OnlineLogisticRegression.from_state(state)


def test_a_non_finite_model_gives_valid_json_everywhere() -> None:
    """Injects a model whose weights are NaN and infinite. Must hold: /model, /predict and
    /healthz answer strict JSON (no NaN or Infinity literal); /predict is 503
    model_unhealthy instead of NaN probabilities; /healthz is 503 with reason non_finite."""
    server, _ = make_server(nan_model(), model_extra=lambda: {"progressive_log_loss": float("nan")})
    try:
        status, _, body = exchange(server.port, b"GET /model HTTP/1.1\r\nHost: x\r\n\r\n")
        document = strict_json(body)
        assert status == 200
        assert document["coef"] == [None, 1.0, None, 0.0] and document["intercept"] is None
        assert document["health"] == "non_finite"
        assert document["progressive_log_loss"] is None

        status, _, body = post_predict(server.port, b'{"x": [0, 1, 0, 0]}')
        assert status == 503 and strict_json(body)["reason"] == "model_unhealthy"

        status, _, body = exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503
        assert strict_json(body) == {
            "status": "unhealthy",
            "reason": "non_finite",
            "error": "model unhealthy: non_finite",
        }
    finally:
        server.stop()


# ---------------------------------------------------------------------- connection bounds
def test_idle_connection_is_closed_after_the_read_timeout() -> None:
    """Injects a client that connects and sends nothing. Must hold: the server closes the
    connection (the client reads EOF) once the read timeout passes; before, an idle
    connection held a thread forever."""
    server, _ = make_server(read_timeout_seconds=0.5)
    try:
        with connect(server.port) as sock:
            assert read_until_closed(sock) == b""
        wait_until(lambda: server.active_connections == 0, WAIT_SECONDS, "the slot freed")
    finally:
        server.stop()


def test_slowloris_is_closed_at_the_request_deadline() -> None:
    """Injects a client that sends a header line every 0.1 s, each well within the socket
    timeout, forever. Must hold: the connection is shut down once the request deadline
    passes (the client sees EOF or a reset), without an answer."""
    server, _ = make_server(read_timeout_seconds=30.0, request_timeout_seconds=1.0)
    try:
        with connect(server.port) as sock:
            sock.sendall(b"GET /model HTTP/1.1\r\n")
            closed = threading.Event()
            received: list[bytes] = []

            def read() -> None:
                try:
                    received.append(read_until_closed(sock))
                except OSError:
                    pass
                closed.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            for i in range(int(WAIT_SECONDS / 0.1)):
                # the attack's pacing, not a synchronisation: the loop ends on the close
                if closed.wait(0.1):
                    break
                try:
                    sock.sendall(f"X-Slow-{i}: a\r\n".encode())
                except OSError:
                    break
            assert closed.wait(WAIT_SECONDS), "the slow request was never cut off"
            assert received in ([], [b""])
    finally:
        server.stop()


def test_connections_above_the_cap_wait_in_the_backlog() -> None:
    """Injects two idle connections against a cap of two, then a third request. Must hold:
    the third is not served while both slots are held, and is served (200) as soon as
    one idle client leaves."""
    server, _ = make_server(max_connections=2, read_timeout_seconds=SOCKET_TIMEOUT_SECONDS)
    try:
        idle = [connect(server.port), connect(server.port)]
        wait_until(lambda: server.active_connections == 2, WAIT_SECONDS, "two idle clients")
        with connect(server.port) as third:
            third.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            # Absence of an answer needs a window; a broken cap answers within milliseconds.
            readable, _, _ = select.select([third], [], [], 1.0)
            assert not readable, "a third connection was served above the cap"
            assert server.active_connections == 2
            idle.pop().close()
            status, _, body = parse_response(read_until_closed(third))
        assert status == 200 and strict_json(body) == {"status": "ok"}
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_many_concurrent_clients_above_the_cap_are_all_answered() -> None:
    """Injects 64 simultaneous /predict clients against a cap of 4 connections. Must hold:
    every client gets a 200 (none reset, none refused) and the server never serves more
    than 4 at once."""
    server, model = make_server(max_connections=4)
    n_clients = 64
    start = threading.Barrier(n_clients)
    statuses: list[int] = []
    errors: list[BaseException] = []
    peak = 0
    body = b'{"x": [0.5, -1.0, 2.0, 0.0]}'

    def client() -> None:
        nonlocal peak
        try:
            start.wait()
            status, _, answer = post_predict(server.port, body)
            statuses.append(status)
            assert (
                strict_json(answer)["probabilities"]
                == model.predict_proba(np.array([[0.5, -1.0, 2.0, 0.0]])).tolist()
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        peak = max(peak, server.active_connections)

    threads = [threading.Thread(target=client) for _ in range(n_clients)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    assert not errors, errors[:3]
    assert statuses == [200] * n_clients
    assert peak <= 4


def test_client_that_disconnects_mid_response_logs_one_debug_line(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Injects a client that asks for a 32 MiB /model answer, reads a little of it and
    resets the connection. Must hold: the server notes it in one DEBUG line; no traceback
    on stderr and no ERROR record."""
    caplog.set_level(logging.DEBUG, logger="streamsgd.http")
    blob = "x" * (32 * 1024 * 1024)
    server, _ = make_server(model_extra=lambda: {"blob": blob})
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(SOCKET_TIMEOUT_SECONDS)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /model HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.0 200")
        # SO_LINGER with a zero timeout: close() sends a reset, as a crashed client would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        wait_until(
            lambda: any("went away" in r.getMessage() for r in caplog.records),
            WAIT_SECONDS,
            "the server to notice the client left",
        )
        wait_until(lambda: server.active_connections == 0, WAIT_SECONDS, "the slot freed")
    finally:
        server.stop()
    assert "Traceback" not in capfd.readouterr().err
    http_records = [r for r in caplog.records if r.name == "streamsgd.http"]
    assert all(r.levelno <= logging.DEBUG and r.exc_info is None for r in http_records)
