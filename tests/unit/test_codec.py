"""Wire format (docs/design.md, Wire format; docs/operations.md, Bad records): every bad
record is rejected with its exact reason, never with any other exception; accepted forms
decode exactly; encoders round-trip bit for bit."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsgd.codec import (
    REJECT_REASONS,
    Decoder,
    RecordRejected,
    encode_binary,
    encode_dense,
    encode_dense_batch,
    parse_json,
)
from streamsgd.core.sparse import SparseRows

from .core.test_murmurhash import reference_murmurhash3_32

D = 3


def _bucket(name: str, bits: int) -> int:
    """Independent statement of the documented hash: MurmurHash3 x86-32, seed 0, of UTF-8
    (the Python transcription of the reference algorithm), low ``bits`` bits."""
    return reference_murmurhash3_32(name.encode("utf-8"), 0) & ((1 << bits) - 1)


def _binary(X, y, w=None, *, version=1, flags=None, n=None, d=None, labels_dtype=np.uint8):
    X = np.asarray(X, dtype="<f8")
    n_ = X.shape[0] if n is None else n
    d_ = X.shape[1] if d is None else d
    flags_ = (1 if w is not None else 0) if flags is None else flags
    head = struct.pack("<4sBBHII", b"SSGD", version, flags_, 0, n_, d_)
    body = X.tobytes() + np.asarray(y, dtype=labels_dtype).tobytes()
    if w is not None:
        body += np.asarray(w, dtype="<f8").tobytes()
    return head + body


def _j(obj) -> bytes:
    return json.dumps(obj).encode()


DEEP = b"[" * 100_000 + b"]" * 100_000

# (id, record bytes, decoder kwargs, expected reason)
BAD = [
    # --- empty / size / syntax
    ("empty-bytes", b"", {}, "empty"),
    ("none", None, {}, "empty"),
    (
        "oversized",
        _j({"x": [1.0, 2.0, 3.0], "y": 1, "pad": "a" * 200}),
        {"max_record_bytes": 100},
        "too_large",
    ),
    ("bad-json-truncated", b'{"x": [1, 2, 3], "y": 1', {}, "invalid_json"),
    ("bad-json-garbage", b"hello", {}, "invalid_json"),
    ("bad-json-trailing", b'{"x": [1, 2, 3], "y": 1} x', {}, "invalid_json"),
    ("bad-json-whitespace-only", b"   \n", {}, "invalid_json"),
    ("bad-utf8", b'{"x": [1, 2, 3], "y": 1, "k": "\xff\xfe"}', {}, "invalid_json"),
    ("deeply-nested-array", DEEP, {}, "too_deep"),
    ("deeply-nested-in-x", b'{"y": 1, "x": ' + DEEP + b"}", {}, "too_deep"),
    ("deeply-nested-object", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, {}, "too_deep"),
    # --- wrong types
    ("record-is-list", b"[1, 2, 3]", {}, "invalid_schema"),
    ("record-is-number", b"1", {}, "invalid_schema"),
    ("record-is-string", b'"x"', {}, "invalid_schema"),
    ("record-is-null", b"null", {}, "invalid_schema"),
    ("no-x-no-features", _j({"y": 1}), {}, "invalid_schema"),
    ("string-in-x", _j({"x": [1.0, "2", 3.0], "y": 1}), {}, "invalid_schema"),
    ("bool-in-x", _j({"x": [1.0, True, 3.0], "y": 1}), {}, "invalid_schema"),
    ("null-in-x", _j({"x": [1.0, None, 3.0], "y": 1}), {}, "invalid_schema"),
    ("object-in-x", _j({"x": [1.0, {}, 3.0], "y": 1}), {}, "invalid_schema"),
    ("x-not-a-list", _j({"x": 1.0, "y": 1}), {}, "invalid_schema"),
    ("x-is-string", _j({"x": "1,2,3", "y": 1}), {}, "invalid_schema"),
    ("x-is-object", _j({"x": {"0": 1}, "y": 1}), {}, "invalid_schema"),
    ("x-nested", _j({"x": [[1.0, 2.0, 3.0]], "y": 1}), {}, "invalid_schema"),
    ("x-ragged", _j({"x": [[1.0], [2.0, 3.0], 4.0], "y": 1}), {}, "invalid_schema"),
    ("x-ragged-lists", _j({"x": [[1.0], [2.0, 3.0]], "y": 1}), {}, "invalid_schema"),
    (
        "x-nested-deep-but-parseable",
        b'{"y": 1, "x": ' + b"[" * 200 + b"1" + b"]" * 200 + b"}",
        {},
        "invalid_schema",
    ),
    ("x-integer-beyond-float", b'{"y": 1, "x": [1, 2, 1' + b"0" * 400 + b"]}", {}, "non_finite"),
    ("features-not-object", _j({"features": [1, 2], "y": 1}), {"hash_bits": 4}, "invalid_schema"),
    (
        "feature-value-null",
        _j({"features": {"a": None}, "y": 1}),
        {"hash_bits": 4},
        "invalid_schema",
    ),
    (
        "feature-value-bool",
        _j({"features": {"a": True}, "y": 1}),
        {"hash_bits": 4},
        "invalid_schema",
    ),
    (
        "feature-value-list",
        _j({"features": {"a": [1]}, "y": 1}),
        {"hash_bits": 4},
        "invalid_schema",
    ),
    ("batch-X-not-list", _j({"X": 1, "y": [1]}), {}, "invalid_schema"),
    ("batch-X-empty", _j({"X": [], "y": []}), {}, "invalid_schema"),
    ("batch-X-rows-not-lists", _j({"X": [1, 2, 3], "y": [1, 1, 1]}), {}, "invalid_schema"),
    ("batch-X-ragged", _j({"X": [[1, 2, 3], [1, 2]], "y": [1, 1]}), {}, "invalid_schema"),
    ("batch-X-string", _j({"X": [[1, 2, "3"]], "y": [1]}), {}, "invalid_schema"),
    ("batch-X-bool", _j({"X": [[1, 2, False]], "y": [1]}), {}, "invalid_schema"),
    ("batch-X-3d", _j({"X": [[[1, 2, 3]]], "y": [1]}), {}, "invalid_schema"),
    ("batch-y-not-list", _j({"X": [[1, 2, 3]], "y": 1}), {}, "invalid_schema"),
    ("batch-y-short", _j({"X": [[1, 2, 3], [4, 5, 6]], "y": [1]}), {}, "invalid_schema"),
    # --- dimension
    ("x-too-short", _j({"x": [1.0, 2.0], "y": 1}), {}, "wrong_dimension"),
    ("x-too-long", _j({"x": [1.0, 2.0, 3.0, 4.0], "y": 1}), {}, "wrong_dimension"),
    ("x-empty", _j({"x": [], "y": 1}), {}, "wrong_dimension"),
    ("batch-wrong-dim", _j({"X": [[1, 2], [3, 4]], "y": [1, 0]}), {}, "wrong_dimension"),
    ("binary-wrong-dim", _binary(np.ones((2, 2)), [1, 0]), {}, "wrong_dimension"),
    # --- non-finite
    ("json-NaN", b'{"x": [1.0, NaN, 3.0], "y": 1}', {}, "non_finite"),
    ("json-Infinity", b'{"x": [1.0, Infinity, 3.0], "y": 1}', {}, "non_finite"),
    ("json-minus-Infinity", b'{"x": [-Infinity, 2.0, 3.0], "y": 1}', {}, "non_finite"),
    ("json-1e400", b'{"x": [1.0, 1e400, 3.0], "y": 1}', {}, "non_finite"),
    ("batch-NaN", b'{"X": [[1.0, 2.0, 3.0], [NaN, 0, 0]], "y": [1, 0]}', {}, "non_finite"),
    ("feature-NaN", b'{"features": {"a": NaN}, "y": 1}', {"hash_bits": 4}, "non_finite"),
    ("feature-1e400", b'{"features": {"a": -1e400}, "y": 1}', {"hash_bits": 4}, "non_finite"),
    (
        "feature-huge-int",
        b'{"features": {"a": 1' + b"0" * 400 + b'}, "y": 1}',
        {"hash_bits": 4},
        "non_finite",
    ),
    ("binary-NaN", _binary([[1.0, np.nan, 3.0]], [1]), {}, "non_finite"),
    ("binary-inf", _binary([[1.0, np.inf, 3.0]], [1]), {}, "non_finite"),
    # --- labels
    ("label-2", _j({"x": [1, 2, 3], "y": 2}), {}, "invalid_label"),
    ("label-minus-2", _j({"x": [1, 2, 3], "y": -2}), {}, "invalid_label"),
    ("label-string-1", _j({"x": [1, 2, 3], "y": "1"}), {}, "invalid_label"),
    ("label-0.5", _j({"x": [1, 2, 3], "y": 0.5}), {}, "invalid_label"),
    ("label-1.0", _j({"x": [1, 2, 3], "y": 1.0}), {}, "invalid_label"),
    ("label-null", _j({"x": [1, 2, 3], "y": None}), {}, "invalid_label"),
    ("label-list", _j({"x": [1, 2, 3], "y": [1]}), {}, "invalid_label"),
    ("label-NaN", b'{"x": [1, 2, 3], "y": NaN}', {}, "invalid_label"),
    ("batch-label-2", _j({"X": [[1, 2, 3]], "y": [2]}), {}, "invalid_label"),
    ("binary-label-2", _binary([[1.0, 2.0, 3.0]], [2]), {}, "invalid_label"),
    ("missing-label", _j({"x": [1, 2, 3]}), {}, "missing_label"),
    ("missing-label-named", _j({"features": {"a": 1}}), {"hash_bits": 4}, "missing_label"),
    ("batch-missing-label", _j({"X": [[1, 2, 3]]}), {}, "missing_label"),
    # --- weights
    ("weight-negative", _j({"x": [1, 2, 3], "y": 1, "weight": -1}), {}, "invalid_weight"),
    ("weight-string", _j({"x": [1, 2, 3], "y": 1, "weight": "a"}), {}, "invalid_weight"),
    ("weight-null", _j({"x": [1, 2, 3], "y": 1, "weight": None}), {}, "invalid_weight"),
    ("weight-bool", _j({"x": [1, 2, 3], "y": 1, "weight": True}), {}, "invalid_weight"),
    ("weight-list", _j({"x": [1, 2, 3], "y": 1, "weight": [1]}), {}, "invalid_weight"),
    ("weight-Infinity", b'{"x": [1, 2, 3], "y": 1, "weight": Infinity}', {}, "invalid_weight"),
    ("weight-NaN", b'{"x": [1, 2, 3], "y": 1, "weight": NaN}', {}, "invalid_weight"),
    ("weight-1e400", b'{"x": [1, 2, 3], "y": 1, "weight": 1e400}', {}, "invalid_weight"),
    (
        "weight-huge-int",
        b'{"x": [1, 2, 3], "y": 1, "weight": 1' + b"0" * 400 + b"}",
        {},
        "invalid_weight",
    ),
    (
        "batch-weight-short",
        _j({"X": [[1, 2, 3], [1, 2, 3]], "y": [1, 0], "weight": [1]}),
        {},
        "invalid_weight",
    ),
    ("batch-weight-not-list", _j({"X": [[1, 2, 3]], "y": [1], "weight": 1}), {}, "invalid_weight"),
    (
        "batch-weight-negative",
        _j({"X": [[1, 2, 3]], "y": [1], "weight": [-0.5]}),
        {},
        "invalid_weight",
    ),
    ("binary-weight-negative", _binary([[1.0, 2.0, 3.0]], [1], [-1.0]), {}, "invalid_weight"),
    ("binary-weight-nan", _binary([[1.0, 2.0, 3.0]], [1], [np.nan]), {}, "invalid_weight"),
    # Above --max-sample-weight (default 1000): one record may not count as 1e300 samples.
    ("weight-1e300", _j({"x": [1, 2, 3], "y": 1, "weight": 1e300}), {}, "invalid_weight"),
    ("weight-1001", _j({"x": [1, 2, 3], "y": 1, "weight": 1001}), {}, "invalid_weight"),
    ("batch-weight-huge", _j({"X": [[1, 2, 3]], "y": [1], "weight": [1e9]}), {}, "invalid_weight"),
    ("binary-weight-huge", _binary([[1.0, 2.0, 3.0]], [1], [1e300]), {}, "invalid_weight"),
    # --- hashing
    ("named-without-hashing", _j({"features": {"age": 31.0}, "y": 0}), {}, "hashing_disabled"),
    # --- binary framing
    ("binary-truncated-header", b"SSGD\x01\x00", {}, "invalid_binary"),
    ("binary-bad-version", _binary(np.ones((1, 3)), [1], version=2), {}, "invalid_binary"),
    ("binary-bad-flags", _binary(np.ones((1, 3)), [1], flags=2), {}, "invalid_binary"),
    ("binary-zero-samples", _binary(np.ones((0, 3)), np.zeros(0)), {}, "invalid_binary"),
    ("binary-short-body", _binary(np.ones((2, 3)), [1, 0])[:-1], {}, "invalid_binary"),
    ("binary-long-body", _binary(np.ones((2, 3)), [1, 0]) + b"\x00", {}, "invalid_binary"),
    ("binary-n-lies", _binary(np.ones((2, 3)), [1, 0], n=3), {}, "invalid_binary"),
    ("binary-huge-n", _binary(np.ones((1, 3)), [1], n=2**32 - 1), {}, "invalid_binary"),
    ("binary-flag-without-weights", _binary(np.ones((1, 3)), [1], flags=1), {}, "invalid_binary"),
]


@pytest.mark.parametrize("record,kwargs,reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_record_rejected_with_reason(record, kwargs, reason):
    n_features = 1 << kwargs["hash_bits"] if "hash_bits" in kwargs else D
    decoder = Decoder(n_features, **kwargs)
    with pytest.raises(RecordRejected) as info:
        decoder.decode(record)
    assert info.value.reason == reason, info.value
    assert info.value.reason in REJECT_REASONS
    assert info.value.detail


def test_bad_record_table_covers_every_reason():
    assert {b[3] for b in BAD} == set(REJECT_REASONS)


def test_record_at_the_size_limit_is_accepted():
    record = _j({"x": [1.0, 2.0, 3.0], "y": 1})
    assert len(Decoder(D, max_record_bytes=len(record)).decode(record)) == 1
    with pytest.raises(RecordRejected, match="too_large"):
        Decoder(D, max_record_bytes=len(record) - 1).decode(record)


# ------------------------------------------------------------------------------ accepted


@pytest.mark.parametrize(
    "label,expected", [("0", 0.0), ("1", 1.0), ("true", 1.0), ("false", 0.0), ("-1", 0.0)]
)
def test_accepted_labels(label, expected):
    s = Decoder(D).decode(b'{"x": [0.5, -2, 3e-3], "y": ' + label.encode() + b"}")
    assert s.y.dtype == np.float64
    np.testing.assert_array_equal(s.y, [expected])
    np.testing.assert_array_equal(s.X, [[0.5, -2.0, 3e-3]])
    assert s.X.dtype == np.float64 and s.X.shape == (1, D)
    assert s.weight is None


@pytest.mark.parametrize("weight", [0, 0.0, 2, 0.25, 1000])  # up to --max-sample-weight
def test_accepted_weights(weight):
    s = Decoder(D).decode(_j({"x": [1, 2, 3], "y": 1, "weight": weight}))
    np.testing.assert_array_equal(s.weight, [float(weight)])


def test_large_integer_literal_is_the_same_number_as_its_float():
    as_int = Decoder(3).decode(b'{"y": 1, "x": [1, 2, 1' + b"0" * 30 + b"]}")
    as_float = Decoder(3).decode(b'{"y": 1, "x": [1, 2, 1e30]}')
    assert np.array_equal(as_int.X, as_float.X)


def test_named_features_hashed_with_string_values_as_indicators():
    bits = 10
    s = Decoder(1 << bits, hash_bits=bits).decode(
        _j({"features": {"age": 31.0, "country": "FR", "n": 2, "flag=1": 1}, "y": 0})
    )
    assert isinstance(s.X, SparseRows) and s.X.shape == (1, 1 << bits)
    want = np.zeros(1 << bits)
    for name, value in [("age", 31.0), ("country=FR", 1.0), ("n", 2.0), ("flag=1", 1.0)]:
        want[_bucket(name, bits)] += value
    np.testing.assert_array_equal(s.X.to_dense()[0], want)
    np.testing.assert_array_equal(s.y, [0.0])


def test_named_features_that_collide_add_up():
    bits = 1  # two buckets: collisions are certain among three names
    s = Decoder(2, hash_bits=bits).decode(_j({"features": {"a": 1, "b": 2, "c": 4}, "y": 1}))
    want = np.zeros(2)
    for name, value in [("a", 1), ("b", 2), ("c", 4)]:
        want[_bucket(name, bits)] += value
    np.testing.assert_array_equal(s.X.to_dense()[0], want)
    # Canonical rows: one entry per bucket (so ‖x‖² is right).
    assert len(np.unique(s.X.indices)) == len(s.X.indices)


def test_empty_feature_object_is_an_all_zero_sample():
    s = Decoder(16, hash_bits=4).decode(_j({"features": {}, "y": 1}))
    np.testing.assert_array_equal(s.X.to_dense(), np.zeros((1, 16)))


def test_dense_x_with_hashing_enabled_is_sparse_of_the_same_values():
    s = Decoder(8, hash_bits=3).decode(_j({"x": [0, 1.5, 0, 0, -2, 0, 0, 7], "y": 1}))
    assert isinstance(s.X, SparseRows)
    np.testing.assert_array_equal(s.X.to_dense(), [[0, 1.5, 0, 0, -2, 0, 0, 7]])


def test_dense_batch_json():
    s = Decoder(D).decode(
        _j({"X": [[1, 2, 3], [4.5, -5, 6e10]], "y": [1, False], "weight": [0.5, 3]})
    )
    np.testing.assert_array_equal(s.X, [[1, 2, 3], [4.5, -5, 6e10]])
    np.testing.assert_array_equal(s.y, [1.0, 0.0])
    np.testing.assert_array_equal(s.weight, [0.5, 3.0])
    assert len(s) == 2


@pytest.mark.parametrize("with_weights", [False, True])
def test_binary_batch(with_weights):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, D))
    y = np.array([1, 0, 0, 1, 1])
    w = rng.uniform(0, 2, 5) if with_weights else None
    record = _binary(X, y, w)  # written here from the documented layout, not by encode_binary
    s = Decoder(D).decode(record)
    np.testing.assert_array_equal(s.X, X)
    np.testing.assert_array_equal(s.y, y.astype(float))
    if with_weights:
        np.testing.assert_array_equal(s.weight, w)
    else:
        assert s.weight is None
    assert encode_binary(X, y, w) == record


def test_binary_with_hashing_is_sparse():
    X = np.array([[0.0, 2.0, 0.0, -1.0]])
    s = Decoder(4, hash_bits=2).decode(_binary(X, [1]))
    assert isinstance(s.X, SparseRows)
    np.testing.assert_array_equal(s.X.to_dense(), X)


# ------------------------------------------------------------------------------ round trips


def _bits(a) -> bytes:
    return np.ascontiguousarray(a, dtype=np.float64).tobytes()


def test_round_trip_of_awkward_floats():
    x = np.array(
        [
            0.0,
            -0.0,
            5e-324,
            -2.2250738585072014e-308,
            1.7976931348623157e308,
            0.1,
            1 / 3,
            -1e-300,
            123456789.123456789,
        ]
    )
    dec = Decoder(len(x))
    s = dec.decode(encode_dense(x, 1, weight=0.1))
    assert _bits(s.X[0]) == _bits(x)
    assert s.weight[0] == 0.1 and s.y[0] == 1.0
    s = dec.decode(encode_dense_batch(np.vstack([x, x[::-1]]), np.array([0, 1])))
    assert _bits(s.X) == _bits(np.vstack([x, x[::-1]]))
    s = dec.decode(encode_binary(np.vstack([x, -x]), np.array([1, 0]), np.array([0.5, 5e-324])))
    assert _bits(s.X) == _bits(np.vstack([x, -x]))
    assert _bits(s.weight) == _bits([0.5, 5e-324])


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=150, deadline=None)
@given(
    x=st.lists(finite, min_size=1, max_size=12),
    y=st.sampled_from([0, 1]),
    w=st.none() | st.floats(min_value=0.0, max_value=1000.0),  # up to --max-sample-weight
)
def test_property_dense_round_trip_is_bit_exact(x, y, w):
    x = np.array(x)
    s = Decoder(len(x)).decode(encode_dense(x, y, weight=w))
    assert _bits(s.X[0]) == _bits(x)
    assert s.y[0] == y
    if w is None:
        assert s.weight is None
    else:
        assert _bits(s.weight) == _bits([w])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 5)),
    data=st.data(),
)
def test_property_batch_round_trips_are_bit_exact(shape, data):
    n, d = shape
    X = np.array(data.draw(st.lists(finite, min_size=n * d, max_size=n * d))).reshape(n, d)
    y = np.array(data.draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n)))
    w = data.draw(st.none() | st.lists(st.floats(0.0, 1000.0), min_size=n, max_size=n))
    dec = Decoder(d)
    s = dec.decode(encode_dense_batch(X, y))
    assert _bits(s.X) == _bits(X) and np.array_equal(s.y, y)
    w_arr = None if w is None else np.array(w)
    s = dec.decode(encode_binary(X, y, w_arr))
    assert _bits(s.X) == _bits(X) and np.array_equal(s.y, y)
    assert (s.weight is None) if w is None else _bits(s.weight) == _bits(w_arr)


def _decode_never_crashes(decoder: Decoder, record: bytes) -> None:
    try:
        s = decoder.decode(record)
    except RecordRejected as exc:
        assert exc.reason in REJECT_REASONS
        return
    # Anything accepted is learnable: finite features, labels 0/1, weights in [0, limit].
    X = s.X.to_dense() if isinstance(s.X, SparseRows) else s.X
    assert X.shape == (len(s), decoder.n_features) and len(s) >= 1
    assert np.all(np.isfinite(X)) and X.dtype == np.float64
    assert np.all((s.y == 0) | (s.y == 1))
    if s.weight is not None:
        assert s.weight.shape == (len(s),)
        assert np.all(s.weight >= 0) and np.all(s.weight <= decoder.max_sample_weight)


@settings(max_examples=400, deadline=None)
@given(record=st.binary(max_size=300))
def test_property_arbitrary_bytes_only_ever_raise_record_rejected(record):
    _decode_never_crashes(Decoder(2), record)
    _decode_never_crashes(Decoder(4, hash_bits=2), record)
    _decode_never_crashes(Decoder(2, max_record_bytes=50), b"SSGD" + record)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["x", "y", "X", "weight", "features", "a"]) | st.text(max_size=3),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(obj=json_values)
def test_property_arbitrary_json_only_ever_raises_record_rejected(obj):
    record = json.dumps(obj).encode()
    _decode_never_crashes(Decoder(2), record)
    _decode_never_crashes(Decoder(4, hash_bits=2), record)


def _same_json(a, b):
    """Equal as JSON values, with types (1 is not 1.0 nor True) and NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(u, v) for u, v in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    return bool(a == b)


