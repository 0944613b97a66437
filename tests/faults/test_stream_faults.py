"""Fault suite (docs/operations.md#what-is-guaranteed), the stream side: hostile lines and records
on the way from a file or a pipe to the model.

* a line far over the record limit (file): bounded memory, rejected as ``too_large``,
  dead-lettered truncated, the other lines learned;
* long lines from a pipe: read in time linear in the input (counted work, not timed);
* one poisoned record (1e300 features) first in a file of valid records: the model ends
  where the valid records alone take it, and the event is counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamsgd import OnlineLogisticRegression
from streamsgd.checkpoint import DirectoryCheckpointStore
from streamsgd.codec import DEFAULT_MAX_RECORD_BYTES, Decoder
from streamsgd.datasets.synthetic_stream import SyntheticStream
from streamsgd.sources import file as file_source
from streamsgd.sources.file import READ_BYTES, FileSource, LineSplitter
from streamsgd.telemetry.metrics import PrometheusSensor
from streamsgd.training.ports import SourceRecord
from streamsgd.training.trainer import ServiceConfig, Trainer
from tests.support.helpers import reference_fit, write_jsonl

MiB = 1 << 20
D = 5


def _line(x: np.ndarray, label: float) -> bytes:
    return json.dumps({"x": [float(v) for v in x], "y": int(label)}).encode() + b"\n"


def _write_with_a_huge_line(path: Path, X: np.ndarray, y: np.ndarray, at: int, size: int) -> None:
    """Valid lines with one line of ``size`` bytes before sample ``at``, written a MiB at a
    time (the test process never holds the line either)."""
    with open(path, "wb") as fh:
        for i in range(len(y)):
            if i == at:
                fh.write(b'{"x": [1, 2, 3, 4, 5], "y": 1, "pad": "')
                block = b"p" * MiB
                for _ in range(size // MiB):
                    fh.write(block)
                fh.write(b'"}\n')
            fh.write(_line(X[i], y[i]))


def _peak_rss_kib_of(argv: list[str]) -> tuple[int, int, str]:
    """Run ``argv`` as the only child of a fresh interpreter; (exit code, the child's peak
    resident set in KiB, its stderr)."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stderr=subprocess.PIPE, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(done.returncode, peak)\n"
        "sys.stderr.write(done.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, timeout=600
    )
    code, peak = out.stdout.split()
    return int(code), int(peak), out.stderr


def test_a_200_mib_line_is_skipped_in_memory_bounded_by_the_record_limit(tmp_path: Path) -> None:
    """Injects a 200 MiB line (limit 16 MiB) among 2,000 valid lines of a file read by a real
    trainer process. Must hold: its peak RSS stays below the record limit + 150 MiB, every
    valid sample is learned exactly as without the line, and one record is rejected."""
    X, y = SyntheticStream(D, seed=40).samples(0, 2000)
    path = tmp_path / "huge.jsonl"
    _write_with_a_huge_line(path, X, y, at=1000, size=200 * MiB)
    checkpoints = tmp_path / "ck"
    code, peak_kib, stderr = _peak_rss_kib_of(
        [
            sys.executable,
            "-m",
            "streamsgd",
            "train",
            "--source",
            "file",
            "--path",
            str(path),
            "--n-features",
            str(D),
            "--batch-size",
            "10",
            "--learning-rate",  # the reference's plain SGD (the defaults were fixed-step)
            "0.1",
            "--metrics-port",
            "0",
            "--progress",
            "never",
            "--checkpoint-dir",
            str(checkpoints),
        ]
    )
    assert code == 0, stderr
    limit_kib = (DEFAULT_MAX_RECORD_BYTES + 150 * MiB) // 1024
    assert peak_kib < limit_kib, (peak_kib, limit_kib)
    state = DirectoryCheckpointStore(checkpoints).load()
    assert state is not None
    assert state["totals"]["records_rejected"] == 1
    assert state["offsets"] == {"file": 2001}
    model = OnlineLogisticRegression.from_state(state["model"])
    assert np.array_equal(model.coef_, reference_fit(X, y, 10).coef_)


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[SourceRecord, str, str]] = []

    def send(self, record: SourceRecord, reason: str, detail: str) -> None:
        self.sent.append((record, reason, detail))

    def flush(self) -> None:
        pass


