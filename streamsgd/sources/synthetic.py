"""Embedded synthetic source: the seeded stream of :mod:`streamsgd.synthetic`."""

from __future__ import annotations

from ..codec import Samples
from ..core.buffer import Position
from ..service import SourceRecord
from ..synthetic import BLOCK_SIZE, SyntheticStream

PARTITION = "synthetic"


class SyntheticSource:
    """Delivers the stream in records of ``BLOCK_SIZE`` samples; record j holds samples
    [j·BLOCK_SIZE, (j+1)·BLOCK_SIZE), so a checkpoint position resumes it exactly.

    Parameters
    ----------
    stream : SyntheticStream
    n_samples : int or None
        Bounded stream length (None: endless).
    """

    def __init__(self, stream: SyntheticStream, n_samples: int | None = None) -> None:
        self.stream = stream
        self.n_samples = n_samples
        self._next_record = 0

    def seek(self, positions: dict[str, Position]) -> None:
        position = positions.get(PARTITION)
        self._next_record = 0 if position is None else position.offset

    def poll(self, timeout_seconds: float) -> list[SourceRecord]:
        if self.exhausted:
            return []
        start = self._next_record * BLOCK_SIZE
        stop = start + BLOCK_SIZE
        if self.n_samples is not None:
            stop = min(stop, self.n_samples)
        X, y = self.stream.samples(start, stop)
        record = SourceRecord(PARTITION, self._next_record, samples=Samples(X, y, None))
        self._next_record += 1
        return [record]

    @property
    def exhausted(self) -> bool:
        return self.n_samples is not None and self._next_record * BLOCK_SIZE >= self.n_samples

    @property
    def ready(self) -> bool:
        return True

    def commit(self, positions: dict[str, Position]) -> None:
        pass

    def close(self) -> None:
        pass
