import numpy as np
from numpy.typing import NDArray

def finite_norm(vector: NDArray[np.float64]) -> float: ...
