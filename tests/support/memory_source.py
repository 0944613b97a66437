"""An in-memory Source for unit tests of the service loop (not a broker substitute)."""

from __future__ import annotations

from streamsgd.training.buffer import Position
from streamsgd.training.ports import SourceRecord


class MemorySource:
    """Serves ``values`` (raw record bytes) as partition ``"mem"``, ``per_poll`` per poll."""

    def __init__(
        self, values: list[bytes], per_poll: int = 7, fail_after_polls: int | None = None
    ) -> None:
        self.values = values
        self.per_poll = per_poll
        self.next = 0
        self.polls = 0
        self.fail_after_polls = fail_after_polls
        self.committed: dict[str, Position] = {}

    def seek(self, positions: dict[str, Position]) -> None:
        position = positions.get("mem")
        self.next = 0 if position is None else position.offset

    def poll(self, timeout_seconds: float) -> list[SourceRecord]:
        self.polls += 1
        if self.fail_after_polls is not None and self.polls > self.fail_after_polls:
            raise KeyboardInterrupt("simulated crash")
        batch = self.values[self.next : self.next + self.per_poll]
        records = [SourceRecord("mem", self.next + i, value=v) for i, v in enumerate(batch)]
        self.next += len(batch)
        return records

    @property
    def exhausted(self) -> bool:
        return self.next >= len(self.values)

    @property
    def ready(self) -> bool:
        return True

    def commit(self, positions: dict[str, Position]) -> None:
        self.committed = dict(positions)

    def close(self) -> None:
        pass
