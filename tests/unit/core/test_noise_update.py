"""The compiled noise-statistics update of a minibatch (streamsgd/core/_noise_update.pyx)
equals its Python oracle (tests/support/noise_oracle.py) field by field, step by step,
through warm-up, window changes, change-point candidates and alarms."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsgd.core import drift, gradient_stats
from streamsgd.core._noise_update import CONSTANTS
from streamsgd.core.batch_sums import BatchSums
from streamsgd.core.gradient_stats import RunningGradientStatistics
from tests.support import noise_oracle

RTOL = 1e-9


def test_the_constants_are_those_of_the_python_modules() -> None:
    for name, value in CONSTANTS.items():
        module = gradient_stats if hasattr(gradient_stats, name) else drift
        assert getattr(module, name) == value, name


def _same(a: Any, b: Any, key: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), key
        for k in a:
            _same(a[k], b[k], f"{key}.{k}")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), key
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-300), (key, a, b)
    elif isinstance(a, list):
        assert len(a) == len(b), key
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{key}[{i}]")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_allclose(a, b, rtol=RTOL)
    else:
        assert a == b, (key, a, b)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.05, 0.3, 1.0]),
    st.booleans(),
    st.sampled_from([2, 16, 256]),
)
def test_the_compiled_update_equals_the_oracle(
    seed: int, smoothing: float, regularized: bool, m: int
) -> None:
    rng = np.random.default_rng(seed)
    compiled = RunningGradientStatistics(smoothing=smoothing)
    reference = RunningGradientStatistics(smoothing=smoothing)
    d = 5
    loss, alarms = 0.7, 0
    for step in range(600):
        if step in (250, 420):
            loss += 0.4  # a change of the stream: the detector must raise alarms
        size = m if step % 50 else int(rng.integers(2, 3 * m))  # m changes now and then
        gradient = rng.normal(0.05 * size, np.sqrt(size), d + 1)
        squares = float(gradient @ gradient) / size + rng.uniform(0.5, 2.0) * size
        loss_sum = size * (loss + rng.normal(0.0, 0.3 / np.sqrt(size)))
        sums = BatchSums(size, gradient, squares, loss_sum, 0)
        rho = np.append(rng.normal(0.0, 0.01, d), 0.0) if regularized else None
        compiled.update(sums, rho)
        noise_oracle.update(reference, BatchSums(size, gradient, squares, loss_sum, 0), rho)
        _same(compiled.get_state(), reference.get_state(), f"step {step}")
        alarms = reference.change.n_changes
    assert alarms >= 1
