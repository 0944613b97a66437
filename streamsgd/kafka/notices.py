"""What a consumer-group source says when it waits for partitions, and why (issue 12)."""

from __future__ import annotations

import logging

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
