"""Resident memory of the service over a long run (issue 5, target 4).

    .venv/bin/python -m bench.memory --quick     # 1 M samples
    .venv/bin/python -m bench.memory --full      # 10 M samples (the target's run)

Runs ``python -m streamsgd train`` from the embedded synthetic source (d = 100, m = 256,
checkpoints every 10 s into a temporary directory, metrics server on a free port) and samples
its VmRSS from /proc every 0.2 s. Reports the RSS after warm-up (when 10 % of the samples are
learned, judged by time), the last RSS, their ratio, and the peak (VmHWM). Target: growth
after warm-up < 10 %, peak < 250 MB.

With ``--bootstrap H:P`` it first fills a fresh topic with the same samples in binary
batched records of 1,024 samples (``streamsgd produce``) and measures the service reading
them with the Kafka source instead (``--kafka-client`` picks the client).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid


def _status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="n", const=1_000_000)
    mode.add_argument("--full", action="store_const", dest="n", const=10_000_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-features", type=int, default=100)
    parser.add_argument("--bootstrap", help="measure the Kafka source on this broker")
    parser.add_argument("--kafka-client", default="kafka-python")
    args = parser.parse_args(argv)
    n = args.n or 1_000_000
    samples: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as ckpt:
        source = ["--source", "synthetic"]
        if args.bootstrap:
            topic = f"bench-memory-{uuid.uuid4().hex[:8]}"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "streamsgd",
                    "produce",
                    "--bootstrap-servers",
                    args.bootstrap,
                    "--topic",
                    topic,
                    "--samples-per-record",
                    "1024",
                    "--format",
                    "binary",
                    "--progress",
                    "never",
                    "synthetic",
                    "--n",
                    str(n),
                    "--n-features",
                    str(args.n_features),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            source = [
                "--source",
                "kafka",
                "--bootstrap-servers",
                args.bootstrap,
                "--topic",
                topic,
                "--group-id",
                topic,
                "--kafka-client",
                args.kafka_client,
            ]
        cmd = [
            sys.executable,
            "-m",
            "streamsgd",
            "train",
            *source,
            "--n-features",
            str(args.n_features),
            "--batch-size",
            str(args.batch_size),
            "--learning-rate",  # the fixed step it measures (auto is the default)
            "0.1",
            "--max-samples",
            str(n),
            "--checkpoint-dir",
            ckpt,
            "--checkpoint-interval-seconds",
            "10",
            "--metrics-port",
            "0",
            "--metrics-host",
            "127.0.0.1",
            "--progress",
            "never",
            "--log-level",
            "WARNING",
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        peak = 0
        while proc.poll() is None:
            try:
                status = _status(proc.pid)
            except (FileNotFoundError, ProcessLookupError):
                break
            samples.append((time.perf_counter() - t0, status.get("VmRSS", 0)))
            peak = max(peak, status.get("VmHWM", 0))
            time.sleep(0.2)
        elapsed = time.perf_counter() - t0
        if proc.wait() != 0:
            print(f"streamsgd train exited with {proc.returncode}", file=sys.stderr)
            return 1
    if len(samples) < 5:
        print("run too short to sample", file=sys.stderr)
        return 1
    # Growth is the trend, not the sawtooth: the Kafka client's fetch buffers make RSS swing
    # by ± 10 MB from one poll to the next. Compare the median RSS of the window right after
    # warm-up (10–30 % of the run) with that of the last 20 %, and show the swing separately.
    after = [(t, rss) for t, rss in samples if t >= 0.1 * elapsed]
    early = sorted(rss for t, rss in after if t < 0.3 * elapsed)
    late = sorted(rss for t, rss in after if t >= 0.8 * elapsed)
    warm, final = early[len(early) // 2], late[len(late) // 2]
    lowest = min(rss for _, rss in after if rss > 0)
    highest = max(rss for _, rss in after)
    growth = (final - warm) / warm
    mb = 1e6
    print(
        f"samples: {n:,}, d = {args.n_features}, m = {args.batch_size}, {elapsed:.0f} s "
        f"({n / elapsed:,.0f} samples/s wall), source: "
        f"{'kafka (' + args.kafka_client + ')' if args.bootstrap else 'synthetic'}"
    )
    print(
        f"median RSS at 10-30 % of the run: {warm / mb:.1f} MB; in the last 20 %: "
        f"{final / mb:.1f} MB; growth {100 * growth:+.1f} % (target < 10 %); "
        f"range after warm-up {lowest / mb:.1f}-{highest / mb:.1f} MB"
    )
    print(f"peak RSS (VmHWM): {peak / mb:.1f} MB (target < 250 MB)")
    print(
        f"verdict: growth {'met' if growth < 0.10 else 'NOT met'}, "
        f"peak {'met' if peak < 250 * mb else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
