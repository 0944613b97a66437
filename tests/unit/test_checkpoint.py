"""The checkpoint store in-process: the format-2 document and its checksum, the format-1
upgrade path, validation of every field the run loop reads (property-based fuzz over byte
and structure mutations), the one-writer lock, stale temp files, failing saves.

The checksum is recomputed here from the format's definition (canonical JSON: sorted keys,
no whitespace; SHA-256 of those bytes), not with the module's own helpers.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import io
import json
import logging
import math
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsgd import OnlineLogisticRegression
from streamsgd.checkpoint import (
    FILE_NAME,
    LOCK_NAME,
    CheckpointError,
    CheckpointLocked,
    DirectoryCheckpointStore,
    dumps,
    loads,
)
from streamsgd.cli import main
from streamsgd.codec import Decoder, encode_dense
from streamsgd.datasets.synthetic_stream import SyntheticStream
from streamsgd.training.trainer import ServiceConfig, Trainer
from tests.support.helpers import write_jsonl
from tests.support.kafka_helpers import wait_until
from tests.support.memory_source import MemorySource

D = 4
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- helpers
def trained_state(optimizer: str = "sgd", batch_size: int = 1) -> dict[str, Any]:
    """The state a real run checkpoints (m = 1 keeps the running mean-gradient vector;
    AdaGrad adds its accumulators)."""
    X, y = SyntheticStream(D, seed=5).samples(0, 120)
    records = [encode_dense(X[i], y[i]) for i in range(len(y))]
    service = Trainer(
        OnlineLogisticRegression(D, optimizer=optimizer, learning_rate=0.2),
        MemorySource(records),
        Decoder(D),
        ServiceConfig(batch_size=batch_size),
        source_description={"kind": "memory"},
    )
    service.run()
    return service.state()


STATES = {
    "sgd_m1": trained_state("sgd", 1),
    "adagrad_m8": trained_state("adagrad", 8),
}


def same(a: Any, b: Any) -> bool:
    """Equal values, arrays bit for bit, NaN equal to NaN, lists and tuples alike."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and np.asarray(a, dtype="<f8").tobytes() == np.asarray(b, dtype="<f8").tobytes()
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(same(x, z) for x, z in zip(a, b, strict=True))
        )
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and bool(a == b)


def canonical(encoded_state: Any) -> bytes:
    return json.dumps(encoded_state, sort_keys=True, separators=(",", ":")).encode()


def signed(encoded_state: Any) -> bytes:
    """A format-2 file around an (encoded) state, with a correct checksum."""
    digest = hashlib.sha256(canonical(encoded_state)).hexdigest()
    return json.dumps(
        {"format_version": 2, "sha256": digest, "state": encoded_state}, sort_keys=True
    ).encode()


def encoded(state: dict[str, Any]) -> Any:
    """The JSON tree of a state as the store writes it."""
    return json.loads(dumps(state))["state"]


def array(values: list[float]) -> dict[str, Any]:
    data = np.asarray(values, dtype="<f8")
    text = base64.b64encode(data.tobytes()).decode()
    return {"__ndarray__": "<f8", "shape": [len(values)], "base64": text}


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    return message


def restorable(state: dict[str, Any]) -> None:
    """What a loaded checkpoint must survive: the service's restore() (a CheckpointError
    is its refusal) and a JSON dump of it as ``streamsgd inspect --json`` prints."""
    service = Trainer(
        OnlineLogisticRegression(D), MemorySource([]), Decoder(D), ServiceConfig(batch_size=1)
    )
    with contextlib.suppress(CheckpointError):
        service.restore(state)


# --------------------------------------------------------------------------- format
@pytest.mark.parametrize("name", sorted(STATES))
def test_round_trip_is_bit_exact(name: str) -> None:
    state = STATES[name]
    assert same(loads(dumps(state)), state)


def test_document_is_format_2_with_a_sha256_of_the_canonical_state() -> None:
    document = json.loads(dumps(STATES["sgd_m1"]))
    assert set(document) == {"format_version", "sha256", "state"}
    assert document["format_version"] == 2
    assert document["sha256"] == hashlib.sha256(canonical(document["state"])).hexdigest()


@pytest.mark.parametrize("name", sorted(STATES))
def test_one_flipped_base64_character_is_refused(name: str) -> None:
    raw = dumps(STATES[name]).decode()
    start = raw.index('"base64":"') + len('"base64":"')
    flipped = "B" if raw[start] != "B" else "C"  # still valid base64, other weights
    mutated = raw[:start] + flipped + raw[start + 1 :]
    with pytest.raises(CheckpointError, match="checksum mismatch") as caught:
        loads(mutated.encode())
    one_line(caught.value)


