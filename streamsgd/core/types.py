"""Array types shared by the package (numpy only)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
"""float64 array; the shape is given where it is used."""

IndexArray = NDArray[np.int64]
"""int64 array of column indices or row pointers."""

BoolArray = NDArray[np.bool_]
"""bool array (a mask); the shape is given where it is used."""
