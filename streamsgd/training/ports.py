"""The ports of the run loop: what a source, a checkpoint store, a dead-letter sink and a
sensor must offer. The loop (:mod:`streamsgd.training.trainer`) is written against these alone; the
adapters (Kafka, files, Prometheus, the checkpoint directory) implement them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..codec import Samples
from ..core.model import BatchStats, OnlineLogisticRegression
from ..core.multi_step import BatchesStats
from ..core.sequential import SequenceStats
from .buffer import Position


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, damaged, locked by another writer, or of
    another model (one line, for the user). Raised by a :class:`CheckpointStore` and by the
    loop when it adopts a checkpoint."""


class SourceFailed(RuntimeError):
    """The source can never deliver another record of the stream the model learns (its log
    was replaced, the client was fenced, its credentials refused): the run must end with a
    non-zero exit so that the orchestrator restarts it (one line, for the user)."""


@dataclass
class SourceRecord:
    """One record from a source.

    ``partition`` names the ordered log it came from (``"topic:3"`` for Kafka) and
    ``offset`` its position there. Exactly one of ``value`` (raw bytes, to decode) and
    ``samples`` (already decoded, for embedded sources) is set. ``original_size_bytes`` is
    set when ``value`` holds only the first bytes of a value too large to hold (a line over
    the record limit): the decoder rejects such a record as ``too_large``. ``metadata`` holds
    what only the source (and its dead-letter sink) understands, e.g. a Kafka record's topic,
    partition number, key and headers; the loop never reads it.
    """

    partition: str
    offset: int
    value: bytes | None = None
    samples: Samples | None = None
    timestamp_ms: int | None = None
    metadata: Any = None
    original_size_bytes: int | None = None


class Source(Protocol):
    def seek(self, positions: dict[str, Position]) -> None:
        """Resume each partition at its checkpointed position (called before polling)."""

    def poll(self, timeout_seconds: float) -> Sequence[SourceRecord]:
        """Records that arrived, in order per partition; may be empty (a list, or a
        :class:`~streamsgd.codec.ValueRun` of one partition's values)."""

    @property
    def exhausted(self) -> bool:
        """True once a bounded source has delivered everything."""

    @property
    def ready(self) -> bool:
        """True while the source can deliver (for /readyz)."""

    def commit(self, positions: dict[str, Position]) -> None:
        """Make positions durable upstream (Kafka offsets); called after a checkpoint."""

    def close(self) -> None: ...


