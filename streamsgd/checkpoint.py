"""Atomic, versioned checkpoint store: one JSON file per directory, never pickle.

Arrays are stored as base64 of their little-endian float64 bytes, which round-trips every
weight exactly (bit for bit) and is compact. A save writes ``checkpoint.json.tmp``, fsyncs
it, renames it over ``checkpoint.json`` and fsyncs the directory, so a crash at any moment
leaves either the previous or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
FILE_NAME = "checkpoint.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit this run."""


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value, dtype="<f8")
        return {
            "__ndarray__": "<f8",
            "shape": list(data.shape),
            "base64": base64.b64encode(data.tobytes()).decode("ascii"),
        }
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, np.floating | np.integer):
        return value.item()
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            raw = base64.b64decode(value["base64"])
            return np.frombuffer(raw, dtype=value["__ndarray__"]).reshape(value["shape"]).copy()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _json_constant(name: str) -> float:
    # NaN and infinities (running statistics before they are defined) round-trip too.
    return float(name)


def dumps(state: dict[str, Any]) -> bytes:
    document = {"format_version": FORMAT_VERSION, **_encode(state)}
    return json.dumps(document, allow_nan=True, sort_keys=True).encode()


def loads(raw: bytes) -> dict[str, Any]:
    document = json.loads(raw, parse_constant=_json_constant)
    version = document.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"unsupported checkpoint format_version {version!r}")
    decoded: dict[str, Any] = _decode(document)
    return decoded


class DirectoryCheckpointStore:
    """Checkpoints in ``directory/checkpoint.json`` (created on first save)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME

    def load(self) -> dict[str, Any] | None:
        """The latest checkpoint, or None when the directory holds none."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            return loads(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{self.path} is not a valid checkpoint: {exc}") from None

    def save(self, state: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(FILE_NAME + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(dumps(state))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
