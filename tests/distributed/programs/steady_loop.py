"""One allreduce every 50 ms over :class:`streamsgd.distributed.mpi.MpiCollective` until a member
fails or hangs (then exit 1): the replicas of the multi-host tests. Each process appends
``{"rank", "pid", "step"}`` lines to ``<out>/pid-<pid>.jsonl`` every 10 steps."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from streamsgd.distributed.collective import CollectiveTimeout, ReplicaFailure
from streamsgd.distributed.mpi import MpiCollective


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    collective = MpiCollective(timeout_seconds=args.timeout)
    path = args.out / f"pid-{os.getpid()}.jsonl"
    step = 0
    try:
        while True:
            if step % 10 == 0:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(
                        json.dumps({"rank": collective.rank, "pid": os.getpid(), "step": step})
                        + "\n"
                    )
            collective.allreduce_sum(np.ones(16))
            step += 1
            time.sleep(0.05)
    except (CollectiveTimeout, ReplicaFailure) as exc:
        print(f"rank {collective.rank} stops at step {step}: {exc}", flush=True)
        os._exit(1)  # no Finalize: a member is gone (streamsgd/distributed/mpi.py, Exit)


if __name__ == "__main__":
    main()
