"""The compiled parser of named-feature records (streamsgd.codec._named_json) against the
Python decoder: a record it accepts decodes to the same row, label and weight, bit for bit;
anything else it declines, and decode_poll (compiled parser + Python fallback) then gives,
record by record, the same rows and the same rejection reasons as Decoder.decode — on the
bad-record corpus and on random records (keys with unicode and escapes, numbers of every
JSON form, strings, labels, weights, garbage)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsgd.codec import Decoder, RecordRejected
from streamsgd.codec._named_json import parse_named
from streamsgd.core.sparse import SparseRows

from .core.test_murmurhash import reference_murmurhash3_32
from .test_codec import BAD, _poll_agrees


def _parser_agrees(decoder: Decoder, values: list[bytes | None]) -> np.ndarray:
    """parse_named on ``values``: every record it accepts equals decode() bit for bit (a
    record decode() rejects is never accepted). Returns the accepted flags."""
    assert decoder.hash_bits is not None
    accepted, indptr, indices, data, y, weight, weighted = parse_named(
        values, decoder.hash_bits, decoder.max_record_bytes, decoder.max_sample_weight
    )
    assert accepted.shape == (len(values),) and len(indptr) == int(accepted.sum()) + 1
    row = 0
    for value, ok in zip(values, accepted.tolist(), strict=True):
        if not ok:
            continue
        try:
            want = decoder.decode(value)
        except RecordRejected as exc:  # pragma: no cover - the failure this test is for
            raise AssertionError(f"accepted {value!r}, which decode rejects: {exc}") from None
        lo, hi = indptr[row], indptr[row + 1]
        assert isinstance(want.X, SparseRows)
        assert np.array_equal(want.X.indices, indices[lo:hi]), value
        # Bit for bit (a -0.0 against a 0.0 would pass ==).
        assert want.X.values.tobytes() == data[lo:hi].tobytes(), value
        assert want.y.tobytes() == y[row : row + 1].tobytes(), value
        if want.weight is None:
            assert not weighted[row] and weight[row] == 1.0
        else:
            assert weighted[row] and want.weight.tobytes() == weight[row : row + 1].tobytes()
        row += 1
    return accepted


def _hashed(**kwargs: object) -> Decoder:
    bits = int(kwargs.pop("hash_bits", 4))  # type: ignore[call-overload]
    return Decoder(1 << bits, hash_bits=bits, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ corpus


@pytest.mark.parametrize("record,kwargs,reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_record_corpus_is_declined_and_gets_its_reason(record, kwargs, reason):
    """Every record of the corpus (dense and binary ones too: a hashing decoder may receive
    any form) is declined by the parser; through decode_poll it gets decode()'s reason,
    alone and between good named records."""
    decoder = _hashed(**kwargs)
    accepted = _parser_agrees(decoder, [record])
    if reason != "hashing_disabled":  # with hashing that record is a valid named sample
        assert not accepted[0]
    good = b'{"features": {"a": 1, "b": "x"}, "y": 1}'
    _poll_agrees(decoder, [record])
    _poll_agrees(decoder, [good, record, good, good])


@pytest.mark.parametrize(
    "record",
    [
        b'{"features": {"a": 1, "a": 2}, "y": 1}',  # duplicate key: last value, first place
        b'{"features": {"a": 1}, "y": 1, "y": 0}',
        b'{"features": {"a": 1}, "features": {"b": 1}, "y": 1}',
        b'{"features": {"a": 1}, "y": 1, "id": 7}',  # another member: decoded, ignored
        b'{"features": {"\\ud800": 1}, "y": 1}',  # lone surrogate: json.loads only
        b'{"features": {"a": "\\udc00"}, "y": 1}',
        b'{"features": {"\xff": 1}, "y": 1}',  # invalid UTF-8
        b'{"features": {"\xc0\xaf": 1}, "y": 1}',  # overlong
        b'{"features": {"\xed\xa0\x80": 1}, "y": 1}',  # an encoded surrogate
        b'{"features": {"a": 1}, "y": 1}  x',
        b'{"features": {"a": 1,}, "y": 1}',
        b'{"features": {"a": 01}, "y": 1}',
        b'{"features": {"a": 1.}, "y": 1}',
        b'{"features": {"a": .5}, "y": 1}',
        b'{"features": {"a": +1}, "y": 1}',
        b'{"features": {"a": 1e}, "y": 1}',
        b'{"features": {"a": -}, "y": 1}',
        b'{"features": {"a": 12345678901234567890}, "y": 1}',  # 20 digits: the decoder's
        b'{"features": {"a": 1e400}, "y": 1}',
        b'{"features": {"a": -Infinity}, "y": 1}',
        b'{"features": {"a": 1}, "y": 1, "weight": 1001}',
        b'{"features": {"a": 1}, "y": 1, "weight": -0.5}',
        b'{"features": {"a": 1}, "y": 1, "weight": true}',
        b'{"features": {"a": 1}, "y": 1.0}',
        b'{"features": {"a": 1}, "y": "1"}',
        b'{"features": {"a": "tab\there"}, "y": 1}',  # a raw control character
        b'{"features": {"a": "x\\q"}, "y": 1}',  # an unknown escape
        b'\xef\xbb\xbf{"features": {"a": 1}, "y": 1}',  # a byte order mark
        b'{"features": {"a": 1}, "y": 1',
        b'{"features": {"a": 1} "y": 1}',
        b'{"features" {"a": 1}, "y": 1}',
        b'{"features": {"a"}, "y": 1}',
        b'{"features": {"a": 1}}',
        b'{"y": 1}',
        b"[]",
        b"{}",
    ],
)
def test_unusual_records_are_declined_and_decoded_by_the_python_decoder(record):
    decoder = _hashed(hash_bits=6)
    assert not _parser_agrees(decoder, [record])[0]
    _poll_agrees(decoder, [record, b'{"features": {"a": 2}, "y": 0}'])


def test_common_records_are_accepted_with_murmurhash3_buckets():
    """The parser takes the forms it is for (member order, whitespace, escapes, unicode,
    every label, weights, an empty object) and its buckets are MurmurHash3's."""
    records = [
        b'{"features": {"age": 31.5, "country": "FR"}, "y": 1}',
        b' { "y" : -1 , "weight" : 2.5 , "features" : { } } \r\n',
        b'{"weight": 0, "y": true, "features": {"caf\\u00e9": "\\ud83d\\ude00", "n": -0}}',
        '{"features": {"café": "日本", "a\\"b": 1e-3, "x": 5E+2}, "y": false}'.encode(),
        b'{"features": {"\\u0079": 12345678901234567, "b": -0.0, "c": 1e308}, "y": 0}',
        b'{"features": {"a": 0.1000000000000000055511151231257827}, "y": 1}',
    ]
    bits = 18
    decoder = _hashed(hash_bits=bits)
    accepted = _parser_agrees(decoder, records)
    assert accepted.all()
    _, indptr, indices, data, y, weight, weighted = parse_named(records, bits, 1 << 20, 1000.0)
    mask = (1 << bits) - 1
    want = sorted(
        [
            (reference_murmurhash3_32(b"age") & mask, 31.5),
            (reference_murmurhash3_32(b"country=FR") & mask, 1.0),
        ]
    )
    pairs = zip(indices[: indptr[1]].tolist(), data[: indptr[1]].tolist(), strict=True)
    assert list(pairs) == want
    assert y.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert weighted.tolist() == [0, 1, 1, 0, 0, 0] and weight[1] == 2.5
    name = "café=😀".encode()
    assert reference_murmurhash3_32(name) & mask in indices[indptr[2] : indptr[3]].tolist()


