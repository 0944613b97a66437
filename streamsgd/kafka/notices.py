"""What a consumer-group source says when it waits for partitions or shares its group with
another member (docs/operations.md#what-the-trainer-does-for-each-kafka-operation), and why."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .settings import PARTITION_WAIT_NOTICE_SECONDS, SESSION_TIMEOUT_MS, ConsumerSettings

log = logging.getLogger("streamsgd.kafka")


def log_waiting_notice(settings: ConsumerSettings) -> None:
    """Say why a member has had no partition for a while, and how static membership avoids
    the commonest wait."""
    if settings.group_instance_id:
        log.warning(
            "no partitions of %s assigned after %.0f s (group %s, static member %s): "
            "another member of the group holds them (more members than partitions), "
            "or the group is still rebalancing",
            settings.topic,
            PARTITION_WAIT_NOTICE_SECONDS,
            settings.group_id,
            settings.group_instance_id,
        )
        return
    log.warning(
        "no partitions of %s assigned after %.0f s (group %s): waiting for the group to "
        "rebalance. A member that stopped without leaving the group (a crash, SIGKILL) "
        "keeps its partitions until its session timeout (%.0f s) expires; a trainer "
        "started with --group-instance-id NAME (static membership) takes them back at "
        "once when it restarts under the same NAME. Other members may also hold all "
        "the partitions (more members than partitions).",
        settings.topic,
        PARTITION_WAIT_NOTICE_SECONDS,
        settings.group_id,
        SESSION_TIMEOUT_MS / 1000,
    )


class SharedGroupNotice:
    """The WARNING that another member shares the trainer's consumer group.

    Every member of a group learns its own model from its share of the partitions: two
    trainers in one group build two different models, each from part of the stream. Said
    once a trainer has held some but not all of the topic's partitions for longer than a
    metadata refresh and a rebalance take (a partition just added is briefly unassigned).

    Parameters
    ----------
    settings : ConsumerSettings
    clock : callable
        Monotonic seconds.
    """

    def __init__(self, settings: ConsumerSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.grace = settings.metadata_max_age_seconds + PARTITION_WAIT_NOTICE_SECONDS
        self._short_since: float | None = None
        self._said = False

    def observe(self, held: int, total: int) -> None:
        """The trainer holds ``held`` of the topic's ``total`` partitions now."""
        if not 0 < held < total:
            self._short_since, self._said = None, False
            return
        now = self.clock()
        if self._short_since is None:
            self._short_since = now
        if self._said or now - self._short_since < self.grace:
            return
        self._said = True
        s = self.settings
        log.warning(
            "this trainer holds %d of the %d partitions of %s: another member of consumer "
            "group %s holds the others, and each member learns its own model from its share. "
            "Run one trainer per group (another --group-id for an independent model); to "
            "scale one model out, run replicas (mpiexec -n N streamsgd train --distributed mpi)",
            held,
            total,
            s.topic,
            s.group_id,
        )


def fatal_message(settings: ConsumerSettings, reason: str) -> str:
    """The one line of a run ended by a fatal client error (fencing, an unrecoverable one)."""
    line = (
        f"the Kafka client can no longer read {settings.topic} in group {settings.group_id}: "
        f"{reason}"
    )
    if settings.group_instance_id and "fenced" in reason.lower():
        line += (
            f"; another trainer runs with --group-instance-id {settings.group_instance_id} "
            "(give each trainer its own)"
        )
    return line + "; stopping (the last checkpoint stands), for the orchestrator to restart it"


def authentication_failed(reason: str) -> str:
    """The reason given to :func:`fatal_message` for a login the broker refused."""
    return (
        f"authentication failed ({reason}): check --sasl-username, the password "
        "(--sasl-password or STREAMSGD_SASL_PASSWORD), --sasl-mechanism and --security-protocol"
    )


# Kafka's protocol error codes for a refused authorization, the same in both clients
# (kafka-python's ``errno``, librdkafka's ``KafkaError.code()``), and what each refuses.
AUTHORIZATION_ERRORS = {
    29: "TOPIC_AUTHORIZATION_FAILED",
    30: "GROUP_AUTHORIZATION_FAILED",
    31: "CLUSTER_AUTHORIZATION_FAILED",
}


def authorization_failed(settings: ConsumerSettings, code: int, detail: str = "") -> str:
    """The reason given to :func:`fatal_message` for a request the broker's ACLs refused
    (``code`` one of :data:`AUTHORIZATION_ERRORS`): retrying cannot help until an operator
    grants the principal its rights, so the run ends and says which."""
    principal = settings.security.sasl_plain_username
    who = f"User:{principal}" if principal else "this client's principal"
    need = {
        29: f"READ on topic {settings.topic}",
        30: f"READ on consumer group {settings.group_id}",
        31: "the cluster operation it asked for",
    }.get(code, f"READ on topic {settings.topic} and on consumer group {settings.group_id}")
    name = AUTHORIZATION_ERRORS.get(code, f"error {code}")
    return (
        f"not authorized ({name}{': ' + detail if detail else ''}): the broker's ACLs refuse "
        f"{who} {need}; grant it (kafka-acls --add --allow-principal ...) or check "
        "--sasl-username and --topic/--group-id"
    )
