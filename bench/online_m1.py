"""m = 1 throughput of the compiled per-sample loop (issue 17, item 2), against River.

``learn_sequence`` on the dense d = 100 stream and on the hashed sparse stream (2^18
buckets, 21 fields) of :mod:`bench.data`, and River's ``learn_one`` on the same samples as
dicts (when River is installed; only its learning calls are timed, see :mod:`bench.systems`).
Samples per CPU-second of this process, the median of ``--repeats`` runs (≥ 3), each run a
fresh model over the whole stream, fed ``--chunk`` samples per call as a service would be.

    .venv/bin/python -m bench.online_m1 [--n-dense 200000] [--n-sparse 300000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import data, systems
from streamsgd import OnlineLogisticRegression
from streamsgd.core.sequential import learn_sequence
from streamsgd.core.sparse import SparseRows

FloatArray = systems.FloatArray

DENSE: dict[str, Any] = {  # bench.run's m = 1 row
    "learning_rate": 0.01,
    "learning_rate_schedule": "inverse_scaling",
    "decay": 1e-2,
    "power": 0.5,
}
SPARSE_CONFIGS: dict[str, dict[str, Any]] = {
    "SGD η=0.1": {"learning_rate": 0.1},
    "AdaGrad η=0.1": {"optimizer": "adagrad", "learning_rate": 0.1},
    "SGD η=0.1, λ₂=1e-6": {"learning_rate": 0.1, "l2": 1e-6},
    "AdaGrad η=0.1, λ₁=1e-6": {"optimizer": "adagrad", "learning_rate": 0.1, "l1": 1e-6},
}


def _rate(run: Callable[[], None], n: int, repeats: int) -> float:
    """n / the median CPU seconds of ``repeats`` runs."""
    seconds = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        seconds.append(time.process_time() - start)
    return n / statistics.median(seconds)


def _sequence(
    X: FloatArray | SparseRows, y: FloatArray, chunk: int, block: int | None, params: dict
) -> Callable[[], None]:
    def run() -> None:
        model = OnlineLogisticRegression(X.shape[1], **params)
        for lo in range(0, len(y), chunk):
            rows = (
                X.slice_rows(lo, min(lo + chunk, len(y)))
                if isinstance(X, SparseRows)
                else X[lo : lo + chunk]
            )
            learn_sequence(model, rows, y[lo : lo + chunk], block_size=block)

    return run


def _river(X: FloatArray | SparseRows, y: FloatArray, n: int, repeats: int) -> float | None:
    try:
        import river  # noqa: F401
    except ImportError:
        return None
    part = X.slice_rows(0, n) if isinstance(X, SparseRows) else X[:n]
    return systems.river_learn_one(part, y[:n], repeats).cpu_samples_per_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-dense", type=int, default=200_000)
    parser.add_argument("--n-sparse", type=int, default=300_000)
    parser.add_argument("--n-river", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=16_384)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    repeats = max(3, args.repeats)
    dense = data.dense_stream(args.n_dense)
    sparse = data.sparse_stream(args.n_sparse)
    rows: list[tuple[str, float, float | None]] = []
    river_dense = _river(dense.X, dense.y, args.n_river, repeats)
    river_sparse = _river(sparse.X, sparse.y, args.n_river, repeats)
    for chunk in (1024, args.chunk):
        rate = _rate(_sequence(dense.X, dense.y, chunk, None, DENSE), args.n_dense, repeats)
        rows.append((f"dense d=100 SGD, {chunk} per call", rate, river_dense))
    for name, params in SPARSE_CONFIGS.items():
        # The service's default block (32), a poll's worth, a large chunk: the loop carries
        # its deferred work between calls, so the cut changes only the per-call overhead.
        for chunk in (32, 1024, args.chunk):
            run = _sequence(sparse.X, sparse.y, chunk, None, params)
            label = f"sparse 2^18 {name}, {chunk} per call"
            rows.append((label, _rate(run, args.n_sparse, repeats), river_sparse))
    print(f"{f'm = 1 learn_sequence (CPU time, median of {repeats})':<72} samples/s   × River")
    for label, rate, peer in rows:
        ratio = f"{rate / peer:7.1f}×" if peer else "   (no river)"
        print(f"{label:<72} {rate:>10,.0f} {ratio}")
    for label, peer in (
        ("River learn_one dense (dicts)", river_dense),
        ("River learn_one sparse (dicts)", river_sparse),
    ):
        if peer:
            print(f"{label:<72} {peer:>10,.0f}")


if __name__ == "__main__":
    main()
