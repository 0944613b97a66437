"""What was tried for issue 10's last targets, reproducible (docs/benchmarks.md, "Issue 10:
what was tried for the last targets").

    .venv/bin/python -m bench.auto_ablation [--n N] [--markdown PATH]

Three experiments, all with ``--batch-size auto --learning-rate auto`` and the data sets of
:mod:`bench.quality_auto` (sparse and dense: ``--n`` samples, default 100,000):

A. The smallest batch ``--min-batch-size`` ∈ {8 (the default), 16, 32}: log loss, accuracy,
   AUC, updates, and the updates to the fixed m = 32, η = 0.1 run's final loss (ratio ≥ 4 is
   the target); River's accuracy / AUC beside the real data sets.
B. Shuttle with the standardiser's moment sums clipped at F·κ·s instead of κ·s (F = 1 is the
   product; F = ∞ folds the unclipped rows): the σ of the heavy-tailed features against the
   data's own, the progressive scores, and issue 9's capture check under the same patch
   (:func:`one_record_capture`). The patch is applied here only, for the run.
C. The power of the trusted gate at m = 8 on the sparse stream: the sample at which
   ``gradient_stats.trusted`` first holds with the within-batch estimates (the product), and
   with the estimates pooled over blocks of ≥ 128 consecutive samples (several steps' sums
   added before one update of the statistics: more pairs, but pairs across steps whose
   weights differ), with the median Ḡ² over samples 10,000–20,000 of each.

Deterministic (no timing); ≈ 2 minutes on the 2-core machine of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from bench import machine
from bench.quality_auto import (
    TARGET_ETA,
    TARGET_M,
    Dataset,
    _updates_to,
    load,
    river_row,
    streamsgd_result,
)
from streamsgd.cli.evaluate import validation
from streamsgd.codec import DecodedRun
from streamsgd.config import train_config
from streamsgd.core import standardize
from streamsgd.core.batch_sums import BatchSums
from streamsgd.core.model import OnlineLogisticRegression

AUTO: dict[str, Any] = {"batch_size": "auto", "learning_rate": "auto"}
FEED_SAMPLES = 4096


def _cell(value: float | int | None, digits: int = 4) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))
    )


# ---------------------------------------------------------------------------- A
def smallest_batch(datasets: list[Dataset]) -> list[str]:
    out = [
        "| data | --min-batch-size | log loss | accuracy | AUC | updates | updates to the "
        "m = 32 loss (ratio) | River accuracy / AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ds in datasets:
        target_run = streamsgd_result(ds, {"batch_size": TARGET_M, "learning_rate": TARGET_ETA})
        target = float(target_run.loss_trace()[-1])
        river = (
            ""
            if ds.feature_names is None
            else (lambda r: f"{r.accuracy:.4f} / {r.roc_auc:.4f}")(river_row(ds, 1))
        )
        for m_min in (8, 16, 32):
            result = streamsgd_result(ds, {**AUTO, "min_batch_size": m_min})
            k = _updates_to(result, target)
            ratio = f"{k} ({target_run.n_updates / k:.2f}×)" if k else "–"
            out.append(
                f"| {ds.name} | {m_min} | {result.log_loss:.4f} | {result.accuracy:.4f} "
                f"| {result.roc_auc:.4f} | {result.n_updates} | {ratio} | {river} |"
            )
    return out


# ---------------------------------------------------------------------------- B
@contextmanager
def moments_clipped_at(factor: float) -> Iterator[None]:
    """The standardiser's moment sums clipped at factor·κ·s (κ·s stays the step's clip)."""
    original = standardize.Standardizer._batch_sums

    def wider(self: Any, X: Any, Z: Any, row_scale: float, clip_norm_ratio: float) -> Any:
        return original(self, X, Z, row_scale, clip_norm_ratio * factor)

    standardize.Standardizer._batch_sums = wider  # type: ignore[method-assign]
    try:
        yield
    finally:
        standardize.Standardizer._batch_sums = original  # type: ignore[method-assign]


def _run(
    ds: Dataset,
    options: dict[str, Any],
    hook: Callable[[OnlineLogisticRegression], None] | None = None,
) -> tuple[Any, OnlineLogisticRegression]:
    width: dict[str, Any] = (
        {"hash_bits": ds.hash_bits} if ds.hash_bits else {"n_features": ds.n_features}
    )
    runner = validation(train_config(source="file", path="(in memory)", **width, **options))
    if hook is not None:
        hook(runner.model)
    for lo in range(0, ds.n, FEED_SAMPLES):
        hi = min(lo + FEED_SAMPLES, ds.n)
        runner.feed([DecodedRun("bench", lo, ds.rows(lo, hi), ds.y[lo:hi], None, False)])
    return runner.finish(), runner.model


def moment_clipping(shuttle: Dataset) -> list[str]:
    assert isinstance(shuttle.X, np.ndarray)
    true_scale = shuttle.X.std(axis=0)
    heavy = np.argsort(
        -(true_scale / np.median(np.abs(shuttle.X - np.median(shuttle.X, 0)), 0).clip(1e-9))
    )[:3]
    heavy = np.sort(heavy)
    names = ", ".join(f"σ{j + 1}" for j in heavy)
    out = [
        f"| moments clipped at | {names} (data: "
        + ", ".join(f"{true_scale[j]:.1f}" for j in heavy)
        + ") | log loss | accuracy | AUC | updates | max σ_j ratio after one 10⁶σ record |",
        "|---|---|---|---|---|---|---|",
    ]
    for factor in (1.0, 10.0, math.inf):
        with moments_clipped_at(factor):
            result, model = _run(shuttle, AUTO)
            capture = one_record_capture()
        scale = model.inputs.scale  # type: ignore[attr-defined]
        label = (
            "κ·s (the product)"
            if factor == 1.0
            else ("none" if math.isinf(factor) else f"{factor:g}·κ·s")
        )
        out.append(
            f"| {label} | "
            + ", ".join(f"{scale[j]:.1f}" for j in heavy)
            + f" | {result.log_loss:.4f} | {result.accuracy:.4f} | {result.roc_auc:.4f} "
            f"| {result.n_updates} | {capture:.2f} |"
        )
    river = river_row(shuttle, 1)
    out.append(
        f"| River | – | {river.log_loss:.4f} | {river.accuracy:.4f} | {river.roc_auc:.4f} | – | – |"
    )
    return out


def one_record_capture(n_features: int = 9, n: int = 2400, at: int = 800) -> float:
    """Issue 9's capture check (tests/unit/core/test_standardize.py): N(0, I) rows learned
    8 at a time with ``standardize``, once clean and once with row ``at`` replaced by 10⁶×
    an ordinary row; max_j σ_j(hit)/σ_j(clean) at the end (the test requires < 1.5)."""
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((n, n_features)), (rng.random(n) < 0.5).astype(float)
    scales = []
    for extreme in (False, True):
        model = OnlineLogisticRegression(n_features, standardize=True)
        for lo in range(0, n, 8):
            batch = X[lo : lo + 8].copy()
            if extreme and lo == at:
                batch[3] *= 1e6
            model.learn_batch(batch, y[lo : lo + 8])
        scales.append(model.inputs.scale)  # type: ignore[attr-defined]
    return float(np.max(scales[1] / scales[0]))


# ---------------------------------------------------------------------------- C
def pooled(block_samples: int) -> Callable[[OnlineLogisticRegression], None]:
    """Feed the model's statistics the sums of consecutive steps, ≥ block_samples at a time."""

    def install(model: OnlineLogisticRegression) -> None:
        stats = model.gradient_stats
        update = stats.update
        pending: list[BatchSums] = []

        def update_pooled(sums: BatchSums, regularization: Any = None) -> None:
            block = sums if not pending else pending.pop() + sums
            if block.n_samples >= block_samples:
                update(block, regularization)
            else:
                pending.append(block)

        stats.update = update_pooled  # type: ignore[method-assign]

    return install


