"""The noise controller (streamsgd.core.controller): batch size from the norm test, learning
rate from the AdaScale gain with a τ-indexed schedule, its state in checkpoints, and the
``auto`` settings of the CLI with their gauges.

Streams with a known noise scale are synthetic per-sample gradients g_i ~ N(G, σ² I_k):
tr Σ = k σ², |G|² = ‖G‖², so B = k σ² / ‖G‖² exactly, and the norm-test target is
m* = B (1 − θ²)/θ².
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from streamsgd import OnlineLogisticRegression
from streamsgd.checkpoint import DirectoryCheckpointStore
from streamsgd.checkpoint.document import dumps, loads
from streamsgd.cli import main
from streamsgd.cli.build import build_model, build_service
from streamsgd.codec import Decoder, encode_dense
from streamsgd.config import ConfigError, train_config
from streamsgd.core.controller import NoiseController, norm_test_batch_size
from streamsgd.core.gradient_stats import BatchSums, RunningGradientStatistics
from streamsgd.core.schedules import LearningRateSchedule
from streamsgd.datasets.synthetic_stream import DEMO_REGIME_SAMPLES, SyntheticStream, demo_stream
from streamsgd.training.totals import Totals
from streamsgd.training.trainer import ServiceConfig, Trainer
from tests.support.memory_source import MemorySource

THETA = 0.9
K = 10


def _gradient_sums(rng: np.random.Generator, G: np.ndarray, sigma: float, m: int) -> BatchSums:
    g = G + sigma * rng.standard_normal((m, len(G)))
    return BatchSums(m, g.sum(axis=0), float(np.einsum("ij,ij->", g, g)), 0.0, 0)


def _drive(
    controller: NoiseController,
    stats: RunningGradientStatistics,
    rng: np.random.Generator,
    G: np.ndarray,
    sigma: float,
    n_steps: int,
) -> list[int]:
    """n_steps of the loop: draw m = controller.batch_size gradients, fold them in, advance."""
    sizes = []
    for _ in range(n_steps):
        sums = _gradient_sums(rng, G, sigma, controller.batch_size)
        stats.update(sums)
        controller.step_applied(sums, stats, 0.1, 1.0)
        sizes.append(controller.batch_size)
    return sizes


def _direction(norm: float, k: int = K) -> np.ndarray:
    G = np.zeros(k)
    G[0] = norm
    return G


@pytest.mark.parametrize("noise_scale", [200.0, 2000.0])
def test_target_batch_size_on_a_stream_with_known_noise_scale(noise_scale: float) -> None:
    """The suggested m* is within a factor 2 of B(1 − θ²)/θ², and m settles where the
    hysteresis leaves it: m* /2 ≤ m ≤ 4 m* (doubling stops once m ≥ m*/2)."""
    sigma = 1.0
    G = _direction(math.sqrt(K * sigma**2 / noise_scale))
    controller = NoiseController.create("auto", norm_test_theta=THETA)
    stats = RunningGradientStatistics()
    sizes = _drive(controller, stats, np.random.default_rng(1), G, sigma, 3000)
    target = norm_test_batch_size(noise_scale, THETA)
    assert stats.trusted
    assert target / 2 <= controller.suggested_batch_size <= 2 * target
    assert target / 2 <= controller.batch_size <= 4 * target
    assert max(sizes) <= 4 * target  # no overshoot on the way, the lower bound included
    assert sizes[0] == 8 and all(np.log2(s).is_integer() for s in sizes)  # powers of two
    # Not vacuous: m moved away from its start.
    assert controller.batch_size >= 4 * 8


def test_batch_size_halves_after_a_drift() -> None:
    """A quiet phase (B = 500) grows m; then the true gradient jumps (a change of the true
    weights: |G|² × 100, B = 5) and m halves within a bounded number of steps, down to
    m_min (the target 1.2 is below it)."""
    rng = np.random.default_rng(2)
    controller = NoiseController.create("auto", norm_test_theta=THETA)
    stats = RunningGradientStatistics()
    _drive(controller, stats, rng, _direction(math.sqrt(K / 500.0)), 1.0, 3000)
    before = controller.batch_size
    assert before >= 64
    after = _drive(controller, stats, rng, _direction(math.sqrt(K / 5.0)), 1.0, 200)
    halved_at = next(i for i, m in enumerate(after) if m <= before // 2)
    assert halved_at < 50
    assert after[-1] == 8


def test_pure_noise_grows_the_batch_size_on_the_lower_bound_only() -> None:
    """Pure noise (G = 0): the statistics are never trusted (no B, no suggestion), m never
    shrinks, and every doubling is one the lower confidence bound B̂ asked for (m*(B̂) > 2m);
    the norm test fails with significance, so m grows."""
    controller = NoiseController.create("auto")
    stats = RunningGradientStatistics()
    rng = np.random.default_rng(3)
    sizes = [controller.batch_size]
    for _ in range(500):
        sums = _gradient_sums(rng, np.zeros(K), 1.0, controller.batch_size)
        stats.update(sums)
        bound_target = norm_test_batch_size(stats.noise_scale_lower_bound, THETA)
        before = controller.batch_size
        controller.step_applied(sums, stats, 0.1, 1.0)
        assert not stats.trusted and math.isnan(controller.suggested_batch_size)
        assert controller.batch_size in (before, 2 * before)
        if controller.batch_size > before:
            assert bound_target > 2 * before
        sizes.append(controller.batch_size)
    assert sizes[-1] >= 64


def test_lower_bound_of_the_noise_scale_is_below_it_with_high_probability() -> None:
    """B̂ = T̄/(Ḡ² + 2·SE) on a stream with B = 2000 at m = 8 (|G|² mostly not resolved):
    defined on most steps, and above the true B on fewer than 5 % of them."""
    noise_scale = 2000.0
    G = _direction(math.sqrt(K / noise_scale))
    rng = np.random.default_rng(4)
    for _ in range(3):  # independent runs, windows of up to ≈ 640 steps each
        stats = RunningGradientStatistics()
        bounds = []
        for _ in range(3000):
            stats.update(_gradient_sums(rng, G, 1.0, 8))
            bounds.append(stats.noise_scale_lower_bound)
        defined = np.array([b for b in bounds if not math.isnan(b)])
        assert len(defined) > 2000
        assert np.mean(defined > noise_scale) < 0.05
        assert np.median(defined) > noise_scale / 20  # not vacuous: it says m* ≫ 8


def _stats(trace: float, g2: float) -> RunningGradientStatistics:
    return RunningGradientStatistics(per_sample_variance=trace, true_gradient_squared_norm=g2)


def test_gain_is_one_at_the_base_batch_size_and_linear_when_noise_dominates() -> None:
    controller = NoiseController(batch_size=8, base_batch_size=8)
    assert controller.gain_for(_stats(3.0, 0.7), 8) == 1.0
    # B = 1e6 ≫ m: r → m/m₀.
    assert controller.gain_for(_stats(1e6, 1.0), 256) == pytest.approx(256 / 8, rel=1e-3)
    # B = 0.01 ≪ m₀: r → 1.
    assert controller.gain_for(_stats(0.01, 1.0), 256) == pytest.approx(1.0, rel=1e-2)
    # In between, the formula (T/m₀ + |G|²)/(T/m + |G|²).
    assert controller.gain_for(_stats(64.0, 1.0), 64) == pytest.approx((8 + 1) / (1 + 1))
    # A negative |G|² estimate counts as 0 and the gain stays within [1, m/m₀].
    assert controller.gain_for(_stats(5.0, -3.0), 32) == 4.0
    assert controller.gain_for(RunningGradientStatistics(), 32) == 1.0


def _per_sample_steps(controller: NoiseController, sizes: list[int]) -> dict[int, float]:
    """η/m of each step, keyed by the samples seen before it, with |G|² = 0 (gain m/m₀)."""
    schedule = LearningRateSchedule(0.5, "inverse_scaling", decay=0.01, power=0.5)
    stats = _stats(1.0, 0.0)
    steps, seen = {}, 0
    for m in sizes:
        controller.batch_size = m
        sums = BatchSums(m, np.zeros(3), 0.0, 0.0, 0)
        eta, gain = controller.step_size(sums, stats, schedule, l2=0.0)
        assert gain == m / 8
        controller.step_applied(sums, stats, eta, gain)
        steps[seen] = eta / m
        seen += m
    return steps


def test_tau_indexed_schedule_is_the_same_per_sample_whatever_m() -> None:
    """In the noise-dominated regime the gain is r = m/m₀, so τ advances by m/m₀ per step:
    τ = samples seen / m₀, and the per-sample step η/m = η₀(τ)/m₀ at a given number of
    samples seen is the same for m = 8, m = 32 and a run that switches from 8 to 32."""
    small = _per_sample_steps(NoiseController(adaptive_batch_size=False), [8] * 64)
    large = _per_sample_steps(NoiseController(adaptive_batch_size=False), [32] * 16)
    mixed = _per_sample_steps(NoiseController(adaptive_batch_size=False), [8] * 16 + [32] * 12)
    assert large.keys() <= small.keys() and mixed.keys() <= small.keys()
    for seen, step in [*large.items(), *mixed.items()]:
        assert step == pytest.approx(small[seen], rel=1e-12), seen
    # Not vacuous: the schedule decays over the run, and indexed by updates it would differ.
    assert large[480] < 0.8 * large[0]
    by_updates = LearningRateSchedule(0.5, "inverse_scaling", decay=0.01, power=0.5)
    assert by_updates(15) * 4 / 32 != pytest.approx(large[480], rel=1e-3)


def test_fixed_settings_take_exactly_the_steps_of_no_controller() -> None:
    """--learning-rate X with a fixed m and no auto: no controller; and a controller at
    m = m₀ with a constant schedule and no curvature cap takes the plain step η₀."""
    controller = NoiseController(adaptive_batch_size=False, batch_size=16, base_batch_size=16)
    sums = BatchSums(16, np.zeros(3), 0.0, 0.0, 0)
    eta, gain = controller.step_size(sums, _stats(2.0, 0.1), LearningRateSchedule(0.3), l2=0.0)
    assert (eta, gain) == (0.3, 1.0)
    assert train_config(batch_size=16, learning_rate=0.3).controlled is False


def test_learning_rate_is_capped_by_the_curvature_bound() -> None:
    """η ≤ 1/(¼ mean‖[x;1]‖² + λ₂); --learning-rate auto takes half of it at m₀."""
    rng = np.random.default_rng(4)
    X, y = 3.0 * rng.standard_normal((64, 5)), (rng.random(64) < 0.5).astype(float)
    mean_row = float(np.mean(np.sum(X * X, axis=1) + 1.0))
    cap = 1.0 / (0.25 * mean_row + 0.01)
    fixed = OnlineLogisticRegression(
        5, learning_rate=10.0, l2=0.01, clip_norm_ratio=0.0, controller=NoiseController()
    )
    assert fixed.learn_batch(X, y).learning_rate == pytest.approx(cap, rel=1e-12)
    auto = OnlineLogisticRegression(
        5, l2=0.01, clip_norm_ratio=0.0, controller=NoiseController(adaptive_learning_rate=True)
    )
    assert auto.learn_batch(X, y).learning_rate == pytest.approx(cap / 2, rel=1e-12)


def _same_state(a: object, b: object) -> bool:
    """Equal value for value: NaN equals NaN, arrays byte for byte, dicts key for key."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def _controlled_model() -> OnlineLogisticRegression:
    return OnlineLogisticRegression(
        6, l2=1e-3, controller=NoiseController.create("auto", adaptive_learning_rate=True)
    )


