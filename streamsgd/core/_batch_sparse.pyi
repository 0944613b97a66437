import numpy as np
from numpy.typing import NDArray

from .types import FloatArray, IndexArray

def sparse_batch_sums(
    indptr: IndexArray,
    indices: IndexArray,
    values: FloatArray,
    n_features: int,
    y: FloatArray,
    sample_weight: FloatArray | None,
    theta: FloatArray,
    cap: float,
    scale: float,
    norms: bool,
    statistics: bool,
    direction: tuple[FloatArray, float] | None,
    column_workspace: NDArray[np.intp] | None,
    row_workspace: NDArray[np.intp],
) -> tuple[
    IndexArray | None,
    FloatArray,
    float,
    float,
    int,
    int,
    int,
    float,
    FloatArray | None,
    float,
]: ...
