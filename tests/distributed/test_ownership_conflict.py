"""Scaling out (docs/design.md#scaling-out): a forced ownership conflict (two replicas reading one
partition) raises on every replica under real mpiexec, before any step is applied."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.kafka_helpers import REPO
from tests.support.mpi import mpi_env, mpiexec_command


def test_two_readers_of_one_partition_stop_every_replica() -> None:
    command = mpiexec_command(2, [sys.executable, "-m", "tests.distributed.ownership_program"])
    out = subprocess.run(
        command, cwd=REPO, env=mpi_env(), capture_output=True, text=True, timeout=180
    )
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["rank"] for r in lines) == [0, 1], out.stdout + out.stderr
    for report in lines:
        assert report["error"] and report["error"].startswith("OwnershipConflict"), report
        assert "t:0: 2" in report["error"], report
        assert report["n_updates"] == 0, report
    assert out.returncode != 0
