"""Issue 17's targets in one table, each against its peer measured in the same process.

    .venv/bin/python -m bench.targets --quick    # ≈ 1–2 min on the 2-core benchmark machine
    .venv/bin/python -m bench.targets --full     # more samples and repeats

Every figure is process CPU time (the machine is shared), the median of ``--repeats`` runs
(≥ 3); every ratio is taken between two systems measured in this run. Rows:

* m = 256 dense d = 100 ``learn_batch`` against River ``learn_many`` (DataFrames built
  outside River's timer), and the statistics cost at m = 256 (gradient_statistics on against
  off, interleaved, median of ≥ 7 pairs of 1 − t_off/t_on);
* m = 1 dense d = 100 and m = 1 sparse (2^18 buckets, 21 non-zeros a row)
  ``streamsgd.core.sequential.learn_sequence`` against River ``learn_one`` on dicts; the
  number of samples of a slow system is cut so that a run takes about a second;
* named features through the CLI against Vowpal Wabbit: measured by
  ``bench/named_features.py`` when that module exists (its ``targets(quick)`` rows, or its
  ``main(["--quick"])`` report); "not measured" otherwise;
* Kafka (JSON d = 20, m = 32, confluent against kafka-python + River): a local broker and
  fresh processes take longer than the quick budget: ``--kafka`` (and ``bench.all --full``)
  run ``bench.kafka_e2e``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from bench import data, machine, systems
from bench.run import DENSE_M1
from streamsgd import OnlineLogisticRegression, SparseRows

Row = tuple[str, str, str, str]  # target, measured, required, verdict
MODES = {
    "quick": {"n_dense": 100_000, "n_m1": 60_000, "n_river_one": 15_000, "seconds": 0.6},
    "full": {"n_dense": 400_000, "n_m1": 300_000, "n_river_one": 50_000, "seconds": 2.0},
}
SPARSE_BITS, SPARSE_NNZ = 18, 21
SPARSE_M1: dict[str, Any] = {"optimizer": "adagrad", "learning_rate": 0.1}


def _cpu(fn: Callable[[], None]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _rate(fn: Callable[[int], None], n_max: int, seconds: float, repeats: int) -> float:
    """Samples per CPU-second of ``fn(n)`` (learns the first n samples from scratch): n is cut
    from ``n_max`` so that one run takes about ``seconds``; the median of ``repeats`` runs."""
    n = min(n_max, 256)
    elapsed = _cpu(lambda: fn(n))
    if elapsed < seconds and n < n_max:
        n = min(n_max, max(n, int(n * seconds / max(elapsed, 1e-4))))
    times = [_cpu(lambda: fn(n)) for _ in range(repeats)]
    return n / statistics.median(times)


def _verdict(value: float, required: float) -> str:
    if not math.isfinite(value):
        return "not measured"
    return "met" if value >= required else "MISSED"


def _sparse_rows(n: int, seed: int) -> tuple[SparseRows, np.ndarray]:
    """21 buckets a row out of 2^18 (values 1, categorical), labels from a random model."""
    rng = np.random.default_rng(seed)
    d = 1 << SPARSE_BITS
    indices = rng.integers(0, d, (n, SPARSE_NNZ)).astype(np.int64)
    w = rng.normal(0.0, 0.5, d)
    z = w[indices].sum(axis=1) - 0.5
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(float)
    indptr = np.arange(0, n * SPARSE_NNZ + 1, SPARSE_NNZ, dtype=np.int64)
    return SparseRows(indptr, indices.reshape(-1), np.ones(n * SPARSE_NNZ), d), y


class Targets:
    """Runs the measurements and collects the rows and the peers' absolute figures."""

    def __init__(self, mode: str, repeats: int, log: Callable[[str], None]) -> None:
        self.sizes = MODES[mode]
        self.quick = mode == "quick"
        self.repeats = repeats
        self.log = log
        self.rows: list[Row] = []
        self.rates: list[tuple[str, float]] = []

    def _rates(self, name: str, value: float) -> float:
        self.rates.append((name, value))
        self.log(f"  {name}: {value:,.0f} samples/s")
        return value

    def dense_minibatch(self, X: np.ndarray, y: np.ndarray) -> None:
        r = self.repeats
        ours = self._rates(
            "streamsgd learn_batch m=256 d=100",
            systems.streamsgd_batches(X, y, 256, r).samples_per_s,
        )
        river = self._rates(
            "River learn_many m=256 d=100", systems.river_learn_many(X, y, 256, r).samples_per_s
        )
        ratio = ours / river
        self.rows.append(
            (
                "m = 256 dense d = 100 learn_batch vs River learn_many",
                f"{ratio:.1f}×",
                "≥ 10×",
                _verdict(ratio, 10.0),
            )
        )

    def statistics_cost(self, X: np.ndarray, y: np.ndarray) -> None:
        """1 − t_off/t_on over interleaved pairs (a change of load hits both sides alike)."""
        costs = []
        for _ in range(max(7, self.repeats)):
            on = systems.streamsgd_batches(X, y, 256, 1).seconds[0][1]
            off = systems.streamsgd_batches(X, y, 256, 1, gradient_statistics=False).seconds[0][1]
            costs.append(1.0 - off / on)
        cost = statistics.median(costs)
        self.log(f"  statistics cost pairs: {', '.join(f'{100 * c:.1f} %' for c in costs)}")
        self.rows.append(
            (
                "statistics cost at m = 256 (d = 100)",
                f"{100 * cost:.1f} %",
                "≤ 10 %",
                "met" if cost <= 0.10 else "MISSED",
            )
        )

    def dense_single(self, X: np.ndarray, y: np.ndarray) -> None:
        from streamsgd.core.sequential import learn_sequence

        def ours(n: int) -> None:
            model = OnlineLogisticRegression(X.shape[1], **DENSE_M1)
            for lo in range(0, n, 1024):
                learn_sequence(model, X[lo : min(lo + 1024, n)], y[lo : min(lo + 1024, n)])

        s = self.sizes
        mine = self._rates(
            "streamsgd learn_sequence m=1 dense d=100",
            _rate(ours, s["n_m1"], s["seconds"], self.repeats),
        )
        n_river = s["n_river_one"]
        river = self._rates(
            "River learn_one dense d=100",
            systems.river_learn_one(X[:n_river], y[:n_river], self.repeats).samples_per_s,
        )
        ratio = mine / river
        self.rows.append(
            (
                "m = 1 dense d = 100 learn_sequence vs River learn_one",
                f"{ratio:.1f}×",
                "≥ 10×",
                _verdict(ratio, 10.0),
            )
        )

    def sparse_single(self) -> None:
        from streamsgd.core.sequential import learn_sequence

        s = self.sizes
        X, y = _sparse_rows(s["n_m1"], seed=1)

        def ours(n: int) -> None:
            model = OnlineLogisticRegression(X.n_features, **SPARSE_M1)
            for lo in range(0, n, 1024):
                hi = min(lo + 1024, n)
                learn_sequence(model, X.slice_rows(lo, hi), y[lo:hi])

        mine = self._rates(
            "streamsgd learn_sequence m=1 sparse 2^18, 21 nnz (AdaGrad)",
            _rate(ours, s["n_m1"], s["seconds"], self.repeats),
        )
        n_river = s["n_river_one"]
        river = self._rates(
            "River learn_one sparse dicts, 21 keys",
            systems.river_learn_one(
                X.slice_rows(0, n_river), y[:n_river], self.repeats
            ).samples_per_s,
        )
        ratio = mine / river
        self.rows.append(
            (
                "m = 1 sparse learn_sequence, 2^18 buckets, 21 nnz",
                f"{mine / 1e6:.2f} M/s" if mine >= 1e4 else f"{mine:,.0f} /s",
                "≥ 1 M/s",
                _verdict(mine, 1e6),
            )
        )
        self.rows.append(
            ("  … vs River learn_one on dicts", f"{ratio:.1f}×", "≥ 20×", _verdict(ratio, 20.0))
        )

    def named_features(self) -> None:
        """The rows of bench/named_features.py (another engineer's module) when it exists."""
        names = (
            ("m = 1 hashed named features via the CLI vs VW native", "≥ 1× (and ≥ 3× pyvw)"),
            ("m = 32 hashed named features via the CLI vs VW native", "≥ 1.5×"),
        )
        if importlib.util.find_spec("bench.named_features") is None:
            for name, required in names:
                self.rows.append((name, "–", required, "not measured (no bench/named_features.py)"))
            return
        try:
            module = importlib.import_module("bench.named_features")
            if hasattr(module, "targets"):
                self.rows.extend(module.targets(quick=self.quick))
                return
            code = module.main(["--quick"] if self.quick else [])
        except Exception as error:  # another engineer's module, in whatever state
            code = f"{type(error).__name__}: {error}"[:100]
        for name, required in names:
            note = "see bench.named_features' report above" if code == 0 else f"failed ({code})"
            self.rows.append((name, "(above)", required, note))

    def kafka(self, bootstrap: str | None) -> None:
        """JSON d = 20: the service at m = 32 with confluent-kafka against the hand-written
        kafka-python + json.loads + River learn_one loop (bench.kafka_e2e's runners, each
        run in a fresh process; samples/s from the first record, median of the runs); then
        named features at m = 1 and m = 32 against the same loop with VW."""
        from bench import kafka_e2e as k

        n = 30_000 if self.quick else 100_000

        def measure(address: str) -> None:
            topic = f"bench-targets-{uuid.uuid4().hex[:8]}"
            k.fill_json(address, topic, n, 0)
            runs: dict[str, list[float]] = {"ours": [], "loop": []}
            for _ in range(self.repeats):
                ours = k._in_fresh_process(k.run_streamsgd, address, topic, n, 20, 32, "confluent")
                loop = k._in_fresh_process(k.run_baseline, address, topic, n)
                runs["ours"].append(ours["from_first_record"])
                runs["loop"].append(loop["from_first_record"])
            mine = self._rates(
                "streamsgd service confluent JSON d=20 m=32 (wall)", statistics.median(runs["ours"])
            )
            loop = self._rates(
                "kafka-python + json.loads + River learn_one (wall)",
                statistics.median(runs["loop"]),
            )
            ratio = mine / loop
            self.rows.append(
                (
                    "Kafka JSON d = 20, m = 32, confluent vs kafka-python + River loop",
                    f"{ratio:.1f}×",
                    "≥ 3.5×",
                    _verdict(ratio, 3.5),
                )
            )
            named(address)

        def named(address: str) -> None:
            """Named features (20 string fields, 2^18 buckets) through the service at m = 1
            and m = 32 against the same Kafka loop with VW (bench.kafka_e2e.run_vw_loop)."""
            topic = f"bench-targets-named-{uuid.uuid4().hex[:8]}"
            k.fill_named(address, topic, n, 0)
            runs: dict[str, list[float]] = {"m1": [], "m32": [], "vw": []}
            for _ in range(self.repeats):
                for m in (1, 32):
                    ours = k._in_fresh_process(
                        k.run_streamsgd, address, topic, n, 1 << 18, m, "confluent", 18
                    )
                    runs[f"m{m}"].append(ours["from_first_record"])
                vw_run = k._in_fresh_process(k.run_vw_loop, address, topic, n)
                runs["vw"].append(vw_run["from_first_record"])
            vw = self._rates(
                "kafka-python + json.loads + VW pyvw learn, named (wall)",
                statistics.median(runs["vw"]),
            )
            for m in (1, 32):
                mine = self._rates(
                    f"streamsgd service confluent named m={m} (wall)",
                    statistics.median(runs[f"m{m}"]),
                )
                self.rows.append(
                    (
                        f"named features through Kafka, m = {m}, vs the same loop with VW",
                        f"{mine / vw:.2f}×",
                        "state the ratio",
                        "measured",
                    )
                )

        try:
            if bootstrap:
                measure(bootstrap)
            else:
                with k.Broker() as broker:
                    measure(broker.bootstrap)
        except Exception as error:  # a row that could not run is reported, not fatal
            self.rows.append(
                (
                    "Kafka JSON d = 20, m = 32, confluent vs kafka-python + River loop",
                    "–",
                    "≥ 3.5×",
                    f"failed to run: {type(error).__name__}: {error}"[:120],
                )
            )

    def kafka_not_run(self) -> None:
        self.rows.append(
            (
                "Kafka JSON d = 20, m = 32, confluent vs kafka-python + River loop",
                "–",
                "≥ 3.5×",
                "not measured (--kafka, or bench.all --full)",
            )
        )
        self.rows.append(
            (
                "named features through Kafka, m = 1 and m = 32, vs the same loop with VW",
                "–",
                "state the ratio",
                "not measured (--kafka, or bench.all --full)",
            )
        )


