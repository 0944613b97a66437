"""The streamsgd benchmark suite (issue 5): streamsgd against River, scikit-learn and
Vowpal Wabbit on the same seeded data in the same run, with the machine described.

    .venv/bin/python -m bench.run --quick      # ≈ 1–2 minutes, 100 k samples per stream
    .venv/bin/python -m bench.run --full       # 1 M samples per stream (≈ 10–15 minutes)

Options: ``--repeats N`` (default 3; the table shows the median), ``--seed S``,
``--sections dense,stats,sparse`` and ``--json FILE`` / ``--markdown FILE`` to keep the
results. See docs/benchmarks.md for what every number means.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import data, machine, systems
from bench.systems import Measurement

# The documented settings of target 3 (found with bench.sweep_quality).
DENSE_QUALITY: dict[str, Any] = {"optimizer": "adagrad", "learning_rate": 0.05}
DENSE_QUALITY_M = 256
SPARSE_QUALITY: dict[str, Any] = {"optimizer": "adagrad", "learning_rate": 0.1}
SPARSE_QUALITY_M = 256
# The m = 1 row: plain SGD through learn_sequence with a decaying step.
DENSE_M1: dict[str, Any] = {
    "learning_rate": 0.01,
    "learning_rate_schedule": "inverse_scaling",
    "decay": 1e-2,
    "power": 0.5,
}

MODES = {
    "quick": {"n_dense": 100_000, "n_sparse": 100_000, "n_slow": 20_000},
    "full": {"n_dense": 1_000_000, "n_sparse": 1_000_000, "n_slow": 50_000},
}


@dataclass
class Row:
    section: str
    key: str
    system: str
    m: str
    role: str  # "streamsgd", "peer" or "reference"
    result: Measurement


def _fmt_rate(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    return f"{v / 1e3:.0f} k"


def _fmt_loss(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:.4f}"


class Suite:
    def __init__(self, repeats: int, log: Callable[[str], None]) -> None:
        self.repeats = repeats
        self.rows: list[Row] = []
        self.log = log

    def add(
        self,
        section: str,
        key: str,
        system: str,
        m: str,
        role: str,
        fn: Callable[[], Measurement],
    ) -> Measurement:
        t0 = time.perf_counter()
        result = fn()
        self.rows.append(Row(section, key, system, m, role, result))
        self.log(
            f"  {section:6s} {system:58s} m={m:>5s} {_fmt_rate(result.samples_per_s):>9s}/s "
            f"loss {_fmt_loss(result.loss)}  ({time.perf_counter() - t0:.1f}s)"
        )
        return result

    def get(self, section: str, key: str) -> Measurement | None:
        for row in self.rows:
            if row.section == section and row.key == key:
                return row.result
        return None


# ---------------------------------------------------------------------- sections
def run_dense(suite: Suite, n: int, n_slow: int, seed: int) -> data.DenseData:
    r = suite.repeats
    suite.log(f"dense stream: generating {n:,} samples (d = {data.DENSE_FEATURES}) …")
    d = data.dense_stream(n, seed)
    X, y = d.X, d.y
    path = data.vw_file(
        "dense",
        n,
        seed,
        lambda: (data.vw_dense_lines(X[lo:hi], y[lo:hi]) for lo, hi in systems._chunks(n)),
    )
    S, P, R = "streamsgd", "peer", "reference"
    add = suite.add
    add(
        "dense",
        "seq1",
        "streamsgd learn_sequence (SGD, η=0.01/√(1+0.01t))",
        "1",
        S,
        lambda: systems.streamsgd_sequence(X, y, r, **DENSE_M1),
    )
    add(
        "dense",
        "lb1",
        f"streamsgd learn_batch per sample (first {n_slow:,})",
        "1",
        S,
        lambda: systems.streamsgd_batches(X[:n_slow], y[:n_slow], 1, r, **DENSE_M1),
    )
    add(
        "dense",
        "lb256",
        "streamsgd learn_batch (SGD η=0.1, default)",
        "256",
        S,
        lambda: systems.streamsgd_batches(X, y, 256, r),
    )
    add(
        "dense",
        "lb4096",
        "streamsgd learn_batch (SGD η=0.1, default)",
        "4096",
        S,
        lambda: systems.streamsgd_batches(X, y, 4096, r),
    )
    add(
        "dense",
        "quality",
        f"streamsgd learn_batch {_params(DENSE_QUALITY)}",
        str(DENSE_QUALITY_M),
        S,
        lambda: systems.streamsgd_batches(X, y, DENSE_QUALITY_M, r, **DENSE_QUALITY),
    )
    add(
        "dense",
        "river1",
        "River LogisticRegression.learn_one",
        "1",
        P,
        lambda: systems.river_learn_one(X, y, r),
    )
    river = add(
        "dense",
        "river256",
        "River learn_many (DataFrame built outside timer)",
        "256",
        P,
        lambda: systems.river_learn_many(X, y, 256, r),
    )
    suite.rows.append(
        Row(
            "dense",
            "river256+df",
            "River learn_many incl. DataFrame building",
            "256",
            P,
            river.extra["with_construction"],
        )
    )
    add(
        "dense",
        "skl256",
        "scikit-learn SGDClassifier.partial_fit",
        "256",
        P,
        lambda: systems.sklearn_partial_fit(X, y, 256, r),
    )
    add(
        "dense",
        "skl4096",
        "scikit-learn SGDClassifier.partial_fit",
        "4096",
        P,
        lambda: systems.sklearn_partial_fit(X, y, 4096, r),
    )
    add(
        "dense",
        "vwfile",
        "Vowpal Wabbit driver reading a text file",
        "1",
        P,
        lambda: systems.vw_file(path, n, r),
    )
    add(
        "dense",
        "vwpy",
        "Vowpal Wabbit Python bindings, learn(line)",
        "1",
        P,
        lambda: systems.vw_bindings(_file_lines(path), n, r),
    )
    add(
        "dense",
        "np",
        "numpy minibatch loop, no statistics",
        "256",
        R,
        lambda: systems.numpy_loop(X, y, 256, r, statistics=False),
    )
    add(
        "dense",
        "npstats",
        "numpy minibatch loop, with per-batch tr Σ̂",
        "256",
        R,
        lambda: systems.numpy_loop(X, y, 256, r, statistics=True),
    )
    add(
        "dense",
        "read",
        "streaming read pass (Xb.sum() per batch)",
        "256",
        R,
        lambda: systems.read_pass(X, 256, r),
    )
    return d


def run_stats_cost(suite: Suite, d: data.DenseData) -> None:
    """Statistics on/off pairs, **interleaved**: every repetition runs each variant once, in
    turn, so a change in the machine's load hits both sides of a ratio alike. At least 5
    repetitions; the cost is the median over repetitions of 1 − t_off / t_on."""
    repeats = max(5, suite.repeats)
    for m in (256, 4096):
        variants = [
            (
                f"on{m}",
                "streamsgd learn_batch, statistics on",
                "streamsgd",
                lambda m=m: systems.streamsgd_batches(d.X, d.y, m, 1),
            ),
            (
                f"off{m}",
                "same step, gradient_statistics=False",
                "reference",
                lambda m=m: systems.streamsgd_batches(d.X, d.y, m, 1, gradient_statistics=False),
            ),
        ]
        merged: dict[str, Measurement] = {}
        for _ in range(repeats):
            for key, _name, _role, fn in variants:
                result = fn()
                if key in merged:
                    merged[key].seconds.extend(result.seconds)
                else:
                    merged[key] = result
        for key, name, role, _fn in variants:
            res = merged[key]
            suite.rows.append(Row("stats", key, name, str(m), role, res))
            suite.log(f"  stats  {name:58s} m={m:>5d} {_fmt_rate(res.samples_per_s):>9s}/s")


def paired_cost(on: Measurement | None, off: Measurement | None) -> float:
    """Median over interleaved repetitions of 1 − t_off / t_on (the clock of the table)."""
    if on is None or off is None:
        return math.nan
    i = systems.CLOCK["index"]
    costs = [1.0 - b[i] / a[i] for a, b in zip(on.seconds, off.seconds, strict=False)]
    return float(sorted(costs)[len(costs) // 2]) if costs else math.nan


def run_sparse(suite: Suite, n: int, seed: int) -> data.SparseData:
    r = suite.repeats
    suite.log(f"sparse stream: generating {n:,} samples (2^{data.SPARSE_BITS} buckets) …")
    s = data.sparse_stream(n, seed)
    X, y = s.X, s.y
    path = data.vw_file(
        "sparse",
        n,
        seed,
        lambda: (
            data.vw_sparse_lines(X.slice_rows(lo, hi), y[lo:hi]) for lo, hi in systems._chunks(n)
        ),
    )
    S, P = "streamsgd", "peer"
    add = suite.add
    add(
        "sparse",
        "lb256",
        "streamsgd learn_batch (SGD η=0.1, default)",
        "256",
        S,
        lambda: systems.streamsgd_batches(X, y, 256, r),
    )
    add(
        "sparse",
        "lb4096",
        "streamsgd learn_batch (SGD η=0.1, default)",
        "4096",
        S,
        lambda: systems.streamsgd_batches(X, y, 4096, r),
    )
    add(
        "sparse",
        "quality",
        f"streamsgd learn_batch {_params(SPARSE_QUALITY)}",
        str(SPARSE_QUALITY_M),
        S,
        lambda: systems.streamsgd_batches(X, y, SPARSE_QUALITY_M, r, **SPARSE_QUALITY),
    )
    add(
        "sparse",
        "river1",
        "River LogisticRegression.learn_one",
        "1",
        P,
        lambda: systems.river_learn_one(X, y, r),
    )
    add(
        "sparse",
        "skl256",
        "scikit-learn SGDClassifier.partial_fit (CSR)",
        "256",
        P,
        lambda: systems.sklearn_partial_fit(X, y, 256, r),
    )
    add(
        "sparse",
        "vwfile",
        "Vowpal Wabbit driver reading a text file",
        "1",
        P,
        lambda: systems.vw_file(path, n, r),
    )
    add(
        "sparse",
        "vwpy",
        "Vowpal Wabbit Python bindings, learn(line)",
        "1",
        P,
        lambda: systems.vw_bindings(_file_lines(path), n, r),
    )
    return s


def _params(params: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def _file_lines(path: Path) -> Callable[[int, int], list[str]]:
    """Lines [lo, hi) of a VW text file, read sequentially (chunks are asked in order)."""
    state: dict[str, Any] = {"fh": None, "pos": 0}

    def lines(lo: int, hi: int) -> list[str]:
        if state["fh"] is None or lo < state["pos"]:
            if state["fh"] is not None:
                state["fh"].close()
            state["fh"] = open(path)
            state["pos"] = 0
        fh = state["fh"]
        while state["pos"] < lo:
            fh.readline()
            state["pos"] += 1
        out = [fh.readline().rstrip("\n") for _ in range(hi - lo)]
        state["pos"] = hi
        return out

    return lines


# ---------------------------------------------------------------------- report
def _ratio(a: Measurement | None, b: Measurement | None) -> float:
    if a is None or b is None:
        return math.nan
    return a.samples_per_s / b.samples_per_s


def targets(suite: Suite) -> list[tuple[str, str, str, str]]:
    """(target, required, measured, verdict) for every target this script measures."""
    g = suite.get
    out = []

    def check(name: str, required: str, value: float, ok: bool, fmt: str = "{:.2f}×") -> None:
        if not math.isfinite(value):
            out.append((name, required, "not run", "–"))
        else:
            verdict = "–" if required == "(info)" else ("met" if ok else "NOT met")
            out.append((name, required, fmt.format(value), verdict))

    v = _ratio(g("dense", "seq1"), g("dense", "river1"))
    check("1. m=1 (learn_sequence) vs River learn_one", "≥ 5×", v, v >= 5)
    v = _ratio(g("dense", "lb1"), g("dense", "river1"))
    check("   (m=1, learn_batch once per sample, vs River learn_one)", "(info)", v, True)
    v = _ratio(g("dense", "lb256"), g("dense", "river256"))
    check("1. m=256 vs River learn_many (DataFrames prebuilt)", "≥ 10×", v, v >= 10)
    v = _ratio(g("dense", "lb256"), g("dense", "river256+df"))
    check("1. m=256 vs River learn_many (incl. DataFrame building)", "≥ 10×", v, v >= 10)
    v = _ratio(g("dense", "lb256"), g("dense", "skl256"))
    check("1. m=256 vs scikit-learn partial_fit m=256", "≥ 8×", v, v >= 8)
    v = _ratio(g("dense", "lb4096"), g("dense", "skl4096"))
    check("   (m=4096 vs scikit-learn partial_fit m=4096)", "(info)", v, True)
    for m in (256, 4096):
        v = paired_cost(g("stats", f"on{m}"), g("stats", f"off{m}"))
        check(f"1. statistics cost at m={m}", "≤ 15 %", 100 * v, v <= 0.15, "{:.1f} %")
    v = _ratio(g("dense", "lb256"), g("dense", "read"))
    check("1. m=256 share of the streaming-read limit", "≥ 40 %", 100 * v, v >= 0.40, "{:.1f} %")
    for section, tol in (("dense", 0.002), ("sparse", 0.005)):
        q, vw = g(section, "quality"), g(section, "vwfile")
        v = q.loss - vw.loss if q and vw else math.nan
        check(f"3. {section} progressive loss − VW default", f"≤ +{tol}", v, v <= tol, "{:+.4f}")
    return out


def render(suite: Suite, info: dict[str, str], meta: dict[str, Any]) -> str:
    lines = ["## Machine", ""]
    lines += [f"* {k}: {v}" for k, v in info.items()]
    lines += [f"* {k}: {v}" for k, v in meta.items()]
    for section in ("dense", "stats", "sparse"):
        rows = [r for r in suite.rows if r.section == section]
        if not rows:
            continue
        lines += ["", f"## {section}", ""]
        cpu = systems.CLOCK["index"] == 1
        other = "wall-clock" if cpu else "per CPU-second"
        lines += [
            f"| system | m | samples/s ({'CPU' if cpu else 'wall'}, median) | min–max | "
            f"samples/s ({other}) | progressive log loss | note |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for row in rows:
            res = row.result
            lo, hi = res.spread
            alt = res.wall_samples_per_s if cpu else res.cpu_samples_per_s
            lines.append(
                f"| {row.system} | {row.m} | {_fmt_rate(res.samples_per_s)} | "
                f"{_fmt_rate(lo)}–{_fmt_rate(hi)} | {_fmt_rate(alt)} | {_fmt_loss(res.loss)} | "
                f"{res.note}{'' if res.n == meta.get('n_' + section, res.n) else f' n={res.n:,}'} |"
            )
        ours = [r for r in rows if r.role == "streamsgd"]
        others = [r for r in rows if r.role != "streamsgd"]
        if ours and others:
            lines += ["", f"Throughput ratios, {section} (streamsgd row ÷ column):", ""]
            lines.append(
                "| streamsgd | " + " | ".join(f"{o.system} m={o.m}" for o in others) + " |"
            )
            lines.append("|---|" + "---:|" * len(others))
            for r in ours:
                cells = [f"{_ratio(r.result, o.result):.2f}" for o in others]
                lines.append(f"| {r.system} m={r.m} | " + " | ".join(cells) + " |")
    lines += ["", "## Targets (issue 5) measured by this run", ""]
    lines += ["| target | required | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets(suite)]
    lines += [
        "",
        "Targets 2 (end-to-end Kafka), 4 (memory over 10 M samples) and 5 (latency) are not "
        "measured by this script; see docs/benchmarks.md.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick")
    mode.add_argument("--full", action="store_const", dest="mode", const="full")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, help="samples per stream (overrides the mode)")
    parser.add_argument("--sections", default="dense,stats,sparse")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS thread limit for everything (default 1: one core per learner)",
    )
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="clock of the samples/s figures (both are always shown)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    mode_name = args.mode or "quick"
    sizes = dict(MODES[mode_name])
    if args.n:
        sizes["n_dense"] = sizes["n_sparse"] = args.n
        sizes["n_slow"] = min(sizes["n_slow"], args.n)
    sections = set(args.sections.split(","))
    systems.CLOCK["index"] = 1 if args.clock == "cpu" else 0
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(args.blas_threads) if args.blas_threads > 0 else None
    info = machine.describe()
    started = time.perf_counter()
    suite = Suite(args.repeats, log)
    meta: dict[str, Any] = {
        "clock": "process CPU time" if args.clock == "cpu" else "wall clock",
        "mode": mode_name,
        "repeats": args.repeats,
        "seed": args.seed,
        "n_dense": sizes["n_dense"],
        "n_sparse": sizes["n_sparse"],
    }
    dense = None
    if sections & {"dense", "stats"}:
        if "dense" in sections:
            dense = run_dense(suite, sizes["n_dense"], sizes["n_slow"], args.seed)
        else:
            dense = data.dense_stream(sizes["n_dense"], args.seed)
        meta["Bayes loss, dense"] = f"{dense.bayes_loss:.4f}"
        if "stats" in sections:
            run_stats_cost(suite, dense)
    if "sparse" in sections:
        sparse = run_sparse(suite, sizes["n_sparse"], args.seed)
        meta["Bayes loss, sparse"] = f"{sparse.bayes_loss:.4f}"
    meta["wall time"] = f"{time.perf_counter() - started:.0f} s"
    if limits is not None:
        limits.restore_original_limits()
    report = render(suite, info, meta)
    print(report)
    if args.markdown:
        args.markdown.write_text(report + "\n")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "meta": meta,
                    "rows": [
                        {
                            "section": r.section,
                            "key": r.key,
                            "system": r.system,
                            "m": r.m,
                            "role": r.role,
                            "seconds": r.result.seconds,
                            "n": r.result.n,
                            "samples_per_s": r.result.samples_per_s,
                            "cpu_samples_per_s": r.result.cpu_samples_per_s,
                            "wall_samples_per_s": r.result.wall_samples_per_s,
                            "loss": r.result.loss,
                            "note": r.result.note,
                        }
                        for r in suite.rows
                    ],
                    "targets": targets(suite),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
