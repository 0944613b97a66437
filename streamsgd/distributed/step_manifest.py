"""The step manifest: which samples each step of a replicated run took, and its replay.

Entries (JSON objects, in step order)::

    {"start": {"topic:0": [offset, skip_samples], ...}}              — once, first
    {"step": k, "n_samples": M, "ends": {"topic:3": [offset, skip_samples], ...}}

or, in a file a writer started over at step k (it took over where the lineage's file is not:
another host's disk), a base entry first instead of the start entry::

    {"base": {"topic:0": [offset, skip_samples], ...}, "step": k, "state": "manifest-base-k.json"}

whose state (a checkpoint document beside the file) is the run's at step k.

A step's samples are, per partition in ``ends``, the half-open range from the partition's
previous position (the ``start`` entry's, or its last ``ends``) to its new one, where a
position is the next record to read and how many of its samples were already taken
(:class:`~streamsgd.training.buffer.Position`; rejected records in a range contribute nothing).
Partitions a step did not move are left out. The union batch of step k is those ranges'
samples, partitions in the exchange's order
(:func:`~streamsgd.distributed.partitions.sorted_partitions`).

:func:`replay_manifest` learns the entries' batches in one process: the model a replicated
run must equal (up to the order of floating-point additions) — the tests' oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..codec import Decoder, Rejection, decode_poll
from ..core.model import OnlineLogisticRegression
from ..training.buffer import MinibatchBuffer, Position, slice_rows
from ..training.ports import SourceRecord
from .partitions import sorted_partitions

# Records of one partition with offsets first ≤ offset ≤ last, in order.
RecordReader = Callable[[str, int, int], Sequence[SourceRecord]]


def start_entry(positions: dict[str, Position]) -> dict[str, Any]:
    return {"start": {p: [pos.offset, pos.skip_samples] for p, pos in positions.items()}}


def base_entry(step: int, positions: dict[str, Position]) -> dict[str, Any]:
    """The first entry of a file started over at step ``step`` (the file adds the state's
    name: :meth:`~streamsgd.checkpoint.manifest_file.ManifestFile.rebase`)."""
    base = {p: [pos.offset, pos.skip_samples] for p, pos in positions.items()}
    return {"base": base, "step": step}


def begins(entries: Sequence[dict[str, Any]]) -> bool:
    """The entries begin where a replay can: a start entry, or a base entry."""
    return bool(entries) and ("start" in entries[0] or "base" in entries[0])


def step_entry(
    step: int, n_samples: int, before: dict[str, Position], after: dict[str, Position]
) -> dict[str, Any]:
    """The entry of step ``step`` (M = ``n_samples``), from the positions before and after."""
    ends = {p: [pos.offset, pos.skip_samples] for p, pos in after.items() if before.get(p) != pos}
    return {"step": step, "n_samples": n_samples, "ends": ends}


def last_step(entries: Sequence[dict[str, Any]]) -> int:
    """The step of the last step entry (0 when there is none)."""
    steps = [int(e["step"]) for e in entries if "step" in e]
    return steps[-1] if steps else 0


def replay_manifest(
    entries: Sequence[dict[str, Any]],
    read_records: RecordReader,
    decoder: Decoder,
    model: OnlineLogisticRegression,
    base_model: Callable[[dict[str, Any]], OnlineLogisticRegression] | None = None,
) -> OnlineLogisticRegression:
    """Learn every step of ``entries`` on ``model`` (fresh, as the run started), one
    ``learn_batch`` per step on its union batch; returns the model. A file that begins with
    a base entry starts from ``base_model(entry)`` (the state it names) instead of ``model``.

    Raises
    ------
    ValueError
        The manifest has no ``start`` entry first (nor a base entry and ``base_model``), or a
        step's ranges do not hold its ``n_samples`` samples (the records read are not those
        the run read).
    """
    first = entries[0] if entries else {}
    if "base" in first and base_model is not None:
        model, begin = base_model(first), first["base"]
    elif "start" in first:
        begin = first["start"]
    else:
        raise ValueError("a manifest starts with its start positions (or a base and its state)")
    positions = {p: Position(*v) for p, v in begin.items()}
    for entry in entries[1:]:
        batch = MinibatchBuffer()
        for partition in sorted_partitions(list(entry["ends"])):
            end = Position(*entry["ends"][partition])
            begin = positions.get(partition, Position(0))
            _append_range(batch, read_records, decoder, partition, begin, end)
            positions[partition] = end
        if len(batch) != int(entry["n_samples"]):
            raise ValueError(
                f"step {entry['step']}: the ranges hold {len(batch)} samples, the manifest "
                f"says {entry['n_samples']}"
            )
        minibatch = batch.take(len(batch))
        model.learn_batch(minibatch.X, minibatch.y, minibatch.sample_weight)
    return model


def _append_range(
    batch: MinibatchBuffer,
    read_records: RecordReader,
    decoder: Decoder,
    partition: str,
    begin: Position,
    end: Position,
) -> None:
    """The samples from ``begin`` (inclusive) to ``end`` (exclusive) of one partition."""
    last = end.offset if end.skip_samples else end.offset - 1
    if last < begin.offset:
        return
    for record in read_records(partition, begin.offset, last):
        for item in decode_poll(decoder, [record]):
            if isinstance(item, Rejection):
                continue
            first = begin.skip_samples if record.offset == begin.offset else 0
            stop = end.skip_samples if record.offset == end.offset else item.n_samples
            if stop > first:
                weight = None if item.weight is None else item.weight[first:stop]
                X = slice_rows(item.X, first, stop)
                batch.append(X, item.y[first:stop], weight, partition, record.offset)
