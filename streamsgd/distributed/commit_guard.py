"""Rank 0's monotone commit guard (docs/operations.md, "Committed offsets never move
backwards"): a partition whose committed offset is already beyond the checkpoint's
position is left out of this commit, never committed lower.

The checkpoint's positions stay the source of truth for a restart; the group's committed
offsets are what lag monitors and a job started without a checkpoint read, and a lineage's
step rolled back at a cut (or a restart from a checkpoint older than the last commit) would
otherwise move them backwards. A partition left out is committed again once its position
passes the committed offset.
"""

from __future__ import annotations

import logging
from typing import Any

from ..training.buffer import Position

log = logging.getLogger("streamsgd.replicated")


class MonotoneCommits:
    """Filters the positions rank 0 commits; says once per partition (until its position
    passes again) that it held it back."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    def positions(self, source: Any, positions: dict[str, Position]) -> dict[str, Position]:
        """The ``positions`` whose offset is at least the group's committed one (all of them
        for a source without committed offsets, a file's). Raises what the broker read
        raises: the commit is then retried at the next checkpoint."""
        read = getattr(source, "committed_offsets", None)
        if read is None or not positions:
            return positions
        committed: dict[str, int] = read(sorted(positions))
        allowed = {}
        for key, position in positions.items():
            before = committed.get(key)
            if before is not None and position.offset < before:
                if key not in self._held:
                    self._held.add(key)
                    log.warning(
                        "not committing %s at offset %d: the group's committed offset is "
                        "already %d (committed again once the position passes it)",
                        key,
                        position.offset,
                        before,
                    )
                continue
            self._held.discard(key)
            allowed[key] = position
        return allowed
