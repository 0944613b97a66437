from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

# accepted, indptr, indices, data, y, weight, has_weight (parse_named's docstring)
_Parsed = tuple[
    npt.NDArray[np.uint8],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.uint8],
]

def parse_named(
    values: Sequence[bytes | None], hash_bits: int, max_record_bytes: int, max_weight: float
) -> _Parsed: ...
def parse_named_lines(
    buffer: bytes,
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    hash_bits: int,
    max_record_bytes: int,
    max_weight: float,
) -> _Parsed: ...
def line_bounds(chunk: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
