"""A proposed leaner minibatch step for ``OnlineLogisticRegression.learn_batch`` (dense X).

Not part of the core: the benchmark measures it next to the real ``learn_batch`` to show
what the same step *with the same statistics* costs when the per-batch numpy-call count is
cut (at m = 256 the step is bound by numpy call overhead, ≈ 0.5–1 µs per call, not by
arithmetic). Same math, same results (``check()`` asserts it against ``learn_batch``):

* e = exp(−|z|) is computed once and shared by σ(z) and the log loss (the core computes it
  twice, in ``sigmoid`` and ``log_loss``);
* ‖ḡ‖² and tr Σ̂ are derived once from Σ g_i (``BatchStats`` derives ḡ twice);
* labels are validated with one comparison instead of three;
* the running statistics are updated from Python floats, and the across-step mean-gradient
  vector (needed only while every batch has m = 1) is no longer smoothed once within-batch
  statistics exist;
* Σ‖g_i‖² = (r ∘ r)ᵀ(‖x_i‖² + 1) in four numpy calls.

Supports what the benchmarks use: dense X, plain SGD or AdaGrad, any L2, L1 = 0,
reduction "mean", no sample weights; anything else should take the normal path.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from streamsgd import OnlineLogisticRegression

FloatArray = NDArray[np.float64]


def _ewma(previous: float, value: float, a: float) -> float:
    return value if math.isnan(previous) else previous + a * (value - previous)


def lean_learn_batch(
    model: OnlineLogisticRegression, X: FloatArray, y: FloatArray, statistics: bool = True
) -> float:
    """One minibatch step on (X, y), m ≥ 2; returns the batch's loss sum.

    With ``statistics`` the running gradient statistics end as after ``learn_batch``, except
    that the across-step mean-gradient vector (only used while every batch has m = 1) is not
    updated once within-batch statistics exist (proposal (b) in docs/benchmarks.md).
    """
    m = len(y)
    theta = model._theta
    z = X @ theta[:-1]
    z += theta[-1]
    e = np.abs(z)
    np.negative(e, out=e)
    np.exp(e, out=e)  # e = exp(−|z|)
    positive = z >= 0.0
    r = np.where(positive, 1.0, e)
    r /= e + 1.0
    r -= y  # r = σ(z) − y
    if not np.all(np.abs(y - 0.5) == 0.5):
        raise ValueError("labels must be 0 or 1")
    # ℓ = log1p(e) + max(z, 0) − y z, summed
    loss_sum = float(np.log1p(e).sum() + z @ positive - y @ z)
    gradient_sum = np.empty(len(theta))
    np.matmul(r, X, out=gradient_sum[:-1])
    gradient_sum[-1] = r.sum()
    if statistics:
        row = np.einsum("ij,ij->i", X, X)
        row += 1.0
        squared = float((r * r) @ row)  # Σ‖g_i‖² = Σ r_i² (‖x_i‖² + 1)
    eta = model.schedule(model.n_updates)
    direction = gradient_sum / m
    if model.l2:
        direction[:-1] += model.l2 * theta[:-1]
    if model._squared_gradient_sum is not None:
        accumulated = model._squared_gradient_sum + direction * direction
        new_theta = theta - eta * direction / (np.sqrt(accumulated) + model.adagrad_epsilon)
    else:
        accumulated = None
        new_theta = theta - eta * direction
    if not math.isfinite(float(new_theta.sum())):
        return loss_sum
    model._theta = new_theta
    if accumulated is not None:
        model._squared_gradient_sum = accumulated
    model.n_updates += 1
    model.n_samples_seen += m
    if statistics and math.isfinite(squared):
        stats = model.gradient_stats
        a = stats.smoothing
        g2 = float(gradient_sum @ gradient_sum) / (m * m)  # ‖ḡ‖², computed once
        trace = max(squared - m * g2, 0.0) / (m - 1)  # tr Σ̂
        if stats.mean_gradient is None or not stats._within_batch_seen:
            mean = gradient_sum / m
            stats.mean_gradient = (
                mean
                if stats.mean_gradient is None
                else stats.mean_gradient + a * (mean - stats.mean_gradient)
            )
        stats.last_batch_size = m
        stats.mean_squared_norm = _ewma(stats.mean_squared_norm, squared / m, a)
        stats.mean_gradient_squared_norm = _ewma(stats.mean_gradient_squared_norm, g2, a)
        stats._within_batch_seen = True
        stats.per_sample_variance = _ewma(stats.per_sample_variance, trace, a)
        stats.estimator_variance = _ewma(stats.estimator_variance, trace / m, a)
        stats.true_gradient_squared_norm = _ewma(
            stats.true_gradient_squared_norm, g2 - trace / m, a
        )
    return loss_sum


def check(seed: int = 0) -> None:
    """Assert that the lean step takes exactly the steps of ``learn_batch``."""
    from streamsgd.synthetic import SyntheticStream

    X, y = SyntheticStream(100, seed=seed).samples(0, 256 * 20)
    for params in ({}, {"l2": 0.01}, {"optimizer": "adagrad", "learning_rate": 0.05}):
        a = OnlineLogisticRegression(100, **params)
        b = OnlineLogisticRegression(100, **params)
        for i in range(0, len(y), 256):
            stats = a.learn_batch(X[i : i + 256], y[i : i + 256])
            loss = lean_learn_batch(b, X[i : i + 256], y[i : i + 256])
            assert math.isclose(loss, stats.loss * 256, rel_tol=1e-12)
        np.testing.assert_allclose(b._theta, a._theta, rtol=1e-12, atol=1e-14)
        for key in (
            "per_sample_variance",
            "estimator_variance",
            "true_gradient_squared_norm",
            "mean_squared_norm",
            "mean_gradient_squared_norm",
        ):
            assert math.isclose(
                getattr(a.gradient_stats, key), getattr(b.gradient_stats, key), rel_tol=1e-10
            ), key


if __name__ == "__main__":
    check()
    print("lean step == learn_batch")
