"""The checkpoint directory: one locked writer, atomic durable saves, lock-free readers."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

from ..codec import feature_hash_mismatch, feature_hash_state
from .document import dumps, loads
from .errors import CheckpointError, CheckpointLocked

log = logging.getLogger("streamsgd.checkpoint")

FILE_NAME = "checkpoint.json"
LOCK_NAME = ".lock"
TEMP_PREFIX = FILE_NAME + "."
TEMP_SUFFIX = ".tmp"

UNCHECKED = -1
"""``hash_bits`` of a store that neither records nor checks the feature hash (inspect)."""


# The largest checkpoint read: 2^26 weights with their optimiser state and statistics, in
# base64, stay well below it; /dev/urandom or a huge stray file does not.
MAX_CHECKPOINT_BYTES = 4 * 1024**3


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; CheckpointError
    otherwise (a FIFO would block forever, a device never end). Opened without blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path} is not a regular file")
        if info.st_size > max_bytes:
            raise CheckpointError(f"{path} holds {info.st_size} bytes, over {max_bytes}")
        return fh.read(max_bytes + 1)


def _fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _lock_directory(directory: Path) -> int:
    """Create ``directory`` if needed and take its writer lock; returns the lock's fd."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise CheckpointError(
            f"cannot use checkpoint directory {directory}: {exc.strerror}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            held_by = f" ({holder})" if holder else ""
            raise CheckpointLocked(
                f"checkpoint directory {directory} is locked by another trainer{held_by}: "
                "one writer per directory"
            ) from None
        raise CheckpointError(f"cannot lock {directory / LOCK_NAME}: {exc.strerror}") from None
    # Who holds it, for the message a second trainer prints (informational only: on a full
    # disk (ENOSPC) the lock is held all the same, and the saves report their own failures).
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    except OSError:
        pass
    return fd


class DirectoryCheckpointStore:
    """Checkpoints in ``directory/checkpoint.json``.

    ``DirectoryCheckpointStore(directory)`` is the writer: it creates the directory, takes
    the directory's lock (:class:`CheckpointLocked` if another store holds it, a
    :class:`CheckpointError` if the directory cannot be created), and removes temp files
    that crashed writers left. ``read_only=True`` only loads and takes no lock.

    With ``hash_bits`` (b, or None for a dense model) the store records the feature hash in
    every checkpoint it saves (``"feature_hash"``: the hash's identity and b, or null) and
    refuses to load one of another hash: buckets of another hash are other features, so
    such a model cannot be resumed (e.g. one hashed with BLAKE2b before MurmurHash3).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        read_only: bool = False,
        hash_bits: int | None = UNCHECKED,
    ) -> None:
        self._lock_fd: int | None = None  # first: __del__ runs even if __init__ fails
        self.directory = Path(directory)
        self.hash_bits = hash_bits
        self.path = self.directory / FILE_NAME
        self.read_only = read_only
        if not read_only:
            self._lock_fd = _lock_directory(self.directory)
            self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        # Only the lock holder may do this: another writer's temp file is never stale.
        legacy = self.directory / (FILE_NAME + TEMP_SUFFIX)  # format 1's one shared name
        for stale in [*self.directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"), legacy]:
            if not stale.exists():
                continue
            try:
                stale.unlink()
                log.info("removed %s, left by a writer that did not finish", stale.name)
            except OSError as exc:
                log.warning("cannot remove stale temp file %s: %s", stale, exc.strerror)

    def load(self) -> dict[str, Any] | None:
        """The latest checkpoint, or None when the directory holds none."""
        try:
            raw = read_regular_file(self.path, MAX_CHECKPOINT_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            state = loads(raw)
        except CheckpointError as exc:
            raise CheckpointError(f"{self.path} is not a valid checkpoint: {exc}") from None
        if self.hash_bits != UNCHECKED:
            problem = feature_hash_mismatch(state.get("feature_hash"), self.hash_bits)
            if problem is not None:
                raise CheckpointError(f"{self.path}: {problem}")
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically and durably.

        Raises OSError (one-line message) when the checkpoint cannot be written, including a
        state that load would refuse (e.g. non-finite weights); the previous checkpoint then
        stays. CheckpointError when this store is read-only or closed.
        """
        if self._lock_fd is None:
            raise CheckpointError(f"checkpoint store {self.directory} is read-only or closed")
        if self.hash_bits != UNCHECKED:
            state = {**state, "feature_hash": feature_hash_state(self.hash_bits)}
        try:
            document = dumps(state)
        except CheckpointError as exc:
            raise OSError(errno.EINVAL, f"refusing to save a checkpoint: {exc}") from None
        self._write(document)

    def _write(self, document: bytes) -> None:
        tmp_path: str | None = None
        try:
            fd, tmp_path = tempfile.mkstemp(TEMP_SUFFIX, TEMP_PREFIX, dir=self.directory)
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)  # mkstemp's 0600 would hide it from inspect
                fh.write(document)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_path, self.path)
            tmp_path = None
            _fsync_directory(self.directory)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot save a checkpoint in {self.directory}: {exc.strerror}"
            ) from None
        finally:
            if tmp_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_path)

    def close(self) -> None:
        """Release the directory's lock (idempotent); the store can then only load."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> DirectoryCheckpointStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A dropped store must not keep the directory locked until the process ends.
        self.close()
