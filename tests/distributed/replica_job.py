"""A replicated training job under real ``mpiexec`` for the scale-out tests: its command
line, its ranks' HTTP endpoints and pids, and the manifest-replay oracle read from Kafka."""

from __future__ import annotations

import fcntl
import json
import re
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import pytest

from streamsgd.checkpoint import DirectoryCheckpointStore, ManifestFile
from streamsgd.cli.build import build_decoder, build_model
from streamsgd.config import train_config
from streamsgd.core.model import OnlineLogisticRegression
from streamsgd.distributed.step_manifest import replay_manifest
from streamsgd.training.ports import SourceRecord
from tests.support.fixed_step import FIXED_STEP_FLAGS
from tests.support.kafka_fixtures import port_is_free
from tests.support.kafka_helpers import REPO, _child_env, wait_until
from tests.support.mpi import mpi_env, mpiexec_command

T = TypeVar("T")
N_FEATURES = 6
JOB_TIMEOUT_SECONDS = 240


PORT_LOCKS = Path(tempfile.gettempdir()) / "streamsgd-test-ports"
"""One lock file per base port, shared by every test session on the machine."""


def reserve_port_range(n: int) -> tuple[int, BinaryIO]:
    """A base port b with b .. b + n − 1 free (replica r serves on b + r), reserved against
    every other test session on this machine while the returned lock file stays open.

    Free is not enough: a job's ranks bind their ports seconds after the check (mpiexec,
    then Python's imports on a loaded machine), so two sessions running replica jobs at
    once both saw 21000.. free and the later job's ranks 0 and 1 could not serve."""
    PORT_LOCKS.mkdir(exist_ok=True)
    for base in range(21000, 40000, 97):
        lock = open(PORT_LOCKS / str(base), "ab")  # held until the job is killed
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        if all(port_is_free(base + k) for k in range(n)):
            return base, lock
        lock.close()
    raise AssertionError("no free port range")


def train_options(bootstrap: str, topic: str, checkpoint_dir: Path, **extra: object) -> dict:
    """The options every replica runs with (and the oracle rebuilds its model from)."""
    return {
        "source": "kafka",
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "group_id": f"{topic}-trainers",
        "dead_letter_topic": f"{topic}-dlq",
        "n_features": N_FEATURES,
        "batch_size": 24,
        "learning_rate": 0.2,
        "max_wait_ms": 200,
        "checkpoint_dir": str(checkpoint_dir),
        "checkpoint_interval_seconds": 0.5,
        "distributed": "mpi",
        **extra,
    }


def _flags(options: dict) -> list[str]:
    flags = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not False and value is not None:
            flags += [flag, str(value)]
    return flags


