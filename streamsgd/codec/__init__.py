"""Wire format: decode Kafka record values (or JSON Lines) into samples, with a reason for
every rejection.

Forms accepted (UTF-8 JSON unless noted):

* dense sample   ``{"x": [0.1, -2.0, ...], "y": 1, "weight": 1.0}``  (weight optional, ≥ 0)
* named sample   ``{"features": {"age": 31.0, "country": "FR"}, "y": 0}`` hashed into 2^b
  buckets (a string value v of key k is the indicator feature "k=v")
* dense batch    ``{"X": [[...], [...]], "y": [1, 0], "weight": [...]}``
* binary batch   little-endian: ``b"SSGD"``, u8 version = 1, u8 flags (bit 0: weights
  present), u16 reserved = 0, u32 n_samples, u32 n_features, f64[n·d] X row-major,
  u8[n] labels (0/1), then f64[n] weights if flagged. No pickle; any language can write it.

Labels: 0, 1, true, false and −1 (read as 0); anything else is rejected.

Modules: :mod:`.records` (reasons, samples, the label/weight/dense-row rules),
:mod:`.decoder` (:class:`Decoder`), :mod:`.poll` (:func:`decode_poll`, the run loop's one
entry), :mod:`.value_run` (a poll of plain values), :mod:`.hashed` (named features, the
feature hash a checkpoint records), :mod:`._named_json` (the compiled parser of named
records), :mod:`.binary` and :mod:`.encoders`.
"""

from .binary import BINARY_HEADER, BINARY_MAGIC, encode_binary
from .decoder import Decoder
from .encoders import encode_dense, encode_dense_batch
from .hashed import BUCKET_CACHE_SIZE, feature_hash_mismatch, feature_hash_state
from .poll import Decoded, DecodedRun, PolledRecord, Rejection, decode_poll
from .records import (
    DEFAULT_MAX_RECORD_BYTES,
    REJECT_REASONS,
    Features,
    RecordRejected,
    Samples,
    parse_json,
)
from .value_run import ValueRun

__all__ = [
    "BINARY_HEADER",
    "BINARY_MAGIC",
    "BUCKET_CACHE_SIZE",
    "DEFAULT_MAX_RECORD_BYTES",
    "REJECT_REASONS",
    "Decoded",
    "DecodedRun",
    "Decoder",
    "Features",
    "PolledRecord",
    "RecordRejected",
    "Rejection",
    "Samples",
    "ValueRun",
    "decode_poll",
    "encode_binary",
    "encode_dense",
    "encode_dense_batch",
    "feature_hash_mismatch",
    "feature_hash_state",
    "parse_json",
]
