"""Fault suite, checkpoints (docs/operations.md#what-is-guaranteed), with real processes: a second
writer, a SIGKILLed lock holder, a writer killed while saving under a concurrent reader, and the
CLI's answer to damaged, foreign and unusable checkpoint directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamsgd.checkpoint import (
    FILE_NAME,
    LOCK_NAME,
    CheckpointLocked,
    DirectoryCheckpointStore,
)
from streamsgd.cli import main
from streamsgd.datasets.synthetic_stream import SyntheticStream
from tests.support.fixed_step import FIXED_STEP_FLAGS
from tests.support.helpers import write_jsonl
from tests.support.kafka_helpers import wait_until
from tests.unit.test_checkpoint import STATES, array, one_line, signed

REPO = Path(__file__).resolve().parents[2]
D = 4
TRAIN = (
    "train",
    *FIXED_STEP_FLAGS,  # the step these faults were written against (tests/support/fixed_step.py)
    *("--source", "file", "--n-features", D, "--progress", "never", "--metrics-port", 0),
)

HOLD = """
import sys
from streamsgd.checkpoint import DirectoryCheckpointStore
store = DirectoryCheckpointStore(sys.argv[1])
sys.stdin.read()  # hold the lock until killed or stdin closes
"""

SAVE_FOREVER = """
import sys
from streamsgd.checkpoint import DirectoryCheckpointStore
store = DirectoryCheckpointStore(sys.argv[1])
template = store.load()
n = template["model"]["n_updates"]
while True:
    n += 1
    model = dict(template["model"], n_updates=n)
    model["theta"] = model["theta"].copy()
    model["theta"][0] = n  # ties the weights to the counter: a mixed file would show
    store.save(dict(template, model=model))
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STREAMSGD_")}


def _popen(args: Sequence[object], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, env=_env(), **kwargs)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; killed (by pid) at teardown if still alive."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)


def _holds_lock(directory: Path, pid: int) -> bool:
    try:
        return (directory / LOCK_NAME).read_text().startswith(f"pid {pid} ")
    except FileNotFoundError:
        return False


def _streamsgd(*args: object, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "streamsgd", *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        env=_env(),
        timeout=180,
    )


def _one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("streamsgd: error: "), err
    return lines[0]


# --------------------------------------------------------------------------- the lock
def test_sigkilled_lock_holder_releases_the_directory(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """Injects: a process holding the writer lock is SIGKILLed (no cleanup runs).
    Must hold: while it lives a second writer gets CheckpointLocked naming its pid; once it
    is dead the kernel has released the lock and a new writer opens the directory."""
    holder = _popen(["-c", HOLD, tmp_path], stdin=subprocess.PIPE)
    started.append(holder)
    wait_until(lambda: _holds_lock(tmp_path, holder.pid), 120, "the holder's lock file")
    with pytest.raises(CheckpointLocked) as caught:
        DirectoryCheckpointStore(tmp_path)
    assert f"pid {holder.pid} " in one_line(caught.value)
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=60) == -signal.SIGKILL
    with DirectoryCheckpointStore(tmp_path) as store:
        store.save(STATES["sgd_m1"])


