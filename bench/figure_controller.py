"""Draw docs/controller.png: the controller of ``--batch-size auto --learning-rate auto`` (the
defaults) on two streams. Left, the demo stream, whose true weights jump to a new direction
every 30,000 samples (a drift): m, η and the effective rate on ḡ, the noise scale B with its
lower bound B̂, and the progressive loss. Right, a stationary d = 20 stream of 1 M samples read
from a file (bench/batch_latency.py's): B keeps growing like √n under AdaGrad, and m stops at
the throughput bound of the step-cost model instead of following it. Not a benchmark; a
picture of the controller.

    .venv/bin/pip install matplotlib                  # a docs tool, not a dependency
    .venv/bin/python -m bench.figure_controller [--samples 150000] [--stationary 1000000]
        [--out docs/controller.png]

Both runs are progressive validation through the same builder as `streamsgd evaluate`, so the
steps are exactly those `streamsgd train` takes with its defaults.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from bench.adagrad_forgetting import FEED_SAMPLES, stream
from streamsgd.cli.evaluate import validation
from streamsgd.codec import DecodedRun
from streamsgd.config import train_config
from streamsgd.core.model import BatchStats
from streamsgd.datasets.synthetic_stream import DEMO_REGIME_SAMPLES, demo_stream

N_FEATURES = 20
COLUMNS = ("samples", "m", "m_high", "eta", "effective", "noise_scale", "lower_bound", "loss")


def trace(X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per step: samples seen, m, the bound m_hi, η, the effective rate on ḡ (median of
    η·m/√A_j), B and B̂ (NaN while undefined), the step's mean loss."""
    config = train_config(source="file", path="(memory)", n_features=N_FEATURES)
    runner = validation(config)
    model = runner.model
    controller = model.controller
    assert controller is not None  # the defaults are auto
    rows: list[tuple[float, ...]] = []
    seen = 0

    def on_step(stats: BatchStats) -> None:
        nonlocal seen
        seen += stats.n_samples
        accumulator = model.optim.accumulator
        rate = stats.learning_rate * stats.n_samples
        effective = (
            float(np.median(rate / (np.sqrt(accumulator) + model.optim.epsilon)))
            if accumulator is not None
            else stats.learning_rate
        )
        gradient = model.gradient_stats
        noise = gradient.noise_scale if gradient.trusted else math.nan
        high = controller.batch_size_bounds()[1]
        rows.append(
            (
                seen,
                stats.n_samples,
                high,
                stats.learning_rate,
                effective,
                noise,
                gradient.noise_scale_lower_bound,
                stats.loss,
            )
        )

    runner.on_step = on_step
    for lo in range(0, len(y), FEED_SAMPLES):
        hi = min(lo + FEED_SAMPLES, len(y))
        runner.feed([DecodedRun("figure", lo, X[lo:hi], y[lo:hi], None, False)])
    runner.finish()
    columns = np.array(rows[:-1], dtype=np.float64).T  # the last step may be a partial one
    return dict(zip(COLUMNS, columns, strict=True))


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """A trailing mean (no zero padding at the ends, which would draw a false dip)."""
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumulative[1:] - cumulative[np.arange(len(values)) + 1 - counts]) / counts


def _column(axes, data: dict[str, np.ndarray], changes: range) -> None:  # type: ignore[no-untyped-def]
    x = data["samples"]
    ax = axes[0]
    ax.step(x, data["m"], where="post", color="tab:blue", label="m")
    ax.step(
        x,
        data["m_high"],
        where="post",
        color="tab:gray",
        ls=":",
        label="m_hi (throughput, latency)",
    )
    ax.set_yscale("log", base=2)
    ax.set_ylabel("batch size")
    ax = axes[1]
    ax.plot(
        x, data["effective"], lw=0.8, color="tab:blue", label="effective rate on ḡ: η·m/√A (median)"
    )
    ax.plot(x, data["eta"], lw=0.8, color="tab:orange", label="η")
    ax.set_yscale("log")
    # The first steps (and a change alarm's shrunk A) give spikes: keep the scale readable.
    finite = data["effective"][np.isfinite(data["effective"])]
    ax.set_ylim(0.5 * min(finite.min(), data["eta"].min()), 2.0 * np.percentile(finite, 99))
    ax.set_ylabel("rate")
    ax = axes[2]
    ax.plot(x, data["noise_scale"], lw=0.8, color="tab:blue", label="B (trusted)")
    ax.plot(x, data["lower_bound"], lw=0.6, color="tab:green", alpha=0.7, label="B̂ (lower bound)")
    ax.set_yscale("log")
    ax.set_ylabel("noise scale")
    ax = axes[3]
    ax.plot(x, _trailing_mean(data["loss"], 50), lw=0.8, color="tab:blue")
    ax.set_ylabel("progressive loss (50-step mean)")
    for ax in axes:
        for change in changes:
            ax.axvline(change, color="tab:red", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")


def draw(drift: dict[str, np.ndarray], stationary: dict[str, np.ndarray], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 2, figsize=(13, 10), sharex="col")
    end = int(drift["samples"][-1])
    _column(axes[:, 0], drift, range(DEMO_REGIME_SAMPLES, end + 1, DEMO_REGIME_SAMPLES))
    _column(axes[:, 1], stationary, range(0))
    axes[0, 0].set_title("the demo stream: the true weights change direction (red)")
    axes[0, 1].set_title("a stationary stream read from a file (a backlog)")
    axes[-1, 0].set_xlabel("samples")
    axes[-1, 1].set_xlabel("samples")
    axes[0, 1].set_xscale("log")
    fig.suptitle("the defaults (auto: AdaGrad on the summed gradient), d = 20")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5 * DEMO_REGIME_SAMPLES)
    parser.add_argument("--stationary", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/controller.png"))
    args = parser.parse_args()
    drift = trace(*demo_stream(N_FEATURES, args.seed).samples(0, args.samples))
    X, y, _ = stream(args.stationary, 0, drift=False)
    stationary = trace(X, y)
    draw(drift, stationary, args.out)
    # After each change: steps until m is at or below half its value just before the change.
    for change in range(DEMO_REGIME_SAMPLES, args.samples, DEMO_REGIME_SAMPLES):
        before = int(np.searchsorted(drift["samples"], change))
        m_before = drift["m"][max(before - 1, 0)]
        after = np.nonzero(drift["m"][before:] <= m_before / 2)[0]
        shrink = f"{after[0]} steps" if len(after) else "not within the run"
        print(f"change at {change}: m before {m_before:.0f}, halved after {shrink}")
    for n in (10_000, 100_000, 1_000_000):
        k = min(int(np.searchsorted(stationary["samples"], n)), len(stationary["m"]) - 1)
        if stationary["samples"][k] >= 0.9 * n:
            print(f"stationary: m at {n:,} samples = {stationary['m'][k]:.0f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
