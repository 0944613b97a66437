"""A blocking MPI call bounded in time (:mod:`streamsgd.distributed.mpi`): no mpi4py import here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .collective import CollectiveTimeout

T = TypeVar("T")


def _bounded(call: Callable[[], T], deadline: float, what: str) -> T:
    """``call()`` in a helper thread, waited for until ``deadline``: for the blocking calls of
    a recovery (``Ishrink`` fails with ``MPI_ERR_INTERN`` in Open MPI 5.0.11; ``Spawn`` and
    ``Merge`` have no non-blocking form; mpi4py releases the GIL in them). On timeout the
    thread is abandoned inside MPI and the caller stops the run.
    """
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # re-raised in the caller's thread
            outcome.append((False, error))

    thread = threading.Thread(target=run, name=f"mpi-{what}", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if not outcome:
        raise CollectiveTimeout(f"{what} did not complete in time: a member hangs")
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value
