"""Seeded synthetic logistic-regression stream with known true weights.

Sample i depends only on (seed, i): samples are generated in fixed blocks of
``BLOCK_SIZE``, block j from ``numpy.random.default_rng([seed, j])``. So the embedded
source, the Kafka producer and a resumed run all see exactly the same stream.

The demo stream (:func:`demo_stream`, what ``streamsgd train`` without a source and
``streamsgd produce synthetic`` send) must let a new user *see* the model learn. A
stationary stream does not: from w = 0 the model reaches the optimum within seconds and the
loss is flat from then on. So the demo stream changes **regimes**: every
``DEMO_REGIME_SAMPLES`` samples (one minute at the compose producer's 500 records/s) the true
weights jump to a fresh random direction of the same norm. Each regime starts far from the
model's weights: the progressive loss jumps, then falls as the model relearns, and the
gradient variance follows (large residuals while the model is wrong). Jumps rather than
a slow ``drift``: a model that tracks a slow rotation shows a flat, slightly raised loss.
Regime 0 has the weights of the stationary stream, so the first ``DEMO_REGIME_SAMPLES``
samples of the demo stream are those of ``SyntheticStream`` with the same arguments, and
``regime_samples = 0`` (the default of :class:`SyntheticStream`) is the stationary stream
itself: the benchmarks' data and every seeded test are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..core.losses import sigmoid
from ..core.types import FloatArray

BLOCK_SIZE = 1024
DRIFT_PERIOD_SAMPLES = 100_000
DEMO_REGIME_SAMPLES = 30_000


@dataclass
class SyntheticStream:
    """x ~ N(0, I_d), y ~ Bernoulli(σ(w*(i)ᵀx + b*)), then flipped with prob. ``label_noise``.

    Parameters
    ----------
    n_features : int
        d.
    seed : int
    label_noise : float
        Probability in [0, 0.5] of flipping each label after drawing it.
    drift : float
        Radians per 100,000 samples by which the true weight vector rotates (in the plane of
        two fixed random directions); 0 for a stationary stream.
    weight_norm : float
        ‖w*‖ at every sample.
    intercept : float
        b*.
    regime_samples : int
        Every this many samples the true weights jump to a fresh random direction (regime
        r = i // regime_samples; regime 0 keeps the stationary stream's weights); 0: never.
    """

    n_features: int
    seed: int = 0
    label_noise: float = 0.0
    drift: float = 0.0
    weight_norm: float = 2.0
    intercept: float = 0.25
    regime_samples: int = 0
    _directions: tuple[FloatArray, FloatArray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_features < 1:
            raise ValueError("n_features must be >= 1")
        if not 0.0 <= self.label_noise <= 0.5:
            raise ValueError("label_noise must be in [0, 0.5]")
        if self.regime_samples < 0:
            raise ValueError("regime_samples must be >= 0")
        self._directions = self._regime_directions(0)

    def _regime_directions(self, regime: int) -> tuple[FloatArray, FloatArray]:
        """The orthonormal pair (u, v) in whose plane regime ``regime``'s weights turn."""
        key = [self.seed, 2**32 - 1] if regime == 0 else [self.seed, 2**32 - 1, regime]
        rng = np.random.default_rng(key)
        u = rng.standard_normal(self.n_features)
        u /= np.linalg.norm(u)
        v = rng.standard_normal(self.n_features)
        if self.n_features > 1:
            v -= (v @ u) * u
        norm_v = np.linalg.norm(v)
        v = v / norm_v if norm_v > 0 else v
        return u, v

    def true_weights(self, sample_index: int | FloatArray) -> FloatArray:
        """w*(i), shape (d,) for a scalar index or (k, d) for an array of indices:
        ‖w*‖ · (cos θ_i u_r + sin θ_i v_r), θ_i = drift · i / DRIFT_PERIOD_SAMPLES, with
        (u_r, v_r) the directions of sample i's regime r."""
        index = np.asarray(sample_index, dtype=np.float64)
        angle = self.drift * index / DRIFT_PERIOD_SAMPLES
        if not self.regime_samples:
            u, v = self._directions
            return self.weight_norm * (
                np.multiply.outer(np.cos(angle), u) + np.multiply.outer(np.sin(angle), v)
            )
        regimes = np.atleast_1d(index // self.regime_samples).astype(np.int64)
        W = np.empty((len(regimes), self.n_features))
        for regime in np.unique(regimes):
            u, v = self._directions if regime == 0 else self._regime_directions(int(regime))
            at = regimes == regime
            a = np.atleast_1d(angle)[at]
            W[at] = np.multiply.outer(np.cos(a), u) + np.multiply.outer(np.sin(a), v)
        W *= self.weight_norm
        return W if index.ndim else W[0]

    def _block(self, block: int) -> tuple[FloatArray, FloatArray]:
        rng = np.random.default_rng([self.seed, block])
        X = rng.standard_normal((BLOCK_SIZE, self.n_features))
        uniform = rng.random(BLOCK_SIZE)
        flip = rng.random(BLOCK_SIZE) < self.label_noise
        if self.drift or self.regime_samples:
            index = (block * BLOCK_SIZE + np.arange(BLOCK_SIZE)).astype(np.float64)
            z = np.sum(X * self.true_weights(index), axis=1) + self.intercept
        else:
            z = X @ self.true_weights(0) + self.intercept
        y = (uniform < sigmoid(z)) != flip
        return X, y.astype(np.float64)

    def samples(self, start: int, stop: int) -> tuple[FloatArray, FloatArray]:
        """Samples [start, stop): X of shape (stop − start, d) and y of shape (stop − start,)."""
        if not 0 <= start <= stop:
            raise ValueError("need 0 <= start <= stop")
        xs, ys = [], []
        for block in range(start // BLOCK_SIZE, math.ceil(stop / BLOCK_SIZE)):
            X, y = self._block(block)
            lo = max(start - block * BLOCK_SIZE, 0)
            hi = min(stop - block * BLOCK_SIZE, BLOCK_SIZE)
            xs.append(X[lo:hi])
            ys.append(y[lo:hi])
        if not xs:
            return np.zeros((0, self.n_features)), np.zeros(0)
        return np.concatenate(xs), np.concatenate(ys)

    def iter_chunks(
        self, start: int = 0, stop: int | None = None, chunk_size: int = BLOCK_SIZE
    ) -> Iterator[tuple[int, FloatArray, FloatArray]]:
        """Yield (first_index, X, y) chunks from ``start`` to ``stop`` (endless if None)."""
        i = start
        while stop is None or i < stop:
            j = i + chunk_size if stop is None else min(i + chunk_size, stop)
            X, y = self.samples(i, j)
            yield i, X, y
            i = j


def demo_stream(
    n_features: int, seed: int = 0, label_noise: float = 0.0, drift: float = 0.0
) -> SyntheticStream:
    """The stream of the demo (``streamsgd train`` without a source, ``streamsgd produce
    synthetic``): regimes of ``DEMO_REGIME_SAMPLES`` samples (module docstring). The same
    arguments give the same samples in both commands."""
    return SyntheticStream(n_features, seed, label_noise, drift, regime_samples=DEMO_REGIME_SAMPLES)
