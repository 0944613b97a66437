"""The consumer lag both Kafka sources report (``streamsgd_consumer_lag_records``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..training.buffer import Position


def consumer_lag(
    ends: Mapping[str, int],
    positions: Mapping[str, Position],
    fetched: Mapping[str, int],
    current: Callable[[str], int | None],
) -> int:
    """Sum over the partitions in ``ends`` of end offset − applied position.

    Parameters
    ----------
    ends : per partition, the offset after its last readable record.
    positions : per partition, the position after the last applied sample.
    fetched : per partition, the offset after the last record the client returned.
    current : the client's position of a partition; None while the client has none yet (just
        assigned, before the first fetch established it): such a partition counts from the
        applied position, or not at all without one, rather than fail the refresh.
    """
    lag = 0
    for key, end in ends.items():
        position = positions.get(key)
        if position is None:
            client = current(key)
            if client is None:
                continue  # no position anywhere yet: its lag is unknown until the first fetch
            applied = client
        else:
            applied = position.offset
            returned = fetched.get(key)
            if returned is None or applied >= returned:
                # Everything the client returned is applied: what lies between the applied
                # position and the client's is what read_committed skips (transaction
                # markers, aborted records), never to be learned. Without this a caught-up
                # trainer on a transactional topic lags 1 for good.
                client = current(key)
                if client is not None:
                    applied = max(applied, client)
        lag += max(end - applied, 0)
    return lag