def test_format_1_without_checksum_loads_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """The upgrade path: a checkpoint written by the previous release resumes."""
    state = STATES["adagrad_m8"]
    legacy = json.dumps({"format_version": 1, **encoded(state)}).encode()
    with caplog.at_level(logging.WARNING, logger="streamsgd.checkpoint"):
        loaded = loads(legacy)
    assert same(loaded, state)
    assert any("no checksum" in r.getMessage() for r in caplog.records)


def test_format_1_is_still_validated() -> None:
    tree = encoded(STATES["sgd_m1"])
    tree["model"]["theta"] = array([0.0] * D + [math.nan])
    with pytest.raises(CheckpointError, match=r"model\.theta: holds non-finite"):
        loads(json.dumps({"format_version": 1, **tree}).encode())


@pytest.mark.parametrize("version", [0, 3, "2", 2.0, True, None, [2]])
def test_unknown_format_versions_are_refused(version: object) -> None:
    document = json.loads(dumps(STATES["sgd_m1"]))
    document["format_version"] = version
    with pytest.raises(CheckpointError, match="unsupported checkpoint format_version") as caught:
        loads(json.dumps(document).encode())
    one_line(caught.value)


# --------------------------------------------------------------------------- validation
def _set(path: tuple[Any, ...], value: Any) -> Any:
    def mutate(tree: Any) -> None:
        for key in path[:-1]:
            tree = tree[key]
        tree[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Any:
    def mutate(tree: Any) -> None:
        for key in path[:-1]:
            tree = tree[key]
        del tree[path[-1]]

    return mutate


NAN_THETA = array([0.1, 0.2, math.nan, 0.3, 0.0])
INF_INTERCEPT = array([0.1, 0.2, 0.3, 0.4, math.inf])

STRUCTURE_DEFECTS = {
    # what is wrong: (mutation of the encoded state of STATES["sgd_m1"], expected words)
    "no model": (_delete(("model",)), "state: missing model"),
    "no positions": (_delete(("positions",)), "state: missing positions"),
    "no batch_size": (_delete(("batch_size",)), "state: missing batch_size"),
    "model not an object": (_set(("model",), [1, 2]), "model: expected an object"),
    "no theta": (_delete(("model", "theta")), "model: missing theta"),
    "wrong model format": (_set(("model", "format"), "x/9"), "model.format"),
    "theta a list": (_set(("model", "theta"), [0.0] * 5), "model.theta: expected a float64"),
    "theta too short": (_set(("model", "theta"), array([0.0] * D)), "expected 5 values"),
    "NaN weight": (_set(("model", "theta"), NAN_THETA), "model.theta: holds non-finite"),
    "inf intercept": (_set(("model", "theta"), INF_INTERCEPT), "model.theta: holds non-finite"),
    "float32 array": (_set(("model", "theta", "__ndarray__"), "<f4"), "array dtype"),
    "shape not sizes": (_set(("model", "theta", "shape"), [-5]), "array shape"),
    "bytes not shape": (_set(("model", "theta", "shape"), [7]), "array holds 40 bytes"),
    "bad base64": (_set(("model", "theta", "base64"), "!!!!"), "base64 is malformed"),
    "base64 a number": (_set(("model", "theta", "base64"), 3), "base64 is not a string"),
    "array extra key": (_set(("model", "theta", "x"), 1), "exactly __ndarray__"),
    "n_features zero": (_set(("model", "params", "n_features"), 0), "n_features: 0 is below"),
    "n_features a string": (_set(("model", "params", "n_features"), "4"), "expected an integer"),
    "param an array": (_set(("model", "params", "l2"), array([1.0])), "model.params.l2"),
    "negative n_updates": (_set(("model", "n_updates"), -1), "model.n_updates: -1 is below"),
    "float n_updates": (_set(("model", "n_updates"), 3.0), "model.n_updates: expected an int"),
    "bool n_samples": (_set(("model", "n_samples_seen"), True), "expected an integer, got bool"),
    "NaN accumulators": (_set(("model", "squared_gradient_sum"), NAN_THETA), "squared_gradient"),
    "negative accumulators": (
        _set(("model", "squared_gradient_sum"), array([1.0, -1.0, 0.0, 0.0, 0.0])),
        "squared_gradient_sum: holds negative",
    ),
    "stats smoothing 0": (_set(("model", "gradient_stats", "smoothing"), 0.0), "(0, 1]"),
    "stats a string": (_set(("model", "gradient_stats", "per_sample_variance"), "x"), "number"),
    "stats huge int": (
        _set(("model", "gradient_stats", "mean_squared_norm"), 10**400),
        "integer out of float range",
    ),
    "mean gradient a list": (
        _set(("model", "gradient_stats", "mean_gradient"), [1.0]),
        "mean_gradient: expected a float64",
    ),
    "within_batch_seen 1": (_set(("model", "gradient_stats", "within_batch_seen"), 1), "true or"),
    "position not a pair": (_set(("positions", "mem"), [5]), "[offset, skip_samples]"),
    "position offset string": (_set(("positions", "mem"), ["5", 0]), "expected an integer"),
    "negative position": (_set(("positions", "mem"), [-1, 0]), "-1 is below 0"),
    "offsets disagree": (_set(("offsets", "mem"), 3), "offsets: do not match"),
    "negative counter": (_set(("totals", "records_rejected"), -2), "totals.records_rejected"),
    "negative loss sum": (_set(("totals", "progressive_loss_sum"), -1.0), "is negative"),
    "missing total": (_delete(("totals", "samples_consumed")), "missing samples_consumed"),
    "source a string": (_set(("source",), "kafka"), "source: expected an object"),
    "array in source": (_set(("source", "x"), array([1.0])), "source.x"),
    "batch_size zero": (_set(("batch_size",), 0), "batch_size: 0 is below 1"),
    "odd partition name": (_set(("positions", "a\nb"), [-1, 0]), "positions['a\\nb'][0]"),
}


@pytest.mark.parametrize("defect", sorted(STRUCTURE_DEFECTS))
def test_every_structural_defect_is_one_line_naming_the_field(defect: str) -> None:
    mutate, words = STRUCTURE_DEFECTS[defect]
    tree = encoded(STATES["sgd_m1"])
    mutate(tree)
    with pytest.raises(CheckpointError) as caught:
        loads(signed(tree))
    assert words in one_line(caught.value)


def test_top_level_and_document_shape_errors_are_one_line() -> None:
    for raw in (b"", b"[1]", b"{ torn", b"\xff\xfe", b"[" * 100_000, b'{"format_version": 2}'):
        with pytest.raises(CheckpointError) as caught:
            loads(raw)
        one_line(caught.value)


# --------------------------------------------------------------------------- fuzz
RAW = dumps(STATES["sgd_m1"])


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    raw = bytearray(RAW)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and raw:
            raw[at] = draw(st.sampled_from(b'0123456789abcdefABCDEF+/=",:{}[]-.eE nN'))
        elif kind == "delete":
            del raw[at : at + draw(st.integers(1, 40))]
        elif kind == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[at:]
    return bytes(raw)


@FUZZ
@given(byte_mutations())
def test_fuzz_mutated_bytes_load_as_the_original_or_raise_checkpoint_error(raw: bytes) -> None:
    """Any change of the file's bytes: the same state back (e.g. whitespace outside the
    state) or a one-line CheckpointError; never another exception."""
    try:
        state = loads(raw)
    except CheckpointError as exc:
        one_line(exc)
        return
    assert same(state, STATES["sgd_m1"])


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out += _paths(value, (*prefix, i))
    return out


REPLACEMENTS = st.sampled_from(
    [
        None,
        True,
        False,
        -1,
        0,
        1,
        7,
        2.5,
        -0.5,
        math.nan,
        math.inf,
        10**30,
        "",
        "x",
        "<f8",
        [],
        [0, 0],
        [1, -1],
        {},
        {"a": 1},
        array([1.0]),
        array([0.0] * (D + 1)),
        array([math.nan] * (D + 1)),
        "AAAAAAAAAAA=",
        [D + 1],
    ]
)


@settings(FUZZ, max_examples=500)
@given(st.data())
def test_fuzz_restructured_checkpoints_are_refused_or_usable(data: st.DataObject) -> None:
    """Delete or retype any field of a real checkpoint's JSON tree and sign it again (so the
    checksum is no help): load() raises a one-line CheckpointError, or what it returns can
    be restored by the service and printed by ``streamsgd inspect --json``."""
    name = data.draw(st.sampled_from(sorted(STATES)))
    tree = encoded(STATES[name])
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(tree)
        path = data.draw(st.sampled_from(paths))
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(data.draw(REPLACEMENTS))  # never shared
        if not isinstance(tree, dict) or not tree:
            break
    raw = signed(tree)
    try:
        state = loads(raw)
    except CheckpointError as exc:
        one_line(exc)
        return
    restorable(state)
    with _checkpoint_dir(raw) as directory, contextlib.redirect_stdout(io.StringIO()):
        assert main(["inspect", str(directory), "--json"]) == 0


@contextlib.contextmanager
def _checkpoint_dir(raw: bytes) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as name:
        (Path(name) / FILE_NAME).write_bytes(raw)
        yield Path(name)


@FUZZ
@given(
    st.sampled_from(["theta", "squared_gradient_sum"]),
    st.integers(0, D),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_fuzz_non_finite_weights_or_accumulators_are_refused(
    field: str, index: int, bad: float
) -> None:
    state = STATES["adagrad_m8"]
    values = state["model"][field].copy()
    values[index] = bad
    tree = encoded(state)
    tree["model"][field] = array(values.tolist())
    with pytest.raises(CheckpointError, match=rf"model\.{field}: holds non-finite"):
        loads(signed(tree))


# --------------------------------------------------------------------------- the store
def test_second_writer_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = DirectoryCheckpointStore(tmp_path)
    first.save(STATES["sgd_m1"])
    with pytest.raises(CheckpointLocked) as caught:
        DirectoryCheckpointStore(tmp_path)
    message = one_line(caught.value)
    assert str(tmp_path) in message and f"pid {os.getpid()}" in message
    first.close()
    with DirectoryCheckpointStore(tmp_path) as second:
        assert same(second.load(), STATES["sgd_m1"])


def test_a_dropped_store_releases_the_lock(tmp_path: Path) -> None:
    DirectoryCheckpointStore(tmp_path)  # not kept: freed at once
    DirectoryCheckpointStore(tmp_path).close()


def test_readers_load_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    with DirectoryCheckpointStore(tmp_path) as writer:
        reader = DirectoryCheckpointStore(tmp_path, read_only=True)
        assert reader.load() is None
        writer.save(STATES["adagrad_m8"])
        assert same(reader.load(), STATES["adagrad_m8"])
        with pytest.raises(CheckpointError, match="read-only or closed"):
            reader.save(STATES["adagrad_m8"])


def test_read_only_store_creates_nothing(tmp_path: Path) -> None:
    assert DirectoryCheckpointStore(tmp_path / "absent", read_only=True).load() is None
    assert not (tmp_path / "absent").exists()


def test_saving_after_close_is_refused(tmp_path: Path) -> None:
    store = DirectoryCheckpointStore(tmp_path)
    store.close()
    store.close()
    with pytest.raises(CheckpointError, match="read-only or closed"):
        store.save(STATES["sgd_m1"])


def test_stale_temp_files_are_removed_only_by_the_lock_holder(tmp_path: Path) -> None:
    stale = [tmp_path / "checkpoint.json.abc123.tmp", tmp_path / "checkpoint.json.tmp"]
    other = tmp_path / "notes.tmp"
    for path in [*stale, other]:
        path.write_bytes(b"{ torn")
    DirectoryCheckpointStore(tmp_path, read_only=True).load()
    assert all(p.exists() for p in stale)
    with DirectoryCheckpointStore(tmp_path):
        assert not any(p.exists() for p in stale)
        stale[0].write_bytes(b"{ torn")  # as if another writer were mid-save
        with pytest.raises(CheckpointLocked):
            DirectoryCheckpointStore(tmp_path)
        assert stale[0].exists()
    assert other.exists()


def test_saves_leave_no_temp_files_and_a_lock_file_naming_the_holder(tmp_path: Path) -> None:
    with DirectoryCheckpointStore(tmp_path) as store:
        for _ in range(3):
            store.save(STATES["sgd_m1"])
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME, FILE_NAME]
        assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} on ")
        assert (tmp_path / FILE_NAME).stat().st_mode & 0o777 == 0o644


