"""The consumer lag both Kafka sources report (``streamsgd_consumer_lag_records``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..training.buffer import Position


def consumer_lag(
    ends: Mapping[str, int],
    positions: Mapping[str, Position],
    fetched: Mapping[str, int],
    current: Callable[[str], int],
) -> int:
    """Sum over the partitions in ``ends`` of end offset − applied position.

    Parameters
    ----------
    ends : per partition, the offset after its last readable record.
    positions : per partition, the position after the last applied sample.
    fetched : per partition, the offset after the last record the client returned.
    current : the client's position of a partition.
    """
    lag = 0
    for key, end in ends.items():
        position = positions.get(key)
        if position is None:
            applied = current(key)
        else:
            applied = position.offset
            returned = fetched.get(key)
            if returned is None or applied >= returned:
                # Everything the client returned is applied: what lies between the applied
                # position and the client's is what read_committed skips (transaction
                # markers, aborted records), never to be learned. Without this a caught-up
                # trainer on a transactional topic lags 1 for good.
                applied = max(applied, current(key))
        lag += max(end - applied, 0)
    return lag