def test_collisions_sum_in_record_order_and_rows_are_canonical():
    rng = np.random.default_rng(3)
    records = [
        json.dumps(
            {
                "features": {
                    f"f{j}": float(rng.normal()) * 10.0 ** int(rng.integers(-5, 5))
                    for j in range(40)
                }
                | {f"s{j}": f"v{int(rng.integers(0, 9))}" for j in range(5)},
                "y": int(rng.integers(0, 2)),
            }
        ).encode()
        for _ in range(100)
    ]
    decoder = _hashed(hash_bits=3)  # 8 buckets, 45 features: sums of many values
    assert _parser_agrees(decoder, records).all()
    _poll_agrees(decoder, records)


def test_key_cache_gives_each_key_its_own_hash():
    """Keys are hashed through a cache of 1,024 slots picked by a cheap hash (31 h + byte)
    and kept across calls: keys that share a slot (``Aa`` and ``BB`` have the same cheap
    hash), more distinct keys than slots, keys at and past the longest cached length, and
    keys as the key of a string feature all get their own MurmurHash3 bucket."""
    bits = 20
    mask = (1 << bits) - 1
    decoder = _hashed(hash_bits=bits)
    colliding = ["Aa", "BB", "AaAa", "BBBB", "AaBB", "BBAa"]
    many = [f"key{j}" for j in range(3000)]
    long = ["x" * 27, "x" * 28, "x" * 29, "x" * 28 + "y", "y" + "x" * 27]
    names = colliding + many + long
    rng = np.random.default_rng(7)
    for call in range(3):  # the cache outlives a call: later calls find earlier keys
        picks = [names[k] for k in rng.permutation(len(names))]
        records = []
        for lo in range(0, len(picks), 21):
            features: dict[str, object] = {
                k: float(j % 5) + 0.5 for j, k in enumerate(picks[lo : lo + 21])
            }
            if call == 2:  # the first key as a string feature's key ("key=v")
                features[picks[lo]] = "v"
            records.append(json.dumps({"features": features, "y": 1}).encode())
        records += [b'{"features": {"Aa": 1, "BB": 2}, "y": 0}'] * 2
        records += [b'{"features": {"BB": 3, "Aa": 4}, "y": 0}']
        assert _parser_agrees(decoder, records).all()
        _, indptr, indices, data, _, _, _ = parse_named(records, bits, 1 << 20, 1000.0)
        for row, record in enumerate(records):
            features = json.loads(record)["features"]
            want: dict[int, float] = {}
            for key, value in features.items():
                name = key if not isinstance(value, str) else f"{key}={value}"
                bucket = reference_murmurhash3_32(name.encode()) & mask
                want[bucket] = want.get(bucket, 0.0) + (1.0 if isinstance(value, str) else value)
            lo, hi = indptr[row], indptr[row + 1]
            assert dict(zip(indices[lo:hi].tolist(), data[lo:hi].tolist(), strict=True)) == want


