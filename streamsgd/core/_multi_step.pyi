from typing import Any

import numpy as np
from numpy.typing import NDArray

from .types import FloatArray, IndexArray

CONSTANTS: dict[str, float]

def learn_steps(
    X: FloatArray | None,
    indptr: IndexArray | None,
    indices: IndexArray | None,
    values: FloatArray | None,
    n_features: int,
    y: FloatArray,
    sample_weight: FloatArray | None,
    batch_size: int,
    n_steps: int,
    theta: FloatArray,
    accumulator: FloatArray | None,
    stats: Any,
    settings: tuple[float, bool, float, float, bool, float, float, float, float, bool],
    state: tuple[int, int, float, float],
    column_workspace: NDArray[np.intp] | None,
    row_workspace: NDArray[np.intp] | None,
    last_gradient: bool = ...,
) -> tuple[
    tuple[int, int, float, float],
    FloatArray,
    NDArray[np.int64],
    tuple[IndexArray | None, FloatArray] | None,
]: ...
