"""The change alarm's false-alarm rate on real log losses (issue 19, item 4): the average run
length (ARL, steps between alarms) of the CUSUM of :mod:`streamsgd.core.drift` when nothing
changes, at m = 1, 8 and 32, for the loss distributions of real runs instead of Gaussians.

    .venv/bin/python -m bench.cusum_arl [--steps 200000] [--thresholds 8,12,16,24] [--seed 0]

The losses: the per-sample progressive log losses of ``--batch-size auto --learning-rate auto``
(the product's ``auto``) over the second half of a run on each data set of
``bench.quality_auto`` (dense and sparse: 100 k samples; Shuttle: River's copy, 49,097 rows;
the demo stream's first 30 k samples, before its first change). Per-sample log losses are
skewed (most near 0, a tail of misclassified samples at several nats): Shuttle's skewness is
≈ 9, the dense stream's ≈ 2. Each sequence of batches is drawn i.i.d. from those losses
(with replacement), so nothing changes and every alarm is false; a batch's loss is the mean
of m draws, as the detector sees ℓ̄_t. The detector is :mod:`streamsgd.core.drift`'s rule,
re-implemented step by step here (its compiled form, ``_noise_update.observe``, folds the
gradient statistics in the same call), with the threshold h as the parameter; the product
runs it at m ≥ 2 only. Printed per (data set, m, h): the alarms, the ARL (steps / alarms;
"> steps" when none) and, for the demo stream at m = 32 and 8, the alarms and the steps from
each of its 3 changes to the alarm in a learning run (the detection this costs).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from bench import quality_auto
from streamsgd.cli.evaluate import validation
from streamsgd.codec import DecodedRun
from streamsgd.config import train_config
from streamsgd.core import drift

AUTO = {"batch_size": "auto", "learning_rate": "auto"}
SIZES = (1, 8, 32)
CANDIDATE_SMOOTHING = 0.05  # α₀ of the statistics: the candidate level's EWMA
CHANGE_SAMPLES = 30_000  # the demo stream's true weights change this often


def run_losses(dataset: quality_auto.Dataset, **options: object) -> np.ndarray:
    """The per-sample progressive log losses of a run of ``options`` over the data set."""
    width = {"hash_bits": dataset.hash_bits} if dataset.hash_bits else {}
    config = train_config(
        source="file",
        path="(in memory)",
        n_features=dataset.n_features,
        **width,
        **{**AUTO, **options},  # type: ignore[arg-type]
    )
    runner = validation(config)
    for lo in range(0, dataset.n, quality_auto.FEED_SAMPLES):
        hi = min(lo + quality_auto.FEED_SAMPLES, dataset.n)
        runner.feed([DecodedRun("bench", lo, dataset.rows(lo, hi), dataset.y[lo:hi], None, False)])
    result = runner.finish()
    z, y = result.scores, result.labels
    return np.logaddexp(0.0, z) - y * z  # log(1 + e^z) − y z


def count_alarms(
    batch_losses: np.ndarray,
    m: int,
    threshold: float,
    clip: float = drift.CLIP,
    robust_clip: float = drift.ROBUST_CLIP,
) -> list[int]:
    """The steps at which :mod:`streamsgd.core.drift`'s CUSUM raises an alarm on these batch
    mean losses (its warm-up, winsorised level and spread, clip, allowance and restart)."""
    level, spread, cusum = math.nan, math.nan, 0.0
    candidate, candidate_steps = math.nan, 0
    alarms = []
    k, c, r, a = drift.ALLOWANCE, clip, robust_clip, drift.LEVEL_SMOOTHING
    for n_steps, loss in enumerate(batch_losses.tolist(), 1):
        if math.isnan(level):
            level = loss
            continue
        deviation = loss - level
        if n_steps <= drift.WARMUP_STEPS or not spread > 0.0:
            squared = m * deviation * deviation
            spread = (
                squared
                if math.isnan(spread)
                else spread + max(1.0 / (n_steps - 1), a) * (squared - spread)
            )
            level += max(1.0 / n_steps, a) * deviation
            continue
        sd = math.sqrt(spread / m)
        z = deviation / sd if sd > 0.0 else 0.0
        robust = min(max(z, -r), r)
        spread *= 1.0 + a * (robust * robust - 1.0)
        level += a * robust * sd
        cusum = max(0.0, cusum + min(z, c) - k)
        if cusum == 0.0:
            candidate_steps = 0
            continue
        candidate_steps += 1
        alpha = max(1.0 / candidate_steps, CANDIDATE_SMOOTHING)
        candidate = loss if candidate_steps == 1 else candidate + alpha * (loss - candidate)
        if cusum > threshold:
            alarms.append(n_steps)
            level, cusum, candidate_steps = candidate, 0.0, 0
    return alarms


def skewness(values: np.ndarray) -> float:
    centred = values - values.mean()
    return float((centred**3).mean() / (centred**2).mean() ** 1.5)


def null_alarms(
    losses: np.ndarray, m: int, rule: tuple[float, float], steps: int, seed: int
) -> int:
    """Alarms in ``steps`` steps of batch means of m i.i.d. draws from ``losses``, under the
    rule (c, h)."""
    rng = np.random.default_rng(seed)
    batches = rng.choice(losses, size=(steps, m)).mean(axis=1)
    return len(count_alarms(batches, m, rule[1], rule[0], *rule[2:]))


def demo_delays(losses: np.ndarray, m: int, rule: tuple[float, float]) -> str:
    """Alarms of the rule on a fixed-m learning run's losses over the demo stream (changes
    every 30 k samples; no restart at an alarm, so this is the detection, not the recovery):
    the steps from each change to its first alarm, and the alarms elsewhere."""
    n_steps = len(losses) // m
    alarms = count_alarms(
        losses[: n_steps * m].reshape(n_steps, m).mean(axis=1), m, rule[1], rule[0], *rule[2:]
    )
    changes = [i * CHANGE_SAMPLES // m for i in range(1, (len(losses) - 1) // CHANGE_SAMPLES + 1)]
    delays, used = [], set()
    for step in changes:
        after = [a for a in alarms if step < a <= step + 50]
        delays.append(str(after[0] - step) if after else "-")
        used.update(after[:1])
    return f"delays {'/'.join(delays)}, other alarms {len(set(alarms) - used)}"


def sources(seed: int) -> dict[str, np.ndarray]:
    """Per-sample losses of the second half of an ``auto`` run per data set."""
    out = {}
    for name, n in (("dense", 100_000), ("sparse", 100_000), ("shuttle", 0), ("drift", 30_000)):
        losses = run_losses(quality_auto.load(name, n, seed))
        out[name] = losses[len(losses) // 2 :]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--rules", default="6:8:3,3:12:3,6:8:6", help="c:h[:r] rules")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rules = [tuple(float(v) for v in rule.split(":")) for rule in args.rules.split(",")]
    for rule in rules:
        assert len(rule) in (2, 3), "a rule is c:h or c:h:r"
    product = f"{drift.CLIP:g}:{drift.THRESHOLD:g}:{drift.ROBUST_CLIP:g}"
    print(f"product rule c:h:r = {product}; {args.steps} null steps a cell")
    header = "".join(f"{'c:h:r=' + ':'.join(f'{v:g}' for v in rule):>17}" for rule in rules)
    print(f"{'losses':<9}{'skew':>6}{'m':>4}{header}   (alarms, ARL in steps)")
    for name, losses in sources(args.seed).items():
        for m in SIZES:
            cells = []
            for rule in rules:
                alarms = null_alarms(losses, m, rule, args.steps, args.seed)
                arl = f"{args.steps / alarms:,.0f}" if alarms else f">{args.steps:,}"
                cells.append(f"{alarms:>5} {arl:>10}")
            print(f"{name:<9}{skewness(losses):>6.1f}{m:>4}" + "".join(f"{c:>17}" for c in cells))
    demo = quality_auto.load("drift", 4 * CHANGE_SAMPLES, args.seed)
    for m in (8, 32):
        fixed = run_losses(demo, batch_size=m, learning_rate=0.1, optimizer="adagrad")
        for rule in rules:
            name = ":".join(f"{v:g}" for v in rule)
            print(f"demo stream, AdaGrad m = {m}, c:h:r = {name}: {demo_delays(fixed, m, rule)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
