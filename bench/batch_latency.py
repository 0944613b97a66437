"""m for what it buys (issue 19, item 1): the step cost model's constants, and m on a
stationary stream read from a file.

    .venv/bin/python -m bench.batch_latency [--fit] [--n 1000000] [--seed 0]
        [--arrival-rates 100,1000,10000,100000]

``--fit`` times ``learn_batch`` under the product's ``auto`` (AdaGrad under the controller;
``--standardize`` on dense rows) at m = 8 … 512 on dense rows of d = 20 and d = 200 and on the
hashed stream of bench/data.py, and fits c(m) = c₀ + c₁ m by least squares on the medians
(each m: the median of ≥ 20 steps), then c₁ = a + b (d + 1) across the two dense widths. The
constants of streamsgd/core/batch_latency.py come from this fit (docs/benchmarks.md); they are
a model, fixed in the code, so that every replica and restart picks the same m.

Without ``--fit``: the stationary d = 20 stream of bench/adagrad_forgetting.py (y ~ Bernoulli
(σ(w*ᵀx)), ‖w*‖ = 2), ``--batch-size auto --learning-rate auto`` and nothing else, read as a
file (no record timestamps: a backlog), through the runner of ``streamsgd evaluate``: m after
10 k, 100 k and 1 M samples, the updates, and the progressive log loss of the last 10 % —
with the default latency budget and with a tight one (1e-4 s), beside the fixed m = 32 SGD.
Deterministic (the numbers are the same on every machine); the fit's are not.

``--arrival-rates``: what an arrival rate λ known to the controller would change (issue 19,
item 1: a Kafka record's CreateTime could give λ; today every source is a backlog). The same
stream and ``auto``, once as a backlog (the product today) and once per λ with the
controller's ``arrival_rate`` set to λ: m after 10 k / 100 k / 1 M samples, the time the
first sample of a batch waits for the last, (m − 1)/λ, at those points (for the backlog run,
had its records arrived at λ), the updates and the log loss of the last 10 %.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from bench.adagrad_forgetting import FEED_SAMPLES, stream
from bench.data import sparse_stream
from streamsgd.cli.build import build_model
from streamsgd.cli.evaluate import validation
from streamsgd.codec import DecodedRun
from streamsgd.config import train_config
from streamsgd.core.losses import log_loss
from streamsgd.training.buffer import slice_rows

FIT_SIZES = (8, 16, 32, 64, 128, 256, 512)
CHECKPOINTS = (10_000, 100_000, 1_000_000)


def step_seconds(options: dict[str, Any], X: Any, y: np.ndarray, m: int) -> float:
    """Median wall seconds of one learn_batch of m rows (a fresh auto model, warmed up)."""
    width = {} if "hash_bits" in options else {"n_features": X.shape[1]}
    config = train_config(source="file", path="(in memory)", **width, **options)
    model = build_model(config)
    times = []
    n_steps = max(20, min(200, 20_000 // m))
    for step in range(n_steps + 5):
        lo = (step * m) % (len(y) - m)
        rows, labels = slice_rows(X, lo, lo + m), y[lo : lo + m]
        started = time.perf_counter()
        model.learn_batch(rows, labels)
        if step >= 5:  # the first steps allocate the work arrays
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def fit(label: str, options: dict[str, Any], X: Any, y: np.ndarray) -> tuple[float, float]:
    """(c₀, c₁) of ``c(m) = c₀ + c₁ m`` fitted to the medians at FIT_SIZES."""
    seconds = [step_seconds(options, X, y, m) for m in FIT_SIZES]
    slope, intercept = np.polyfit(np.array(FIT_SIZES, float), np.array(seconds), 1)
    cells = " ".join(f"{m}:{s * 1e6:.0f}" for m, s in zip(FIT_SIZES, seconds, strict=True))
    print(f"{label}: c0 = {intercept * 1e6:.1f} us, c1 = {slope * 1e9:.0f} ns   [{cells} us]")
    return float(intercept), float(slope)


def run_fit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dense = {"batch_size": "auto", "learning_rate": "auto", "standardize": True}
    widths = (20, 200)
    slopes = []
    for d in widths:
        X = rng.normal(size=(60_000, d))
        y = (rng.random(60_000) < 0.5).astype(np.float64)
        slopes.append(fit(f"dense d = {d}", dense, X, y)[1])
    b = (slopes[1] - slopes[0]) / (widths[1] - widths[0])
    a = slopes[0] - b * (widths[0] + 1)
    print(f"dense c1 = a + b (d + 1): a = {a * 1e9:.0f} ns, b = {b * 1e9:.2f} ns")
    data = sparse_stream(60_000, seed)
    hashed = {"batch_size": "auto", "learning_rate": "auto", "hash_bits": 18}
    fit("hashed (2^18, 20 fields)", hashed, data.X, data.y)


def m_by_samples(options: dict[str, Any], X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """m after each of CHECKPOINTS, the updates, and the last 10 % progressive log loss."""
    config = train_config(source="file", path="(in memory)", n_features=X.shape[1], **options)
    runner = validation(config)
    seen: dict[int, int] = {}
    for lo in range(0, len(y), FEED_SAMPLES):
        hi = min(lo + FEED_SAMPLES, len(y))
        runner.feed([DecodedRun("bench", lo, X[lo:hi], y[lo:hi], None, False)])
        for n in CHECKPOINTS:
            if lo < n <= hi:
                controller = runner.model.controller
                seen[n] = controller.batch_size if controller else int(options["batch_size"])
    result = runner.finish()
    last = len(y) // 10
    loss = float(np.mean(log_loss(result.scores, result.labels)[-last:]))
    return {"m": seen, "updates": result.n_updates, "loss": loss}


def run_stream(n: int, seed: int) -> None:
    X, y, z = stream(n, seed, drift=False)
    last = n // 10
    print(
        f"stationary d = 20, {n:,} samples, seed {seed}; Bayes last 10 %: "
        f"{float(np.mean(log_loss(z, y)[-last:])):.4f}"
    )
    print(
        "| system | "
        + " | ".join(f"m at {c:,}" for c in CHECKPOINTS if c <= n)
        + " | updates | log loss, last 10 % |"
    )
    print("|---" * (len([c for c in CHECKPOINTS if c <= n]) + 3) + "|")
    auto = {"batch_size": "auto", "learning_rate": "auto"}
    systems = [
        ("auto (default budget 1 s)", auto),
        ("auto, --max-batch-latency-seconds 1e-4", {**auto, "max_batch_latency_seconds": 1e-4}),
        (
            "fixed m = 32, SGD eta = 0.1",
            {"batch_size": 32, "learning_rate": 0.1, "optimizer": "sgd"},
        ),
    ]
    for label, options in systems:
        row = m_by_samples(options, X, y)
        ms = " | ".join(str(row["m"].get(c, "")) for c in CHECKPOINTS if c <= n)
        print(f"| {label} | {ms} | {row['updates']:,} | {row['loss']:.4f} |", flush=True)


def m_at_rate(options: dict[str, Any], X: np.ndarray, y: np.ndarray, rate: float) -> dict:
    """:func:`m_by_samples` with the controller told the arrival rate λ (NaN: a backlog)."""
    config = train_config(source="file", path="(in memory)", n_features=X.shape[1], **options)
    runner = validation(config)
    controller = runner.model.controller
    assert controller is not None  # options are auto
    controller.arrival_rate = rate
    seen: dict[int, int] = {}
    for lo in range(0, len(y), FEED_SAMPLES):
        hi = min(lo + FEED_SAMPLES, len(y))
        runner.feed([DecodedRun("bench", lo, X[lo:hi], y[lo:hi], None, False)])
        seen |= {n: controller.batch_size for n in CHECKPOINTS if lo < n <= hi}
    result = runner.finish()
    loss = float(np.mean(log_loss(result.scores, result.labels)[-(len(y) // 10) :]))
    return {"m": seen, "updates": result.n_updates, "loss": loss}


def run_rates(n: int, seed: int, rates: list[float]) -> None:
    X, y, _ = stream(n, seed, drift=False)
    points = [c for c in CHECKPOINTS if c <= n]
    auto = {"batch_size": "auto", "learning_rate": "auto"}
    backlog = m_at_rate(auto, X, y, float("nan"))
    print(f"stationary d = 20, {n:,} samples, seed {seed}, the default budget (1 s)")
    heads = " | ".join(f"m, wait at {c:,}" for c in points)
    print(f"| arrival rate (samples/s) | controller | {heads} | updates | log loss, last 10 % |")
    print("|---" * (len(points) + 4) + "|")
    for rate in rates:
        known = m_at_rate(auto, X, y, rate)
        for label, row in (("backlog (today)", backlog), ("λ known", known)):
            cells = " | ".join(f"{row['m'][c]}, {(row['m'][c] - 1) / rate:.3g} s" for c in points)
            print(
                f"| {rate:,.0f} | {label} | {cells} | {row['updates']:,} | {row['loss']:.4f} |",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arrival-rates", help="samples/s, comma-separated")
    args = parser.parse_args(argv)
    if args.arrival_rates:
        run_rates(args.n, args.seed, [float(r) for r in args.arrival_rates.split(",") if r])
    elif args.fit:
        run_fit(args.seed)
    else:
        run_stream(args.n, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
