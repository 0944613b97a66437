"""Atomic, versioned, checksummed checkpoints: one JSON file per directory, never pickle.

* :mod:`.document` — the file format (``dumps``/``loads``): canonical JSON, a SHA-256 over
  the state's bytes, format 2 (format 1 without checksum is read with a warning).
* :mod:`.validation` — ``validate_state``: everything the run loop and the model read, so a
  malformed, torn or non-finite checkpoint is refused with one line, never a traceback.
* :mod:`.store` — ``DirectoryCheckpointStore``: one writer per directory (an exclusive
  ``flock`` on ``DIR/.lock`` held until ``close()`` or the process dies, even by SIGKILL);
  saves go to a unique temp file, fsync, rename over ``checkpoint.json``, fsync of the
  directory, so a crash leaves the previous or the new checkpoint. ``read_only=True``
  stores (``streamsgd inspect``) take no lock: renames are atomic.
* :mod:`.manifest` — ``ManifestFile``: a replicated run's step manifest, ``DIR/manifest.jsonl``.
"""

from .document import FORMAT_VERSION, dumps, loads
from .errors import CheckpointError, CheckpointLocked
from .manifest_file import MANIFEST_NAME, ManifestFile
from .store import FILE_NAME, LOCK_NAME, DirectoryCheckpointStore
from .validation import validate_state

__all__ = [
    "FILE_NAME",
    "FORMAT_VERSION",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "CheckpointError",
    "CheckpointLocked",
    "DirectoryCheckpointStore",
    "ManifestFile",
    "dumps",
    "loads",
    "validate_state",
]
