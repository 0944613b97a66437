"""The change detector of the gradient statistics (streamsgd.core.drift): a CUSUM on the
standardised batch loss that restarts the estimates at the estimated change point."""

from __future__ import annotations

import math

import numpy as np

from streamsgd.core.drift import THRESHOLD, LossChangeDetector
from streamsgd.core.gradient_stats import BatchSums, RunningGradientStatistics


def _sums(rng: np.random.Generator, G: np.ndarray, m: int, loss: float) -> BatchSums:
    """m per-sample gradients N(G, I) and per-sample losses N(loss, 0.5²)."""
    g = G + rng.standard_normal((m, len(G)))
    losses = loss + 0.5 * rng.standard_normal(m)
    return BatchSums(m, g.sum(axis=0), float(np.einsum("ij,ij->", g, g)), float(losses.sum()), 0)


def test_a_loss_jump_restarts_the_estimates_at_the_change_point() -> None:
    """A quiet phase (|G|² = 0.01, loss 0.5), then loss 1.5 and |G|² = 1: within a few steps
    the detector fires once, and Ḡ² is then the mean of the steps since the change (not the
    slow average, which had moved by ≈ 1 %); D (the per-step spread) is kept."""
    rng = np.random.default_rng(0)
    stats = RunningGradientStatistics()
    quiet, jumped = np.full(10, math.sqrt(0.001)), np.full(10, math.sqrt(0.1))
    for _ in range(2000):
        stats.update(_sums(rng, quiet, 32, 0.5))
    assert stats.change.n_changes == 0
    assert stats.true_gradient_squared_norm < 0.05
    spread = stats.squared_deviation
    steps = 0
    while stats.change.n_changes == 0 and steps < 20:
        stats.update(_sums(rng, jumped, 32, 1.5))
        steps += 1
    assert stats.change.n_changes == 1 and steps <= 4
    assert 0.5 < stats.true_gradient_squared_norm < 2.0
    assert stats.trusted  # D kept from the long window: no 10-step wait
    assert stats.squared_deviation >= spread


def test_detector_state_round_trip_mid_candidate() -> None:
    """A detector part-way into a suspected change resumes to the same decisions."""
    rng = np.random.default_rng(1)
    a = RunningGradientStatistics()
    G = np.full(4, 0.1)
    for _ in range(100):
        a.update(_sums(rng, G, 16, 0.5))
    while a.change.candidate is None or a.change.cusum < THRESHOLD / 2:
        a.update(_sums(rng, G, 16, 0.9))
    b = RunningGradientStatistics.from_state(a.get_state())
    for _ in range(5):
        sums = _sums(rng, G, 16, 0.9)
        a.update(sums)
        b.update(sums)
    assert a.change.n_changes == b.change.n_changes == 1
    assert a.get_state()["change"] == b.get_state()["change"]
    assert a.true_gradient_squared_norm == b.true_gradient_squared_norm
    # States written before the detector existed resume with a fresh one.
    old = a.get_state()
    del old["change"]
    assert RunningGradientStatistics.from_state(old).change == LossChangeDetector()
