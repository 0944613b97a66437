"""How the run loop batches and checkpoints (:class:`ServiceConfig`), apart from the loop
itself (:mod:`streamsgd.training.trainer`, which re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServiceConfig:
    """How the loop batches and checkpoints.

    Attributes
    ----------
    batch_size : int
        m ≥ 1; unused when the model has a controller (its ``batch_size`` is m then).
    max_samples : int or None
        Stop after this many samples in total (restored ones included); the last
        minibatch may be smaller than m.
    max_wait_seconds : float or None
        Apply a partial minibatch after this long without new records (None: never).
    max_batch_age_seconds : float or None
        Apply a partial minibatch once its first sample has been buffered this long, even
        while records keep arriving (None: never). With ``--batch-size auto`` it is the
        latency budget: m is chosen for a backlog, and a live stream slower than m per budget
        would otherwise hold a sample until m have arrived.
    checkpoint_interval_seconds : float
        Checkpoint at most this often (when something changed).
    checkpoint_every_updates : int
        Also checkpoint after this many updates (0: off).
    online_block_size : int
        With batch_size 1: apply the m = 1 steps K at a time through
        :func:`~streamsgd.core.sequential.learn_sequence` (same steps, several times
        faster). Blocks are aligned on the samples consumed, so a restarted run cuts the
        same blocks (bit-for-bit); a sample may wait for K − 1 others or
        ``max_wait_seconds``. 0: one ``learn_batch`` per sample.
    poll_timeout_seconds : float
    """

    # Defaults equal streamsgd.config's (tests/unit/test_config.py checks it).
    batch_size: int = 32
    max_samples: int | None = None
    max_wait_seconds: float | None = None
    max_batch_age_seconds: float | None = None
    checkpoint_interval_seconds: float = 10.0
    checkpoint_every_updates: int = 0
    online_block_size: int = 32
    poll_timeout_seconds: float = 0.2
