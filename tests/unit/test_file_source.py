"""The file source's bulk line cutting (LineSplitter.feed_values, one bytes.split per chunk)
against a line-by-line statement of its rules, and its polls as ValueRuns: offsets, resume
after a checkpoint, and lines over the limit reaching decode_poll as too_large records."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from streamsgd.buffer import Position
from streamsgd.codec import DecodedRun, Decoder, Rejection, ValueRun, decode_poll
from streamsgd.ports import SourceRecord
from streamsgd.sources.file import FileSource, LineSplitter


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
