"""The Stepper port: how buffered samples become steps of the model. The training loop
(:class:`~streamsgd.training.trainer.Trainer`) is the same for a single process and for N
replicas; its stepper differs: :class:`~streamsgd.training.local_stepper.LocalStepper`
calls the model directly (with the m = 1 fast path), the collective stepper
(:mod:`streamsgd.distributed.collective_stepper`) shares, packs, allreduces and applies.

:class:`Run` is what a stepper may use of the run it steps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..core.model import BatchStats, OnlineLogisticRegression
from .buffer import Position
from .checkpointer import Checkpointer, WriterPolicy
from .intake import Intake
from .ports import Sensor
from .settings import ServiceConfig
from .totals import Totals


class Stepper(Protocol):
    """How one run's buffered samples become steps.

    Attributes
    ----------
    writer_policy : WriterPolicy or None
        The stepper's rules for checkpoint-then-commit (None: a single writer's).
    local_rejections : bool
        Whether rejected records enter this process's totals as its positions pass them
        (a replica's become global through the step's exchange instead).
    """

    writer_policy: WriterPolicy | None
    local_rejections: bool

    @property
    def positions(self) -> dict[str, Position]:
        """Per partition, the position after the last applied sample (of the whole job)."""

    def extra_state(self) -> dict[str, Any]:
        """What the stepper adds to the checkpoint's state."""

    def start(self) -> None:
        """Agree on the state the run starts from (resume, or the replicas' agreed state)."""

    def round(self) -> bool:
        """Buffer samples and take the steps they allow; True when the run ends."""


class Run(Protocol):
    """What a stepper uses of the run it steps (a :class:`~.trainer.Trainer`)."""

    model: OnlineLogisticRegression
    totals: Totals
    intake: Intake
    checkpointer: Checkpointer
    config: ServiceConfig
    clock: Callable[[], float]
    stop_event: threading.Event

    @property
    def sensors(self) -> Sequence[Sensor]: ...

    @property
    def batch_size(self) -> int: ...

    def samples_left(self) -> int | None: ...

    def room(self) -> int | None: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...

    def account(
        self, n_samples: int, skipped_steps: int, skipped_samples: int, clipped: int
    ) -> None: ...

    def step_applied(self, n_samples: int, stats: BatchStats, duration_seconds: float) -> None: ...

    def tick(self) -> None: ...

    def checkpoint(self) -> bool: ...
