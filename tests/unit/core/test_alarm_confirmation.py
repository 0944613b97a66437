"""A change alarm shrinks AdaGrad's accumulators only once the next batch confirms it
(streamsgd/core/drift.py, "Acting on an alarm"; Optimizer.follow_alarms): a spike of the
loss (a heavy-tailed loss, Shuttle's false alarms) restarts the noise statistics but leaves
A alone; a change that keeps the loss up shrinks A one step after its alarm. The pending
alarm is model state: a restart between the alarm and its confirmation is bit-identical."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from streamsgd import OnlineLogisticRegression
from streamsgd.checkpoint.document import dumps, loads
from streamsgd.core.controller import NoiseController
from streamsgd.core.drift import CONFIRM_Z, confirms
from streamsgd.datasets.synthetic_stream import SyntheticStream
from streamsgd.training.totals import Totals

M = 32  # a fixed m under the controller: every step is one batch of the arrays below
WARM_STEPS = 300


def _model() -> OnlineLogisticRegression:
    controller = NoiseController(adaptive_batch_size=False, batch_size=M, base_batch_size=8)
    return OnlineLogisticRegression(
        10, optimizer="adagrad", learning_rate=0.1, controller=controller
    )


def _batches(n_steps: int, flipped: set[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """n_steps batches of a stationary stream; the labels of the steps in ``flipped`` are
    inverted (the model's confident predictions become confident mistakes)."""
    X, y = SyntheticStream(10, seed=3).samples(0, n_steps * M)
    out = []
    for k in range(n_steps):
        rows, labels = X[k * M : (k + 1) * M], y[k * M : (k + 1) * M]
        out.append((rows, 1.0 - labels if k in flipped else labels))
    return out


def _run(
    model: OnlineLogisticRegression, batches: list[tuple[np.ndarray, np.ndarray]]
) -> list[tuple[int, float, bool]]:
    """Per step: (alarms so far, n held by A, whether an alarm is pending) after it."""
    trace = []
    for rows, labels in batches:
        model.learn_batch(rows, labels)
        trace.append(
            (
                model.gradient_stats.change.n_changes,
                model.optim.accumulated_samples,
                model.optim.pending_alarm is not None,
            )
        )
    return trace


def test_confirms_needs_the_loss_z_standard_errors_above_the_old_level() -> None:
    # L̄ = 0.5, V̄ = 0.64: the standard error of a 16-sample mean is 0.2.
    threshold = 0.5 + CONFIRM_Z * 0.2
    assert confirms(0.5, 0.64, 16 * (threshold + 1e-9), 16)
    assert not confirms(0.5, 0.64, 16 * (threshold - 1e-3), 16)
    assert not confirms(0.5, 0.64, math.inf, 16)
    assert not confirms(0.5, 0.64, math.nan, 16)
    assert not confirms(0.5, math.nan, 100.0, 16)
    assert not confirms(0.5, 0.64, 0.0, 0)


def test_a_spike_of_the_loss_raises_an_alarm_but_leaves_the_accumulators() -> None:
    """Two batches of confident mistakes, then the stream as before: the detector alarms
    (its statistics restart), the next batch's loss is back at the old level, and A keeps
    every sample it held (before this rule A shrank to W/n at the alarm)."""
    spike = {WARM_STEPS, WARM_STEPS + 1}
    trace = _run(_model(), _batches(WARM_STEPS + 40, spike))
    assert trace[WARM_STEPS - 1][0] == 0
    alarm = next(k for k, (changes, _, _) in enumerate(trace) if changes)
    assert alarm in spike  # raised by the spike
    assert trace[alarm][2] and not trace[alarm + 1][2]  # pending, then dropped
    held = [n for _, n, _ in trace]
    assert all(b == a + M for a, b in itertools.pairwise(held))  # never shrunk
    assert trace[-1][0] == 1


def test_a_change_that_keeps_the_loss_up_shrinks_the_accumulators_one_step_later() -> None:
    """The labels stay inverted from step WARM_STEPS on: the alarm's next batch confirms it,
    and A shrinks then (to the window since the change point), not at the alarm."""
    changed = set(range(WARM_STEPS, WARM_STEPS + 40))
    trace = _run(_model(), _batches(WARM_STEPS + 40, changed))
    alarm = next(k for k, (changes, _, _) in enumerate(trace) if changes)
    assert WARM_STEPS <= alarm <= WARM_STEPS + 4
    held = [n for _, n, _ in trace]
    assert held[alarm] == held[alarm - 1] + M  # the alarm itself shrinks nothing
    assert held[alarm + 1] < 0.1 * held[alarm]  # its confirmation does
    assert not trace[alarm + 1][2]


def test_a_restart_between_the_alarm_and_its_confirmation_is_bit_identical() -> None:
    """The pending alarm is in the state document: a model resumed from the alarm's step
    confirms it as the original does, to the bit; a state written before the rule resumes
    with nothing pending."""
    changed = set(range(WARM_STEPS, WARM_STEPS + 40))
    batches = _batches(WARM_STEPS + 40, changed)
    original, done = _model(), 0
    while original.optim.pending_alarm is None:
        original.learn_batch(*batches[done])
        done += 1
    state = original.get_state()
    assert state["pending_alarm"] is not None
    document = {
        "model": state,
        "positions": {},
        "offsets": {},
        "totals": vars(Totals()),
        "source": {},
        "batch_size": M,
    }
    resumed = OnlineLogisticRegression.from_state(loads(dumps(document))["model"])
    assert resumed.optim.pending_alarm == original.optim.pending_alarm
    for rows, labels in batches[done:]:
        original.learn_batch(rows, labels)
        resumed.learn_batch(rows, labels)
    np.testing.assert_array_equal(resumed.parameters, original.parameters)
    assert resumed.optim.accumulated_samples == original.optim.accumulated_samples
    del state["pending_alarm"]
    assert OnlineLogisticRegression.from_state(state).optim.pending_alarm is None


def test_a_malformed_pending_alarm_is_refused() -> None:
    state = _model().get_state()
    for bad in ([1.0], 3.0, ["a", 1.0]):
        state["pending_alarm"] = bad
        with pytest.raises(ValueError):
            OnlineLogisticRegression.from_state(state)
