"""Search for a streamsgd setting whose progressive log loss matches Vowpal Wabbit's default
(issue 5, target 3). Prints one line per setting; the chosen settings are the constants
``DENSE_QUALITY`` / ``SPARSE_QUALITY`` in :mod:`bench.run`.

    .venv/bin/python -m bench.sweep_quality --n 1000000 [--stream dense|sparse]
"""

from __future__ import annotations

import argparse
import itertools
import time

from bench import data, systems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stream", choices=["dense", "sparse", "both"], default="both")
    parser.add_argument("--sizes", default="16,64,256")
    parser.add_argument("--rates", default="0.05,0.1,0.2,0.5,1.0")
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",")]
    rates = [float(v) for v in args.rates.split(",")]
    streams = ["dense", "sparse"] if args.stream == "both" else [args.stream]
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one core per learner, as in bench.run
    for kind in streams:
        if kind == "dense":
            d = data.dense_stream(args.n, args.seed)
            path = data.vw_file(
                "dense",
                args.n,
                args.seed,
                lambda d=d: (
                    data.vw_dense_lines(d.X[lo:hi], d.y[lo:hi]) for lo, hi in systems._chunks(d.n)
                ),
            )
        else:
            d = data.sparse_stream(args.n, args.seed)
            path = data.vw_file(
                "sparse",
                args.n,
                args.seed,
                lambda d=d: (
                    data.vw_sparse_lines(d.X.slice_rows(lo, hi), d.y[lo:hi])
                    for lo, hi in systems._chunks(d.n)
                ),
            )
        vw = systems.vw_file(path, d.n, 1)
        print(
            f"{kind}: n={d.n} Bayes loss {d.bayes_loss:.4f}  VW default {vw.loss:.4f}", flush=True
        )
        for m, eta in itertools.product(sizes, rates):
            t0 = time.perf_counter()
            res = systems.streamsgd_batches(d.X, d.y, m, 1, optimizer="adagrad", learning_rate=eta)
            print(
                f"  adagrad m={m:<5d} eta={eta:<5g} loss {res.loss:.4f} "
                f"(VW {res.loss - vw.loss:+.4f})  {time.perf_counter() - t0:.1f}s",
                flush=True,
            )
        if kind == "dense":
            for eta, decay in itertools.product([0.005, 0.01, 0.02, 0.05], [0.0, 1e-3, 1e-2]):
                params = (
                    {"learning_rate": eta}
                    if decay == 0.0
                    else {
                        "learning_rate": eta,
                        "learning_rate_schedule": "inverse_scaling",
                        "decay": decay,
                        "power": 0.5,
                    }
                )
                res = systems.streamsgd_sequence(d.X, d.y, 1, **params)
                print(
                    f"  sgd m=1 {params} loss {res.loss:.4f} (VW {res.loss - vw.loss:+.4f})",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
