"""The exceptions of the checkpoint store (one-line messages, shown to the user as is).

:class:`CheckpointError` is the port's error type (:mod:`streamsgd.training.ports`): the run loop
raises it too, for a checkpoint of another model, without knowing this store.
"""

from __future__ import annotations

from ..training.ports import CheckpointError

__all__ = ["CheckpointError", "CheckpointLocked"]


class CheckpointLocked(CheckpointError):
    """Another process (or another store in this one) writes to this checkpoint directory."""