# ------------------------------------------------------------------------------ random records

_keys = st.one_of(
    st.text(min_size=1, max_size=5),
    st.text(alphabet='ab"\\/\b\f\n\r\t\x00\x1f é日😀=', max_size=5),
    st.sampled_from(["features", "y", "weight", "x", "X"]),
)


def _number_token(valid: bool) -> st.SearchStrategy[str]:
    """JSON number tokens of every form; with ``valid`` False also ones off the grammar."""
    digits = st.text(alphabet="0123456789", min_size=1, max_size=22 if not valid else 17)
    exponent = st.tuples(
        st.sampled_from(["e", "E"]),
        st.sampled_from(["", "+", "-"]),
        st.text(alphabet="0123456789", min_size=1, max_size=3),
    )
    integer = [st.just("0"), digits.filter(lambda d: d[0] != "0")]
    fraction = [st.just(""), digits.map(lambda d: "." + d)]
    if not valid:
        integer.append(digits)  # 012
        fraction.append(st.just("."))
    return st.tuples(
        st.sampled_from(["", "-"]),
        st.one_of(*integer),
        st.one_of(*fraction),
        st.one_of(st.just(""), exponent.map("".join)),
    ).map("".join)


_good_numbers = st.one_of(
    _number_token(valid=True),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**18) + 1, 10**18 - 1).map(str),
)
_numbers = st.one_of(
    _good_numbers,
    _number_token(valid=False),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "-0.0", "5e-324"]),
)
_strings = st.text(max_size=6).flatmap(
    lambda t: st.sampled_from([json.dumps(t), json.dumps(t, ensure_ascii=False)])
)
_bad_values = st.one_of(
    _numbers,
    st.sampled_from(["true", "false", "null", "[1]", "{}", '{"a": 1}', '"\\ud800"']),
)
_good_labels = st.sampled_from(["0", "1", "-1", "true", "false", "-0"])
_bad_labels = st.one_of(
    st.sampled_from(["2", "1.0", '"1"', "null", "[1]", "-2", "1e0"]),
    _numbers,
)
_weights = st.one_of(_good_numbers.filter(lambda t: not t.startswith("-")), _numbers)