def test_uncreatable_directory_is_a_one_line_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(CheckpointError, match="cannot use checkpoint directory") as caught:
        DirectoryCheckpointStore(tmp_path / "file" / "checkpoints")
    one_line(caught.value)


def test_failed_save_is_a_one_line_os_error_and_keeps_nothing_half_written(
    tmp_path: Path,
) -> None:
    """The directory vanishes under a running writer (as a full or failed disk would make
    writes fail): save() raises OSError with one line, for the service to count or report."""
    directory = tmp_path / "ckpt"
    store = DirectoryCheckpointStore(directory)
    store.save(STATES["sgd_m1"])
    shutil.rmtree(directory)
    with pytest.raises(OSError, match="cannot save a checkpoint in") as caught:
        store.save(STATES["sgd_m1"])
    one_line(caught.value)
    store.close()


def test_a_state_load_would_refuse_is_never_written(tmp_path: Path) -> None:
    state = STATES["sgd_m1"]
    broken = {**state, "model": {**state["model"], "theta": np.full(D + 1, np.nan)}}
    with DirectoryCheckpointStore(tmp_path) as store:
        store.save(state)
        with pytest.raises(OSError, match=r"refusing to save a checkpoint: model\.theta") as caught:
            store.save(broken)
        one_line(caught.value)
        assert same(store.load(), state)
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME, FILE_NAME]


