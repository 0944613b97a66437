"""The checkpoint document: canonical JSON with a SHA-256 over the state's bytes.

Format 2::

    {"format_version":2,"sha256":"<hex>","state":<payload>}

``payload`` is the canonical JSON of the state (sorted keys, no whitespace, ASCII, NaN and
±Infinity as JSON constants) and ``sha256`` the SHA-256 of exactly those bytes. At load the
parsed state is serialised canonically again and must hash to the stored digest, so one
flipped character anywhere in the state is refused. Arrays are base64 of their little-endian
float64 bytes (every weight round-trips bit for bit). Format 1 (no checksum, the state at
the top level) is still read, with a warning, so an upgrade resumes from its checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
from typing import Any

import numpy as np

from .errors import CheckpointError
from .validation import field, validate_state

log = logging.getLogger("streamsgd.checkpoint")

FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1  # no checksum; read with a warning
ARRAY_DTYPE = "<f8"


def _encode(value: Any, arrays: list[bytes] | None = None) -> Any:
    """``value`` with its arrays as base64 objects. With ``arrays``, each array's base64
    text is appended there and its ``"base64"`` holds :func:`_placeholder` of its index
    instead (see :func:`_canonical_spliced`)."""
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value, dtype=ARRAY_DTYPE)
        text = base64.b64encode(data.tobytes())
        if arrays is not None:
            arrays.append(text)
        return {
            "__ndarray__": ARRAY_DTYPE,
            "shape": list(data.shape),
            "base64": text.decode("ascii") if arrays is None else _placeholder(len(arrays) - 1),
        }
    if isinstance(value, dict):
        return {str(k): _encode(v, arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, np.floating | np.integer | np.bool_):
        return value.item()
    return value


def _decode_array(value: dict[str, Any], where: str) -> np.ndarray:
    if set(value) != {"__ndarray__", "shape", "base64"}:
        raise CheckpointError(f"{where}: an array needs exactly __ndarray__, shape and base64")
    if value["__ndarray__"] != ARRAY_DTYPE:
        raise CheckpointError(
            f"{where}: array dtype {value['__ndarray__']!r:.40}, not {ARRAY_DTYPE}"
        )
    shape = value["shape"]
    if not (
        isinstance(shape, list)
        and len(shape) <= 2
        and all(type(n) is int and n >= 0 for n in shape)
    ):
        raise CheckpointError(f"{where}: array shape {shape!r:.60} is not a list of sizes")
    if not isinstance(value["base64"], str):
        raise CheckpointError(f"{where}: array base64 is not a string")
    try:
        raw = base64.b64decode(value["base64"], validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError(f"{where}: array base64 is malformed") from None
    if len(raw) != 8 * math.prod(shape):
        raise CheckpointError(f"{where}: array holds {len(raw)} bytes, not 8 × {shape}")
    return np.frombuffer(raw, dtype=ARRAY_DTYPE).reshape(shape).astype(np.float64)


def _decode(value: Any, where: str = "state") -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return _decode_array(value, where)
        return {k: _decode(v, field(where, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _json_constant(name: str) -> float:
    # NaN and infinities (running statistics before they are defined) round-trip too.
    return float(name)


def _canonical(encoded_state: Any) -> bytes:
    """The bytes the checksum covers: sorted keys, no whitespace, ASCII only."""
    text = json.dumps(encoded_state, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return text.encode("ascii")


def _placeholder(index: int) -> str:
    # NULs: JSON writes them escaped, and no state's text holds this (it is checked).
    return f"\x00streamsgd-array-{index}\x00"


def _canonical_spliced(encoded_state: Any, arrays: list[bytes]) -> list[bytes] | None:
    """:func:`_canonical` of the state whose arrays' base64 texts are ``arrays`` and stand
    as placeholders in ``encoded_state``: the JSON of the rest, with each placeholder's
    JSON string replaced by its text in quotes, as the pieces to join. The same bytes, since
    JSON writes base64 (``A-Z a-z 0-9 + / =``) as it is, without the encoder scanning
    megabytes of it for characters to escape. None if a placeholder is not found exactly
    once (a state's own text that equals one)."""
    text = _canonical(encoded_state)
    spans = []
    for index, data in enumerate(arrays):
        token = json.dumps(_placeholder(index)).encode("ascii")
        at = text.find(token)
        if at < 0 or text.find(token, at + 1) >= 0:
            return None
        spans.append((at, len(token), data))
    spans.sort()
    parts, done = [], 0
    for at, length, data in spans:
        parts += [text[done:at], b'"', data, b'"']
        done = at + length
    parts.append(text[done:])
    return parts


def dumps(state: dict[str, Any]) -> bytes:
    """The checkpoint file's bytes for ``state``; CheckpointError if load would refuse it."""
    validate_state(state)
    arrays: list[bytes] = []
    parts = _canonical_spliced(_encode(state, arrays), arrays)
    if parts is None:
        parts = [_canonical(_encode(state))]
    sha256 = hashlib.sha256()
    for part in parts:
        sha256.update(part)
    header = f'{{"format_version":{FORMAT_VERSION},"sha256":"{sha256.hexdigest()}","state":'
    return b"".join([header.encode("ascii"), *parts, b"}\n"])


def _verified_payload(document: dict[str, Any]) -> Any:
    if set(document) != {"format_version", "sha256", "state"}:
        raise CheckpointError("expected exactly the keys format_version, sha256 and state")
    digest = document["sha256"]
    if not isinstance(digest, str):
        raise CheckpointError("sha256 is not a string")
    if hashlib.sha256(_canonical(document["state"])).hexdigest() != digest:
        raise CheckpointError("checksum mismatch: the file was altered or damaged")
    return document["state"]


def loads(raw: bytes) -> dict[str, Any]:
    """Parse, verify and validate a checkpoint; CheckpointError (one line) for any defect."""
    try:
        document = json.loads(raw, parse_constant=_json_constant)
        if not isinstance(document, dict):
            raise CheckpointError("the top level is not a JSON object")
        version = document.get("format_version")
        if type(version) is int and version == FORMAT_VERSION:
            encoded = _verified_payload(document)
        elif type(version) is int and version == LEGACY_FORMAT_VERSION:
            log.warning(
                "checkpoint format_version 1 has no checksum: read unverified; "
                "the next save writes format_version %d",
                FORMAT_VERSION,
            )
            encoded = {k: v for k, v in document.items() if k != "format_version"}
        else:
            raise CheckpointError(
                f"unsupported checkpoint format_version {version!r:.40} "
                f"(this streamsgd reads {LEGACY_FORMAT_VERSION} and {FORMAT_VERSION})"
            )
        state = _decode(encoded)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError, UnicodeDecodeError, over-long integers, absurd nesting.
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"not a checkpoint document: {message}") from None
    validate_state(state)
    return state
