"""The fixed-step configuration: m = 32, plain SGD with η = 0.1 — streamsgd's defaults
before ``auto`` became the default (issue 19, item 7).

The service-level suites (Kafka, faults, replicas, deploy) were written against it: their
references are the Python API's ``OnlineLogisticRegression(d)`` (plain SGD, η = 0.1) on
minibatches of m, and their step counts are those of a fixed m. So they now pass it
explicitly: as flags right after the command, or as ``STREAMSGD_*`` variables of a child
trainer. Both have the lowest precedence a test can give (a flag the test itself passes
later, or a variable it sets, still wins), so each test runs what it ran before.
"""

from __future__ import annotations

from collections.abc import Sequence

FIXED_STEP_FLAGS: tuple[str, ...] = ("--batch-size", "32", "--learning-rate", "0.1")
FIXED_STEP_ENV: dict[str, str] = {"STREAMSGD_BATCH_SIZE": "32", "STREAMSGD_LEARNING_RATE": "0.1"}
_LEARNING_COMMANDS = ("train", "evaluate")


def with_fixed_step(args: Sequence[str]) -> list[str]:
    """``args`` of the CLI with the fixed-step flags after a ``train``/``evaluate`` command
    (argparse keeps the last value of a repeated flag, so the test's own flags win)."""
    if args and args[0] in _LEARNING_COMMANDS:
        return [args[0], *FIXED_STEP_FLAGS, *args[1:]]
    return list(args)