def test_writer_killed_while_saving_never_leaves_a_torn_checkpoint(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """Injects: a process saves checkpoints back to back while this one reads them, then
    is SIGKILLed at an arbitrary moment (likely mid-save, leaving a temp file).
    Must hold: every read is a whole valid checkpoint whose counter never goes back; after
    the kill the checkpoint still loads, and the next writer removes the orphan temp file."""
    with DirectoryCheckpointStore(tmp_path) as store:
        store.save(STATES["sgd_m1"])
    writer = _popen(["-c", SAVE_FOREVER, tmp_path], stdin=subprocess.DEVNULL)
    started.append(writer)
    reader = DirectoryCheckpointStore(tmp_path, read_only=True)
    initial = STATES["sgd_m1"]["model"]["n_updates"]
    seen: list[int] = []

    def many_distinct_checkpoints_read() -> bool:
        state = reader.load()  # a torn or empty file would raise CheckpointError here
        assert state is not None
        n_updates = state["model"]["n_updates"]
        assert n_updates == initial or state["model"]["theta"][0] == n_updates
        assert not seen or n_updates >= seen[-1]
        seen.append(n_updates)
        assert writer.poll() is None, "the writer died"
        return len(set(seen)) >= 40

    wait_until(many_distinct_checkpoints_read, 180, "40 distinct checkpoints read")
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    last = reader.load()
    assert last is not None and last["model"]["n_updates"] >= seen[-1]
    with DirectoryCheckpointStore(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME, FILE_NAME]


def test_second_trainer_on_a_directory_exits_2_with_one_line(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """Injects: ``streamsgd train`` on a --checkpoint-dir that a running trainer uses.
    Must hold: the second exits 2 with one ``streamsgd: error:`` line naming the directory
    and the holder's pid, without touching the checkpoint; after the first finishes, the
    same command succeeds and resumes from the first trainer's checkpoint."""
    directory = tmp_path / "ckpt"
    X, y = SyntheticStream(D, seed=3).samples(0, 600)
    first_half, second_half = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    write_jsonl(first_half, X[:300], y[:300])
    write_jsonl(second_half, X, y)  # the same file grown: the resumed run skips 300 lines
    first = _popen(
        ["-m", "streamsgd", *TRAIN, "--path", "-", "--checkpoint-dir", directory],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    started.append(first)
    wait_until(lambda: _holds_lock(directory, first.pid), 120, "the first trainer's lock")

    second = _streamsgd(*TRAIN, "--path", second_half, "--checkpoint-dir", directory)
    line = _one_error_line(second)
    assert "locked by another trainer" in line and str(directory) in line
    assert f"pid {first.pid} " in line
    assert not (directory / FILE_NAME).exists()

    _, first_err = first.communicate(first_half.read_bytes(), timeout=180)
    assert first.returncode == 0, first_err.decode()
    again = _streamsgd(*TRAIN, "--path", second_half, "--checkpoint-dir", directory)
    assert again.returncode == 0, again.stderr.decode()
    assert "resumed from checkpoint" in again.stderr.decode()
    state = DirectoryCheckpointStore(directory, read_only=True).load()
    assert state is not None and state["model"]["n_samples_seen"] == 600


# --------------------------------------------------------------------------- damaged files
@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a checkpoint written by ``streamsgd train`` (in-process)."""
    directory = tmp_path_factory.mktemp("real")
    X, y = SyntheticStream(D, seed=9).samples(0, 200)
    write_jsonl(directory / "samples.jsonl", X, y)
    code = main(
        [
            *map(str, TRAIN),
            "--path",
            str(directory / "samples.jsonl"),
            "--checkpoint-dir",
            str(directory / "ckpt"),
        ]
    )
    assert code == 0
    return (directory / "ckpt" / FILE_NAME).read_bytes()


def _flip_base64(raw: bytes) -> bytes:
    at = raw.index(b'"base64":"') + len(b'"base64":"') + 3
    return raw[:at] + (b"A" if raw[at : at + 1] != b"A" else b"B") + raw[at + 1 :]


def _nan_weights(raw: bytes) -> bytes:
    tree = json.loads(raw)["state"]
    theta = np.zeros(D + 1)
    theta[1] = np.nan
    tree["model"]["theta"] = array(theta.tolist())
    return signed(tree)


def _version(raw: bytes) -> bytes:
    return raw.replace(b'"format_version":2', b'"format_version":3', 1)


DAMAGE = {
    "flipped base64 character": (_flip_base64, "checksum mismatch"),
    "NaN weights, checksum valid": (_nan_weights, "model.theta: holds non-finite values"),
    "0-byte file": (lambda raw: b"", "not a checkpoint document"),
    "torn in the middle": (lambda raw: raw[: len(raw) // 2], "not a checkpoint document"),
    "unknown format version": (_version, "unsupported checkpoint format_version 3"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_checkpoint_makes_train_and_inspect_exit_2_with_one_line(
    tmp_path: Path, real_checkpoint: bytes, damage: str
) -> None:
    """Injects: a real checkpoint with one defect (see DAMAGE).
    Must hold: ``train`` refuses to resume (exit 2, one line naming the file and the defect)
    and leaves the file as it was; ``inspect`` refuses the same way."""
    mutate, words = DAMAGE[damage]
    damaged = mutate(real_checkpoint)
    (tmp_path / FILE_NAME).write_bytes(damaged)
    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, *SyntheticStream(D, seed=1).samples(0, 50))
    for result in (
        # At WARNING the error is all a resume attempt prints (INFO adds the HTTP address).
        _streamsgd(
            *TRAIN, "--log-level", "WARNING", "--path", samples, "--checkpoint-dir", tmp_path
        ),
        _streamsgd("inspect", tmp_path),
    ):
        line = _one_error_line(result)
        assert "is not a valid checkpoint" in line and words in line, line
    assert (tmp_path / FILE_NAME).read_bytes() == damaged


def test_uncreatable_checkpoint_directory_exits_2_with_one_line(tmp_path: Path) -> None:
    """Injects: --checkpoint-dir below a regular file (no one can create it, root included).
    Must hold: exit 2 with one line before any training."""
    (tmp_path / "file").write_text("not a directory")
    samples = tmp_path / "samples.jsonl"
    write_jsonl(samples, *SyntheticStream(D, seed=1).samples(0, 50))
    result = _streamsgd(*TRAIN, "--path", samples, "--checkpoint-dir", tmp_path / "file" / "c")
    assert "cannot use checkpoint directory" in _one_error_line(result)


def test_a_failed_final_checkpoint_exits_1_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Injects: the disk fills up (ENOSPC) for every save of a file run. Must hold: the run
    does not exit 0 (its model is not on disk), it says why in one line, and no traceback."""
    import errno

    from streamsgd.checkpoint import DirectoryCheckpointStore
    from streamsgd.cli import main

    def full_disk(self: DirectoryCheckpointStore, state: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(DirectoryCheckpointStore, "save", full_disk)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(f'{{"x": [{i % 7}.0, 1.0], "y": {i % 2}}}\n' for i in range(100)))
    code = main(
        [
            "train",
            "--source",
            "file",
            "--path",
            str(data),
            "--n-features",
            "2",
            "--checkpoint-dir",
            str(tmp_path / "state"),
            "--metrics-port",
            "0",
            "--log-level",
            "ERROR",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("streamsgd: error: ")]
    assert len(errors) == 1 and "No space left" in errors[0], err
    assert "Traceback" not in err