# Only integers beyond 64 bits may differ (they come back as their float): kept in range
# here, and checked by themselves below.
json_values_64 = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["x", "y", "X"]) | st.text(max_size=3), children)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(obj=json_values_64, indent=st.sampled_from([None, 1]))
def test_property_parse_json_is_json_loads(obj, indent):
    text = json.dumps(obj, indent=indent)
    expected = json.loads(text)
    assert _same_json(parse_json(text.encode()), expected)
    assert _same_json(parse_json(text), expected)


@pytest.mark.parametrize(
    "text",
    [
        '{"x": [NaN, Infinity, -Infinity], "y": 1}',  # json accepts, orjson does not
        '["\\ud800"]',  # lone surrogate
        '{"a": 1, "a": 2}',  # duplicate key: last wins in both
        "[1e400, -1e400]",  # float overflow: json gives inf, orjson refuses
        "[" * 50 + "]" * 50,
        "[-0, 0.0, -0.0, 5e-324, 1.7976931348623157e308, 2.4703282292062328e-324]",
    ],
)
def test_parse_json_where_orjson_and_json_differ(text):
    assert _same_json(parse_json(text.encode()), json.loads(text))


@pytest.mark.parametrize("text", ["[1,]", "{'x': 1}", '{"x": 1} 2', "\ufeff[1]", "", "[" * 5000])
def test_parse_json_raises_what_json_raises(text):
    with pytest.raises(Exception) as expected:
        json.loads(text)
    with pytest.raises(type(expected.value)):
        parse_json(text.encode())