def test_controller_state_survives_a_checkpoint_round_trip() -> None:
    X, y = SyntheticStream(6, seed=8, label_noise=0.05).samples(0, 30000)
    straight, resumed = _controlled_model(), _controlled_model()
    cut = 0
    for model in (straight, resumed):
        start = 0
        while start < len(y):
            if model is resumed and cut == 0 and start >= 15000:
                cut = start
                document = {
                    "model": resumed.get_state(),
                    "positions": {},
                    "offsets": {},
                    "totals": vars(Totals()),
                    "source": {},
                    "batch_size": 8,
                }
                model = resumed = OnlineLogisticRegression.from_state(
                    loads(dumps(document))["model"]
                )
            m = model.controller.batch_size
            model.learn_batch(X[start : start + m], y[start : start + m])
            start += m
    assert resumed.parameters.tobytes() == straight.parameters.tobytes()
    a, b = resumed.controller.get_state(), straight.controller.get_state()
    assert a.keys() == b.keys()
    assert _same_state(a, b) and a["curvature"]["n_steps"] > 0
    assert a["batch_size"] != 8 or a["progress"] > 0  # the controller did something


def _scrape(config_values: dict[str, object]) -> tuple[dict[str, float], object]:
    config = train_config(
        source="synthetic", n_features=8, progress="never", log_interval_seconds=0, **config_values
    )
    service, resources = build_service(config)
    try:
        service.run()
    finally:
        resources.close()
    assert resources.registry is not None
    values = {}
    for line in generate_latest(resources.registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values, service


@pytest.mark.parametrize(
    "settings",
    [
        {"batch_size": 1, "learning_rate": 0.1},
        {"batch_size": 32, "learning_rate": 0.1},
        {"batch_size": 1},  # the default learning rate at m = 1: AdaGrad, no controller
        {},  # the defaults: auto
        {"batch_size": "auto", "learning_rate": "auto"},
        {"batch_size": "auto", "learning_rate": 0.05, "l2": 1e-3},
    ],
)
def test_no_gauge_reads_infinite_after_a_run(settings: dict[str, object]) -> None:
    """Every sample on /metrics (the registry's text) is finite or NaN, never ±Inf (bucket
    labels le="+Inf" are labels, not values), in each mode."""
    values, _ = _scrape({"max_samples": 6000, **settings})
    assert values["streamsgd_samples_learned_total"] == 6000
    infinite = [name for name, value in values.items() if math.isinf(value)]
    assert not infinite
    for gauge in (
        "streamsgd_gradient_statistics_trusted",
        "streamsgd_suggested_batch_size",
        "streamsgd_learning_rate_gain",
    ):
        assert gauge in values


def test_auto_run_exports_the_controller_gauges() -> None:
    values, service = _scrape(
        {"batch_size": "auto", "learning_rate": "auto", "seed": 3, "max_samples": 40000}
    )
    controller = service.model.controller
    assert controller is not None and controller.batch_size != 8  # m moved
    assert values["streamsgd_learning_rate_gain"] == controller.gain >= 1.0
    assert values["streamsgd_learning_rate"] == controller.learning_rate
    assert values["streamsgd_gradient_statistics_trusted"] in (0.0, 1.0)
    suggested = values["streamsgd_suggested_batch_size"]
    assert math.isnan(suggested) == math.isnan(controller.suggested_batch_size)
    bound = service.model.gradient_stats.noise_scale_lower_bound
    exported = values["streamsgd_gradient_noise_scale_lower_bound"]
    assert exported == bound or math.isnan(exported) == math.isnan(bound)
    assert 0.0 < bound < math.inf  # defined after 40,000 samples


def test_cli_auto_flags_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common = [
        "train",
        "--source",
        "synthetic",
        "--n-features",
        "5",
        "--metrics-port",
        "0",
        "--progress",
        "never",
        "--max-samples",
        "20000",
    ]
    directory = tmp_path / "flags"
    args = ["--batch-size", "auto", "--learning-rate", "auto", "--checkpoint-dir", str(directory)]
    assert main([*common, *args]) == 0
    state = DirectoryCheckpointStore(directory, read_only=True).load()
    assert state is not None and state["model"]["controller"]["adaptive_learning_rate"] is True
    assert state["batch_size"] == state["model"]["controller"]["batch_size"]
    monkeypatch.setenv("STREAMSGD_BATCH_SIZE", "auto")
    monkeypatch.setenv("STREAMSGD_MIN_BATCH_SIZE", "4")
    fixed_rate = ["--learning-rate", "0.1"]  # not auto (the default since issue 19)
    assert main([*common, *fixed_rate, "--checkpoint-dir", str(tmp_path / "env")]) == 0
    state = DirectoryCheckpointStore(tmp_path / "env", read_only=True).load()
    assert state is not None
    stored = state["model"]["controller"]
    assert stored["adaptive_batch_size"] is True and stored["min_batch_size"] == 4
    assert stored["adaptive_learning_rate"] is False


@pytest.mark.parametrize(
    "values, optimizer, standardize",
    [
        ({}, "adagrad", True),  # the defaults are auto (issue 19)
        ({"learning_rate": 0.1}, "sgd", False),  # a fixed η: plain SGD, as before auto
        ({"learning_rate": "auto"}, "adagrad", True),
        ({"learning_rate": "auto", "batch_size": "auto"}, "adagrad", True),
        ({"learning_rate": "auto", "optimizer": "sgd"}, "sgd", False),
        ({"learning_rate": "auto", "optimizer": "adagrad"}, "adagrad", False),
        (
            {"learning_rate": "auto", "source": "file", "path": "f", "hash_bits": 8},
            "adagrad",
            False,
        ),
        ({"learning_rate": 0.5, "standardize": True}, "sgd", True),
    ],
)
def test_auto_picks_what_the_benchmarks_show_wins(
    values: dict[str, object], optimizer: str, standardize: bool
) -> None:
    config = train_config(**values)
    assert (config.optimizer, config.standardize) == (optimizer, standardize)
    model = build_model(config)
    assert (model.optimizer, model.inputs.enabled) == (optimizer, standardize)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"batch_size": "auto", "reduction": "sum"}, "need --reduction mean"),
        ({"learning_rate": "auto", "optimizer": "sgd", "batch_size": 1}, "--batch-size >= 2"),
        ({"batch_size": "auto", "min_batch_size": 1}, "--min-batch-size >= 2"),
        ({"batch_size": "auto", "min_batch_size": 64, "max_batch_size": 32}, "must not exceed"),
        ({"batch_size": "many"}, r"an integer in 1\.\.1048576 or auto"),
    ],
)
def test_bad_auto_combinations_are_one_line_errors(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        train_config(**values)


def _controlled_service(source: MemorySource, store: DirectoryCheckpointStore) -> Trainer:
    model = OnlineLogisticRegression(
        5, controller=NoiseController.create("auto", adaptive_learning_rate=True)
    )
    config = ServiceConfig(batch_size=8, checkpoint_every_updates=1)
    return Trainer(model, source, Decoder(5), config, checkpoint_store=store)


def test_service_follows_the_controller_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    """The loop reads m from the controller after every step; crashes (checkpoints after
    every update) and restarts end with exactly the weights and controller state of one
    uninterrupted run."""
    X, y = SyntheticStream(5, seed=9, label_noise=0.05, drift=3.0).samples(0, 12000)
    records = [encode_dense(X[i], float(y[i])) for i in range(len(y))]
    straight = _controlled_service(MemorySource(records, per_poll=50), None)  # type: ignore[arg-type]
    straight.run()
    assert straight.model.controller is not None
    assert straight.model.controller.batch_size != 8  # m moved during the run
    store = DirectoryCheckpointStore(tmp_path)
    for fail_after in (40, 60, 50):
        crashing = _controlled_service(MemorySource(records, 50, fail_after), store)
        with pytest.raises(KeyboardInterrupt):
            crashing.run()
    final = _controlled_service(MemorySource(records, per_poll=50), store)
    final.run()
    assert final.model.parameters.tobytes() == straight.model.parameters.tobytes()
    assert final.model.n_updates == straight.model.n_updates
    a, b = final.model.controller.get_state(), straight.model.controller.get_state()  # type: ignore[union-attr]
    assert _same_state(a, b)


def test_batch_size_grows_only_while_the_step_size_can_grow_with_it() -> None:
    """A trusted target far above m doubles m, unless the curvature cap leaves no room for
    the gain at 2m (η₀ = 1 with a cap of 0.1: a larger m would take the same capped step)."""
    sizes = {}
    for capped in (False, True):
        rng = np.random.default_rng(10)
        controller = NoiseController.create("auto")
        stats = RunningGradientStatistics()
        schedule = LearningRateSchedule(1.0)
        G = _direction(math.sqrt(200 / 300.0), 200)  # B = 300, m* = 70
        for _ in range(1500):
            sums = _gradient_sums(rng, G, 1.0, controller.batch_size)
            sums.row_squared_norm_sum = 40.0 * sums.n_samples  # S̄ = 40: cap = 1/10
            eta, gain = controller.step_size(
                sums, stats, schedule, l2=0.0, optimizer="sgd" if capped else "adagrad"
            )
            stats.update(sums)
            controller.step_applied(sums, stats, eta, gain)
        assert stats.trusted and controller.suggested_batch_size > 32
        sizes[capped] = controller.batch_size
    assert sizes[False] >= 32 and sizes[True] == 8


def _auto_run(stream: SyntheticStream, n_samples: int) -> tuple[OnlineLogisticRegression, list]:
    """--batch-size auto --learning-rate auto over ``stream``: (model, [(samples seen, m)])."""
    model = OnlineLogisticRegression(
        stream.n_features, controller=NoiseController.create("auto", adaptive_learning_rate=True)
    )
    X, y = stream.samples(0, n_samples)
    seen, sizes = 0, []
    assert model.controller is not None
    while seen + model.controller.batch_size <= n_samples:
        m = model.controller.batch_size
        model.learn_batch(X[seen : seen + m], y[seen : seen + m])
        seen += m
        sizes.append((seen, model.controller.batch_size))
    return model, sizes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_size_halves_after_a_drift_of_a_real_stream(seed: int) -> None:
    """Logistic regression on the demo stream (d = 20): its true weights jump to a new
    direction at sample 30,000. In the first regime the controller grows m (the noise scale
    is large near the optimum); within 10 steps of the change m is at most half of what it
    was, because the loss jump restarts the statistics at the change (core/drift.py). Before
    that rule the ≈ 640-step window kept the old |G|² and m never shrank."""
    change = DEMO_REGIME_SAMPLES
    model, sizes = _auto_run(demo_stream(20, seed), change + 4000)
    before = [m for seen, m in sizes if seen <= change][-1]
    after = [m for seen, m in sizes if seen > change]
    assert before >= 64
    assert min(after[:10]) <= before // 2
    assert model.gradient_stats.change.n_changes == 1  # the change, and nothing else


def test_no_change_is_detected_on_a_stationary_stream() -> None:
    """The same stream without its regime changes: the statistics are never restarted, and
    m grows as before."""
    model, sizes = _auto_run(SyntheticStream(20, seed=1), 3 * DEMO_REGIME_SAMPLES)
    assert model.gradient_stats.change.n_changes == 0
    assert sizes[-1][1] >= 64


def test_adagrad_under_a_controller_steps_on_the_sum_with_no_gain() -> None:
    """AdaGrad is scale-invariant: with a controller at a fixed m (the gain would be m/m₀
    otherwise) it steps on Σ g_i with η₀ and r = 1, which is the step of the mean without a
    controller up to round-off and ε."""
    X, y = SyntheticStream(6, seed=11).samples(0, 3200)
    plain = OnlineLogisticRegression(6, optimizer="adagrad", learning_rate=0.1)
    controlled = OnlineLogisticRegression(
        6,
        optimizer="adagrad",
        learning_rate=0.1,
        controller=NoiseController(adaptive_batch_size=False, batch_size=32, base_batch_size=8),
    )
    for start in range(0, 3200, 32):
        a = plain.learn_batch(X[start : start + 32], y[start : start + 32])
        b = controlled.learn_batch(X[start : start + 32], y[start : start + 32])
        assert a.learning_rate == b.learning_rate == 0.1
    np.testing.assert_allclose(controlled.parameters, plain.parameters, rtol=1e-6)


def test_adagrad_accumulators_restart_after_a_detected_change() -> None:
    """The demo stream's change at 30,000 samples is detected; AdaGrad's accumulated Σ S²
    starts again there (the old problem's would keep the steps small), so at the end it
    holds only what was accumulated since the change."""
    stream = demo_stream(20, 2)
    model = OnlineLogisticRegression(
        20, optimizer="adagrad", learning_rate=0.1, controller=NoiseController.create("auto")
    )
    assert model.controller is not None
    X, y = stream.samples(0, DEMO_REGIME_SAMPLES + 6000)
    seen, totals = 0, []
    while seen + model.controller.batch_size <= len(y):
        m = model.controller.batch_size
        model.learn_batch(X[seen : seen + m], y[seen : seen + m])
        seen += m
        totals.append(float(model.get_state()["squared_gradient_sum"].sum()))
    assert model.gradient_stats.change.n_changes == 1
    assert min(totals[len(totals) // 2 :]) < 0.5 * max(totals)  # it fell: a restart


def test_a_change_alarm_shrinks_the_accumulators_by_w_over_n() -> None:
    """Issue 19, item 4: A ← A·min(1, W/n) (W the samples since the estimated change point,
    n those A holds), not zeroed; an undefined W (no window yet) still restarts A."""
    from streamsgd.core.optimizer import Optimizer
    from streamsgd.core.schedules import LearningRateSchedule

    optim = Optimizer(
        2,
        LearningRateSchedule(0.1),
        l2=0.0,
        l1=0.0,
        reduction="mean",
        optimizer="adagrad",
        adagrad_epsilon=1e-8,
    )
    optim.accumulator = np.array([4.0, 8.0])
    optim.accumulated_samples = 1000.0
    optim.restart(5000.0)  # the window covers everything A holds: unchanged
    np.testing.assert_array_equal(optim.accumulator, [4.0, 8.0])
    optim.restart(250.0)
    np.testing.assert_array_equal(optim.accumulator, [1.0, 2.0])
    assert optim.accumulated_samples == 250.0
    optim.restart(math.nan)
    np.testing.assert_array_equal(optim.accumulator, [0.0, 0.0])


def test_the_accumulated_samples_resume_from_a_state() -> None:
    """n of the shrink rule is replicated state: in the checkpoint, and an older state
    (without it) resumes with n = the samples seen (core/state_format.py)."""
    model = OnlineLogisticRegression(3, optimizer="adagrad")
    rng = np.random.default_rng(0)
    model.learn_batch(rng.normal(size=(40, 3)), (rng.random(40) < 0.5).astype(float))
    state = model.get_state()
    assert state["accumulated_samples"] == 40.0
    assert OnlineLogisticRegression.from_state(state).optim.accumulated_samples == 40.0
    del state["accumulated_samples"]
    assert OnlineLogisticRegression.from_state(state).optim.accumulated_samples == 40.0
