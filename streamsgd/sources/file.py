"""JSON Lines from a file or standard input; one line is one record, its offset the
0-based line number (so a checkpoint resumes a re-read file exactly)."""

from __future__ import annotations

import os
import select
import stat
import sys
from typing import BinaryIO

from ..buffer import Position
from ..ports import SourceRecord

PARTITION = "file"
LINES_PER_POLL = 4096
READ_BYTES = 1 << 20


class FileSource:
    """Reads ``path`` (``"-"`` for stdin) to its end.

    A regular file is read with ordinary buffered I/O; a pipe or terminal is read with
    ``select`` so that a poll returns after its timeout and a stop request is honoured while
    the writer is idle.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")
        mode = os.fstat(self._fh.fileno()).st_mode
        self._regular = stat.S_ISREG(mode)
        self._pending = bytearray()
        self._line = 0
        self._skip_to = 0
        self._eof = False

    def seek(self, positions: dict[str, Position]) -> None:
        position = positions.get(PARTITION)
        self._skip_to = 0 if position is None else position.offset

    def _lines_regular(self) -> list[bytes]:
        lines = []
        for _ in range(LINES_PER_POLL):
            line = self._fh.readline()
            if not line:
                self._eof = True
                break
            lines.append(line)
        return lines

    def _lines_stream(self, timeout_seconds: float) -> list[bytes]:
        fd = self._fh.fileno()
        readable, _, _ = select.select([fd], [], [], timeout_seconds)
        if readable:
            chunk = os.read(fd, READ_BYTES)
            if chunk:
                self._pending += chunk
            else:
                self._eof = True
        *complete, rest = bytes(self._pending).split(b"\n")
        self._pending = bytearray(rest)
        if self._eof and rest:
            complete.append(rest)
            self._pending.clear()
        return complete

    def poll(self, timeout_seconds: float) -> list[SourceRecord]:
        if self._eof:
            return []
        raw = self._lines_regular() if self._regular else self._lines_stream(timeout_seconds)
        records = []
        for line in raw:
            offset = self._line
            self._line += 1
            if offset < self._skip_to:
                continue
            records.append(SourceRecord(PARTITION, offset, value=line.rstrip(b"\r\n")))
        return records

    @property
    def exhausted(self) -> bool:
        return self._eof

    @property
    def ready(self) -> bool:
        return True

    def commit(self, positions: dict[str, Position]) -> None:
        pass

    def close(self) -> None:
        if self._fh is not sys.stdin.buffer:
            self._fh.close()
