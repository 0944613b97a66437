"""The checkpoint writer splices each array's base64 text into the JSON of the rest of the
state (streamsgd.checkpoint.document._canonical_spliced) instead of letting the JSON encoder
scan megabytes of base64 for characters to escape: the file's bytes must be exactly those of
the plain encoding, and a state whose own text equals a placeholder falls back to it."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import numpy as np

from streamsgd.checkpoint import document
from streamsgd.checkpoint.document import _canonical, _encode, _placeholder, dumps, loads
from tests.unit.test_checkpoint import STATES, same


def plain_dumps(state: dict[str, Any]) -> bytes:
    """The file as the encoder alone writes it (the writer before the splice)."""
    payload = _canonical(_encode(state))
    digest = hashlib.sha256(payload).hexdigest()
    header = f'{{"format_version":{document.FORMAT_VERSION},"sha256":"{digest}","state":'
    return header.encode("ascii") + payload + b"}\n"


def test_spliced_file_has_the_plain_encodings_bytes() -> None:
    rng = np.random.default_rng(11)
    for name, state in STATES.items():
        assert dumps(state) == plain_dumps(state), name
        for _ in range(50):  # weights of every magnitude: all 64 base64 characters
            wide = copy.deepcopy(state)
            size = wide["model"]["theta"].shape
            wide["model"]["theta"] = rng.normal(size=size) * 10.0 ** rng.integers(-300, 300, size)
            assert dumps(wide) == plain_dumps(wide), name
            assert same(loads(dumps(wide)), wide)


def test_a_text_equal_to_a_placeholder_falls_back_to_the_plain_encoding() -> None:
    encoded_arrays: list[bytes] = []
    encoded = _encode({"a": np.arange(3.0), "note": _placeholder(0)}, encoded_arrays)
    # Placeholder 0 stands for the array and is the note's text: found twice, ambiguous.
    assert document._canonical_spliced(encoded, encoded_arrays) is None
    clean: list[bytes] = []
    fine = _encode({"note": "x", "b": np.arange(2.0)}, clean)
    parts = document._canonical_spliced(fine, clean)
    assert parts is not None
    assert b"".join(parts) == _canonical(_encode({"note": "x", "b": np.arange(2.0)}))