def test_an_oversized_line_is_counted_and_dead_lettered_truncated(tmp_path: Path) -> None:
    """Injects a 3 MiB line (limit 64 KiB) into a file. Must hold: it is counted as
    too_large, the dead-letter sink gets its first 64 KiB with a detail saying the value was
    truncated from 3 MiB, and the lines after it are learned normally."""
    X, y = SyntheticStream(D, seed=41).samples(0, 300)
    path = tmp_path / "long.jsonl"
    _write_with_a_huge_line(path, X, y, at=150, size=3 * MiB)
    limit = 64 * 1024
    registry = CollectorRegistry()
    dead = MemoryDeadLetters()
    service = Trainer(
        OnlineLogisticRegression(D),
        FileSource(str(path), max_line_bytes=limit),
        Decoder(D, max_record_bytes=limit),
        ServiceConfig(batch_size=10),
        dead_letter=dead,
        sensors=[PrometheusSensor(registry, process_collectors=False)],
    )
    service.run()
    reason = {"reason": "too_large"}
    assert registry.get_sample_value("streamsgd_records_rejected_total", reason) == 1
    [(record, why, detail)] = dead.sent
    assert why == "too_large" and record.offset == 150
    assert record.value is not None and len(record.value) == limit
    assert record.value.startswith(b'{"x": [1, 2, 3, 4, 5], "y": 1, "pad": "ppp')
    assert record.original_size_bytes == 3 * MiB + len(b'{"x": [1, 2, 3, 4, 5], "y": 1, "pad": ""}')
    assert f"{record.original_size_bytes} bytes" in detail and "first 65536 bytes" in detail
    assert np.array_equal(service.model.coef_, reference_fit(X, y, 10).coef_)


@pytest.mark.parametrize("line_mib", [8, 32])
def test_long_lines_are_split_with_linear_work(line_mib: int) -> None:
    """Feeds one line of 8 or 32 MiB in reads of READ_BYTES, as the pipe reader does. Must
    hold: every byte is searched once and copied at most twice (a quadratic reader re-copies
    the pending part of the line at every read: 16 times the input for 32 MiB)."""
    size = line_mib * MiB
    splitter = LineSplitter(max_line_bytes=64 * MiB)
    chunk = b"a" * READ_BYTES
    lines: list[Any] = []
    for _ in range(size // READ_BYTES):
        lines += splitter.feed(chunk)
    lines += splitter.feed(b"\nb\n")
    assert [len(v) for v, _ in lines] == [size, 1]
    assert splitter.bytes_scanned == size + 3
    assert splitter.bytes_copied <= 2 * size + 3


def test_long_lines_from_a_pipe_are_read_with_linear_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes lines of 8 and 32 MiB (and short ones) into a real pipe read by FileSource.
    Must hold: the lines arrive whole; the reader makes one read call per pipe buffer of
    input at most, and its splitter copies each byte at most twice (the quadratic reader
    re-split the whole pending line after each of those reads)."""
    reads: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        reads.append(len(data))
        return data

    monkeypatch.setattr(file_source.os, "read", counting_read)
    read_fd, write_fd = os.pipe()
    sizes = [8 * MiB, 5, 32 * MiB, 7]
    total = sum(sizes) + len(sizes)

    def writer() -> None:
        with os.fdopen(write_fd, "wb") as out:
            for size in sizes:
                out.write(b"z" * size + b"\n")

    thread = threading.Thread(target=writer)
    thread.start()
    source = FileSource(f"/dev/fd/{read_fd}", max_line_bytes=64 * MiB)
    got: list[int] = []
    while not source.exhausted:
        got += [len(r.value or b"") for r in source.poll(5.0)]
    thread.join(timeout=60)
    source.close()
    os.close(read_fd)
    assert got == sizes
    assert sum(reads) == total
    # A pipe delivers at most its buffer (64 KiB by default) per read: one read call per
    # 64 KiB of input at worst, each costing work in proportion to its bytes.
    assert len(reads) <= total // (64 * 1024) + len(sizes) + 2
    assert source._splitter.bytes_copied <= 2 * total


def test_a_poisoned_record_first_does_not_move_the_model(tmp_path: Path) -> None:
    """Injects {"x": [1e300 ×5], "y": 0} as the first line of a file of 10,000 valid records
    (model defaults, so clip_norm_ratio = 10). Must hold: the final coefficients are within
    1 % (relative L2) of the model trained on the valid records alone, the model is healthy,
    no step is skipped, and the event is counted (samples_clipped{reason="row_norm"})."""
    X, y = SyntheticStream(D, seed=42).samples(0, 10_000)
    poisoned, clean = tmp_path / "poisoned.jsonl", tmp_path / "clean.jsonl"
    write_jsonl(poisoned, X, y, {0: json.dumps({"x": [1e300] * D, "y": 0}).encode()})
    write_jsonl(clean, X, y)

    def train(path: Path) -> tuple[Trainer, CollectorRegistry]:
        registry = CollectorRegistry()
        service = Trainer(
            OnlineLogisticRegression(D),
            FileSource(str(path)),
            Decoder(D),
            ServiceConfig(batch_size=32),
            sensors=[PrometheusSensor(registry, process_collectors=False)],
        )
        service.run()
        return service, registry

    attacked, registry = train(poisoned)
    reference, _ = train(clean)
    distance = np.linalg.norm(attacked.model.parameters - reference.model.parameters)
    assert distance <= 0.01 * np.linalg.norm(reference.model.parameters), distance
    assert attacked.totals.samples_consumed == 10_001 and attacked.totals.updates_skipped == 0
    assert registry.get_sample_value("streamsgd_model_healthy") == 1
    clipped = registry.get_sample_value("streamsgd_samples_clipped_total", {"reason": "row_norm"})
    assert clipped is not None and clipped >= 1
