"""The compiled ‖v‖ of the health check and the weight-norm gauge against numpy."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from streamsgd.core.row_scale import vector_norm

FINITE = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)


@given(arrays(np.float64, st.integers(0, 300), elements=FINITE))
def test_equals_the_scaled_numpy_norm(vector: np.ndarray) -> None:
    largest = float(np.max(np.abs(vector), initial=0.0))
    expected = largest * float(np.linalg.norm(vector / largest)) if largest > 0.0 else 0.0
    # Two summation orders (numpy's pairwise dot, the kernel's sequential sum): last bits.
    assert math.isclose(vector_norm(vector), expected, rel_tol=1e-12, abs_tol=0.0)


def test_not_finite_is_nan_and_strided_views_are_read() -> None:
    assert math.isnan(vector_norm(np.array([1.0, np.nan])))
    assert math.isnan(vector_norm(np.array([np.inf, 0.0])))
    assert vector_norm(np.array([1e300, 1e300])) == 1e300 * math.sqrt(2.0)
    assert math.isclose(vector_norm(np.arange(10.0)[::2]), math.sqrt(120.0), rel_tol=1e-14)