def _rarely(draw: st.DrawFn, good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> str:
    """Mostly a valid token, one time in ten an odd or invalid one."""
    return draw(bad if draw(st.integers(0, 9)) == 0 else good)


_space = st.sampled_from(["", " ", "\n", "\t ", "\r\n", "", "", ""])


@st.composite
def named_records(draw: st.DrawFn) -> bytes:
    space = draw(_space)
    n_features = draw(st.integers(0, 8))
    features = [
        (draw(_keys), _rarely(draw, st.one_of(_good_numbers, _strings), _bad_values))
        for _ in range(n_features)
    ]
    if features and not draw(st.integers(0, 9)):  # sometimes a key twice
        features.append((features[0][0], draw(_good_numbers)))
    members = []
    for key, value in features:
        key_token = json.dumps(key, ensure_ascii=draw(st.booleans()))
        members.append(f"{key_token}{space}:{draw(_space)}{value}")
    top = [f'"features":{space}{{{",".join(members)}}}']
    if draw(st.integers(0, 19)):
        top.append(f'"y":{_rarely(draw, _good_labels, _bad_labels)}')
    if draw(st.booleans()):
        top.append(f'"weight":{space}{_rarely(draw, _weights, _bad_values)}')
    if not draw(st.integers(0, 19)):
        top.append(f"{json.dumps(draw(_keys))}: {draw(_good_numbers)}")
    order = draw(st.permutations(top))
    record = (space + "{" + ",".join(order) + "}" + draw(_space)).encode()
    garbage = draw(st.integers(0, 19))
    if garbage == 0 and record:  # cut short
        record = record[: draw(st.integers(0, len(record) - 1))]
    elif garbage == 2:  # whitespace JSON does not know
        record = b"\x0c" + record
    elif garbage == 1:  # a random byte somewhere
        at = draw(st.integers(0, len(record)))
        record = record[:at] + bytes([draw(st.integers(0, 255))]) + record[at:]
    return record


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(st.one_of(named_records(), st.binary(max_size=20)), min_size=1, max_size=8),
    bits=st.sampled_from([1, 4, 18]),
    limit=st.sampled_from([1 << 20, 120]),
    max_weight=st.sampled_from([1000.0, 2.0]),
)
def test_property_compiled_parser_and_fallback_equal_the_python_decoder(
    records, bits, limit, max_weight
):
    decoder = _hashed(hash_bits=bits, max_record_bytes=limit, max_sample_weight=max_weight)
    _parser_agrees(decoder, records)
    _poll_agrees(decoder, records)


@settings(max_examples=300, deadline=None)
@given(
    features=st.dictionaries(
        st.text(max_size=8),
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(10**18) + 1, 10**18 - 1),  # up to 18 digits
            st.text(max_size=8),
        ),
        max_size=12,
    ),
    label=st.sampled_from([0, 1, -1, True, False]),
    weight=st.one_of(st.none(), st.floats(0.0, 1000.0)),
    ensure_ascii=st.booleans(),
)
def test_property_valid_named_records_are_all_accepted(features, label, weight, ensure_ascii):
    """The parser is no mere decliner: every valid record of the form is taken (numbers as
    Python's json writes them: repr of floats, integers up to 18 digits)."""
    obj: dict[str, object] = {"features": features, "y": label}
    if weight is not None:
        obj["weight"] = weight
    record = json.dumps(obj, ensure_ascii=ensure_ascii).encode()
    decoder = _hashed(hash_bits=10)
    assert _parser_agrees(decoder, [record])[0], record


