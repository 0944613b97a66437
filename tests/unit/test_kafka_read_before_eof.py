"""kafka-python 3 dropped the bytes read in the same pass as the connection's end (a refused
SASL login then read as "socket disconnected"): the wrapped reader hands them on first."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from kafka.errors import KafkaConnectionError
from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport

from streamsgd.kafka.read_before_eof import deliver_before_error, keep_bytes_read_before_eof


class _Transport:
    """What ``_sock_recv`` uses of a transport: its socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock


@pytest.fixture
def closed_after_reply() -> Iterator[_Transport]:
    """A socket whose peer sent a reply and closed before anything was read."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.sendall(b"the broker's error response")
    peer.close()
    yield _Transport(ours)
    ours.close()


def _original() -> object:
    receive = KafkaTCPTransport.__dict__["_sock_recv"]
    return getattr(receive, "__wrapped__", receive)


def test_kafka_pythons_reader_returns_the_reply_with_the_disconnect(
    closed_after_reply: _Transport,
) -> None:
    """The flaw itself: bytes and error together (its caller then drops the bytes)."""
    data, error = _original()(closed_after_reply)  # type: ignore[operator]
    assert data == b"the broker's error response"
    assert isinstance(error, KafkaConnectionError)


def test_the_reply_comes_first_and_the_disconnect_on_the_next_read(
    closed_after_reply: _Transport,
) -> None:
    receive = deliver_before_error(_original())  # type: ignore[arg-type]
    assert receive(closed_after_reply) == (b"the broker's error response", None)
    data, error = receive(closed_after_reply)
    assert data == b"" and isinstance(error, KafkaConnectionError)


def test_an_open_connection_reads_as_before() -> None:
    ours, peer = socket.socketpair()
    try:
        ours.setblocking(False)
        receive = deliver_before_error(_original())  # type: ignore[arg-type]
        assert receive(_Transport(ours)) == (b"", None)  # nothing yet: would block
        peer.sendall(b"part")
        assert receive(_Transport(ours)) == (b"part", None)
    finally:
        ours.close()
        peer.close()


def test_installed_once_on_both_transports() -> None:
    keep_bytes_read_before_eof()
    keep_bytes_read_before_eof()
    for cls in (KafkaTCPTransport, KafkaSSLTransport):
        receive = cls.__dict__["_sock_recv"]
        assert hasattr(receive, "__wrapped__")
        assert not hasattr(receive.__wrapped__, "__wrapped__")  # not wrapped twice
