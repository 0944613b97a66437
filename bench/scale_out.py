"""Scale-out throughput (issue 11): N replicas under ``mpiexec`` against N = 1 in the same run.

    .venv/bin/python -m bench.scale_out            # ≈ 5 min: in-process source, then Kafka
    .venv/bin/python -m bench.scale_out --no-kafka

(a) A decode-bound in-process source: every replica decodes the JSON records of its
partitions (no broker). (b) End to end from Kafka: a topic of 12 partitions pre-filled with
JSON records, read by the replicated CLI trainer. For each N: the median of ``--repeats``
runs of samples/s, the scaling efficiency T_N / (N · T_1), and the share of a step spent in
the exchange. N above the core count is oversubscribed and labelled so. Then a projection
for N = 8 … 64 on 10 GbE from a ring allreduce model, t(N, S) = 2 (N − 1) α + 2 (N − 1)/N ·
S / β (α = 25 µs per message, β = 1.25 GB/s, S = the exchanged vector's bytes) against the
per-sample cost measured at N = 1. Numbers, not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

from bench.machine import describe

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
ALPHA_SECONDS = 25e-6
BETA_BYTES_PER_SECOND = 1.25e9
KAFKA_FEATURES = 20  # as bench/kafka_e2e.py: ≈ 400-byte JSON records


def mpiexec(n: int, worker_args: list[str]) -> dict[str, Any]:
    """Run the worker on ``n`` ranks; rank 0's JSON line."""
    command = [
        os.path.join(os.path.dirname(sys.executable), "mpiexec"),
        "-n",
        str(n),
        "--with-ft",
        "ulfm",
        "--oversubscribe",
        "--bind-to",
        "none",
        "--mca",
        "btl",
        "tcp,self",
        "--mca",
        "btl_tcp_if_include",
        "lo",
        sys.executable,
        "-m",
        "bench.scale_out_worker",
        *worker_args,
    ]
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env={**os.environ, **MPI_ENV}
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"mpiexec -n {n} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def sweep(sizes: list[int], worker_args: list[str], repeats: int) -> dict[int, dict[str, float]]:
    rows: dict[int, dict[str, float]] = {}
    for n in sizes:
        runs = [mpiexec(n, worker_args) for _ in range(repeats)]
        rates = [r["samples"] / r["seconds"] for r in runs]
        best = runs[rates.index(statistics.median(rates))] if repeats % 2 else runs[0]
        rows[n] = {
            "rate": statistics.median(rates),
            "exchange_share": best["exchange_seconds"] / max(best["seconds"], 1e-9),
            "wait_share": best["wait_seconds"] / max(best["seconds"], 1e-9),
            "step_ms": 1e3 * best["seconds"] / max(best["steps"], 1),
            "exchange_ms": 1e3 * best["exchange_seconds"] / max(best["steps"], 1),
        }
        print(
            f"  N={n}: {rows[n]['rate']:,.0f} samples/s (runs: "
            f"{', '.join(f'{r:,.0f}' for r in rates)})",
            flush=True,
        )
    return rows


def table(title: str, rows: dict[int, dict[str, float]], cores: int) -> str:
    base = rows[min(rows)]["rate"]
    lines = [
        f"### {title}",
        "",
        "| N | samples/s | efficiency T_N/(N·T_1) | ms per step | exchange ms per step "
        "(waiting included) | note |",
        "|---|---|---|---|---|---|",
    ]
    for n, row in rows.items():
        note = f"oversubscribed ({n} ranks on {cores} cores)" if n > cores else ""
        lines.append(
            f"| {n} | {row['rate']:,.0f} | {row['rate'] / (n * base):.2f} | {row['step_ms']:.2f} "
            f"| {row['exchange_ms']:.2f} | {note} |"
        )
    return "\n".join(lines)