def render(t: Targets, info: dict[str, str], wall: float) -> str:
    lines = ["## Issue 17 targets (bench.targets)", ""]
    lines += [f"* {k}: {v}" for k, v in info.items()]
    lines += [f"* clock: process CPU time, median of {t.repeats} runs; wall time {wall:.0f} s", ""]
    lines += ["| target | measured | required | verdict |", "|---|---:|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in t.rows]
    lines += ["", "| system | samples/s (CPU; Kafka rows wall) |", "|---|---:|"]
    lines += [f"| {name} | {value:,.0f} |" for name, value in t.rates]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.targets", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick")
    mode.add_argument("--full", action="store_const", dest="mode", const="full")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-named", action="store_true", help="skip bench.named_features")
    parser.add_argument("--kafka", action="store_true", help="also the Kafka row (a broker)")
    parser.add_argument("--bootstrap", help="the Kafka row on this broker (else one is started)")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be >= 3 (medians of at least 3 runs)")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    targets = Targets(args.mode or "quick", args.repeats, log)
    with threadpool_limits(1):  # one core per learner, as in bench.run
        dense = data.dense_stream(targets.sizes["n_dense"], 0)
        log("m = 256 dense, statistics cost …")
        targets.dense_minibatch(dense.X, dense.y)
        targets.statistics_cost(dense.X, dense.y)
        log("m = 1 dense and sparse …")
        targets.dense_single(dense.X, dense.y)
        targets.sparse_single()
    if not args.no_named:
        log("named features (bench.named_features) …")
        targets.named_features()
    if args.kafka or args.bootstrap:
        log("Kafka (bench.kafka_e2e runners) …")
        targets.kafka(args.bootstrap)
    else:
        targets.kafka_not_run()
    print(render(targets, machine.describe(), time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
