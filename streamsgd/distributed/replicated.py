"""N replicas of one trainer holding one model (docs/design.md#scaling-out): the training loop
of a single process (:class:`~streamsgd.training.trainer.Trainer`) with the collective stepper
(:class:`~.collective_stepper.CollectiveStepper`) in place of the local one."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..codec import Decoder
from ..core.model import OnlineLogisticRegression
from ..training.ports import (
    CheckpointStore,
    DeadLetterSink,
    Fence,
    ManifestLog,
    PartitionedSource,
    Sensor,
)
from ..training.settings import ServiceConfig
from ..training.stepper import Run
from ..training.trainer import Trainer
from .agreement import DEFAULT_CHECK_EVERY_STEPS, PARTITIONS_CHECK_SECONDS
from .collective import Collective
from .collective_stepper import CollectiveStepper


def replicated_trainer(
    model: OnlineLogisticRegression,
    source: PartitionedSource,
    decoder: Decoder,
    config: ServiceConfig,
    *,
    collective: Collective,
    open_checkpoint_store: Callable[[], CheckpointStore] | None = None,
    manifest: ManifestLog | None = None,
    check_every_steps: int = DEFAULT_CHECK_EVERY_STEPS,
    fence: Fence | None = None,
    partitions_check_seconds: float = PARTITIONS_CHECK_SECONDS,
    dead_letter: DeadLetterSink | None = None,
    sensors: Sequence[Sensor] = (),
    clock: Callable[[], float] = time.monotonic,
    source_description: dict[str, Any] | None = None,
) -> Trainer:
    """A :class:`Trainer` whose steps are taken by all members of ``collective``.

    Parameters
    ----------
    model, source, decoder, config
        As for :class:`Trainer`; the source reads the partitions it is assigned.
    collective : Collective
        The replicas (rank, size, allreduce, broadcast, recovery).
    open_checkpoint_store : callable, optional
        Opens the checkpoint store; called by whichever replica is rank 0 (at the start, or
        after rank 0 failed). The checkpoint holds the state of all replicas.
    manifest : ManifestLog, optional
        Rank 0 appends the step manifest there before each checkpoint (every replica is
        given it: any may become rank 0). Without one no entries are recorded.
    check_every_steps : int
        The replicas compare digests of θ in the exchange every this many steps and after
        every checkpoint; on a difference they adopt rank 0's model.
    fence : Fence, optional
        The checkpoint directory's generations: rank 0 claims one when it becomes the
        writer and checks it before every checkpoint and offset commit.
    partitions_check_seconds : float
        Rank 0 asks the source for the topic's partitions this often; a grown list reaches
        every replica through the exchange.
    """

    def stepper(run: Run) -> CollectiveStepper:
        return CollectiveStepper(
            run,
            collective,
            manifest=manifest,
            check_every_steps=check_every_steps,
            fence=fence,
            partitions_check_seconds=partitions_check_seconds,
        )

    return Trainer(
        model,
        source,
        decoder,
        config,
        dead_letter=dead_letter,
        sensors=sensors,
        clock=clock,
        source_description=source_description,
        stepper=stepper,
        open_checkpoint_store=open_checkpoint_store,
    )