class ReplicaJob:
    """``mpiexec -n N python -m streamsgd train --distributed mpi ...`` with its log."""

    _port_lock: BinaryIO | None = None  # a subclass on fresh namespaces reserves none

    def __init__(
        self,
        n: int,
        options: dict,
        log_path: Path,
        program: Path | None = None,
        mpi_args: Sequence[str] = (),
        port_range: tuple[int, BinaryIO] | None = None,
    ) -> None:
        self.n = n
        self.options = options
        # Held until kill(): no other session's job serves on these ports meanwhile.
        self.base_port, self._port_lock = port_range or reserve_port_range(n + 1)
        command = ["-m", "streamsgd"] if program is None else [str(program)]
        argv = [
            sys.executable,
            *command,
            "train",
            *FIXED_STEP_FLAGS,  # the suite's fixed step; the test's own options win (later)
            *_flags(options),
            "--metrics-port",
            str(self.base_port),
            "--progress",
            "never",
            "--log-interval-seconds",
            "0",
        ]
        self.log_path = log_path
        self._log = open(log_path, "ab")
        env = {**mpi_env(), **{k: v for k, v in _child_env().items()}}
        env = {k: v for k, v in env.items() if not k.startswith("STREAMSGD_")}
        self.proc = subprocess.Popen(
            mpiexec_command(n, [*mpi_args, *argv]),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def diagnostics(self) -> str:
        tail = "\n".join(self.log_text().splitlines()[-80:])
        return f"mpiexec exit {self.proc.poll()}; log {self.log_path}:\n{tail}"

    def wait_for(self, condition: Callable[[], T | None], what: str, timeout: float = 180) -> T:
        def check() -> T | None:
            value = condition()
            if not value and self.proc.poll() is not None:
                pytest.fail(f"the job exited while waiting for {what}\n{self.diagnostics()}")
            return value

        return wait_until(check, timeout, what, self.diagnostics, interval=0.2)

    # -- endpoints of replica slot r (port base + r)
    def address(self, slot: int) -> str:
        """The address replica slot ``slot`` serves HTTP on (one host here)."""
        return "127.0.0.1"

    def get(self, slot: int, path: str) -> tuple[int, bytes] | None:
        url = f"http://{self.address(slot)}:{self.base_port + slot}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError):
            return None

    def model(self, slot: int) -> dict[str, Any] | None:
        answer = self.get(slot, "/model")
        return json.loads(answer[1]) if answer and answer[0] == 200 else None

    def metric(self, slot: int, name: str) -> float | None:
        answer = self.get(slot, "/metrics")
        if not answer or answer[0] != 200:
            return None
        match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", answer[1].decode(), re.MULTILINE)
        return float(match.group(1)) if match else None

    def pids(self) -> dict[int, int]:
        """The newest pid logged for each rank ("replica rank R of N (pid P)")."""
        found: dict[int, int] = {}
        for rank, _, pid in re.findall(
            r"replica rank (\d+) of (\d+) \(pid (\d+)\)", self.log_text()
        ):
            found[int(rank)] = int(pid)
        return found

    def stop(self, timeout: float = JOB_TIMEOUT_SECONDS) -> int:
        """SIGUSR1 to mpiexec, which forwards it to every rank (on SIGTERM it kills them):
        a graceful stop with a final checkpoint; the exit code."""
        self.proc.send_signal(signal.SIGUSR1)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = JOB_TIMEOUT_SECONDS) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the job did not exit within {timeout:.0f}s\n{self.diagnostics()}")

    def kill(self) -> None:
        """SIGKILL the whole job (mpiexec and every rank: its process group)."""
        import os

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(60)
        self._log.close()
        if self._port_lock is not None:
            self._port_lock.close()


def read_partitions(bootstrap: str, topic: str) -> dict[str, list[SourceRecord]]:
    """Every record of every partition of ``topic``, as the replay reads them."""
    from tests.support.kafka_helpers import end_offsets, read_topic

    records: dict[str, list[SourceRecord]] = {}
    for partition in end_offsets(bootstrap, topic):
        key = f"{topic}:{partition}"
        records[key] = [
            SourceRecord(key, r.offset, value=r.value)
            for r in read_topic(bootstrap, topic, partition)
        ]
    return records


def oracle(
    options: dict, checkpoint_dir: Path, records: dict[str, list[SourceRecord]]
) -> OnlineLogisticRegression:
    """The model the manifest says the job learned, replayed in this process."""
    config = train_config({**options, "distributed": "none"})

    def read(partition: str, first: int, last: int) -> Sequence[SourceRecord]:
        return [r for r in records[partition] if first <= r.offset <= last]

    manifest = ManifestFile(checkpoint_dir)

    def base_model(entry: dict[str, Any]) -> OnlineLogisticRegression:
        # A file started over by a takeover on another host: the state it names.
        return OnlineLogisticRegression.from_state(manifest.base_state(entry)["model"])

    entries = manifest.read()
    return replay_manifest(entries, read, build_decoder(config), build_model(config), base_model)


def final_state(checkpoint_dir: Path) -> dict[str, Any]:
    state = DirectoryCheckpointStore(checkpoint_dir, read_only=True).load()
    assert state is not None, "no checkpoint was written"
    return state


def assert_matches_oracle(state: dict[str, Any], model: OnlineLogisticRegression) -> None:
    theta = np.asarray(state["model"]["theta"])
    np.testing.assert_allclose(theta, model._snapshot(), rtol=1e-10, atol=1e-12)
    assert int(state["model"]["n_samples_seen"]) == model.n_samples_seen
    assert int(state["model"]["n_updates"]) == model.n_updates