def test_parse_json_integer_beyond_64_bits_is_its_float():
    big = 123456789012345678901234567890
    assert parse_json(f"[{big}]".encode())[0] == float(big)
    samples = Decoder(2).decode(f'{{"x": [{big}, 1], "y": 1}}'.encode())
    assert samples.X[0, 0] == float(big)


@settings(max_examples=300, deadline=None)
@given(
    x=st.one_of(
        st.lists(
            st.one_of(
                st.integers(),
                st.floats(),
                st.booleans(),
                st.none(),
                st.text(max_size=2),
                st.lists(st.integers(), max_size=2),
            ),
            max_size=4,
        ),
        json_values,
    ),
    y=json_values,
    weight=st.one_of(st.just("absent"), json_values),
)
def test_property_near_valid_records_only_ever_raise_record_rejected(x, y, weight):
    for obj in ({"x": x, "y": y}, {"X": [x, x], "y": [y, y]}, {"features": {"k": x}, "y": y}):
        if weight != "absent":
            obj["weight"] = weight if "X" not in obj else [weight, weight]
        record = json.dumps(obj).encode()
        _decode_never_crashes(Decoder(2), record)
        _decode_never_crashes(Decoder(4, hash_bits=2), record)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 4),
    d=st.integers(0, 4),
    version=st.integers(0, 3),
    flags=st.integers(0, 3),
    tail=st.binary(max_size=120),
)
def test_property_binary_headers_only_ever_raise_record_rejected(n, d, version, flags, tail):
    record = struct.pack("<4sBBHII", b"SSGD", version, flags, 0, n, d) + tail
    _decode_never_crashes(Decoder(2), record)
    _decode_never_crashes(Decoder(4, hash_bits=2), record)


