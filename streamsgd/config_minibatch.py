"""The ``[minibatch]`` section of the train configuration: the batch size m, fixed or chosen
by the noise controller (``auto``), and the controller's bounds (re-exported by
:mod:`streamsgd.config`; standard library only)."""

from __future__ import annotations

from dataclasses import dataclass

from .options import (
    AUTO,
    BATCH,
    BATCH_OR_AUTO,
    BLOCK,
    OPEN_UNIT,
    POSITIVE_INT,
    ConfigError,
    Section,
    option,
)


@dataclass(frozen=True, kw_only=True)
class MinibatchConfig(Section):
    batch_size: int | str = option(
        32,
        "minibatch size m; auto = chosen by the norm test from the measured gradient noise "
        "(between --min-batch-size and --max-batch-size)",
        BATCH_OR_AUTO,
    )
    online_block_size: int = option(
        32,
        "with --batch-size 1: apply the m=1 steps this many at a time (the same steps, "
        "several times faster; a sample may wait for its block or --max-wait-ms); "
        "0 = one learn_batch call per sample",
        BLOCK,
    )
    max_wait_ms: int | None = option(
        None, "apply a partial minibatch after this long without new records", POSITIVE_INT
    )
    min_batch_size: int = option(
        8,
        "with --batch-size auto: the smallest m (>= 2), also the base m0 of the gain",
        BATCH,
    )
    max_batch_size: int = option(4096, "with --batch-size auto: the largest m", BATCH)
    norm_test_theta: float = option(
        0.9,
        "with --batch-size auto: theta of the norm test, target m = B (1 - theta^2) / theta^2",
        OPEN_UNIT,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size != AUTO:
            return
        if self.min_batch_size < 2:
            raise ConfigError("--batch-size auto needs --min-batch-size >= 2")
        if self.min_batch_size > self.max_batch_size:
            raise ConfigError("--min-batch-size must not exceed --max-batch-size")
