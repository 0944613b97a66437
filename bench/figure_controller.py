"""Draw docs/controller.png: m, η, the gradient noise scale B and the progressive loss over a
`--batch-size auto --learning-rate auto` run on the demo stream, whose true weights jump to a
new direction every 30,000 samples (a drift). Not a benchmark; a picture of the controller.

    .venv/bin/pip install -e '.[bench]' matplotlib
    .venv/bin/python -m bench.figure_controller [--samples 150000] [--out docs/controller.png]

The run is progressive validation through the same builder as `streamsgd evaluate`, so the
steps are exactly those `streamsgd train --batch-size auto --learning-rate auto` takes.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from streamsgd.cli.evaluate import validation
from streamsgd.codec import DecodedRun
from streamsgd.config import train_config
from streamsgd.core.model import BatchStats
from streamsgd.datasets.synthetic_stream import DEMO_REGIME_SAMPLES, demo_stream

N_FEATURES = 20


def trace(n_samples: int, seed: int) -> dict[str, np.ndarray]:
    """Per step: samples seen, m, η, B (NaN while untrusted), the step's mean loss."""
    config = train_config(
        source="synthetic",
        n_features=N_FEATURES,
        seed=seed,
        max_samples=n_samples,
        batch_size="auto",
        learning_rate="auto",
    )
    runner = validation(config)
    model = runner.model
    rows: list[tuple[float, float, float, float, float]] = []
    seen = 0

    def on_step(stats: BatchStats) -> None:
        nonlocal seen
        seen += stats.n_samples
        noise = model.gradient_stats.noise_scale if model.gradient_stats.trusted else math.nan
        rows.append((seen, stats.n_samples, stats.learning_rate, noise, stats.loss))

    runner.on_step = on_step
    X, y = demo_stream(N_FEATURES, seed).samples(0, n_samples)
    runner.feed([DecodedRun("demo", 0, X, y, None, True)])
    runner.finish()
    columns = np.array(rows[:-1], dtype=np.float64).T  # the last step may be a partial one
    return dict(zip(("samples", "m", "eta", "noise_scale", "loss"), columns, strict=True))


def draw(data: dict[str, np.ndarray], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = data["samples"]
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    window = 50
    # A trailing mean (no zero padding at the ends, which would draw a false dip).
    cumulative = np.cumsum(np.insert(data["loss"], 0, 0.0))
    counts = np.minimum(np.arange(1, len(x) + 1), window)
    loss = (cumulative[1:] - cumulative[np.arange(len(x)) + 1 - counts]) / counts
    panels = [
        (data["m"], "batch size m", "step"),
        (data["eta"], "learning rate η", "line"),
        (data["noise_scale"], "noise scale B (trusted)", "line"),
        (loss, f"progressive loss ({window}-step mean)", "line"),
    ]
    for ax, (values, label, kind) in zip(axes, panels, strict=True):
        if kind == "step":
            ax.step(x, values, where="post", color="tab:blue")
            ax.set_yscale("log", base=2)
        else:
            ax.plot(x, values, lw=0.8, color="tab:blue")
        if label.startswith("noise"):
            ax.set_yscale("log")
        ax.set_ylabel(label)
        for change in range(DEMO_REGIME_SAMPLES, int(x[-1]) + 1, DEMO_REGIME_SAMPLES):
            ax.axvline(change, color="tab:red", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("samples (red: the true weights change direction)")
    fig.suptitle("--batch-size auto --learning-rate auto on the drifting demo stream (d = 20)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5 * DEMO_REGIME_SAMPLES)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/controller.png"))
    args = parser.parse_args()
    data = trace(args.samples, args.seed)
    draw(data, args.out)
    # After each change: steps until m is at or below half its value just before the change.
    for change in range(DEMO_REGIME_SAMPLES, args.samples, DEMO_REGIME_SAMPLES):
        before = int(np.searchsorted(data["samples"], change))
        m_before = data["m"][max(before - 1, 0)]
        after = np.nonzero(data["m"][before:] <= m_before / 2)[0]
        shrink = f"{after[0]} steps" if len(after) else "not within the run"
        print(f"change at {change}: m before {m_before:.0f}, halved after {shrink}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
