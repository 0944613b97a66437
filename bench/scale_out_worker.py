"""One replica of the scale-out benchmark (run by ``bench/scale_out.py`` under ``mpiexec``).

``--source memory``: a decode-bound in-process source — each replica holds pre-encoded JSON
records of its own partitions and decodes them (no broker). ``--source kafka``: the CLI's
replicated trainer on a pre-filled topic, ``--max-samples`` the topic's size. Rank 0 prints
one JSON line: samples, the seconds from the first step to the last, steps, and the total
time the replicas spent in the step's exchange.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import numpy as np

from streamsgd import OnlineLogisticRegression
from streamsgd.codec import Decoder, encode_dense
from streamsgd.distributed.collective_stepper import CollectiveStepper
from streamsgd.distributed.replicated import replicated_trainer
from streamsgd.training.buffer import Position
from streamsgd.training.ports import Sensor, SourceRecord
from streamsgd.training.trainer import ServiceConfig, Trainer


class Timing(Sensor):
    """The first and last step's times and the exchange times."""

    def __init__(self, kill_at_step: int = 0) -> None:
        self.kill_at_step = kill_at_step  # this replica SIGKILLs itself after that step
        self.longest_gap = 0.0  # the longest time between two steps (the pause a kill costs)
        self.first: float | None = None
        self.last = 0.0
        self.exchange_seconds = 0.0
        self.wait_seconds = 0.0
        self.steps = 0

    def collective_step(
        self, global_step: int, allreduce_seconds: float, wait_seconds: float
    ) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        else:
            self.longest_gap = max(self.longest_gap, now - self.last)
        self.last = now
        if self.kill_at_step and global_step >= self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        self.exchange_seconds += allreduce_seconds
        self.wait_seconds += wait_seconds
        self.steps += 1


class EncodedPartitions:
    """JSON records of ``n_partitions`` partitions, generated per partition from a seed, so
    each replica builds only its own; polls decode like a Kafka poll (``per_poll`` each)."""

    def __init__(
        self, n_partitions: int, per_partition: int, n_features: int, per_poll: int
    ) -> None:
        self.names = [f"bench:{p}" for p in range(n_partitions)]
        self.per_partition, self.n_features, self.per_poll = per_partition, n_features, per_poll
        self.values: dict[str, list[bytes]] = {}
        self.next: dict[str, int] = {}

    def _values(self, name: str) -> list[bytes]:
        if name not in self.values:
            rng = np.random.default_rng(int(name.rpartition(":")[2]))
            X = rng.standard_normal((self.per_partition, self.n_features))
            y = (X[:, 0] + 0.5 * rng.standard_normal(self.per_partition) > 0).astype(float)
            self.values[name] = [encode_dense(x, label) for x, label in zip(X, y, strict=True)]
        return self.values[name]

    def partitions(self, timeout_seconds: float) -> list[str]:
        return list(self.names)

    def encode_all(self) -> None:
        """Encode every partition now (a failure run: taking over the dead replica's
        partitions must not pay for encoding them inside the measured pause)."""
        for name in self.names:
            self._values(name)

    def assign(self, keys: list[str], positions: dict[str, Position]) -> dict[str, Position]:
        self.next = {k: positions[k].offset if k in positions else 0 for k in keys}
        for k in keys:
            self._values(k)
        return {k: Position(self.next[k]) for k in keys}

    def poll(self, timeout_seconds: float) -> list[SourceRecord]:
        records = []
        for name, start in self.next.items():
            chunk = self.values[name][start : start + self.per_poll]
            records += [SourceRecord(name, start + i, value=v) for i, v in enumerate(chunk)]
            self.next[name] = start + len(chunk)
        return records

    @property
    def exhausted(self) -> bool:
        return all(n >= self.per_partition for n in self.next.values())

    ready = True

    def seek(self, positions: dict[str, Position]) -> None: ...

    def commit(self, positions: dict[str, Position]) -> None: ...

    def close(self) -> None: ...


def _memory(args: argparse.Namespace, collective: object, timing: Timing) -> Trainer:
    """The replica on the in-process source (every partition encoded up front in a failure
    run)."""
    source = EncodedPartitions(
        args.partitions, args.records // args.partitions, args.n_features, 500
    )
    if args.kill_rank >= 0:
        source.encode_all()
    return replicated_trainer(
        OnlineLogisticRegression(args.n_features, learning_rate=0.1),
        source,  # type: ignore[arg-type]
        Decoder(args.n_features),
        ServiceConfig(
            batch_size=args.batch_size, max_wait_seconds=0.5, checkpoint_interval_seconds=1e9
        ),
        collective=collective,  # type: ignore[arg-type]
        sensors=[timing],
    )


def _kafka(args: argparse.Namespace, timing: Timing) -> Trainer:
    from streamsgd.cli.build import build_service
    from streamsgd.config import train_config

    config = train_config(
        source="kafka",
        bootstrap_servers=args.bootstrap,
        topic=args.topic,
        group_id=args.topic,
        n_features=args.n_features,
        batch_size=args.batch_size,
        max_samples=args.records,
        max_wait_ms=500,
        distributed="mpi",
        kafka_client=args.kafka_client,
        progress="never",
        log_interval_seconds=0,
        log_level="WARNING",
    )
    service, _ = build_service(config, sensors=[timing], metrics=False)
    assert isinstance(service.stepper, CollectiveStepper)
    return service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", choices=("memory", "kafka"), default="memory")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--n-features", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--topic", default="")
    parser.add_argument("--kafka-client", default="kafka-python")
    parser.add_argument("--kill-rank", type=int, default=-1)
    parser.add_argument("--kill-at-step", type=int, default=0)
    args = parser.parse_args(argv)
    from streamsgd.distributed.mpi import world_rank_and_size

    rank, _ = world_rank_and_size()
    timing = Timing(args.kill_at_step if rank == args.kill_rank else 0)
    if args.source == "memory":
        from streamsgd.distributed.mpi import MpiCollective

        collective = MpiCollective(timeout_seconds=120)
        service = _memory(args, collective, timing)
    else:
        service = _kafka(args, timing)
    service.run()
    stepper = service.stepper
    assert isinstance(stepper, CollectiveStepper)
    collective = stepper.collective
    if collective.rank == 0:
        seconds = timing.last - (timing.first or timing.last)
        print(
            json.dumps(
                {
                    "n": collective.size,
                    "samples": service.model.n_samples_seen,
                    "seconds": seconds,
                    "steps": timing.steps,
                    "exchange_seconds": timing.exchange_seconds,
                    "wait_seconds": timing.wait_seconds,
                    "longest_pause_seconds": timing.longest_gap,
                }
            ),
            flush=True,
        )
    collective.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
