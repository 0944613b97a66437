import numpy as np
from numpy.typing import NDArray

_F = NDArray[np.float64]
_I = NDArray[np.int64]

def run_sparse(
    indptr: _I,
    indices: _I,
    values: _F,
    y: _F,
    weights: _F,
    theta: _F,
    accum: _F,
    mean: _F,
    settings: _F,
    stats: _F,
    scalars: _F,
    losses: _F,
    carry: _F,
    last: _F,
) -> tuple[int, int, int, int]: ...

CARRY_SLOTS: int

def fold(theta: _F, accum: _F, mean: _F, settings: _F, carry: _F, last: _F) -> None: ...