def test_records_of_many_features_and_a_duplicate_among_them():
    """Past 512 keys the duplicate check sorts the key hashes instead of using its set."""
    decoder = _hashed(hash_bits=12)
    for n in (100, 600):
        features = ", ".join(f'"k{j}": {j % 7 - 3}.5' for j in range(n))
        record = f'{{"features": {{{features}}}, "y": 1}}'.encode()
        duplicate = f'{{"features": {{{features}, "k{n // 2}": 1}}, "y": 1}}'.encode()
        assert _parser_agrees(decoder, [record, duplicate]).tolist() == [1, 0]
        _poll_agrees(decoder, [record, duplicate, record])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(
        st.one_of(named_records(), st.binary(max_size=20)).filter(lambda r: b"\n" not in r),
        max_size=8,
    ),
    tail=st.binary(max_size=8).filter(lambda r: b"\n" not in r),
)
def test_property_lines_of_a_chunk_parse_as_their_values(records, tail):
    """parse_named_lines on a chunk's lines (no bytes object per line, each line ended by
    its newline instead of a NUL) gives exactly parse_named's result on the lines."""
    from streamsgd.codec._named_json import line_bounds, parse_named_lines

    chunk = b"".join(r + b"\n" for r in records) + tail
    starts, ends = line_bounds(chunk)
    assert [chunk[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)] == records
    for bits, limit in ((4, 1 << 20), (18, 40)):
        want = parse_named(records, bits, limit, 1000.0)
        got = parse_named_lines(chunk, starts, ends, bits, limit, 1000.0)
        for a, b in zip(want, got, strict=True):
            assert a.tobytes() == b.tobytes()


def test_lines_must_end_with_their_newline():
    from streamsgd.codec._named_json import parse_named_lines

    chunk = b'{"features": {"a": 1}, "y": 1}\n'
    ok = parse_named_lines(chunk, np.array([0]), np.array([len(chunk) - 1]), 4, 100, 1.0)
    assert ok[0].tolist() == [1]
    for start, end in ((0, len(chunk) - 2), (0, len(chunk)), (5, 2)):
        with pytest.raises(ValueError):
            parse_named_lines(chunk, np.array([start]), np.array([end]), 4, 100, 1.0)


def _items(items: list) -> list:
    """decode_poll's items in a comparable form."""
    from streamsgd.codec import DecodedRun

    out = []
    for item in items:
        if isinstance(item, DecodedRun):
            X = item.X
            w = None if item.weight is None else item.weight.tobytes()
            arrays = (X.indptr.tobytes(), X.indices.tobytes(), X.values.tobytes())
            out.append(("run", item.first_offset, *arrays, item.y.tobytes(), w))
        else:
            out.append(("rejected", item.record.offset, item.record.value, item.reason))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(
        st.one_of(named_records(), st.binary(max_size=20)).filter(lambda r: b"\n" not in r),
        min_size=1,
        max_size=8,
    )
)
def test_property_a_poll_of_lines_in_their_chunk_decodes_as_a_poll_of_records(records):
    """The file source's lines-in-chunk polls (ValueRun with lines) decode to the same items
    as the same values polled as records (which _poll_agrees checks against decode())."""
    from streamsgd.codec import ValueRun, decode_poll
    from streamsgd.codec._named_json import line_bounds
    from streamsgd.training.ports import SourceRecord

    decoder = _hashed(hash_bits=4, max_record_bytes=200)
    chunk = b"".join(r + b"\n" for r in records)
    starts, ends = line_bounds(chunk)
    lines = ValueRun("p", 7, None, SourceRecord, lines=(chunk, starts, ends))
    listed = [SourceRecord("p", 7 + k, value=r) for k, r in enumerate(records)]
    assert _items(decode_poll(decoder, lines)) == _items(decode_poll(decoder, listed))
    assert [r.value for r in lines] == records and lines.values == records
