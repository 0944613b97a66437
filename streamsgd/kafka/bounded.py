"""Run a client call that has no timeout of its own for a bounded time (librdkafka's
synchronous commit and close wait for the broker without limit)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def bounded(call: Callable[[], object], timeout_seconds: float, what: str) -> threading.Thread:
    """Run ``call`` in a daemon thread for at most ``timeout_seconds``; returns the thread
    (alive if ``call`` had not returned). An exception ``call`` raised in time is raised
    here; the thread keeps the client alive until librdkafka gives up, and never blocks the
    exit of the process."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"streamsgd-{what}", daemon=True)
    thread.start()
    thread.join(timeout_seconds)
    if errors:
        raise errors[0]
    return thread