def test_reject_reasons_are_stable_metric_label_values():
    # Metric label values: lower_snake_case, unique.
    assert len(set(REJECT_REASONS)) == len(REJECT_REASONS)
    for reason in REJECT_REASONS:
        assert reason.replace("_", "").isalpha() and reason == reason.lower()


def _fast_lane_agrees(decoder, record):
    """decode_dense_row (the service's fast lane) must agree with decode: the same reason,
    or the same single dense sample, or decline (None) and leave the record to decode. A
    row it returns may still hold NaN/inf, which the caller checks, and decode must then
    say non_finite."""
    try:
        full = decoder.decode(record)
        full_reason = None
    except RecordRejected as exc:
        full, full_reason = None, exc.reason
    try:
        fast = decoder.decode_dense_row(record)
    except RecordRejected as exc:
        assert exc.reason == full_reason, (record, exc.reason, full_reason)
        return
    if fast is None:
        return
    x, label, weight = fast
    try:
        values = np.array(x, dtype=np.float64) if x else np.zeros(0)
    except OverflowError:  # the caller then decodes the record with decode()
        return
    if not np.isfinite(values).all():
        assert full_reason == "non_finite", (record, full_reason)
        return
    assert full_reason is None, (record, full_reason)
    assert np.array_equal(full.X, values.reshape(1, -1))
    assert full.y.tolist() == [label]
    assert (full.weight is None and weight is None) or full.weight.tolist() == [weight]