class CheckpointStore(Protocol):
    def load(self) -> dict[str, Any] | None:
        """The newest checkpoint, None when there is none; raises :class:`CheckpointError`
        for one that cannot be used."""

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically; raises ``OSError`` when it cannot (the previous
        checkpoint then stays)."""


class DeadLetterSink(Protocol):
    def send(self, record: SourceRecord, reason: str, detail: str) -> None: ...

    def flush(self) -> None: ...


class Sensor:
    """Receives what the loop observes. The base class ignores everything; the Prometheus
    sensor and the terminal progress reporter override what they need."""

    def records_consumed(self, n_records: int) -> None: ...

    def record_rejected(self, reason: str) -> None: ...

    def record_dead_lettered(self) -> None: ...

    def records_skipped(self, reason: str, n_records: int) -> None:
        """Records the source can no longer read were passed over (e.g. retention)."""

    def partitions_unassigned(self, n_partitions: int) -> None:
        """Partitions of the topic the source does not hold (another group member does)."""

    def batch_applied(
        self, stats: BatchStats, model: OnlineLogisticRegression, duration_seconds: float
    ) -> None: ...

    def batches_applied(
        self, stats: BatchesStats, model: OnlineLogisticRegression, duration_seconds: float
    ) -> None:
        """Consecutive minibatch steps of one m taken in one call
        (:func:`~streamsgd.core.multi_step.learn_batches`). By default every applied step is
        reported to :meth:`batch_applied` (with the call's mean step time), so a sensor that
        only knows single steps sees each; sensors override this to take them at once."""
        if type(self).batch_applied is Sensor.batch_applied:
            return  # nothing would see them
        each = duration_seconds / max(stats.n_steps, 1)
        for index in np.flatnonzero(stats.applied).tolist():
            self.batch_applied(stats.step(index), model, each)

    def model_loaded(self, model: OnlineLogisticRegression) -> None:
        """The model the run starts from (fresh, or restored from the checkpoint)."""

    def tick(self, model: OnlineLogisticRegression) -> None:
        """Called once per loop iteration (not per step) and at the end of a run."""

    def sequence_applied(
        self, stats: SequenceStats, model: OnlineLogisticRegression, duration_seconds: float
    ) -> None:
        """A block of consecutive m = 1 steps (``online_block_size``)."""

    def steps_skipped(self, reason: str, n_steps: int, n_samples: int) -> None:
        """Steps not applied (the same call for minibatch and m = 1 block steps): their
        ``n_samples`` samples are consumed but not learned."""

    def samples_clipped(self, reason: str, n_samples: int) -> None:
        """Samples the model scaled down before learning them (``"row_norm"``)."""

    def buffered_samples(self, n_samples: int) -> None: ...

    def record_timestamp(self, timestamp_seconds: float) -> None: ...

    def checkpoint_saved(self, duration_seconds: float) -> None: ...

    def checkpoint_failed(self) -> None: ...

    def offsets_committed(self) -> None: ...

    def offset_commit_failed(self) -> None: ...

    def collective_step(
        self, global_step: int, allreduce_seconds: float, wait_seconds: float
    ) -> None:
        """Replicas exchanged one step's sums: the exchange took ``allreduce_seconds`` here,
        of which ``wait_seconds`` waiting for the slowest replica (scale-out)."""

    def membership(self, rank: int, world_size: int, changes: int) -> None:
        """This replica's rank and the number of replicas, at the start and after every
        membership change (``changes`` so far)."""

    def manifest_write_failed(self) -> None:
        """Rank 0 could not append the step manifest (its entries are kept and retried)."""

    def replicas_diverged(self) -> None:
        """The replicas' digests of θ differed in a check; rank 0's state was adopted."""


class PartitionedSource(Source, Protocol):
    """A source whose partitions a replica is *assigned* (scale-out): no group rebalancing;
    the loop chooses the partitions and their positions."""

    def partitions(self, timeout_seconds: float) -> list[str]:
        """Every partition of the source (e.g. ``"topic:3"``)."""

    def assign(self, keys: list[str], positions: dict[str, Position]) -> dict[str, Position]:
        """Read exactly ``keys`` from now on, each from its position in ``positions`` or, for
        one without, from the source's own start: ``auto_offset_reset`` while ``positions``
        holds no partition of the source (the first start), else its beginning (a partition
        added since). ``positions`` may hold keys not in ``keys``. Returns the start
        position of every key."""


class Fence(Protocol):
    """The generations of a checkpoint directory's writers (``checkpoint.generation``)."""

    mine: int | None

    def latest(self) -> int:
        """The highest generation claimed in this directory so far (0: none)."""

    def claim(self, above: int = 0) -> int:
        """Claim the next generation for this writer, higher than ``above`` too."""

    def check(self) -> None:
        """Raise (a :class:`~streamsgd.distributed.collective.ReplicaStop`) if a newer writer
        exists."""


class ManifestLog(Protocol):
    """The durable record of which samples each step took
    (:mod:`streamsgd.distributed.step_manifest`)."""

    def append(self, entries: list[dict[str, Any]]) -> None:
        """Add entries durably (before the checkpoint covering them is written)."""

    def truncate(self, n_steps: int) -> None:
        """Drop the entries of steps after ``n_steps`` (written before a crash, past the
        checkpoint the run resumes from)."""

    def read(self) -> list[dict[str, Any]]: ...
