"""What is learned and how: the ``[model]`` section of the train configuration (the model's
keyword arguments and its input width) and the ``[minibatch]`` section (the batch size m,
fixed or chosen by the noise controller (``auto``), and the controller's bounds). Standard
library only."""

from __future__ import annotations

from dataclasses import dataclass

from .options import (
    AUTO,
    BATCH,
    BATCH_OR_AUTO,
    BLOCK,
    BOOLEAN,
    HASH_BITS,
    LATENCY_SECONDS,
    NON_NEGATIVE_FLOAT,
    OPEN_UNIT,
    POSITIVE_FLOAT,
    POSITIVE_FLOAT_OR_AUTO,
    POSITIVE_INT,
    SMOOTHING,
    ConfigError,
    Section,
    option,
)


@dataclass(frozen=True, kw_only=True)
class MinibatchConfig(Section):
    batch_size: int | str = option(
        AUTO,
        "minibatch size m; auto = chosen for throughput and the latency budget, by the norm "
        "test while the gradient dominates (between --min-batch-size and --max-batch-size); "
        "a number fixes m (32 with --learning-rate 0.1: the fixed-step experiment)",
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

    max_batch_latency_seconds: float = option(
        1.0,
        "with --batch-size auto: the latency budget of one minibatch; m is the smallest "
        "power of two that keeps up with the stream (for a file: with the step's fixed "
        "cost), at most what a modelled step fits in; a partial minibatch is applied once "
        "its first record has waited this long",
        LATENCY_SECONDS,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size != AUTO:
            return
        if self.min_batch_size < 2:
            raise ConfigError("--batch-size auto needs --min-batch-size >= 2")
        if self.min_batch_size > self.max_batch_size:
            raise ConfigError("--min-batch-size must not exceed --max-batch-size")


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Section):
    """The model's keyword arguments (``OnlineLogisticRegression``) and its input width."""

    n_features: int | None = option(
        None,
        "input dimension d (synthetic default 10; 2^hash-bits with --hash-bits)",
        POSITIVE_INT,
    )
    hash_bits: int | None = option(None, "hash named features into 2^B dimensions", HASH_BITS)
    learning_rate: float | str = option(
        AUTO,
        "learning rate eta0; auto = AdaGrad at eta0 0.1 on the summed gradient (with "
        "--optimizer auto; with --optimizer sgd: from the curvature bound, with the AdaScale "
        "gain); a number fixes eta0 (plain SGD under --optimizer auto)",
        POSITIVE_FLOAT_OR_AUTO,
    )
    learning_rate_schedule: str = option(
        "constant",
        "inverse_scaling: eta_t = eta0 / (1 + decay*t)^power",
        choices=("constant", "inverse_scaling"),
    )
    learning_rate_decay: float = option(1.0, "decay of inverse_scaling", NON_NEGATIVE_FLOAT)
    learning_rate_power: float = option(0.5, "power of inverse_scaling", NON_NEGATIVE_FLOAT)
    l2: float = option(0.0, "L2 penalty lambda2", NON_NEGATIVE_FLOAT)
    l1: float = option(0.0, "L1 penalty lambda1 (proximal)", NON_NEGATIVE_FLOAT)
    optimizer: str = option(
        AUTO,
        "step rule applied to the averaged gradient; auto = sgd, or with --learning-rate "
        "auto adagrad (and --standardize for dense features): what the benchmarks show wins",
        choices=(AUTO, "sgd", "adagrad"),
    )
    adagrad_half_life_samples: float = option(
        0.0,
        "with AdaGrad: its squared-gradient sums forget with this half-life in samples "
        "(A <- 2^(-m/h) A + g^2), so its steps can follow a drifting stream; 0 = never forget",
        NON_NEGATIVE_FLOAT,
    )
    reduction: str = option(
        "mean", "mean (1/m) or sum of per-sample gradients", choices=("mean", "sum")
    )
    stats_smoothing: float = option(
        0.05, "EWMA factor alpha of the gradient statistics (window ~ 1/alpha steps)", SMOOTHING
    )
    clip_norm_ratio: float = option(
        10.0,
        "scale a sample whose norm ||[x;1]|| exceeds this many times the running typical "
        "norm down to that bound (0 = off)",
        NON_NEGATIVE_FLOAT,
    )
    max_weight_norm: float = option(
        1e6, "the model is unhealthy when ||w|| exceeds this", POSITIVE_FLOAT
    )
    standardize: bool = option(False, "learn on features standardised online (dense only)", BOOLEAN)
