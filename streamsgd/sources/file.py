"""JSON Lines from a file or standard input; one line is one record, its offset the
0-based line number (so a checkpoint resumes a re-read file exactly).

Reading is bounded: the input is read in chunks of ``READ_BYTES`` and cut into lines by
:class:`LineSplitter`, which looks at every byte once (time linear in the input) and holds
at most ``max_line_bytes`` bytes of a line (memory bounded by the record limit, whatever
the line length). A line longer than the limit is not held: its record carries the first
``max_line_bytes`` bytes as ``value`` and the line's full size as ``original_size_bytes``,
so the decoder rejects it as ``too_large`` and a dead-letter sink receives those first
bytes, with the detail saying that the value was truncated and how long the line was. The
rest of the line is read and dropped, and the following lines are read normally.

Per line, nothing is done in Python: the lines that lie whole in a chunk (no ``\r``, none
over the limit) stay in it as (chunk, starts, ends), found with ``memchr``, and a poll hands
them on as a :class:`~streamsgd.codec.ValueRun`, which the decoder parses in place (named
features) or cuts into values (other forms); a :class:`SourceRecord` is built only for a
line that is rejected. Other chunks take the per-line path of
:meth:`LineSplitter.feed_values`.
"""

from __future__ import annotations

import os
import select
import stat
import sys
from collections import deque
from collections.abc import Sequence
from typing import BinaryIO

from ..codec import DEFAULT_MAX_RECORD_BYTES, ValueRun
from ..codec._named_json import line_bounds
from ..core.types import IndexArray
from ..training.buffer import Position
from ..training.ports import SourceRecord

PARTITION = "file"
LINES_PER_POLL = 8192
READ_BYTES = 1 << 20

# (value, original_size_bytes): the line without its end, and its full size when the value
# holds only its first bytes.
Line = tuple[bytes, int | None]
# Lines left in their chunk: (chunk, starts, ends), line k being chunk[starts[k]:ends[k]].
Lines = tuple[bytes, IndexArray, IndexArray]


