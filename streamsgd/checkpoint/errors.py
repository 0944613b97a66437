"""The exceptions of the checkpoint store (one-line messages, shown to the user as is)."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, is malformed, or does not fit this run (one line)."""


class CheckpointLocked(CheckpointError):
    """Another process (or another store in this one) writes to this checkpoint directory."""
