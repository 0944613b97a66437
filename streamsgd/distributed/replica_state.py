"""What one replica knows of its job besides the model: the job's partitions and the ones it
reads, the replicated positions, the manifest entries it holds, and where it stands in the
agreement on a state. Shared by the parts of the collective stepper
(:mod:`.collective_stepper`, :mod:`.membership`, :mod:`.agreement`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..training.buffer import Position
from .exchange import ExchangeLayout
from .held_manifest import PendingManifest


@dataclass
class ReplicaState:
    """The replica-level state of one member of a replicated job.

    Attributes
    ----------
    partitions : tuple of str
        The job's partitions (the same list on every replica).
    owned : list of str
        The partitions this replica reads (:func:`~.partitions.assign_partitions`).
    starts : dict
        Where the source starts the owned partitions that have no replicated position.
    global_positions : dict
        Every partition's position after the last step (the same on every replica).
    pending : PendingManifest
        The manifest entries this replica holds until rank 0 confirms them durable.
    sync_round : bool
        The next exchange takes no sample (the first after a (re)start).
    needs_start : bool
        The next step records the manifest's start entry (a fresh job).
    has_state : bool
        A state was adopted (rank 0's start, or a broadcast).
    loaded_checkpoint : bool
        This rank read the checkpoint at this start.
    layout : ExchangeLayout or None
        The exchange's layout for the current membership and partitions.
    generation : int
        The checkpoint writer's generation (the lineage's): a new writer claims above it.
    log_identity : dict
        The topic id and cluster id the positions belong to, stored in every checkpoint.
    log_verdict : dict
        Rank 0 at the start, until broadcast: the log refused (not the checkpoint's), or a
        new log accepted (:mod:`.log_check`).
    """

    partitions: tuple[str, ...] = ()
    owned: list[str] = field(default_factory=list)
    starts: dict[str, Position] = field(default_factory=dict)
    global_positions: dict[str, Position] = field(default_factory=dict)
    pending: PendingManifest = field(default_factory=PendingManifest)
    sync_round: bool = True
    needs_start: bool = False
    has_state: bool = False
    loaded_checkpoint: bool = False
    layout: ExchangeLayout | None = None
    generation: int = 0
    log_identity: dict[str, str] = field(default_factory=dict)
    log_verdict: dict[str, Any] = field(default_factory=dict)