def test_threads_saving_and_loading_never_see_a_torn_checkpoint(tmp_path: Path) -> None:
    """One writer thread saves states numbered 0, 1, 2, ... while readers load: every load
    is a whole, valid checkpoint whose number never goes back."""
    template = STATES["sgd_m1"]
    stop = threading.Event()
    writer_error: list[BaseException] = []

    def write() -> None:
        try:
            with DirectoryCheckpointStore(tmp_path) as store:
                n = 0
                while not stop.is_set():
                    theta = template["model"]["theta"].copy()
                    theta[0] = n
                    store.save(
                        {**template, "model": {**template["model"], "theta": theta, "n_updates": n}}
                    )
                    n += 1
        except BaseException as exc:
            writer_error.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    reader = DirectoryCheckpointStore(tmp_path, read_only=True)
    seen: list[int] = []

    def enough_states() -> bool:
        state = reader.load()
        if state is not None:
            assert state["model"]["theta"][0] == state["model"]["n_updates"]
            assert not seen or state["model"]["n_updates"] >= seen[-1]
            seen.append(state["model"]["n_updates"])
        return len(set(seen)) >= 30 or bool(writer_error)

    try:
        wait_until(enough_states, 120, "30 distinct checkpoints read")
    finally:
        stop.set()
        thread.join()
    assert not writer_error, writer_error


