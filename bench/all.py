"""The benchmarks in one command.

    .venv/bin/python -m bench.all --quick    # ≈ 1–3 min: issue 17's targets table (bench.targets)
    .venv/bin/python -m bench.all --full     # ≈ 15 min: the targets with more samples, then
                                             # every benchmark of issue 5 (the method of
                                             # docs/benchmarks.md: 1 M samples per stream,
                                             # 10 M for memory)

``--quick`` is the guard against a silent regression (issue 17): every target of issue 17
against its peer measured in the same run; named features come from
``bench/named_features.py`` when it exists. The Kafka row (a broker from
``scripts/kafka-local``, started and stopped here) runs with ``--full``, which then runs
the issue-5 suite: the core suite against the peers (targets 1 and 3), end-to-end Kafka
(target 2), resident memory (target 4) and latency (target 5). One broker from
``scripts/kafka-local`` serves the Kafka parts and is stopped at the end. The Kafka
throughput part runs in its quick size in both modes (5 repeats in full mode), latency for
60 s with the CLI's default m = 1 block and with one step per record. Each part prints its
own report (with its machine description and verdicts); the core suite and the Kafka
benchmark also write ``bench/results/{core,kafka}-{mode}-latest.md``. Exits non-zero when a
part fails to run (an unmet target is a figure, not a failure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import kafka_e2e, latency, memory, targets
from bench import run as core

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick")
    mode.add_argument("--full", action="store_const", dest="mode", const="full")
    args = parser.parse_args(argv)
    flag = f"--{args.mode or 'quick'}"
    mode_name = flag[2:]
    RESULTS.mkdir(exist_ok=True)

    def part(title: str, code: int) -> int:
        """Report one part; 1 when it failed to run."""
        print(f"\n[bench.all] {title}: {'done' if code == 0 else f'FAILED ({code})'}", flush=True)
        return int(code != 0)

    failures = 0
    print("\n# Issue 17: the targets table", flush=True)
    # The Kafka row needs a broker and fresh processes: --full only (on the shared machine a
    # run once hung in the consumers' offset commits while other engineers' brokers ran).
    kafka = ["--kafka"] if mode_name == "full" else []
    failures += part("issue 17 targets", targets.main([flag, *kafka]))
    if mode_name == "quick":
        return 1 if failures else 0
    print("\n# Targets 1 and 3: core against River, scikit-learn and Vowpal Wabbit", flush=True)
    core_args = [flag, "--markdown", str(RESULTS / f"core-{mode_name}-latest.md")]
    failures += part("core suite", core.main(core_args))
    with kafka_e2e.Broker() as broker:
        bootstrap = broker.bootstrap
        print("\n# Target 2: end-to-end Kafka", flush=True)
        # The Kafka part's own --full mode writes ≈ 9 GB to the broker: here it always runs
        # --quick (100 k JSON records, 1 M batched samples), with more repeats in full mode.
        repeats = "5" if mode_name == "full" else "3"
        kafka_args = ["--quick", "--bootstrap", bootstrap, "--repeats", repeats]
        kafka_args += ["--markdown", str(RESULTS / f"kafka-{mode_name}-latest.md")]
        failures += part("Kafka end to end", kafka_e2e.main(kafka_args))
        print("\n# Target 5: latency at 1,000 records/s, m = 1", flush=True)
        for block in ("32", "0"):
            # 60 s even in quick mode: over 20 s a single stall of the broker or the machine
            # (≈ 150–200 ms, seen right after heavy writes) decides the p99 by itself.
            code = latency.main(
                ["--bootstrap", bootstrap, "--seconds", "60", "--online-block-size", block]
            )
            failures += part(f"latency, --online-block-size {block}", code)
        print("\n# Target 4: resident memory", flush=True)
        kafka = ["--bootstrap", bootstrap]
        for source in ([], kafka, [*kafka, "--kafka-client", "confluent"]):
            failures += part(f"memory {source}", memory.main([flag, *source]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