def projection(per_sample_seconds: float, batch_size: int) -> str:
    """Efficiency of N replicas on 10 GbE, compute of the replica's share against one
    allreduce: with the global M fixed (share M/N) and with the share fixed (M grows as N)."""
    lines = [
        "### Projection on 10 GbE (ring allreduce model; not measured)",
        "",
        f"Per-sample cost at N = 1: {per_sample_seconds * 1e6:.2f} µs (decode + step); "
        f"share = M/N with M = {batch_size} fixed, or {batch_size} per replica (M = "
        f"{batch_size}·N).",
        "",
        "| N | d = 100: allreduce µs | efficiency, M fixed | share fixed "
        "| d = 2^18: allreduce µs | efficiency, M fixed | share fixed |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in (8, 16, 32, 64):
        cells = []
        for d in (100, 1 << 18):
            size_bytes = 8 * (2 * (d + 1) + 20 + 3 * 12 + n)
            t = 2 * (n - 1) * ALPHA_SECONDS + 2 * (n - 1) / n * size_bytes / BETA_BYTES_PER_SECOND
            strong = per_sample_seconds * batch_size / n
            weak = per_sample_seconds * batch_size
            cells += [f"{t * 1e6:,.0f}", f"{strong / (strong + t):.2f}", f"{weak / (weak + t):.2f}"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale_out",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--records", type=int, default=240_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="1,2,3,4")
    parser.add_argument("--no-kafka", action="store_true")
    args = parser.parse_args(argv)
    print("\n".join(f"* {k}: {v}" for k, v in describe().items()))
    cores = len(os.sched_getaffinity(0))
    sizes = [int(s) for s in args.sizes.split(",")]
    common = ["--records", str(args.records), "--batch-size", str(args.batch_size)]
    print("\n(a) decode-bound in-process source", flush=True)
    memory = sweep(sizes, ["--source", "memory", *common], args.repeats)
    report = [table("(a) Decode-bound in-process source (JSON, d = 100)", memory, cores)]
    if not args.no_kafka:
        report.append(kafka_part(args, [n for n in sizes if n <= max(2, cores)], cores))
    report.append(projection(1.0 / memory[min(memory)]["rate"], args.batch_size))
    report.append(failure_pause(common))
    print("\n" + "\n\n".join(report))
    return 0


def failure_pause(common: list[str]) -> str:
    """The longest gap between two steps when rank 2 of 3 is SIGKILLed at step 20 (the
    survivors detect it, shrink, agree and re-assign), against the longest gap without."""
    rows = []
    for kill in (False, True):
        extra = ["--kill-rank", "2", "--kill-at-step", "20"] if kill else []
        pauses = [
            mpiexec(3, ["--source", "memory", *common, *extra])["longest_pause_seconds"]
            for _ in range(3)
        ]
        rows.append(
            f"| {'rank 2 SIGKILLed at step 20' if kill else 'no failure'} | "
            f"{1e3 * statistics.median(pauses):.0f} |"
        )
    return "\n".join(
        [
            "### A replica killed (N = 3 → 2, in-process source)",
            "",
            "| run | longest gap between two steps, ms (median of 3) |",
            "|---|---|",
            *rows,
        ]
    )


def kafka_part(args: argparse.Namespace, sizes: list[int], cores: int) -> str:
    import numpy as np

    from bench.kafka_e2e import Broker, _producer
    from streamsgd.codec import encode_dense
    from tests.support.kafka_fixtures import create_topic

    print("\n(b) end to end from Kafka", flush=True)
    with Broker() as broker:
        topic = create_topic(broker.bootstrap, 12)
        producer = _producer(broker.bootstrap)
        rng = np.random.default_rng(1)
        for i in range(args.records):
            x = rng.standard_normal(KAFKA_FEATURES)
            producer.send(topic, encode_dense(x, float(x[0] > 0)), partition=i % 12)
        producer.flush(120)
        worker = [
            "--source",
            "kafka",
            "--bootstrap",
            broker.bootstrap,
            "--topic",
            topic,
            "--records",
            str(args.records),
            "--batch-size",
            str(args.batch_size),
            "--n-features",
            str(KAFKA_FEATURES),
        ]
        rows = sweep(sizes, worker, args.repeats)
    return table(
        f"(b) End to end from Kafka (kafka-python, JSON, d = {KAFKA_FEATURES})", rows, cores
    )


if __name__ == "__main__":
    sys.exit(main())
