"""The ``[kafka]`` section of the train configuration: how to reach the brokers (shared with
``produce``) and how to read the topic. Standard library only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .options import BOOLEAN, POSITIVE_FLOAT, Section, option, specs


@dataclass(frozen=True, kw_only=True)
class KafkaConnection(Section):
    """How to reach the brokers (train's kafka section and ``produce``)."""

    bootstrap_servers: str | None = option(
        None, "Kafka bootstrap servers", metavar="HOST:PORT[,...]"
    )
    security_protocol: str = option(
        "PLAINTEXT",
        "Kafka security protocol",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    sasl_mechanism: str | None = option(
        None, "SASL mechanism", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
    )
    sasl_username: str | None = option(None, "SASL user name")
    sasl_password: str | None = option(
        None, "SASL password; prefer the environment variable, it is never printed", secret=True
    )
    ssl_cafile: str | None = option(None, "CA bundle (PEM) to verify the brokers")
    ssl_certfile: str | None = option(None, "client certificate (PEM)")
    ssl_keyfile: str | None = option(None, "client private key (PEM)")
    ssl_password: str | None = option(
        None, "password of the client key; never printed", secret=True
    )

    def security(self) -> dict[str, Any]:
        """The kafka-python security settings that are set."""
        settings = {
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password,
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
            "ssl_password": self.ssl_password,
        }
        return {k: v for k, v in settings.items() if v is not None}

    def secrets(self) -> list[str]:
        """The secret values that are set (for redaction in logs)."""
        return [getattr(self, s.name) for s in specs(self) if s.secret and getattr(self, s.name)]


@dataclass(frozen=True, kw_only=True)
class KafkaConfig(KafkaConnection):
    topic: str | None = option(None, "topic to learn from")
    kafka_client: str = option(
        "kafka-python",
        "consumer library; confluent (optional extra streamsgd[confluent]) reads "
        "single-sample records several times faster",
        choices=("kafka-python", "confluent"),
    )
    group_id: str = option("streamsgd", "consumer group")
    group_instance_id: str | None = option(
        None,
        "static group membership: a restarted trainer with the same id gets its "
        "partitions back at once instead of after the session timeout (45 s)",
    )
    dead_letter_topic: str | None = option(None, "topic for rejected records (reason in headers)")
    auto_offset_reset: str = option(
        "earliest",
        "where to start without a checkpoint or committed offset",
        choices=("earliest", "latest"),
    )
    lag_interval_seconds: float = option(
        5.0, "how often to refresh streamsgd_consumer_lag_records", POSITIVE_FLOAT
    )
    metadata_max_age_seconds: float = option(
        15.0,
        "refresh the topic's metadata this often: partitions added are read within it",
        POSITIVE_FLOAT,
    )
    accept_new_topic_log: bool = option(
        False,
        "the checkpoint's topic id or cluster id differs from the broker's (topic recreated, "
        "broker wiped): keep the model and read the new log from its beginning",
        BOOLEAN,
    )
    kafka_protocol_debug: bool = option(
        False,
        "let the Kafka client's protocol loggers through at DEBUG (secrets still redacted)",
        BOOLEAN,
    )
