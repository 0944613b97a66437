"""m for what it buys (issue 19, item 1): throughput and latency bound m under ``auto``, from
a fixed cost model, so that a stationary stream read from a file no longer grows m with n."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import generate_latest

from streamsgd.cli.build import build_model, build_service
from streamsgd.cli.evaluate import validation
from streamsgd.cli.main import parse
from streamsgd.cli.train import config_from_args
from streamsgd.codec import DecodedRun
from streamsgd.config import ConfigError, train_config
from streamsgd.core.batch_latency import (
    STEP_COST_SECONDS,
    latency_batch_size,
    sample_cost_seconds,
    throughput_batch_size,
)
from streamsgd.core.controller import NoiseController

C0, C1 = 1e-4, 1e-6  # a step's fixed cost and its cost per sample (seconds)


def test_the_smallest_power_of_two_that_keeps_up_with_the_arrival_rate() -> None:
    # c(m)/m ≤ 1/λ: at λ = 1e5/s, (1e-4 + 1e-6 m)/m ≤ 1e-5 needs m ≥ 11.1: 16.
    assert throughput_batch_size(1e5, C0, C1, 8, 4096) == 16
    assert throughput_batch_size(1e3, C0, C1, 8, 4096) == 8  # m_min keeps up already
    # Faster than half the kernel's rate, and a backlog (no rate): the knee c₀/m ≤ c₁.
    assert throughput_batch_size(1e7, C0, C1, 8, 4096) == 128
    assert throughput_batch_size(math.nan, C0, C1, 8, 4096) == 128


def test_the_latency_budget_caps_the_step_time_and_the_wait_for_m_records() -> None:
    # A backlog: c₀ + c₁ m ≤ L only.
    assert latency_batch_size(math.nan, C0, C1, 1e-4 + 64e-6, 8, 4096) == 64
    assert latency_batch_size(math.nan, C0, C1, 1.0, 8, 4096) == 4096
    # A stream of 1,000 records/s: m/λ ≤ 0.1 s allows 100, so 64.
    assert latency_batch_size(1e3, C0, C1, 0.1, 8, 4096) == 64
    # A budget nothing fits in still leaves m_min (two samples are needed for statistics).
    assert latency_batch_size(10.0, C0, C1, 0.1, 8, 4096) == 8


def test_a_known_arrival_rate_sets_m_under_adagrad() -> None:
    controller = NoiseController(step_cost_seconds=C0, sample_cost_seconds=C1)
    controller._adaptive_steps = True
    controller.arrival_rate = 1e5
    assert controller.batch_size_bounds() == (16, 16)  # keep up, and nothing more
    controller.arrival_rate = math.nan
    assert controller.batch_size_bounds() == (8, 128)  # a backlog: up to the knee
    controller._adaptive_steps = False  # plain SGD with the gain: the norm test may go on
    assert controller.batch_size_bounds() == (8, 4096)


def test_the_latency_budget_is_an_option_with_one_line_errors() -> None:
    config = train_config(source="file", path="x", n_features=3, max_batch_latency_seconds=0.25)
    assert config.minibatch.max_batch_latency_seconds == 0.25
    for bad in (0.0, -1.0, 3601.0, math.nan):
        with pytest.raises(ConfigError, match=r"max[_-]batch[_-]latency"):
            train_config(source="file", path="x", n_features=3, max_batch_latency_seconds=bad)
    with pytest.raises(ValueError, match="max_batch_latency_seconds"):
        NoiseController(max_batch_latency_seconds=0.0)


def _batch_sizes(options: dict[str, object], n: int, at: tuple[int, ...]) -> dict[int, int]:
    """m after ``at`` samples of a stationary d = 20 stream (‖w*‖ = 2) read as a file, run
    through the runner of ``streamsgd evaluate``; drawn in chunks (no 1e6 × 20 array)."""
    d, chunk = 20, 4096
    rng = np.random.default_rng(7)
    w = rng.normal(size=d)
    w *= 2.0 / np.linalg.norm(w)
    config = train_config(source="file", path="(memory)", n_features=d, **options)
    runner = validation(config)
    seen = {}
    for lo in range(0, n, chunk):
        X = rng.normal(size=(chunk, d))
        y = (rng.random(chunk) < 1.0 / (1.0 + np.exp(-X @ w))).astype(np.float64)
        runner.feed([DecodedRun("s", lo, X, y, None, False)])
        for k in at:
            if lo < k <= lo + chunk:
                assert runner.model.controller is not None
                seen[k] = runner.model.controller.batch_size
    return seen


def test_m_on_a_stationary_file_stream_stops_at_the_knee_of_the_cost_model() -> None:
    """Before, the norm test under AdaGrad doubled m after every doubling (B ∝ √n): 2,048 or
    more at 1 M samples. Now m stops where the modelled step cost stops buying throughput."""
    auto = {"batch_size": "auto", "learning_rate": "auto"}
    knee = throughput_batch_size(
        math.nan, STEP_COST_SECONDS, sample_cost_seconds(20, False), 8, 4096
    )
    assert knee == 1024
    sizes = _batch_sizes(auto, 1_000_000, (500_000, 1_000_000))
    assert sizes == {500_000: knee, 1_000_000: knee}


def test_a_tight_latency_budget_bounds_m_from_the_start() -> None:
    # c₀ + c₁ m ≤ 1.2e-4 s at d = 20 allows m = 128 of the cost model.
    options = {"batch_size": "auto", "learning_rate": "auto", "max_batch_latency_seconds": 1.2e-4}
    sizes = _batch_sizes(options, 300_000, (100_000, 200_000, 300_000))
    assert sizes == {100_000: 128, 200_000: 128, 300_000: 128}


def _effective_rate(settings: dict[str, object]) -> tuple[float, object]:
    config = train_config(
        source="synthetic", n_features=8, progress="never", log_interval_seconds=0, **settings
    )
    service, resources = build_service(config)
    try:
        service.run()
    finally:
        resources.close()
    assert resources.registry is not None
    for line in generate_latest(resources.registry).decode().splitlines():
        if line.startswith("streamsgd_effective_learning_rate "):
            return float(line.split()[1]), service
    raise AssertionError("streamsgd_effective_learning_rate is not exported")


def test_the_effective_rate_on_the_mean_gradient_is_exported() -> None:
    """Under auto (AdaGrad on the summed gradient) the rate on ḡ is η·m/√A_j, median over
    coordinates: it moves with m while η stays 0.1. Plain SGD on the mean: η itself."""
    auto = {"batch_size": "auto", "learning_rate": "auto", "seed": 3, "max_samples": 40_000}
    exported, service = _effective_rate(auto)
    model = service.model
    controller, accumulator = model.controller, model.optim.accumulator
    assert controller is not None and accumulator is not None
    m = model.gradient_stats.window_batch_size  # the last step's m
    expected = np.median(
        controller.learning_rate * m / (np.sqrt(accumulator) + model.optim.epsilon)
    )
    # The same formula evaluated in the same order: equal to round-off.
    assert exported == pytest.approx(float(expected), rel=1e-12)
    assert 0.0 < exported < math.inf
    sgd, _ = _effective_rate({"batch_size": 32, "learning_rate": 0.05, "max_samples": 3200})
    assert sgd == 0.05


def test_auto_is_the_default_of_train_and_evaluate() -> None:
    """Issue 19, item 7: with no flag, both commands run the controller (AdaGrad on the summed
    gradient, m chosen); a fixed m and η is one flag pair away and has no controller."""
    for command in (
        ["train"],
        ["evaluate", "--source", "file", "--path", "x", "--n-features", "3"],
    ):
        config = config_from_args(parse(command))
        assert (config.minibatch.batch_size, config.model.learning_rate) == ("auto", "auto")
        model = build_model(config)
        assert model.controller is not None and model.optimizer == "adagrad"
        assert model.controller.adaptive_batch_size and model.controller.adaptive_learning_rate
    fixed = build_model(
        config_from_args(parse(["train", *"--batch-size 32 --learning-rate 0.1".split()]))
    )
    assert fixed.controller is None and fixed.optimizer == "sgd" and fixed.learning_rate == 0.1
    # m = 1 under the default learning rate: AdaGrad at η₀ = 0.1, no controller (it needs m >= 2).
    online = build_model(config_from_args(parse(["train", "--batch-size", "1"])))
    assert (
        online.controller is None and online.optimizer == "adagrad" and online.learning_rate == 0.1
    )


def test_a_restart_adopts_the_configured_budget_and_keeps_the_controllers_state() -> None:
    stored = NoiseController(batch_size=64, progress=12.0)
    configured = NoiseController(max_batch_latency_seconds=0.5, sample_cost_seconds=2e-6)
    resumed = NoiseController.resume(configured, stored)
    assert resumed is stored and (resumed.batch_size, resumed.progress) == (64, 12.0)
    assert resumed.max_batch_latency_seconds == 0.5 and resumed.sample_cost_seconds == 2e-6
    # A state written before the budget existed loads with the defaults and a backlog.
    old = stored.get_state()
    for key in ("max_batch_latency_seconds", "step_cost_seconds", "sample_cost_seconds"):
        del old[key]
    del old["arrival_rate"]
    loaded = NoiseController.from_state(old)
    assert loaded.max_batch_latency_seconds == 1.0 and math.isnan(loaded.arrival_rate)
    assert loaded.sample_cost_seconds == sample_cost_seconds(20, False)
