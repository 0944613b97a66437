"""A replicated training job whose ranks live on two "hosts" (network namespaces, see
tests/support/netns.py): ``mpiexec`` in the launcher's namespace starts its daemons through
the ``ip netns exec`` agent, the broker listens on the bridge, and each rank serves HTTP on
its host's address. Plus the watch the partition tests keep while the job runs: every
replica's global step and the group's committed offsets, sampled from a thread."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from tests.distributed.replica_job import ReplicaJob, _flags
from tests.support.fixed_step import FIXED_STEP_FLAGS
from tests.support.kafka_helpers import REPO, _child_env, committed_offsets
from tests.support.mpi import MPIEXEC, mpi_env
from tests.support.netns import Hosts


class HostsJob(ReplicaJob):
    """``mpiexec --host a:n_a,b:n_b`` in the launcher namespace: ranks ``0 .. n_a − 1`` on
    host a, the rest on host b (slot r serves on its host's address, port base + r)."""

    def __init__(
        self,
        hosts: Hosts,
        placement: dict[str, int],
        options: dict,
        log_path: Path,
        mpi_args: Sequence[str] = (),
        base_port: int = 21000,
    ) -> None:
        self.n = sum(placement.values())
        self.options = options
        self.base_port = base_port  # the namespaces are fresh: every port is free there
        self.slot_hosts = [h for h, k in placement.items() for _ in range(k)]
        self.hosts = hosts
        self.stepped: dict[str, bool] = {}  # by host: stepped after a cut (the tests set it)
        self.at_cut = (0.0, 0.0)  # (monotonic time, highest global step) of a cut
        argv = [
            *(sys.executable, "-m", "streamsgd", "train", *FIXED_STEP_FLAGS, *_flags(options)),
            *("--metrics-host", "0.0.0.0", "--metrics-port", str(self.base_port)),
            *("--progress", "never", "--log-interval-seconds", "0"),
        ]
        command = [
            *(str(MPIEXEC), "--host", ",".join(f"{h}:{k}" for h, k in placement.items())),
            *("-n", str(self.n), "--with-ft", "ulfm", "--bind-to", "none"),
            *("--mca", "btl", "tcp,self", *hosts.mpiexec_args(), *mpi_args, *argv),
        ]
        self.log_path = log_path
        self._log = open(log_path, "ab")
        env = {**mpi_env(), **_child_env()}
        env = {k: v for k, v in env.items() if not k.startswith("STREAMSGD_")}
        self.proc = subprocess.Popen(
            hosts.launch(command),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )

    def address(self, slot: int) -> str:
        return self.hosts.addresses[self.slot_hosts[slot]]

    def slots_on(self, host: str) -> list[int]:
        return [s for s, h in enumerate(self.slot_hosts) if h == host]

    def replicas_on(self, host: str) -> int:
        """The training processes alive in ``host``'s namespace."""
        alive = 0
        for pid in self.hosts.processes(host):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            alive += cmdline[1:4] == [b"-m", b"streamsgd", b"train"]
        return alive


class Watch:
    """Samples, every ``interval`` seconds until :meth:`close`: each slot's
    ``streamsgd_global_step`` (with the time), and the group's committed offsets (which the
    caller checks never move backwards)."""

    def __init__(self, bootstrap: str, group_id: str, interval: float = 0.5) -> None:
        self.bootstrap, self.group_id, self.interval = bootstrap, group_id, interval
        self.steps: list[tuple[float, int, float]] = []  # (monotonic time, slot, step)
        self.commits: list[tuple[float, dict[str, int]]] = []  # (monotonic time, offsets)
        self.job: HostsJob | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            job = self.job
            if job is not None:
                for slot in range(job.n):
                    step = job.metric(slot, "streamsgd_global_step")
                    if step is not None:
                        self.steps.append((time.monotonic(), slot, step))
            try:
                offsets = committed_offsets(self.bootstrap, self.group_id)
                self.commits.append((time.monotonic(), offsets))
            except Exception:  # the group does not exist yet, or the broker is busy
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def last_step(self, slots: Sequence[int], since: float = 0.0) -> float:
        """The highest step any of ``slots`` reported after ``since`` (−1: none)."""
        seen = [s for t, slot, s in self.steps if slot in slots and t >= since]
        return max(seen, default=-1.0)

    def committed(self, before: float = float("inf")) -> int:
        """The sum of the group's committed offsets in the last sample before ``before``."""
        seen = [sum(offsets.values()) for t, offsets in self.commits if t < before]
        return seen[-1] if seen else 0

    def backwards(self) -> list[str]:
        """Every committed offset that moved backwards between two samples."""
        moves, last = [], {}
        for _, sample in self.commits:
            for partition, offset in sample.items():
                if offset < last.get(partition, -1):
                    moves.append(f"{partition}: {last[partition]} -> {offset}")
                last[partition] = max(offset, last.get(partition, -1))
        return moves
