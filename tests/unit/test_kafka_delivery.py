"""The delivery cursor of the confluent source (streamsgd/kafka/delivery.py): late offset-reset
errors are recognised, and no record is handed out twice under one assignment."""

from __future__ import annotations

from streamsgd.kafka.delivery import DeliveryCursor

NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: "use the committed offset"


def test_a_late_reset_error_after_the_partition_was_placed_and_read_is_stale() -> None:
    """The fault-suite run that learned 48 samples from 32 records: both partitions assigned
    with no committed offset, each placed at 0 by the source, partition 0's second, late
    reset error arriving after its records were handed out."""
    cursor = DeliveryCursor()
    cursor.restart({0: NO_OFFSET, 1: NO_OFFSET})
    assert not cursor.reset_is_stale(1, None)  # the first error: acted on
    cursor.moved(1, 0)
    assert not cursor.reset_is_stale(0, None)
    cursor.moved(0, 0)
    assert all(cursor.accept(0, offset) for offset in range(16))
    assert cursor.reset_is_stale(0, None)  # the late copy
    assert cursor.reset_is_stale(0, NO_OFFSET)
    assert cursor.reset_is_stale(0, 3)  # about an offset already left behind


def test_a_reset_error_at_or_past_the_position_is_current() -> None:
    """Retention deleted the records at the checkpointed position: acting on it is the only
    way on (a partition in this error state fetches nothing more)."""
    cursor = DeliveryCursor()
    cursor.restart({0: 10_000})
    assert not cursor.reset_is_stale(0, 10_000)
    assert all(cursor.accept(0, offset) for offset in range(10_000, 10_005))
    assert not cursor.reset_is_stale(0, 10_005)
    assert not cursor.reset_is_stale(2, None)  # a partition the cursor does not know


def test_records_fetched_again_after_a_reposition_are_handed_out_once() -> None:
    cursor = DeliveryCursor()
    cursor.restart({0: NO_OFFSET})
    handed = [offset for offset in [0, 1, 2, 3] if cursor.accept(0, offset)]
    handed += [offset for offset in [0, 1, 2, 3, 4, 5] if cursor.accept(0, offset)]
    assert handed == [0, 1, 2, 3, 4, 5]


def test_a_new_assignment_hands_out_from_its_start_again() -> None:
    """A rebalance gives a partition back at the trainer's position, behind what was handed
    out (the buffered samples were discarded): those records are read again, on purpose."""
    cursor = DeliveryCursor()
    cursor.restart({0: 0})
    assert all(cursor.accept(0, offset) for offset in range(20))
    cursor.restart({0: 16})
    assert [offset for offset in range(16, 22) if cursor.accept(0, offset)] == list(range(16, 22))


def test_gaps_are_records_not_duplicates() -> None:
    """Transaction markers and compaction leave gaps in the offsets."""
    cursor = DeliveryCursor()
    cursor.restart({0: 0})
    assert [offset for offset in [0, 1, 3, 7, 8] if cursor.accept(0, offset)] == [0, 1, 3, 7, 8]
    assert not cursor.accept(0, 7)
