"""m for what it buys: the batch size that keeps up with the stream, capped by a latency
budget, from a fixed model of a step's cost (issue 19, item 1).

Why not the norm test alone. At the noise floor of a constant-step learner the noise scale
is set by the optimiser, B/m = 2/(η λ̄) with λ̄ = tr(HΣ)/tr Σ, whatever m; under AdaGrad on
the summed gradient the per-coordinate rate falls like 1/√n, so B grows like √n and the norm
test asks for another doubling after every doubling (m = 2,048–4,096 at 1 M samples of a
stationary stream). There m is statistically neutral (per sample the summed step is the
same), so what m buys is throughput, and what it costs is latency.

The cost model. A step of m samples costs, modelled,

    c(m) = c₀ + c₁ m        (seconds; c₁ = a + b (d + 1) for dense rows, a constant for hashed rows)

with the constants of :data:`STEP_COST_SECONDS` and friends, measured by
``python -m bench.batch_latency`` (docs/benchmarks.md). The model is fixed, not timed on this
process: every replica and every restart computes the same m from the same stream, so the
replicas stay bitwise equal and a restart stays bit-identical (a wall-clock measurement would
differ between two processes, and between a run and its replay).

The rule, for an arrival rate λ (samples per second of the records' own time; NaN for a
backlog, a file, where everything has already arrived), over m ∈ {m_min 2^k} ∩ [m_min, m_max]:

* throughput: the smallest m whose modelled cost per sample keeps up,
  c(m)/m ≤ max(1/λ, 2 c₁). A backlog (1/λ = 0), or a stream faster than half the kernel's
  asymptotic rate 1/c₁, takes the knee c₀/m ≤ c₁: beyond it a doubling buys less than a
  third more throughput for twice the latency;
* latency: the largest m with c(m) ≤ L and, for a stream, m/λ ≤ L (the time the first
  sample of a batch waits for the last), L = ``--max-batch-latency-seconds``; m_min at least.

Standard library only.
"""

from __future__ import annotations

import math

DEFAULT_MAX_BATCH_LATENCY_SECONDS = 1.0
MAX_BATCH_LATENCY_SECONDS_LIMIT = 3600.0  # an hour: beyond, "latency" stops meaning anything
# The cost model c(m) = c₀ + c₁ m, c₁ = a + b (d + 1) dense, constant sparse: medians fitted
# by bench/batch_latency.py on the 2-core development machine (docs/benchmarks.md).
STEP_COST_SECONDS = 9.5e-5  # c₀: one learn_batch step under the controller, its fixed part
DENSE_SAMPLE_COST_SECONDS = 7.0e-8  # a
DENSE_VALUE_COST_SECONDS = 5.0e-9  # b, per stored value of a dense row
SPARSE_SAMPLE_COST_SECONDS = 1.2e-6  # c₁ of a hashed row (the benchmark's 20 fields)


def sample_cost_seconds(n_features: int, sparse: bool) -> float:
    """c₁ of the cost model for rows of ``n_features`` columns (hashed when ``sparse``)."""
    if sparse:
        return SPARSE_SAMPLE_COST_SECONDS
    return DENSE_SAMPLE_COST_SECONDS + DENSE_VALUE_COST_SECONDS * (n_features + 1)


def _sizes(min_batch_size: int, max_batch_size: int) -> list[int]:
    """m_min 2^k within [m_min, m_max], increasing."""
    sizes = [min_batch_size]
    while 2 * sizes[-1] <= max_batch_size:
        sizes.append(2 * sizes[-1])
    return sizes


def throughput_batch_size(
    arrival_rate: float,
    step_cost: float,
    sample_cost: float,
    min_batch_size: int,
    max_batch_size: int,
) -> int:
    """The smallest m with (c₀ + c₁ m)/m ≤ max(1/λ, 2 c₁) (m_max if none); λ NaN: a backlog."""
    per_sample = 1.0 / arrival_rate if arrival_rate > 0.0 else 0.0  # NaN > 0 is False
    allowed = max(per_sample, 2.0 * sample_cost)
    for m in _sizes(min_batch_size, max_batch_size):
        if (step_cost + sample_cost * m) / m <= allowed:
            return m
    return _sizes(min_batch_size, max_batch_size)[-1]


def latency_batch_size(
    arrival_rate: float,
    step_cost: float,
    sample_cost: float,
    max_latency_seconds: float,
    min_batch_size: int,
    max_batch_size: int,
) -> int:
    """The largest m with c₀ + c₁ m ≤ L and (λ known) m/λ ≤ L; m_min at least."""
    best = min_batch_size
    for m in _sizes(min_batch_size, max_batch_size):
        fill = m / arrival_rate if arrival_rate > 0.0 else 0.0
        if step_cost + sample_cost * m <= max_latency_seconds and fill <= max_latency_seconds:
            best = m
    return best


def validate_latency_budget(seconds: float) -> None:
    """ValueError unless 0 < L ≤ an hour (finite)."""
    if not (0.0 < seconds <= MAX_BATCH_LATENCY_SECONDS_LIMIT) or math.isnan(seconds):
        raise ValueError(
            f"max_batch_latency_seconds must be in (0, {MAX_BATCH_LATENCY_SECONDS_LIMIT:g}], "
            f"got {seconds}"
        )
