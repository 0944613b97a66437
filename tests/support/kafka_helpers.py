"""Helpers for the real-broker integration tests (tests/integration/test_kafka_integration.py).

Trainer processes are real subprocesses (``python -m streamsgd train``) so they can be killed;
producing, inspecting and reference training run in-process. Nothing here sleeps to
synchronise: every wait polls a condition until a deadline and fails the test with the
trainer's log when it runs out.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from streamsgd.checkpoint import DirectoryCheckpointStore
from streamsgd.cli import main
from streamsgd.core.model import OnlineLogisticRegression
from tests.support.fixed_step import FIXED_STEP_ENV, with_fixed_step

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


# --------------------------------------------------------------------------- waiting


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    diagnostics: Callable[[], str] = lambda: "",
    interval: float = 0.05,
) -> T:
    """Poll ``condition`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout:.0f}s waiting for {what}\n{diagnostics()}",
                pytrace=False,
            )
        time.sleep(interval)


# --------------------------------------------------------------------------- the CLI in-process


def cli(*args: object) -> int:
    """``streamsgd`` in this process; train and evaluate take the fixed step (.fixed_step)."""
    return main(with_fixed_step([str(a) for a in args]))


def produce_synthetic(
    bootstrap: str,
    topic: str,
    n: int,
    n_features: int,
    seed: int,
    samples_per_record: int = 1,
    fmt: str = "json",
) -> None:
    code = cli(
        "produce",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--samples-per-record",
        samples_per_record,
        "--format",
        fmt,
        "--progress",
        "never",
        "synthetic",
        "--n",
        n,
        "--n-features",
        n_features,
        "--seed",
        seed,
    )
    assert code == 0, f"streamsgd produce synthetic exited {code}"


def produce_file(bootstrap: str, topic: str, path: Path) -> None:
    code = cli(
        "produce",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--progress",
        "never",
        "file",
        path,
    )
    assert code == 0, f"streamsgd produce file exited {code}"


def inspect_json(directory: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``streamsgd inspect DIR --json``, parsed."""
    capsys.readouterr()
    code = cli("inspect", directory, "--json")
    out = capsys.readouterr().out
    assert code == 0, f"streamsgd inspect exited {code}"
    document: dict[str, Any] = json.loads(out)
    return document


def load_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The checkpoint as the trainer wrote it (arrays bit-exact); None before the first save.

    Safe while a trainer runs: saves replace the file atomically."""
    return DirectoryCheckpointStore(directory, read_only=True).load()


def checkpoint_where(
    directory: Path, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The current checkpoint if there is one and it satisfies ``predicate``, else None."""
    state = load_checkpoint(directory)
    return state if state is not None and predicate(state) else None


def samples_seen(state: dict[str, Any] | None) -> int:
    return -1 if state is None else int(state["model"]["n_samples_seen"])


# --------------------------------------------------------------------------- reference


def reference_fit(
    X: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    weights: Sequence[float | None] | None = None,
) -> tuple[OnlineLogisticRegression, float]:
    """``OnlineLogisticRegression`` with the CLI's default hyper-parameters, trained on the
    samples in order, minibatches of ``batch_size`` (the last one may be smaller).

    ``weights``: per sample an importance weight or None (= no weight given); a minibatch in
    which any sample has a weight passes weights, 1.0 for those without. Returns the model
    and the progressive (pre-step) loss sum accumulated in step order."""
    model = OnlineLogisticRegression(X.shape[1])
    loss_sum = 0.0
    for lo in range(0, len(y), batch_size):
        hi = min(lo + batch_size, len(y))
        w = None
        if weights is not None and any(v is not None for v in weights[lo:hi]):
            w = np.array([1.0 if v is None else v for v in weights[lo:hi]])
        stats = model.learn_batch(X[lo:hi].copy(), y[lo:hi].copy(), w)
        assert not stats.skipped
        loss_sum += stats.sums.loss_sum
    return model, loss_sum


def assert_checkpoint_equals_reference(
    state: dict[str, Any], reference: OnlineLogisticRegression, loss_sum: float
) -> None:
    """Bit-for-bit: weights, intercept, counters, hyper-parameters, progressive loss sum."""
    model = state["model"]
    theta = model["theta"]
    expected = reference.parameters
    assert model["params"] == reference.get_params(), "trainer and reference differ in params"
    assert model["n_samples_seen"] == reference.n_samples_seen
    assert model["n_updates"] == reference.n_updates
    differ = np.flatnonzero(theta != expected)
    assert np.array_equal(theta[:-1], expected[:-1]), (
        f"coef differs from the reference at {differ.tolist()[:10]}: "
        f"max |diff| {np.max(np.abs(theta - expected)):.3e}"
    )
    assert theta[-1] == expected[-1], f"intercept {theta[-1]!r} != reference {expected[-1]!r}"
    assert state["totals"]["progressive_loss_sum"] == loss_sum


# --------------------------------------------------------------------------- Kafka side


def end_offsets(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[int, int]:
    """Per partition of ``topic``, the offset after its last record."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = wait_until(
            lambda: consumer.partitions_for_topic(topic), timeout, f"metadata of {topic}"
        )
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = consumer.end_offsets(tps)
        return {tp.partition: int(off) for tp, off in ends.items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group_id: str) -> dict[str, int]:
    """The group's committed offsets as ``{"topic:partition": offset}``."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamsgd-tests")
    try:
        if hasattr(admin, "list_group_offsets"):  # kafka-python 3.x
            offsets = admin.list_group_offsets(group_id)[group_id]
        else:  # kafka-python 2.x
            offsets = admin.list_consumer_group_offsets(group_id)
    finally:
        admin.close()
    return {f"{tp.topic}:{tp.partition}": int(om.offset) for tp, om in offsets.items()}


def read_topic(bootstrap: str, topic: str, partition: int = 0) -> list[Any]:
    """Every record of one partition, from the beginning to its current end."""
    from kafka import KafkaConsumer, TopicPartition

    end = end_offsets(bootstrap, topic)[partition]
    tp = TopicPartition(topic, partition)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    records: list[Any] = []
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + 60
        while len(records) < end:
            if time.monotonic() > deadline:
                pytest.fail(f"read {len(records)} of {end} records of {topic}", pytrace=False)
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


# --------------------------------------------------------------------------- processes


def _child_env() -> dict[str, str]:
    # Every train flag also reads STREAMSGD_<FLAG>: nothing from the test environment may
    # change what the trainer does behind the test's back.
    # The suites' trainers take the fixed step unless a test says otherwise (.fixed_step).
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSGD_")}
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **FIXED_STEP_ENV}


class Trainer:
    """``python -m streamsgd train ...`` as a subprocess, its output in a log file.

    ``env``: variables added to the child's environment (e.g. STREAMSGD_SASL_PASSWORD)."""

    def __init__(
        self, args: Sequence[object], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.args = [str(a) for a in args]
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamsgd", "train", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**_child_env(), **(env or {})},
        )
        self._port: int | None = None

    def __repr__(self) -> str:
        return f"Trainer(pid {self.proc.pid}, exit {self.proc.poll()})"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def diagnostics(self, lines: int = 60) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"trainer pid {self.pid} exit {self.proc.poll()}; log {self.log_path}:\n{tail}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def require_alive(self) -> None:
        if not self.alive():
            pytest.fail(f"the trainer exited unexpectedly\n{self.diagnostics()}", pytrace=False)

    def wait_for(self, condition: Callable[[], T | None], timeout: float, what: str) -> T:
        """Poll ``condition`` while the trainer runs; fail if it exits or time runs out.
        Returns the condition's first truthy value."""

        def check() -> T | None:
            value = condition()
            if not value:
                self.require_alive()
            return value

        value = wait_until(check, timeout, what, self.diagnostics)
        assert value is not None
        return value

    def wait_exit(self, timeout: float) -> int:
        try:
            code: int = self.proc.wait(timeout)
            return code
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the trainer did not exit within {timeout:.0f}s\n{self.diagnostics()}",
                pytrace=False,
            )

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL (this process only) and reap it."""
        if self.alive():
            self.proc.kill()
        code = self.proc.wait(30)
        self._log.close()
        return code

    # -- HTTP

    @property
    def port(self) -> int:
        if self._port is None:
            pattern = re.compile(r"serving /metrics .* on http://[^\s:]+:(\d+)")

            def find() -> int | None:
                match = pattern.search(self.log_text())
                return int(match.group(1)) if match else None

            self._port = self.wait_for(find, 60, "the trainer's HTTP port in its log")
        return self._port

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def readyz(self) -> int:
        try:
            return self.get("/readyz", timeout=3.0)[0]
        except (urllib.error.URLError, OSError):
            return -1

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """/metrics as {(sample name, labels): value}."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}"
        out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                out[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return out


def metric(
    values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    key = (name, frozenset(labels.items()))
    if key not in values:
        raise AssertionError(f"metric {name}{labels or ''} is not exported")
    return values[key]


class Processes:
    """Subprocesses a test started; whatever still runs at teardown is killed (by pid)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Trainer | subprocess.Popen[bytes]] = []
        self.feeders: list[Feeder] = []
        self._count = 0

    def feeder(self, *args: Any, **kwargs: Any) -> Feeder:
        """A :class:`Feeder` that is closed at teardown if the test did not close it."""
        feeder = Feeder(*args, **kwargs)
        self.feeders.append(feeder)
        return feeder

    def trainer(self, args: Sequence[object], env: Mapping[str, str] | None = None) -> Trainer:
        self._count += 1
        trainer = Trainer(args, self.directory / f"trainer-{self._count}.log", env)
        self.started.append(trainer)
        return trainer

    def producer(self, args: Sequence[object]) -> subprocess.Popen[bytes]:
        """``python -m streamsgd produce ARGS`` in the background."""
        self._count += 1
        log = open(self.directory / f"producer-{self._count}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamsgd", "produce", *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=_child_env(),
        )
        log.close()
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        for feeder in self.feeders:
            feeder.close(check=False)
        for p in self.started:
            proc = p.proc if isinstance(p, Trainer) else p
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


# --------------------------------------------------------------------------- live producer


class Feeder:
    """Writes samples 0..n−1 of a synthetic stream to a topic from a background thread, at a
    steady rate, but never past a *gate* the test raises (:meth:`open_to`). Records hold
    exactly ``samples_per_record`` samples (the last one the rest), encoded like
    ``streamsgd produce`` does. A trainer with ``--max-samples n`` therefore cannot finish
    before the test opens the gate to n: a kill is always mid-stream."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        X: np.ndarray,
        y: np.ndarray,
        samples_per_record: int = 1,
        fmt: str = "json",
        rate: float = 1000.0,
    ) -> None:
        import threading

        from kafka import KafkaProducer

        from streamsgd.codec import encode_binary, encode_dense, encode_dense_batch

        self.topic = topic
        self.n = len(y)
        self.starts = list(range(0, self.n, samples_per_record))
        self.records: list[bytes] = []
        for lo in self.starts:
            hi = min(lo + samples_per_record, self.n)
            if samples_per_record == 1:
                self.records.append(encode_dense(X[lo], y[lo]))
            elif fmt == "binary":
                self.records.append(encode_binary(X[lo:hi], y[lo:hi]))
            else:
                self.records.append(encode_dense_batch(X[lo:hi], y[lo:hi]))
        self.rate = rate
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        self.failures: list[BaseException] = []
        self.sent = 0  # records handed to the producer
        self._gate = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    @property
    def n_records(self) -> int:
        return len(self.records)

    def record_of_sample(self, sample: int) -> tuple[int, int]:
        """(record offset, index inside it) of sample number ``sample``."""
        size = self.starts[1] - self.starts[0] if len(self.starts) > 1 else self.n
        return sample // size, sample % size

    def sent_samples(self) -> int:
        with self._cond:
            return self.n if self.sent == len(self.records) else self.starts[self.sent]

    def open_to(self, samples: int) -> None:
        """Let the feeder write every record that starts before sample ``samples``."""
        with self._cond:
            self._gate = max(self._gate, samples)
            self._cond.notify_all()

    def _blocked(self) -> bool:
        return self.sent >= len(self.records) or self.starts[self.sent] >= self._gate

    def _run(self) -> None:
        next_send = time.monotonic()
        while True:
            with self._cond:
                while not self._closed and self._blocked():
                    self._cond.wait()
                    next_send = max(next_send, time.monotonic())
                if self._closed:
                    return
                index = self.sent
            delay = next_send - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the stream's rate, not synchronisation
            next_send += 1.0 / self.rate
            future = self.producer.send(self.topic, self.records[index])
            future.add_errback(self.failures.append)
            with self._cond:
                self.sent = index + 1
                self._cond.notify_all()

    def wait_sent(self, samples: int, timeout: float = 60.0) -> None:
        """Block until every record below the gate ``samples`` is delivered (acks=all)."""
        self.open_to(samples)
        with self._cond:
            done = self._cond.wait_for(lambda: self._blocked() or self._closed, timeout)
        assert done, f"the feeder did not write up to sample {samples} in {timeout:.0f}s"
        self.producer.flush(timeout=60)
        assert not self.failures, f"produce failed: {self.failures[:3]}"

    def close(self, check: bool = True) -> None:
        """Stop the thread, deliver what was sent; ``check``: assert nothing failed."""
        with self._cond:
            already, self._closed = self._closed, True
            self._cond.notify_all()
        if not already:
            self._thread.join(30)
            try:
                self.producer.flush(timeout=60 if check else 5)
            finally:
                self.producer.close(timeout=10 if check else 1)
        if check:
            assert not self.failures, f"produce failed: {self.failures[:3]}"