@pytest.mark.parametrize("record,kwargs,reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_fast_lane_gives_the_same_reason_as_the_full_decoder(record, kwargs, reason):
    if "hash_bits" in kwargs:
        decoder = Decoder(1 << kwargs["hash_bits"], **kwargs)
    else:
        decoder = Decoder(D, **kwargs)
    _fast_lane_agrees(decoder, record)


@settings(max_examples=300, deadline=None)
@given(
    x=st.lists(
        st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=2)),
        max_size=4,
    ),
    y=json_values,
    weight=st.one_of(st.just("absent"), json_values),
)
def test_property_fast_lane_agrees_with_the_full_decoder(x, y, weight):
    obj = {"x": x, "y": y}
    if weight != "absent":
        obj["weight"] = weight
    record = json.dumps(obj).encode()
    for n_features in (2, 3):
        _fast_lane_agrees(Decoder(n_features), record)


def _run_lane_agrees(decoder, records):
    """decode_run (the service's run lane) either declines (None) or gives exactly the
    rows and labels of decode() record by record (for named features the same CSR arrays);
    it declines whenever decode() rejects one record or a record has a weight, another form,
    or a key besides x (or, with hashing, features) and y."""
    fast = decoder.decode_run(records)
    try:
        full = [decoder.decode(r) for r in records]
    except RecordRejected:
        assert fast is None, records
        return
    field = "features" if decoder.sparse else "x"
    plain = all(
        isinstance(o := json.loads(r), dict) and set(o) == {field, "y"} and len(s) == 1
        for r, s in zip(records, full, strict=True)
    )
    if fast is None:
        assert not plain, records  # a run of plain single samples must take the lane
        return
    X, y = fast
    if decoder.sparse:
        want = SparseRows.concatenate([s.X for s in full])
        for part in ("indptr", "indices", "values"):
            assert np.array_equal(getattr(X, part), getattr(want, part)), part
    else:
        assert np.array_equal(X, np.vstack([s.X for s in full])) and X.dtype == np.float64
    assert np.array_equal(y, np.concatenate([s.y for s in full]))


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.lists(
                st.one_of(st.integers(), st.floats(), st.booleans(), st.none()),
                min_size=2,
                max_size=3,
            ),
            st.one_of(st.sampled_from([0, 1, -1, True, False]), json_values),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_property_run_lane_agrees_with_the_full_decoder(rows):
    records = [json.dumps({"x": x, "y": y}).encode() for x, y in rows]
    _run_lane_agrees(Decoder(2), records)


