"""The file source's bulk line cutting (LineSplitter.feed_values, one bytes.split per chunk)
against a line-by-line statement of its rules, and its polls as ValueRuns: offsets, resume
after a checkpoint, and lines over the limit reaching decode_poll as too_large records."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsgd.codec import DecodedRun, Decoder, Rejection, ValueRun, decode_poll
from streamsgd.sources import file as file_source
from streamsgd.sources.file import FileSource, LineSplitter
from streamsgd.training.buffer import Position
from streamsgd.training.ports import SourceRecord


def _reference(data: bytes, limit: int) -> list[tuple[bytes, int | None]]:
    """Each line (``\\n`` ends one; a last line without it counts if not empty): a line held
    whole (at most limit + 1 bytes) loses its trailing ``\\r``/``\\n`` bytes; one longer than
    the limit keeps its first ``limit`` bytes and its full size."""
    lines = data.split(b"\n")
    last = lines.pop()
    if last:
        lines.append(last)
    out: list[tuple[bytes, int | None]] = []
    for raw in lines:
        if len(raw) <= limit + 1:
            value = raw.rstrip(b"\r\n")
            out.append((value, None) if len(value) <= limit else (value[:limit], len(value)))
        else:
            out.append((raw[:limit], len(raw)))
    return out


@settings(max_examples=400, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"bb", b"\n", b"\r", b"\r\n", b"xyz" * 5]), max_size=40),
    cuts=st.lists(st.integers(0, 200), max_size=6),
    limit=st.integers(1, 12),
)
def test_bulk_splitting_equals_the_line_rules(data, cuts, limit):
    stream = b"".join(data)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    splitter = LineSplitter(max_line_bytes=limit)
    got: list[tuple[bytes, int | None]] = []
    for a, b in pairwise(points):
        got += splitter.feed(stream[a:b])
    last = splitter.finish()
    if last is not None:
        got.append(last)
    assert got == _reference(stream, limit)
    assert splitter.bytes_scanned == len(stream)
    assert splitter.bytes_copied <= 2 * len(stream)


def test_polls_are_value_runs_with_offsets_resume_and_oversized_lines(tmp_path: Path) -> None:
    good = b'{"features": {"a": 1, "b": "x"}, "y": 1}'
    lines = [good] * 5 + [b'{"features": {"a": "' + b"z" * 200 + b'"}, "y": 1}'] + [good] * 3
    path = tmp_path / "named.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    source = FileSource(str(path), max_line_bytes=100)
    source.seek({"file": Position(2)})  # a checkpoint covered lines 0 and 1
    polled = source.poll(1.0)
    assert isinstance(polled, ValueRun) and len(polled) == 7
    assert polled.first_offset == 2 and polled.values[0] == good
    record = polled[3]
    assert isinstance(record, SourceRecord) and record.offset == 5
    assert record.original_size_bytes == len(lines[5]) and len(record.value or b"") == 100
    assert polled[-1].offset == 8
    items = decode_poll(Decoder(1 << 4, hash_bits=4, max_record_bytes=100), polled)
    assert [type(i) for i in items] == [DecodedRun, Rejection, DecodedRun]
    assert items[1].reason == "too_large" and items[1].record.offset == 5
    assert [(i.first_offset, i.n_samples) for i in (items[0], items[2])] == [(2, 3), (6, 3)]
    assert list(source.poll(0.1)) == [] and source.exhausted
    source.close()


@settings(max_examples=400, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"bb", b"\n", b"\r", b"\r\n", b"xyz" * 5]), max_size=40),
    cuts=st.lists(st.integers(0, 200), max_size=6),
    limit=st.integers(1, 12),
)
def test_lines_left_in_their_chunk_equal_the_line_rules(data, cuts, limit):
    """feed_lines (the file source's path): the lines it returns as values, then those it
    leaves in the chunk, are the lines of the rules, in order."""
    stream = b"".join(data)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    splitter = LineSplitter(max_line_bytes=limit)
    got: list[tuple[bytes, int | None]] = []
    for a, b in pairwise(points):
        values, sizes, lines = splitter.feed_lines(stream[a:b])
        got += [(v, sizes.get(k)) for k, v in enumerate(values)]
        if lines is not None:
            chunk, starts, ends = lines
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                assert chunk[e] == ord("\n") and e - s <= limit
                got.append((chunk[s:e], None))
    last = splitter.finish()
    if last is not None:
        got.append(last)
    assert got == _reference(stream, limit)
    assert splitter.bytes_scanned == len(stream)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_a_file_read_in_small_chunks_polls_every_line_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, newline: bytes
) -> None:
    monkeypatch.setattr(file_source, "READ_BYTES", 100)
    monkeypatch.setattr(file_source, "LINES_PER_POLL", 3)
    lines = [b'{"features": {"k%d": %d}, "y": 1}' % (i, i) for i in range(60)]
    lines[17] = b"z" * 150  # over the limit
    path = tmp_path / "lines.jsonl"
    path.write_bytes(newline.join(lines) + newline)
    source = FileSource(str(path), max_line_bytes=120)
    source.seek({"file": Position(5)})
    seen: list[tuple[int, bytes, int | None]] = []
    decoder = Decoder(1 << 4, hash_bits=4, max_record_bytes=120)
    n_samples = 0
    while not source.exhausted:
        polled = source.poll(0.1)
        seen += [(r.offset, r.value or b"", r.original_size_bytes) for r in polled]
        for item in decode_poll(decoder, polled):
            n_samples += item.n_samples if isinstance(item, DecodedRun) else 0
    # A line over the limit is not held whole: its size counts its \r (as before).
    extra = len(newline) - 1
    want = [(i, v[:120], len(v) + extra if len(v) > 120 else None) for i, v in enumerate(lines)]
    want = want[5:]
    assert seen == want
    assert n_samples == 60 - 5 - 1
    source.close()