def gate_power(sparse: Dataset) -> list[str]:
    out = [
        "| estimates | first trusted at sample | median Ḡ², samples 10k–20k | SE there |",
        "|---|---|---|---|",
    ]
    for label, hook in (
        ("within-batch (the product)", None),
        ("pooled over ≥ 128 samples", pooled(128)),
    ):
        trace: list[tuple[int, bool, float, float]] = []

        def observe(
            model: OnlineLogisticRegression,
            hook: Any = hook,
            trace: list[tuple[int, bool, float, float]] = trace,
        ) -> None:
            if hook is not None:
                hook(model)
            learn = model.learn_batch

            def learn_and_record(X: Any, y: Any, weights: Any = None) -> Any:
                stats = learn(X, y, weights)
                g = model.gradient_stats
                trace.append(
                    (
                        model.n_samples_seen,
                        g.trusted,
                        g.true_gradient_squared_norm,
                        g.standard_error,
                    )
                )
                return stats

            model.learn_batch = learn_and_record  # type: ignore[method-assign, assignment]

        _run(sparse, {**AUTO, "max_batch_size": 8}, observe)  # m stays 8: the power at m = 8
        first = next((n for n, trusted, _, _ in trace if trusted), None)
        window = [(g2, se) for n, _, g2, se in trace if 10_000 <= n <= 20_000]
        g2 = float(np.median([w[0] for w in window]))
        se = float(np.median([w[1] for w in window]))
        out.append(f"| {label} | {_cell(first)} | {g2:.2e} | {se:.2e} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="samples of the synthetic streams")
    parser.add_argument("--markdown", help="write the tables here too")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    data = {name: load(name, args.n, 0) for name in ("sparse", "dense", "phishing", "shuttle")}
    out = ["## Machine", ""] + [f"* {k}: {v}" for k, v in machine.describe().items()]
    out += ["", "## A. The smallest batch", "", *smallest_batch(list(data.values()))]
    out += ["", "## B. Shuttle: the standardiser's moments", "", *moment_clipping(data["shuttle"])]
    out += ["", "## C. The trusted gate's power at m = 8 (sparse)", "", *gate_power(data["sparse"])]
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
