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
"""

from __future__ import annotations

import os
import select
import stat
import sys
from collections import deque
from typing import BinaryIO

from ..buffer import Position
from ..codec import DEFAULT_MAX_RECORD_BYTES
from ..ports import SourceRecord

PARTITION = "file"
LINES_PER_POLL = 4096
READ_BYTES = 1 << 20

# (value, original_size_bytes): the line without its end, and its full size when the value
# holds only its first bytes.
Line = tuple[bytes, int | None]


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
        self.bytes_scanned += len(chunk)
        lines: list[Line] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._hold(chunk, start, end)
            lines.append(self._take())
            start = end + 1
        self._hold(chunk, start, len(chunk))
        return lines

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
        self._ready: deque[Line] = deque()
        self._line = 0
        self._skip_to = 0
        self._eof = False

    def seek(self, positions: dict[str, Position]) -> None:
        position = positions.get(PARTITION)
        self._skip_to = 0 if position is None else position.offset

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
            self._ready.extend(self._splitter.feed(chunk))
            return
        self._eof = True
        last = self._splitter.finish()
        if last is not None:
            self._ready.append(last)

    def poll(self, timeout_seconds: float) -> list[SourceRecord]:
        if not self._ready and not self._eof:
            self._read(timeout_seconds)
            while self._regular and not self._ready and not self._eof:
                self._read(timeout_seconds)  # a long line: keep reading (it is not held)
        records = []
        for _ in range(min(LINES_PER_POLL, len(self._ready))):
            value, original_size = self._ready.popleft()
            offset = self._line
            self._line += 1
            if offset >= self._skip_to:
                records.append(
                    SourceRecord(PARTITION, offset, value, original_size_bytes=original_size)
                )
        return records

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
