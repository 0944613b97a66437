"""The MPI adapter's collective costs (issue 11): allreduce latency of ``MpiCollective``'s
polling wait against a plain blocking ``Allreduce``, the CPU a rank burns while it waits for a
late peer, and the time from a SIGKILL to recovered (shrink, and respawn).

    .venv/bin/python -m bench.mpi_collective            # every row, ≈ 1 min
    .venv/bin/python -m bench.mpi_collective --quick    # fewer iterations

Loopback TCP on one host; N = 3 is oversubscribed on a 2-core machine. Latency: rank 0's wall
time per call over a loop of back-to-back calls (mean). Waiting CPU: every other rank sleeps
``SKEW`` before each call, and rank 0's CPU time per call is what its wait cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.support.mpi import mpi_env, mpiexec_command

SKEW_SECONDS = 0.02
REPLICA = Path(__file__).resolve().parents[1] / "tests" / "distributed" / "programs" / "replica.py"


def rank_main(nbytes: int, iterations: int, method: str, skew_seconds: float) -> None:
    """One rank of a latency run; rank 0 prints a JSON line."""
    import streamsgd.distributed.mpi
    from streamsgd.distributed.mpi import MpiCollective, _mpi

    for name in ("SPIN_SECONDS", "MAX_SLEEP_SECONDS"):  # experiments: --rank ... with env
        if value := os.environ.get(f"STREAMSGD_MPI_{name}"):
            setattr(streamsgd.distributed.mpi, name, float(value))
    MPI = _mpi()
    collective = MpiCollective(timeout_seconds=120)
    comm = MPI.COMM_WORLD
    buffer = np.ones(nbytes // 8)
    out = np.empty_like(buffer)

    def call() -> None:
        if method == "poll":
            collective.allreduce_sum(buffer)
        else:
            comm.Allreduce(buffer, out, op=MPI.SUM)

    for _ in range(max(10, iterations // 10)):
        call()
    comm.Barrier()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        if skew_seconds and comm.Get_rank() != 0:
            time.sleep(skew_seconds)
        call()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if comm.Get_rank() == 0:
        print(json.dumps({"wall": wall / iterations, "cpu": cpu / iterations}), flush=True)
    collective.close()


def _run(n: int, argv: list[str]) -> dict[str, float]:
    command = mpiexec_command(n, [sys.executable, "-m", "bench.mpi_collective", *argv])
    done = subprocess.run(command, env=mpi_env(), capture_output=True, text=True, timeout=600)
    line = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode or not line:
        raise RuntimeError(f"{command} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(line[0])


def _recovery(n: int, respawn: bool, repeats: int) -> list[float]:
    """Seconds from the victim's last log line before its SIGKILL to the survivors' recovered
    line (the later of the two survivors)."""
    seconds = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            argv = [sys.executable, str(REPLICA), "--out", out, "--steps", "12"]
            argv += ["--kill-rank", "1", "--kill-at", "6", *(["--respawn"] if respawn else [])]
            subprocess.run(mpiexec_command(n, argv), env=mpi_env(), timeout=120, check=True)
            records = [json.loads(line) for p in Path(out).glob("pid-*.jsonl") for line in p.open()]
            killed = max(r["time"] for r in records if r["event"] == "kill")
            recovered = max(r["time"] for r in records if r["event"] == "recovered")
            seconds.append(recovered - killed)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mpi_collective")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rank", nargs=4, metavar=("BYTES", "ITERATIONS", "METHOD", "SKEW"))
    args = parser.parse_args()
    if args.rank:
        nbytes, iterations, method, skew = args.rank
        rank_main(int(nbytes), int(iterations), method, float(skew))
        return
    scale = 0.2 if args.quick else 1.0
    repeats = 2 if args.quick else 5
    print(f"Median of {repeats} interleaved runs per cell (the machine is shared).\n")
    print(
        "| N | buffer | blocking Allreduce | MpiCollective | rank 0's CPU per call, "
        f"the others {SKEW_SECONDS * 1e3:.0f} ms late: blocking / MpiCollective |"
    )
    print("|---|---|---|---|---|")
    for n in (2, 3):
        for nbytes, iterations in ((8 * 1024, 2000), (2 * 1024 * 1024, 100)):
            its = str(max(20, int(iterations * scale)))
            runs: dict[tuple[str, str], list[float]] = {}
            for _ in range(repeats):
                for method in ("blocking", "poll"):
                    wall = _run(n, ["--rank", str(nbytes), its, method, "0"])["wall"]
                    cpu = _run(n, ["--rank", str(nbytes), "40", method, str(SKEW_SECONDS)])["cpu"]
                    runs.setdefault((method, "wall"), []).append(wall)
                    runs.setdefault((method, "cpu"), []).append(cpu)
            ms = {key: statistics.median(values) * 1e3 for key, values in runs.items()}
            print(
                f"| {n} | {nbytes // 1024} KB | {ms['blocking', 'wall']:.3f} ms | "
                f"{ms['poll', 'wall']:.3f} ms | "
                f"{ms['blocking', 'cpu']:.1f} / {ms['poll', 'cpu']:.1f} ms |"
            )
    for respawn in (False, True):
        seconds = _recovery(3, respawn, repeats)
        print(
            f"SIGKILL → recovered at N = 3{' with respawn' if respawn else ''}: median "
            f"{statistics.median(seconds) * 1e3:.0f} ms, range "
            f"{min(seconds) * 1e3:.0f}–{max(seconds) * 1e3:.0f} ms ({repeats} runs)"
        )


if __name__ == "__main__":
    main()