def test_forgetting_adagrad_restarts_from_a_checkpoint_bit_identically(tmp_path: Path) -> None:
    """learn, checkpoint, restore, continue == uninterrupted, for AdaGrad that forgets
    (h is in the state; a restart that lost it would continue with A ← A + ḡ²)."""
    X, y = SyntheticStream(D, seed=9).samples(0, 960)
    data = tmp_path / "data.jsonl"
    write_jsonl(data, X, y)
    flags = ["train", "--source", "file", "--path", str(data), "--n-features", str(D)]
    flags += ["--batch-size", "16", "--optimizer", "adagrad", "--adagrad-half-life-samples", "64"]
    flags += ["--log-level", "WARNING"]
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    assert main([*flags, "--checkpoint-dir", str(whole)]) == 0
    assert main([*flags, "--checkpoint-dir", str(halves), "--max-samples", "480"]) == 0
    restored = DirectoryCheckpointStore(halves, read_only=True).load()
    assert restored is not None and restored["model"]["n_samples_seen"] == 480
    assert restored["model"]["params"]["adagrad_half_life_samples"] == 64.0
    assert main([*flags, "--checkpoint-dir", str(halves)]) == 0
    a = DirectoryCheckpointStore(whole, read_only=True).load()
    b = DirectoryCheckpointStore(halves, read_only=True).load()
    assert a is not None and b is not None and a["model"]["n_samples_seen"] == 960
    assert a["model"]["theta"].tobytes() == b["model"]["theta"].tobytes()
    sums = a["model"]["squared_gradient_sum"], b["model"]["squared_gradient_sum"]
    assert sums[0].tobytes() == sums[1].tobytes()


def test_a_checkpoint_from_before_the_half_life_restores_without_a_changed_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A state without ``adagrad_half_life_samples`` holds h = 0 (never forget): restoring
    it into a model with h = 0 changes no hyper-parameter, so nothing is reported."""
    state = copy.deepcopy(STATES["adagrad_m8"])
    del state["model"]["params"]["adagrad_half_life_samples"]
    service = Trainer(
        OnlineLogisticRegression(D, optimizer="adagrad", learning_rate=0.2),
        MemorySource([]),
        Decoder(D),
        ServiceConfig(batch_size=8),
    )
    with caplog.at_level(logging.WARNING):
        service.restore(state)
    assert "hyper-parameters changed" not in caplog.text
    assert service.model.adagrad_half_life_samples == 0.0