class LineSplitter:
    """Cuts a byte stream, fed in chunks, into lines (``\\n`` ends a line; trailing ``\\r``
    and ``\\n`` are dropped, as ``bytes.rstrip(b"\\r\\n")`` would).

    Parameters
    ----------
    max_line_bytes : int
        Longest line kept whole; a longer one keeps its first ``max_line_bytes`` bytes.

    Attributes
    ----------
    bytes_scanned : int
        Bytes fed so far (each is searched for a line end once).
    bytes_copied : int
        Bytes copied into lines so far: at most about twice the bytes fed (a slice of the
        chunk, then a join for a line that spans chunks).
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._parts: list[bytes] = []  # the current line's bytes, at most max + 1 of them
        self._held = 0
        self._size = 0  # the current line's size so far, held or not
        self.bytes_scanned = 0
        self.bytes_copied = 0

    def feed(self, chunk: bytes) -> list[Line]:
        """The lines that ``chunk`` completes, in order."""
        values, sizes = self.feed_values(chunk)
        return [(value, sizes.get(k)) for k, value in enumerate(values)]

    def feed_values(self, chunk: bytes) -> tuple[list[bytes], dict[int, int]]:
        """:meth:`feed` as the lines' values and, by index, the full size of each line kept
        only in part. The chunk is cut with one ``bytes.split`` (no Python step per line);
        only a line that began in an earlier chunk, lines over the limit and a chunk with a
        ``\r`` take the per-line path."""
        self.bytes_scanned += len(chunk)
        if b"\n" not in chunk:
            self._hold(chunk, 0, len(chunk))
            return [], {}
        values = chunk.split(b"\n")  # one copy of every byte but the line ends
        rest = values.pop()  # the start of a line that a later chunk ends
        sizes: dict[int, int] = {}
        first = 0  # the first value that is a whole line of this chunk
        if self._size:  # the first value ends the line held so far
            self._hold_piece(values[0])
            values[0], size = self._take()
            if size is not None:
                sizes[0] = size
            first = 1
        if b"\r" in chunk or max(map(len, values)) > self.max_line_bytes:
            for k in range(first, len(values)):
                values[k], size = self._whole_line(values[k])
                if size is not None:
                    sizes[k] = size
        self.bytes_copied += sum(map(len, values[first:]))
        self._hold_piece(rest)
        return values, sizes

    def feed_lines(self, chunk: bytes) -> tuple[list[bytes], dict[int, int], Lines | None]:
        """:meth:`feed_values`, leaving the lines that lie whole in ``chunk`` in it: the
        values of the lines to take one by one (a line begun in an earlier chunk, or every
        line when the chunk needs the per-line path), the full sizes of those kept in part
        by index, then the other lines as ``(chunk, starts, ends)`` (each followed by its
        ``\n``), or None. No bytes object is made for those lines."""
        if b"\r" in chunk:
            return (*self.feed_values(chunk), None)
        starts, ends = line_bounds(chunk)
        self.bytes_scanned += len(chunk)
        if not len(ends):
            self._hold(chunk, 0, len(chunk))
            return [], {}, None
        rest = int(ends[-1]) + 1  # the start of a line that a later chunk ends
        head: list[bytes] = []
        sizes: dict[int, int] = {}
        if self._size:  # the first line ends the line held so far
            self._hold(chunk, 0, int(ends[0]))
            value, size = self._take()
            head.append(value)
            if size is not None:
                sizes[0] = size
            starts, ends = starts[1:], ends[1:]
        if len(ends) and int((ends - starts).max()) > self.max_line_bytes:  # rare: cut them
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                value, size = self._whole_line(chunk[start:end])
                if size is not None:
                    sizes[len(head)] = size
                head.append(value)
            self.bytes_copied += int((ends - starts).sum())
            starts, ends = starts[:0], ends[:0]
        self._hold(chunk, rest, len(chunk))
        return head, sizes, (chunk, starts, ends) if len(ends) else None

    def _whole_line(self, value: bytes) -> Line:
        """What :meth:`_take` makes of a line held whole: its ends dropped (only when it is
        at most one byte over the limit, as :meth:`_hold` keeps it), cut to the limit."""
        limit = self.max_line_bytes
        if len(value) <= limit + 1:
            value = value.rstrip(b"\r\n")
            if len(value) <= limit:
                return value, None
        return value[:limit], len(value)

    def finish(self) -> Line | None:
        """At the end of input: the last line if it had no ``\\n`` (None if it is empty)."""
        return self._take() if self._size else None

    def _hold(self, chunk: bytes, start: int, end: int) -> None:
        self._size += end - start
        # One byte over the limit is kept, so that a trailing \r can still be dropped.
        keep = min(end - start, self.max_line_bytes + 1 - self._held)
        if keep > 0:
            self._parts.append(chunk[start : start + keep])
            self._held += keep
            self.bytes_copied += keep

    def _hold_piece(self, piece: bytes) -> None:
        """:meth:`_hold` of a piece already cut from its chunk (not copied again unless it
        is cut to the limit)."""
        self._size += len(piece)
        keep = min(len(piece), self.max_line_bytes + 1 - self._held)
        if keep > 0:
            self._parts.append(piece if keep == len(piece) else piece[:keep])
            self._held += keep
            self.bytes_copied += keep

    def _take(self) -> Line:
        parts = self._parts
        value = parts[0] if len(parts) == 1 else b"".join(parts)
        if len(parts) > 1:
            self.bytes_copied += len(value)
        size, held = self._size, self._held
        self._parts, self._held, self._size = [], 0, 0
        if held == size:  # the whole line is here
            value = value.rstrip(b"\r\n")
            size = len(value)
        if size <= self.max_line_bytes:
            return value, None
        return value[: self.max_line_bytes], size


class FileSource:
    """Reads ``path`` (``"-"`` for stdin) to its end.

    A regular file is read chunk after chunk; a pipe or terminal is read with ``select`` so
    that a poll returns after its timeout and a stop request is honoured while the writer
    is idle.

    Parameters
    ----------
    path : str
    max_line_bytes : int
        The record limit (the decoder's ``max_record_bytes``): longer lines are not held.
    """

    def __init__(self, path: str, max_line_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self.path = path
        self._fh: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")
        mode = os.fstat(self._fh.fileno()).st_mode
        self._regular = stat.S_ISREG(mode)
        self._splitter = LineSplitter(max_line_bytes)
        # Lines read and not yet polled, in batches never mixed in one poll: a list of
        # values (with the full sizes of lines kept in part, by index) or lines left in
        # their chunk; the first batch's lines from index self._next on.
        self._batches: deque[tuple[list[bytes], dict[int, int]] | Lines] = deque()
        self._next = 0
        self._line = 0
        self._skip_to = 0
        self._eof = False

    def seek(self, positions: dict[str, Position]) -> None:
        position = positions.get(PARTITION)
        self._skip_to = 0 if position is None else position.offset

    @property
    def _ready(self) -> bool:
        return bool(self._batches)

    def _read(self, timeout_seconds: float) -> None:
        """Read one chunk into the splitter (from a pipe: only if one arrives in time)."""
        if self._regular:
            chunk = self._fh.read(READ_BYTES)
        else:
            fd = self._fh.fileno()
            readable, _, _ = select.select([fd], [], [], timeout_seconds)
            if not readable:
                return
            chunk = os.read(fd, READ_BYTES)
        if chunk:
            values, sizes, lines = self._splitter.feed_lines(chunk)
            if values:
                self._batches.append((values, sizes))
            if lines is not None:
                self._batches.append(lines)
            return
        self._eof = True
        last = self._splitter.finish()
        if last is not None:
            self._batches.append(([last[0]], {} if last[1] is None else {0: last[1]}))

    def poll(self, timeout_seconds: float) -> Sequence[SourceRecord]:
        """The next lines (at most ``LINES_PER_POLL``, of one batch) as one
        :class:`ValueRun`, with a :class:`SourceRecord` built only for a rejected line."""
        if not self._ready and not self._eof:
            self._read(timeout_seconds)
            while self._regular and not self._ready and not self._eof:
                self._read(timeout_seconds)  # a long line: keep reading (it is not held)
        if not self._batches:
            return []
        batch = self._batches[0]
        size = len(batch[0]) if len(batch) == 2 else len(batch[1])
        start = self._next
        stop = min(size, start + LINES_PER_POLL)
        self._next = stop
        if stop == size:
            self._batches.popleft()
            self._next = 0
        first_line, self._line = self._line, self._line + (stop - start)
        skip = min(max(self._skip_to - first_line, 0), stop - start)  # before a checkpoint
        start, first_line = start + skip, first_line + skip
        if start == stop:
            return []
        if len(batch) == 2:
            values, sizes = batch
            part = {k - start: n for k, n in sizes.items() if start <= k < stop}
            return ValueRun(PARTITION, first_line, values[start:stop], SourceRecord, part)
        chunk, starts, ends = batch
        lines = (chunk, starts[start:stop], ends[start:stop])
        return ValueRun(PARTITION, first_line, None, SourceRecord, lines=lines)

    @property
    def exhausted(self) -> bool:
        return self._eof and not self._ready

    @property
    def ready(self) -> bool:
        return True

    def commit(self, positions: dict[str, Position]) -> None:
        pass

    def close(self) -> None:
        if self._fh is not sys.stdin.buffer:
            self._fh.close()
