import numpy as np
from numpy.typing import NDArray

_F = NDArray[np.float64]
_I = NDArray[np.int64]

def run_dense(
    X: _F,
    y: _F,
    weights: _F,
    norms: _F,
    squared: _F,
    theta: _F,
    accum: _F,
    mean: _F,
    settings: _F,
    stats: _F,
    scalars: _F,
    losses: _F,
) -> tuple[int, int, int, int]: ...
def run_scattered(
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
) -> tuple[int, int, int, int]: ...
