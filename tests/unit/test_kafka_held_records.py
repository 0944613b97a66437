"""Records held until the broker confirmed their log (streamsgd/kafka/held_records.py): a record
is returned only after an answer to a question asked after its fetch, a replaced log ends the run
before any held record is returned, and dropped partitions are never returned."""

from __future__ import annotations

import pytest

from streamsgd.kafka.held_records import ANSWER_SLICE_SECONDS, HeldRecords
from streamsgd.kafka.identity import LogIdentity, LogReplacedError
from streamsgd.training.ports import SourceRecord

OLD = LogIdentity("old-id")


class Question:
    """A question whose answer the test sets."""

    def __init__(self) -> None:
        self.answer: LogIdentity | None = None
        self.answered = False

    def done(self) -> bool:
        return self.answered

    def identity(self) -> LogIdentity | None:
        return self.answer

    def reply(self, answer: LogIdentity | None) -> None:
        self.answer, self.answered = answer, True


class Broker:
    """Hands out questions and remembers them; a clock the test moves."""

    def __init__(self) -> None:
        self.questions: list[Question] = []
        self.now = 0.0

    def ask(self) -> Question:
        self.questions.append(Question())
        return self.questions[-1]


def check(identity: LogIdentity) -> None:
    if identity != OLD:
        raise LogReplacedError(f"replaced: {identity}")


def records(partition: str, offsets: range) -> list[SourceRecord]:
    return [SourceRecord(partition, offset, b"") for offset in offsets]


def held_with(broker: Broker) -> HeldRecords:
    return HeldRecords(broker.ask, check, lambda: broker.now, interval_seconds=0.1)


def test_records_wait_for_an_answer_to_a_question_asked_after_their_fetch() -> None:
    broker = Broker()
    held = held_with(broker)
    held.hold(records("t:0", range(0, 3)))
    assert held.release() == []  # asks now
    assert len(broker.questions) == 1
    held.hold(records("t:0", range(3, 5)))  # fetched after the question: not covered by it
    broker.questions[0].reply(OLD)
    broker.now = 0.1
    assert [r.offset for r in held.release()] == [0, 1, 2]
    assert len(broker.questions) == 2  # asked again for offsets 3 and 4
    broker.questions[1].reply(OLD)
    assert [r.offset for r in held.release()] == [3, 4]
    assert len(held) == 0
    assert held.release() == [] and len(broker.questions) == 2  # nothing held: no question


def test_a_new_topic_id_ends_before_any_held_record_is_returned() -> None:
    broker = Broker()
    held = held_with(broker)
    held.hold(records("t:0", range(40, 64)))
    held.release()
    broker.questions[0].reply(LogIdentity("new-id"))
    with pytest.raises(LogReplacedError):
        held.release()


def test_no_answer_keeps_the_records_and_asks_again_after_the_interval() -> None:
    broker = Broker()
    held = held_with(broker)
    held.hold(records("t:0", range(2)))
    held.release()
    broker.questions[0].reply(None)  # the broker did not answer in time
    assert held.release() == [] and len(broker.questions) == 1  # paced
    broker.now = 0.1
    assert held.release() == [] and len(broker.questions) == 2
    broker.questions[1].reply(OLD)
    assert [r.offset for r in held.release()] == [0, 1]


def test_dropped_partitions_are_never_returned_and_the_rest_keep_their_cover() -> None:
    broker = Broker()
    held = held_with(broker)
    held.hold(records("t:0", range(2)) + records("t:1", range(2)))
    held.release()
    held.hold(records("t:1", range(2, 4)))
    held.drop({"t:1"})
    broker.questions[0].reply(OLD)
    assert [(r.partition, r.offset) for r in held.release()] == [("t:0", 0), ("t:0", 1)]
    held.drop()
    assert len(held) == 0


def test_a_synchronous_check_confirms_everything_held() -> None:
    broker = Broker()
    held = held_with(broker)
    held.hold(records("t:0", range(3)))
    held.release()
    assert [r.offset for r in held.confirmed()] == [0, 1, 2]
    held.hold(records("t:0", range(3, 4)))
    broker.questions[0].reply(OLD)  # asked before offset 3 was fetched: covers nothing now
    broker.now = 0.05
    assert held.release() == []


def test_the_consumer_poll_blocks_fully_only_while_nothing_is_held() -> None:
    broker = Broker()
    held = held_with(broker)
    assert held.wait_seconds(1.0) == 1.0
    held.hold(records("t:0", range(1)))
    held.release()
    assert held.wait_seconds(1.0) == ANSWER_SLICE_SECONDS  # an answer is due
    broker.questions[0].reply(None)
    held.release()
    assert held.wait_seconds(1.0) == pytest.approx(0.1)  # the next question's time


def test_full_at_the_hold_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The source pauses fetching while full: answers that fail must not grow memory."""
    monkeypatch.setattr("streamsgd.kafka.held_records.HOLD_LIMIT_RECORDS", 3)
    held = held_with(Broker())
    held.hold(records("t:0", range(2)))
    assert not held.full
    held.hold(records("t:0", range(2, 3)))
    assert held.full
