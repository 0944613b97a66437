"""A replica loop over :class:`streamsgd.distributed.mpi.MpiCollective` that the distributed tests
run under ``mpiexec``: one broadcast of an object, then one allreduce per step, with faults
injected on command. Every process (the replacements too) appends its events as JSON lines to
``<out>/pid-<pid>.jsonl``.

Member ``rank`` contributes ``(rank + 1) * arange(length) + step`` (integers, exact in
float64); the test computes the expected sum from the logged size and compares digests.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamsgd.distributed.collective import CollectiveTimeout, ReplicaFailure
from streamsgd.distributed.mpi import MpiCollective, world_rank_and_size

HANG_REPORT_SECONDS = 60
GREETING = {"text": "state from rank 0", "values": [1.5, 2.5], "nested": {"k": (1, 2)}}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--length", type=int, default=1000, help="allreduce buffer length")
    parser.add_argument("--kill-rank", type=int, default=-1, help="world rank that SIGKILLs itself")
    parser.add_argument("--kill-at", type=int, default=5, help="... before this step")
    parser.add_argument("--kill-replacement-at", type=int, default=-1, help="... a replacement")
    parser.add_argument("--revoke-rank", type=int, default=-1, help="world rank that revokes")
    parser.add_argument("--revoke-at", type=int, default=3)
    parser.add_argument("--hang-rank", type=int, default=-1, help="world rank that stops")
    parser.add_argument("--hang-at", type=int, default=3)
    parser.add_argument("--orphan-at", type=int, default=-1, help="wait here until unsupervised")
    parser.add_argument("--respawn", action="store_true")
    parser.add_argument("--timeout", type=float, default=60.0)
    return parser.parse_args(argv)


class Log:
    def __init__(self, out: Path, collective: MpiCollective) -> None:
        self.path = out / f"pid-{os.getpid()}.jsonl"
        self.collective = collective

    def __call__(self, event: str, **fields: Any) -> None:
        c = self.collective
        record = {"event": event, "time": time.time(), "pid": os.getpid()}
        record |= {"rank": c.rank, "size": c.size}
        record |= {"slot": c.slot, "joined": c.joined, "changes": c.membership_changes}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record | fields) + "\n")


def main() -> None:
    args = parse(sys.argv[1:])
    # A hang shows where each process is, in mpiexec's output (the test prints it).
    faulthandler.dump_traceback_later(HANG_REPORT_SECONDS, exit=False)
    collective = MpiCollective(
        timeout_seconds=args.timeout,
        respawn=args.respawn,
        spawn_argv=[sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
    )
    world_rank, world_size = world_rank_and_size()
    replacement = collective.joined
    log = Log(args.out, collective)
    log("start", replacement=replacement, world_rank=world_rank, world_size=world_size)
    if replacement:
        step = joined_at = collective.broadcast(None)["step"]
        log("state", step=step)
    else:
        received = collective.broadcast(GREETING if collective.rank == 0 else None)
        log("greeting", value=received)
        step = joined_at = 0
    revoked = False
    while step < args.steps:
        if not replacement:
            inject_faults(args, world_rank, step, collective, log)
        elif step == args.kill_replacement_at and joined_at < step:  # not its replacement
            log("kill", step=step)
            os.kill(os.getpid(), signal.SIGKILL)
        contribution = (collective.rank + 1) * np.arange(args.length, dtype=np.float64) + step
        try:
            if world_rank == args.revoke_rank and step == args.revoke_at and not revoked:
                # Instead of this step's allreduce, which the others are waiting in.
                revoked = True
                log("revoke", step=step)
                collective._comm.Revoke()
            total = collective.allreduce_sum(contribution)
        except ReplicaFailure as failure:
            log("failure", step=step, error=str(failure))
            step = recover(collective, step)
            log("recovered", step=step)
            continue
        except CollectiveTimeout as timeout:
            log("timeout", step=step, error=str(timeout))
            (args.out / f"timeout-{os.getpid()}").touch()
            sys.exit(3)
        digest = hashlib.sha256(total.tobytes()).hexdigest()
        log("step", step=step, head=total[:3].tolist(), digest=digest)
        step += 1
    log("done", step=step)
    collective.close()


def inject_faults(
    args: argparse.Namespace, world_rank: int, step: int, collective: MpiCollective, log: Log
) -> None:
    if world_rank == args.kill_rank and step == args.kill_at:
        log("kill", step=step)
        os.kill(os.getpid(), signal.SIGKILL)
    if world_rank == args.hang_rank and step == args.hang_at:
        # The fault: alive, but no part in the collective until the others gave up (bounded).
        deadline = time.monotonic() + 300
        while len(list(args.out.glob("timeout-*"))) < collective.size - 1:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        log("hung", step=step)
        sys.exit(0)
    if step == args.orphan_at:
        log("waiting", step=step)
        while collective.supervised():
            time.sleep(0.05)
        log("unsupervised", step=step)
        sys.exit(0)


def recover(collective: MpiCollective, step: int) -> int:
    """Recover until it succeeds, then take rank 0's step (the replacements receive it)."""
    while True:
        try:
            collective.recover()
            state = collective.broadcast({"step": step} if collective.rank == 0 else None)
            return int(state["step"])
        except ReplicaFailure:
            continue


if __name__ == "__main__":
    main()