def test_run_lane_takes_a_run_of_valid_records_bit_exactly():
    X = np.array([[0.1, -2.5e-300], [1e308, 3.0], [-0.0, 7.0]])
    records = [encode_dense(x, label) for x, label in zip(X, [1, 0, 1], strict=True)]
    records.append(b'{"y": -1, "x": [1, 2]}')  # key order, the label -1 and integers
    records.append(b'{"x":[5e-324, 2], "y": true}')
    fast = Decoder(2).decode_run(records)
    assert fast is not None
    _run_lane_agrees(Decoder(2), records)


@pytest.mark.parametrize(
    "records",
    [
        # Invalid alone, valid if the values were joined into one JSON array.
        [b'{"x": [1, 2], "y": 1, "a": [0', b"0]}", b'{"x": [1, 2], "y": 1}, {"x": [3, 4], "y": 0}'],
        [b'{"x": [1, 2], "y": 1}', None],  # a tombstone
        [b'{"x": [1, 2], "y": 1}', b""],
        [b'{"x": [1, 2], "y": 1}', b'{"x": [1, 2], "y": 1, "weight": 2}'],
        [b'{"x": [1, 2], "y": 1}', b'{"x": [1, 2], "y": 1, "id": "a"}'],
        [b'{"x": [1, 2], "y": 1}', b'{"x": [NaN, 2], "y": 1}'],
        [b'{"x": [1, 2], "y": 1}', b'{"x": [1e400, 2], "y": 1}'],
        [b'{"x": [1, 2], "y": 1}', b'{"x": [1, 2, 3], "y": 1}'],
        [b'{"x": [1, 2], "y": 1}', b'{"x": [1, true], "y": 1}'],
        [b'{"x": [1, 2], "y": 1}', b'{"x": [1, 2], "y": 2}'],
        [b'{"x": [1, 2], "y": 1}', b'{"x": [1, 2], "y": 1.0}'],
        [b'{"x": [1, 2], "y": 1}', b'{"x": "12", "y": 1}'],
        [b'{"x": [1, 2], "y": 1}', b'{"x": {"1": 1, "2": 2}, "y": 1}'],
        [b'{"x": [1, 2], "y": 1}', b'[{"x": [1, 2], "y": 1}]'],
        [b'{"x": [1, 2], "y": 1}', b'{"X": [[1, 2]], "y": [1]}'],
        [b'{"x": [1, 2], "y": 1}', b'{"x": [1, 2], "y": 1}' + b" " * 100],
    ],
)
def test_run_lane_declines_any_run_with_a_record_it_cannot_take(records):
    decoder = Decoder(2, max_record_bytes=64)
    assert decoder.decode_run(records) is None


