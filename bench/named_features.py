"""Named features at m = 1 and m = 32 through the CLI's file source, against Vowpal Wabbit
(issue 17, targets "m = 1 hashed named features" and "the same at m = 32").

    .venv/bin/python -m bench.named_features            # 500 k records, 3 repeats
    .venv/bin/python -m bench.named_features --quick    # 100 k records, 3 repeats

Data: records of 21 named features — 20 numeric (``f0`` … ``f19``, Gaussian, written as
Python's ``repr`` of a float rounded to 4 decimals) and one string (``cat``, one of
1,000 values) — with labels from a logistic model on them. The same records are written as
JSON lines (``{"features": {...}, "y": 0|1}``) and in VW's text format (``1 |f f0:0.12 …
cat=c17``, labels ±1).

Systems, all with 2^18 buckets and the logistic loss, each timed on the CPU time of its
process (median of ``--repeats`` runs; every repeat runs every system once, in turn, so a
slow phase of the shared machine hits all of them):

* ``streamsgd train --source file --path FILE --hash-bits 18 --batch-size 1`` and
  ``--batch-size 32``: the CLI in a fresh interpreter (``python -m streamsgd``), its whole
  CPU time (user + system, from ``wait4``) including the interpreter start and imports,
  which are also reported alone (a run on an empty file).
* The CLI's data path alone (``intake1``, ``intake32``, opt-in): file source, decode and
  buffer in this process, minibatches taken but not learned — the part this benchmark's
  issue made compiled, apart from the learning step.
* VW native: ``pyvw.Workspace("-d FILE --loss_function logistic -b 18 --quiet")``, VW's
  C++ driver and text parser (the PyPI wheel has no ``vw`` binary), this process's CPU time
  (its parser thread included).
* VW per example: ``Workspace.learn(line)`` on each VW text line from Python (text parsing
  included; the lines are read into memory before the timer).

Printed: samples per CPU-second of each, the ratios of streamsgd to the VW runs, the progressive
losses (a check that every system learns), and the machine.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench import machine

REPO = Path(__file__).resolve().parent.parent
N_NUMERIC = 20
N_CATEGORIES = 1000
MODES = {"quick": 100_000, "full": 500_000}


# ------------------------------------------------------------------------------ data
def write_data(directory: Path, n: int, seed: int = 17) -> tuple[Path, Path]:
    """``named-{n}.jsonl`` and ``named-{n}.vw`` in ``directory`` (reused if present)."""
    jsonl, vw = directory / f"named-{n}.jsonl", directory / f"named-{n}.vw"
    if jsonl.exists() and vw.exists():
        return jsonl, vw
    rng = np.random.default_rng(seed)
    coef = rng.normal(size=N_NUMERIC) / math.sqrt(N_NUMERIC)
    cat_effect = rng.normal(size=N_CATEGORIES)
    with open(jsonl, "w") as fj, open(vw, "w") as fv:
        for lo in range(0, n, 50_000):
            m = min(50_000, n - lo)
            X = np.round(rng.normal(size=(m, N_NUMERIC)), 4)
            cats = rng.integers(0, N_CATEGORIES, size=m)
            z = X @ coef + cat_effect[cats]
            y = (rng.random(m) < 1.0 / (1.0 + np.exp(-z))).astype(int)
            for row, c, label in zip(X.tolist(), cats.tolist(), y.tolist(), strict=True):
                numeric = ", ".join(f'"f{j}": {v!r}' for j, v in enumerate(row))
                fj.write(f'{{"features": {{{numeric}, "cat": "c{c}"}}, "y": {label}}}\n')
                pairs = " ".join(f"f{j}:{v!r}" for j, v in enumerate(row))
                fv.write(f"{1 if label else -1} |f {pairs} cat=c{c}\n")
    return jsonl, vw


# ------------------------------------------------------------------------------ systems
def streamsgd_cli(path: Path, batch_size: int) -> tuple[float, float]:
    """CPU seconds of one CLI run in a fresh interpreter and its progressive log loss."""
    with tempfile.TemporaryDirectory() as ck:
        argv = [sys.executable, "-m", "streamsgd", "train", "--source", "file"]
        argv += ["--path", str(path), "--hash-bits", "18", "--batch-size", str(batch_size)]
        argv += ["--learning-rate", "0.1"]  # the fixed step it measures (auto is the default)
        argv += ["--metrics-port", "0", "--progress", "never", "--checkpoint-dir", ck]
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSGD_")}
        env["OPENBLAS_NUM_THREADS"] = "1"
        # As installed (pip compiles the .pyc files; an editable install writes them on the
        # first run): a harness's PYTHONDONTWRITEBYTECODE would make every run compile the
        # package from source (≈ 0.1 CPU s, not a cost a user pays). main() warms them up.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"streamsgd failed ({proc.returncode}): {err[-2000:]}")
    found = re.search(r"progressive log loss ([0-9.naN]+)", err)
    loss = float(found.group(1)) if found else math.nan
    return usage.ru_utime + usage.ru_stime, loss


def intake(path: Path, batch_size: int) -> tuple[float, float]:
    """CPU seconds of the CLI's data path without the learning step, in this process: the
    file source's polls, :func:`~streamsgd.codec.decode_poll` (the compiled named-record
    parser) and the minibatch buffer, taking every minibatch of ``batch_size`` (or, at
    m = 1, every block of 32 samples, as the service's m = 1 path does)."""
    from streamsgd.codec import DecodedRun, Decoder, decode_poll
    from streamsgd.sources.file import FileSource
    from streamsgd.training.buffer import MinibatchBuffer

    take = 32 if batch_size == 1 else batch_size
    t0 = time.process_time()
    source, decoder, buffer = FileSource(str(path)), Decoder(1 << 18, 18), MinibatchBuffer()
    n = 0
    while not source.exhausted:
        for item in decode_poll(decoder, source.poll(0.1)):
            if isinstance(item, DecodedRun):
                buffer.append_decoded(item)
            else:
                raise RuntimeError(f"rejected: {item.reason}")
        while len(buffer) >= take:
            n += buffer.take(take).n_samples
    source.close()
    return time.process_time() - t0, math.nan


def vw_native(path: Path) -> tuple[float, float]:
    """CPU seconds of VW's driver reading ``path`` (this process) and its average loss."""
    import vowpalwabbit

    t0 = time.process_time()
    vw = vowpalwabbit.Workspace(
        f"-d {path} --loss_function logistic -b 18 --quiet", enable_logging=True
    )
    vw.finish()
    seconds = time.process_time() - t0
    found = re.search(r"average loss = ([0-9.eE+-]+)", "\n".join(vw.get_log()))
    return seconds, float(found.group(1)) if found else math.nan


def vw_per_example(lines: list[str]) -> tuple[float, float]:
    """CPU seconds of one ``learn(line)`` call per example (text parsing included)."""
    import vowpalwabbit

    vw = vowpalwabbit.Workspace("--loss_function logistic -b 18 --quiet")
    learn = vw.learn
    t0 = time.process_time()
    for line in lines:
        learn(line)
    seconds = time.process_time() - t0
    vw.finish()
    return seconds, math.nan


# ------------------------------------------------------------------------------ report
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.named_features",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="100 k records instead of 500 k")
    parser.add_argument("--n", type=int, help="number of records (overrides --quick)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument(
        "--systems",
        default="m1,m32,vw,vw-pyvw",
        help="comma-separated subset of m1, m32, intake1, intake32, vw, vw-pyvw",
    )
    args = parser.parse_args(argv)
    n = args.n or MODES["quick" if args.quick else "full"]
    wanted = args.systems.split(",")
    print(f"# Named features, 21 per record (20 numeric, 1 string), {n:,} records, 2^18 buckets")
    for key, value in machine.describe().items():
        print(f"  {key}: {value}")
    t0 = time.perf_counter()
    jsonl, vw_text = write_data(args.data_dir, n)
    print(f"  data: {jsonl} and {vw_text} ({time.perf_counter() - t0:.1f} s to prepare)")
    empty = args.data_dir / "named-empty.jsonl"
    empty.write_text("")
    lines = vw_text.read_text().splitlines() if "vw-pyvw" in wanted else []

    systems: dict[str, Callable[[], tuple[float, float]]] = {
        "m1": lambda: streamsgd_cli(jsonl, 1),
        "m32": lambda: streamsgd_cli(jsonl, 32),
        "intake1": lambda: intake(jsonl, 1),
        "intake32": lambda: intake(jsonl, 32),
        "vw": lambda: vw_native(vw_text),
        "vw-pyvw": lambda: vw_per_example(lines),
    }
    names = {
        "m1": "streamsgd CLI, file, --batch-size 1",
        "m32": "streamsgd CLI, file, --batch-size 32",
        "intake1": "streamsgd data path alone (file, decode, buffer), m = 1 blocks",
        "intake32": "streamsgd data path alone (file, decode, buffer), m = 32",
        "vw": "VW native (-d FILE, C++ text parser)",
        "vw-pyvw": "VW pyvw, one learn(line) per example",
    }
    seconds: dict[str, list[float]] = {k: [] for k in wanted}
    losses: dict[str, float] = {}
    startup: list[float] = []
    streamsgd_cli(empty, 1)  # warm-up: writes the .pyc files an installed package has
    for repeat in range(args.repeats):
        startup.append(streamsgd_cli(empty, 1)[0])
        for key in wanted:
            cpu, loss = systems[key]()
            seconds[key].append(cpu)
            losses[key] = loss
            print(f"  repeat {repeat + 1}: {key:8s} {cpu:7.2f} CPU s", flush=True)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    rate = {k: n / s for k, s in median.items()}
    print(f"\nCLI start-up alone (empty file): {statistics.median(startup):.2f} CPU s (median)")
    print(f"\n| system | CPU s (median of {args.repeats}) | samples / CPU s | progressive loss |")
    print("|---|---:|---:|---:|")
    for key in wanted:
        loss = losses[key]
        shown = "—" if math.isnan(loss) else f"{loss:.4f}"
        print(f"| {names[key]} | {median[key]:.2f} | {rate[key]:,.0f} | {shown} |")
    print()
    targets = {("m1", "vw"): 1.0, ("m1", "vw-pyvw"): 3.0, ("m32", "vw"): 1.5}
    for ours in ("m1", "m32", "intake1", "intake32"):
        for peer in ("vw", "vw-pyvw"):
            if ours in rate and peer in rate:
                ratio = rate[ours] / rate[peer]
                target = targets.get((ours, peer))
                verdict = (
                    ""
                    if target is None
                    else (f" (target ≥ {target:g}×: {'met' if ratio >= target else 'NOT met'})")
                )
                print(f"{names[ours]} / {names[peer]}: {ratio:.2f}×{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
