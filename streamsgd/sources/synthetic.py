"""Embedded synthetic source: the seeded stream of :mod:`streamsgd.datasets.synthetic_stream`."""

from __future__ import annotations

from ..codec import Samples
from ..datasets.synthetic_stream import BLOCK_SIZE, SyntheticStream
from ..training.buffer import Position
from ..training.ports import SourceRecord

PARTITION = "synthetic"


class SyntheticSource:
    """Delivers the stream in records of ``BLOCK_SIZE`` samples; record j holds samples
    [j·BLOCK_SIZE, (j+1)·BLOCK_SIZE), so a checkpoint position resumes it exactly.

    The stream is endless; a run is bounded by the service's ``max_samples``, which may stop
    inside a record (records never depend on the bound, so a longer resumed run continues
    the same stream).
    """

    def __init__(self, stream: SyntheticStream) -> None:
        self.stream = stream
        self._next_record = 0

    def seek(self, positions: dict[str, Position]) -> None:
        position = positions.get(PARTITION)
        self._next_record = 0 if position is None else position.offset

    def poll(self, timeout_seconds: float) -> list[SourceRecord]:
        start = self._next_record * BLOCK_SIZE
        X, y = self.stream.samples(start, start + BLOCK_SIZE)
        record = SourceRecord(PARTITION, self._next_record, samples=Samples(X, y, None))
        self._next_record += 1
        return [record]

    @property
    def exhausted(self) -> bool:
        return False

    @property
    def ready(self) -> bool:
        return True

    def commit(self, positions: dict[str, Position]) -> None:
        pass

    def close(self) -> None:
        pass
