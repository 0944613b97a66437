"""What holding records until the broker confirms their log costs the confluent trainer
(issue 21: a topic recreated between two of librdkafka's metadata refreshes; see
streamsgd/kafka/held_records.py).

    .venv/bin/python -m bench.held_records                  # 300 k JSON records, 5 rounds
    .venv/bin/python -m bench.held_records --bootstrap 127.0.0.1:9092 --records 1000000

Method: one pre-filled JSON topic (one partition, d = 20); each round runs the streamsgd
service with ``--kafka-client confluent`` at m = 256 twice, in fresh interpreters, in
alternating order: as built (records held until a topic-id answer asked after their fetch)
and with the holding replaced by a pass-through (the data path before the change; the
synchronous check every lag interval stays in both). Reports the median rates of each over
the rounds and the median of the per-round ratios (held / pass-through): the cost in
throughput, tail latency included (the last records wait for one more answer).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from typing import Any

from bench import machine
from bench.kafka_e2e import Broker, _in_fresh_process, fill_json, run_streamsgd


class _PassThrough:
    """HeldRecords without the holding: every record returned at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._held: list[Any] = []

    full = False

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, records: Any) -> None:
        self._held.extend(records)

    def release(self) -> list[Any]:
        released, self._held = self._held, []
        return released

    confirmed = release

    def drop(self, partitions: Any = None) -> None:
        self._held = []

    def wait_seconds(self, timeout_seconds: float) -> float:
        return timeout_seconds


def run_passing_through(*args: Any) -> dict[str, float]:
    """:func:`bench.kafka_e2e.run_streamsgd` with the confluent source's holding disabled."""
    import streamsgd.kafka.confluent as confluent

    confluent.HeldRecords = _PassThrough  # type: ignore[misc,assignment]
    return run_streamsgd(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.held_records", description=__doc__)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    def bench(bootstrap: str) -> None:
        topic = f"bench-held-{uuid.uuid4().hex[:8]}"
        fill_json(bootstrap, topic, args.records, 0)
        case = (bootstrap, topic, args.records, 20, 256, "confluent")
        held: list[float] = []
        passing: list[float] = []
        for round_ in range(args.rounds):
            order = [True, False] if round_ % 2 == 0 else [False, True]
            for holding in order:
                fn = run_streamsgd if holding else run_passing_through
                rate = _in_fresh_process(fn, *case)["from_first_record"]
                (held if holding else passing).append(rate)
            print(
                f"round {round_}: held {held[-1]:,.0f}, pass-through {passing[-1]:,.0f} samples/s",
                file=sys.stderr,
                flush=True,
            )
        ratios = [h / p for h, p in zip(held, passing, strict=True)]
        print("\n".join(f"* {k}: {v}" for k, v in machine.describe().items()))
        print(f"* {args.records:,} JSON records, d = 20, m = 256, {args.rounds} rounds")
        print(f"* held (as built): median {statistics.median(held):,.0f} samples/s")
        print(f"* pass-through: median {statistics.median(passing):,.0f} samples/s")
        print(
            f"* ratio held / pass-through: median {statistics.median(ratios):.3f} "
            f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
        )

    if args.bootstrap:
        bench(args.bootstrap)
    else:
        with Broker() as broker:
            bench(broker.bootstrap)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
