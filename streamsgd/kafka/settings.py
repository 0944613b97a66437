"""What both Kafka clients are told: connection and security settings, and the constants
(fetch sizes, timeouts) the sources and the dead-letter sink share. No Kafka library is
imported here; :meth:`KafkaSecurity.kafka_python` and :meth:`KafkaSecurity.librdkafka` spell
the same settings in each client's names."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

MAX_POLL_RECORDS = 5000
RECONNECT_BACKOFF_MAX_MS = 2000
# Batched records are large: let one fetch carry several of them (4 MiB, not the 1 MiB
# default; 16 MiB measured no faster and doubled the resident memory).
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024
FETCH_MAX_BYTES = 16 * 1024 * 1024
# Both clients' default, set explicitly because the waiting-for-partitions notice quotes it:
# a member that stopped without leaving the group keeps its partitions this long.
SESSION_TIMEOUT_MS = 45_000
# The shutdown path must fit in Docker's 10 s grace; the trainer promises 5 s with the broker
# unreachable (docs/operations.md#what-is-guaranteed). The final commit, the consumer's close and
# the dead-letter producer's flush and close each give up after these. A commit that gives up is
# logged and retried at the next checkpoint (the checkpoint itself is already on disk), so they
# bound periodic commits too. A close after a failed commit (the broker is unreachable: there is no
# group to leave) gets the short bound; otherwise the longer one lets a slow broker see the member
# leave, so that a restart of the same group does not wait out the session timeout.
COMMIT_TIMEOUT_SECONDS = 1.5
CLOSE_TIMEOUT_SECONDS = 2.0
CLOSE_TIMEOUT_UNREACHABLE_SECONDS = 0.5
DEAD_LETTER_FLUSH_TIMEOUT_SECONDS = 1.5
DEAD_LETTER_CLOSE_TIMEOUT_SECONDS = 0.5
# Admin requests at start (creating or checking the dead-letter topic).
ADMIN_TIMEOUT_SECONDS = 5.0
# With no partition assigned this long, the source says why it waits (once per wait).
PARTITION_WAIT_NOTICE_SECONDS = 5.0
# Partitions assigned by rank (docs/design.md#scaling-out): how long ``assign`` may wait for the
# beginning or end offsets of partitions without a position, how long one attempt to reach the
# broker may block, and the pause between attempts while ``partitions`` waits for the topic.
LIST_OFFSETS_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
METADATA_RETRY_SECONDS = 0.2

# kafka-python's names (the keys of KafkaSecurity) -> librdkafka's.
_LIBRDKAFKA_NAMES = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
}


@dataclass(frozen=True)
class KafkaSecurity:
    """How the clients authenticate and encrypt; None = the client's default.

    Field names are kafka-python's configuration keys. The two secrets are kept out of
    ``repr`` so that printing the settings never shows them.
    """

    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, value: KafkaSecurity | Mapping[str, Any] | None) -> KafkaSecurity:
        """``value`` itself, or a mapping in kafka-python's names made into settings."""
        if isinstance(value, KafkaSecurity):
            return value
        known = {f.name for f in fields(cls)}
        unknown = set(value or {}) - known
        if unknown:
            raise ValueError(f"unknown Kafka security settings: {sorted(unknown)}")
        return cls(**dict(value or {}))

    def _given(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    def kafka_python(self) -> dict[str, Any]:
        """The settings given, as kafka-python keyword arguments."""
        return self._given()

    def librdkafka(self) -> dict[str, Any]:
        """The settings given, in librdkafka's (confluent-kafka's) names."""
        return {_LIBRDKAFKA_NAMES[k]: v for k, v in self._given().items()}

    def secrets(self) -> list[str]:
        """Every spelling of a secret that a client could log: each password as given, and
        for SASL/PLAIN the authentication bytes ``\\0user\\0password`` as text, as Python
        writes them in a bytes repr, and in base64 (the password alone too)."""
        found: list[str] = []
        for secret in (self.sasl_plain_password, self.ssl_password):
            if secret:
                found += _spellings(secret.encode())
        if self.sasl_plain_password:
            auth = b"\0" + (self.sasl_plain_username or "").encode() + b"\0"
            found += _spellings(auth + self.sasl_plain_password.encode())
        return sorted({s for s in found if s}, key=len, reverse=True)


def _spellings(raw: bytes) -> list[str]:
    text = raw.decode(errors="replace")
    return [
        text,
        repr(raw)[2:-1],  # as inside b'...'
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
    ]


@dataclass(frozen=True)
class ConsumerSettings:
    """What a consumer-group source is configured with, whichever client reads.

    Parameters
    ----------
    bootstrap_servers : str
        ``host:port[,host:port...]``.
    topic, group_id : str
    auto_offset_reset : {"earliest", "latest"}
        Used only when a partition has neither a checkpoint position nor a committed offset
        (with ``assigned``: when it has no position; committed offsets are never read).
    security : KafkaSecurity
    group_instance_id : str or None
        Static membership (KIP-345): a restarted member with the same id takes its
        partitions back at once instead of waiting out the old member's session timeout.
    lag_interval_seconds : float
        How often to refresh the consumer lag (end offsets minus applied positions).
    protocol_debug : bool
        Let the client's protocol logs through at DEBUG (credentials are still redacted).
    assigned : bool
        False: subscribe and let the consumer group assign partitions (rebalances). True:
        never join the group; the caller assigns partitions (``assign``) and the group id
        only names where offsets are committed.
    metadata_max_age_seconds : float
        How often the client refreshes the topic's metadata: partitions added to the topic
        are seen (and, in group mode, assigned by a rebalance) within this interval.
    accept_new_log : bool
        Group mode: a checkpoint taken on another log (topic id or cluster id differ) is
        accepted, its positions dropped and the topic read from its beginning; False
        refuses to start (:mod:`streamsgd.kafka.identity`).
    """

    bootstrap_servers: str
    topic: str
    group_id: str
    auto_offset_reset: str = "earliest"
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    group_instance_id: str | None = None
    lag_interval_seconds: float = 5.0
    protocol_debug: bool = False
    assigned: bool = False
    accept_new_log: bool = False
    metadata_max_age_seconds: float = 15.0

    @property
    def client_id(self) -> str:
        return f"streamsgd-{self.group_id}"