named_values = st.one_of(
    st.text(max_size=3),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.dictionaries(st.text(max_size=3), named_values, max_size=6),
            st.sampled_from([0, 1, -1, True, False, 2, 0.5]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_property_run_lane_named_features_agree_with_the_full_decoder(rows):
    records = [json.dumps({"features": f, "y": y}).encode() for f, y in rows]
    _run_lane_agrees(Decoder(1 << 3, hash_bits=3), records)  # 8 buckets: collisions


def test_run_lane_takes_named_features_with_collisions_bit_exactly():
    rng = np.random.default_rng(2)
    records = [
        json.dumps(
            {
                "features": {f"f{j}": f"v{int(rng.integers(0, 50))}" for j in range(12)}
                | {"age": float(rng.normal()), "n": int(rng.integers(0, 9))},
                "y": int(rng.integers(0, 2)),
            }
        ).encode()
        for _ in range(200)
    ]
    decoder = Decoder(1 << 6, hash_bits=6)  # 64 buckets: many collisions within rows
    assert decoder.decode_run(records) is not None
    _run_lane_agrees(decoder, records)


@pytest.mark.parametrize(
    "bad",
    [
        b'{"features": {"a": true}, "y": 1}',
        b'{"features": {"a": null}, "y": 1}',
        b'{"features": {"a": [1]}, "y": 1}',
        b'{"features": {"a": 1e400}, "y": 1}',
        b'{"features": {"a": NaN}, "y": 1}',
        b'{"features": {"a": 1' + b"0" * 400 + b'}, "y": 1}',
        b'{"features": [1, 2], "y": 1}',
        b'{"features": {"a": 1}, "y": 1, "weight": 2}',
        b'{"features": {"a": 1}, "y": 3}',
        b'{"x": [1, 2, 3, 4], "y": 1}',
    ],
)
def test_run_lane_declines_a_run_with_a_named_record_it_cannot_take(bad):
    decoder = Decoder(1 << 2, hash_bits=2)
    assert decoder.decode_run([b'{"features": {"a": "b"}, "y": 1}']) is not None
    assert decoder.decode_run([b'{"features": {"a": "b"}, "y": 1}', bad]) is None


# ------------------------------------------------------------------------------ decode_poll


def _poll_agrees(decoder, values, *, partition_every=None, gap_at=None):
    """decode_poll (the service's one decode entry) must give, record by record, exactly
    what decode() gives: the same samples (bit for bit) or the same reason, every record in
    exactly one item, in order."""
    from streamsgd.codec import DecodedRun, Rejection, decode_poll
    from streamsgd.training.ports import SourceRecord

    records, offset = [], 0
    for i, v in enumerate(values):
        partition = "p" if partition_every is None else f"p{i // partition_every}"
        offset += 5 if gap_at == i else 1
        records.append(SourceRecord(partition, offset, value=v))
    items = decode_poll(decoder, records)
    got = []  # per record: ("ok", X row(s), y, w) or ("rejected", reason)
    for item in items:
        if isinstance(item, Rejection):
            got.append((item.record, ("rejected", item.reason)))
            continue
        assert isinstance(item, DecodedRun)
        k = item.n_samples if item.one_per_record else 1
        for j in range(k):
            rows = slice(j, j + 1) if item.one_per_record else slice(None)
            X = (
                item.X.slice_rows(rows.start or 0, rows.stop or item.n_samples)
                if decoder.sparse
                else item.X[rows]
            )
            w = None if item.weight is None else item.weight[rows].tolist()
            record = next(
                r
                for r in records
                if (r.partition, r.offset) == (item.partition, item.first_offset + j)
            )
            got.append((record, ("ok", X, item.y[rows].tolist(), w)))
    assert [r for r, _ in got] == records  # every record once, in order
    for record, result in got:
        try:
            want = decoder.decode(record.value)
        except RecordRejected as exc:
            assert result == ("rejected", exc.reason), (record.value, result, exc.reason)
            continue
        assert result[0] == "ok", (record.value, result)
        _, X, y, w = result
        if decoder.sparse:
            for part in ("indptr", "indices", "values"):
                assert np.array_equal(getattr(X, part), getattr(want.X, part)), part
        else:
            assert np.array_equal(X, want.X) and X.dtype == np.float64
        assert y == want.y.tolist()
        assert w == (None if want.weight is None else want.weight.tolist()) or (
            want.weight is None and w == [1.0] * len(y)
        )
    return items


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.one_of(
            st.tuples(
                st.lists(
                    st.one_of(st.integers(), st.floats(), st.booleans()), min_size=1, max_size=3
                ),
                st.sampled_from([0, 1, -1, True, 2]),
                st.sampled_from(["absent", 1.0, 0.5, -1]),
            ).map(
                lambda t: json.dumps(
                    {"x": t[0], "y": t[1]} | ({} if t[2] == "absent" else {"weight": t[2]})
                ).encode()
            ),
            st.sampled_from(
                [
                    b"",
                    b"{oops",
                    b"SSGD\x01",
                    _j({"X": [[1, 2], [3, 4]], "y": [1, 0]}),
                    _binary(np.ones((2, 2)), [1, 0]),
                    b'{"x": [1, 2, 1' + b"0" * 400 + b'], "y": 1}',
                ]
            ),
        ),
        min_size=1,
        max_size=12,
    ),
    split=st.sampled_from([None, 3]),
    gap=st.sampled_from([None, 2]),
)
def test_property_decode_poll_agrees_with_decode_record_by_record(rows, split, gap):
    _poll_agrees(Decoder(2, max_record_bytes=400), rows, partition_every=split, gap_at=gap)


