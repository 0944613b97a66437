"""Small shared helpers for the service-level tests (no code under test is reused to compute
expected values)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from streamsgd import OnlineLogisticRegression


def write_jsonl(
    path: Path, X: np.ndarray, y: np.ndarray, extra_lines: dict[int, bytes] | None = None
) -> None:
    """Dense samples as JSON Lines; ``extra_lines`` inserts raw lines before sample i."""
    extra_lines = extra_lines or {}
    with open(path, "wb") as fh:
        for i in range(len(y)):
            if i in extra_lines:
                fh.write(extra_lines[i] + b"\n")
            fh.write(json.dumps({"x": [float(v) for v in X[i]], "y": int(y[i])}).encode() + b"\n")


def reference_fit(
    X: np.ndarray, y: np.ndarray, batch_size: int, **params: object
) -> OnlineLogisticRegression:
    """The Python API on the same samples in the same order: full batches of m, then the
    remainder as a last, smaller batch."""
    model = OnlineLogisticRegression(X.shape[1], **params)  # type: ignore[arg-type]
    for start in range(0, len(y), batch_size):
        model.learn_batch(X[start : start + batch_size], y[start : start + batch_size])
    return model


def cli_flags(**options: object) -> list[object]:
    """Command-line flags from options named as in the configuration (``batch_size=8`` →
    ``--batch-size 8``): True gives the flag alone, None and False leave it out."""
    flags: list[object] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not None and value is not False:
            flags += [flag, value]
    return flags


def kafka_train_flags(bootstrap: str, topic: str, group: str, **options: object) -> list[object]:
    """``streamsgd train`` flags for the Kafka source, HTTP on any free port and no status
    line, plus ``options`` (:func:`cli_flags`)."""
    return cli_flags(
        source="kafka", bootstrap_servers=bootstrap, topic=topic, group_id=group, **options
    ) + cli_flags(metrics_port="0", progress="never")
