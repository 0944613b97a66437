"""A source's poll of plain values (:class:`ValueRun`), decoded by
:func:`~streamsgd.codec.decode_poll` without a record object per value."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, overload

from ..core.types import IndexArray

R = TypeVar("R")


class ValueRun(Sequence[R], Generic[R]):
    """A poll of a source whose records are plain values of one partition at consecutive
    offsets (a file's lines): the values in a list, or left in the chunk they were read in,
    and a record object built only when one is asked for (a rejection, the dead-letter
    sink), so that a line costs no Python object, or none but its bytes.

    Parameters
    ----------
    partition : str
    first_offset : int
        Offset of value 0; value k is at ``first_offset + k``.
    values : list of bytes, or None with ``lines``
    make_record : callable
        ``make_record(partition, offset, value, original_size_bytes=...)``: the record.
    original_sizes : dict of int to int
        Value index → the full size of a value that holds only its first bytes.
    lines : (chunk, starts, ends), optional
        Instead of ``values``: value k is ``chunk[starts[k]:ends[k]]``, and is followed in
        ``chunk`` by its ``\\n`` (:func:`~streamsgd.codec._named_json.parse_named_lines`).
    """

    def __init__(
        self,
        partition: str,
        first_offset: int,
        values: list[bytes] | None,
        make_record: Callable[..., R],
        original_sizes: dict[int, int] | None = None,
        *,
        lines: tuple[bytes, IndexArray, IndexArray] | None = None,
    ) -> None:
        if (values is None) == (lines is None):
            raise ValueError("give values or lines")
        self.partition = partition
        self.first_offset = first_offset
        self._values = values
        self.lines = lines
        self.original_sizes = original_sizes or {}
        self._make_record = make_record

    @property
    def values(self) -> list[bytes]:
        """The values as bytes objects (cut from the chunk at the first call)."""
        if self._values is None:
            assert self.lines is not None
            chunk, starts, ends = self.lines
            self._values = [chunk[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        return self._values

    def __len__(self) -> int:
        return len(self._values) if self._values is not None else len(self.lines[1])  # type: ignore[index]

    @overload
    def __getitem__(self, index: int) -> R: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[R]: ...

    def __getitem__(self, index: int | slice) -> R | Sequence[R]:
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        k = range(len(self))[index]  # IndexError and negative indices as a list's
        if self._values is not None:
            value = self._values[k]
        else:
            assert self.lines is not None
            chunk, starts, ends = self.lines
            value = chunk[int(starts[k]) : int(ends[k])]
        return self._make_record(
            self.partition,
            self.first_offset + k,
            value,
            original_size_bytes=self.original_sizes.get(k),
        )