def test_decode_poll_takes_a_clean_run_as_one_item_and_isolates_a_bad_row():
    from streamsgd.codec import DecodedRun, Rejection

    X = np.arange(12.0).reshape(6, 2)
    values = [encode_dense(x, i % 2) for i, x in enumerate(X)]
    items = _poll_agrees(Decoder(2), values)
    assert len(items) == 1 and isinstance(items[0], DecodedRun) and items[0].one_per_record
    values[3] = b'{"x": [1, NaN], "y": 1}'  # not strict JSON: the row lane
    items = _poll_agrees(Decoder(2), values)
    assert [type(i) for i in items] == [DecodedRun, Rejection, DecodedRun]
    assert items[1].reason == "non_finite" and items[2].first_offset == 5


def test_decode_poll_named_features_agree_with_decode():
    values = [
        _j({"features": {"a": "b", "n": 2.5}, "y": 1}),
        _j({"features": {"a": "c"}, "y": 0, "weight": 2.0}),
        _j({"features": {"a": True}, "y": 1}),
        _j({"x": [0, 1.5, 0, 0], "y": 1}),
        _j({"features": {"a": "b"}, "y": 0}),
    ]
    _poll_agrees(Decoder(1 << 2, hash_bits=2), values)


def test_a_record_the_source_could_not_hold_is_too_large_without_parsing():
    """A value the source truncated (original_size_bytes set) is rejected as too_large even
    though its kept bytes are within the limit, and its neighbours decode normally."""
    from streamsgd.codec import DecodedRun, Rejection, decode_poll
    from streamsgd.training.ports import SourceRecord

    good = encode_dense(np.array([1.0, 2.0]), 1)
    records = [
        SourceRecord("f", 0, value=good),
        SourceRecord(
            "f", 1, value=b'{"x": [1, 2], "y": 1, "pad": "aaaa', original_size_bytes=10**9
        ),
        SourceRecord("f", 2, value=good),
    ]
    items = decode_poll(Decoder(2, max_record_bytes=40), records)
    assert [type(i) for i in items] == [DecodedRun, Rejection, DecodedRun]
    assert items[1].reason == "too_large" and "1000000000 bytes" in items[1].detail


def test_one_order_of_checks_for_every_dense_form():
    """Schema, then dimension, then finiteness, whichever form carries the rows."""
    decoder = Decoder(2)
    for record, reason in [
        (b'{"x": [NaN], "y": 1}', "wrong_dimension"),
        (b'{"X": [[NaN]], "y": [1]}', "wrong_dimension"),
        (b'{"x": [true, NaN], "y": 1}', "invalid_schema"),
        (b'{"X": [[1, NaN]], "y": [1]}', "non_finite"),
        (b'{"X": [[1, 1' + b"0" * 400 + b']], "y": [1]}', "non_finite"),
    ]:
        with pytest.raises(RecordRejected) as info:
            decoder.decode(record)
        assert info.value.reason == reason, record
        _poll_agrees(decoder, [record])
    with pytest.raises(RecordRejected) as info:
        decoder.decode_unlabelled({"x": [float("nan")]})
    assert info.value.reason == "wrong_dimension"


def test_the_weight_limit_is_the_decoders_and_inclusive() -> None:
    """--max-sample-weight: the limit itself is accepted, above it is rejected, and a
    decoder built with another limit applies its own on every path (JSON and binary)."""
    record = _j({"x": [1, 2, 3], "y": 1, "weight": 1000})
    assert Decoder(3).decode(record).weight is not None
    strict = Decoder(3, max_sample_weight=10.0)
    for value in (record, _binary([[1.0, 2.0, 3.0]], [1], [11.0])):
        with pytest.raises(RecordRejected) as caught:
            strict.decode(value)
        assert caught.value.reason == "invalid_weight"
    assert strict.decode(_binary([[1.0, 2.0, 3.0]], [1], [10.0])).weight is not None
