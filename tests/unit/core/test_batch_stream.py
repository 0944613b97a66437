"""Over ≥ 2,000 ``learn_batch`` steps of a random stream, a model on the compiled kernels
takes the steps of the same model on the numpy oracle (tests/support/batch_oracle.py),
for every option combination: compared after every step (rtol 1e-9)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsgd import OnlineLogisticRegression, SparseRows
from streamsgd.core import model as model_module
from streamsgd.core import optimizer as optimizer_module
from streamsgd.core.controller import NoiseController
from streamsgd.core.row_scale import GRADIENT_RATIO
from streamsgd.core.step import SPARSE_STEP_MAX_DENSITY, StepProposal
from tests.support import batch_oracle as oracle

RTOL = 1e-9
N_STEPS = 2_000


def oracle_batch_sums(theta, X, y, sample_weight, *, column_workspace, inputs=None, **kw):  # type: ignore[no-untyped-def]
    """The oracle behind the model's call of :func:`.step.batch_sums`."""
    kw.pop("row_workspace", None)
    frame = None if inputs is None else inputs.learning_frame(X)
    columns = (
        column_workspace is not None
        and isinstance(X, SparseRows)
        and X.n_samples >= 2
        and SPARSE_STEP_MAX_DENSITY * X.n_features > len(X.indices)
    )
    ratio = GRADIENT_RATIO if inputs is None or inputs.settled else 1.0
    return oracle.batch_sums(
        theta, X, y, sample_weight, columns=columns, frame=frame, gradient_ratio=ratio, **kw
    )


def oracle_propose_step(theta, sums, eta, **kw):  # type: ignore[no-untyped-def]
    proposal = oracle.propose_step(theta, sums, eta, **kw)
    finite = bool(np.isfinite(proposal.values).all())
    return StepProposal(proposal.active, proposal.values, proposal.accumulated, finite)


def _model(options: dict[str, Any], d: int) -> OnlineLogisticRegression:
    params = dict(options["params"])
    if options["controller"]:
        m = options["m"]
        params["controller"] = NoiseController(
            adaptive_batch_size=False, batch_size=m, base_batch_size=m, min_batch_size=2
        )
    return OnlineLogisticRegression(d, **params)


def _stream(options: dict[str, Any]):  # type: ignore[no-untyped-def]
    """(X, y, weights) batches of a drifting random stream, dense or sparse."""
    rng = np.random.default_rng(options["seed"])
    d = 12 if not options["sparse"] else 4_000
    w_true = rng.normal(0.0, 1.0, d) / math.sqrt(d)
    for step in range(N_STEPS):
        m = options["m"] if step % 97 else 1  # an occasional m = 1 step
        if options["sparse"]:
            rows = [(rng.integers(0, d, 6), rng.normal(0.0, 1.0, 6)) for _ in range(m)]
            X: Any = SparseRows.from_rows(rows, d)
            z = X.matvec(w_true)
        else:
            X = rng.normal(0.0, 1.0, (m, d)) * np.linspace(0.5, 3.0, d) + 1.0
            if step % 211 == 5:
                X[0] *= 1e3  # an outlier the clip bounds
            z = X @ w_true
        y = (rng.random(m) < 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(float)
        weights = rng.uniform(0.2, 2.0, m) if options["weights"] else None
        yield X, y, weights


PARAMS = st.sampled_from(
    [
        {},
        {"l2": 1e-3},
        {"l1": 1e-3, "l2": 1e-3},
        {"optimizer": "adagrad", "learning_rate": 0.05},
        {"optimizer": "adagrad", "l1": 1e-4, "reduction": "sum", "learning_rate": 0.05},
        {"reduction": "sum", "learning_rate": 0.005, "clip_norm_ratio": 0.0},
        {"learning_rate_schedule": "inverse_scaling", "decay": 0.01, "clip_norm_ratio": 1.0},
        {"gradient_statistics": False},
        {"standardize": True, "optimizer": "adagrad", "learning_rate": 0.05},
        {"standardize": True, "l2": 1e-2, "clip_norm_ratio": 2.0},
    ]
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {
            "seed": st.integers(0, 2**32 - 1),
            "m": st.sampled_from([2, 8, 32]),
            "params": PARAMS,
            "sparse": st.booleans(),
            "weights": st.booleans(),
            "controller": st.booleans(),
        }
    )
)
def test_a_stream_of_steps_equals_the_oracle(options: dict[str, Any]) -> None:
    params = options["params"]
    if options["sparse"] and params.get("standardize"):
        options = {**options, "sparse": False}
    if options["controller"] and (
        params.get("reduction") == "sum" or params.get("gradient_statistics") is False
    ):
        options = {**options, "controller": False}
    d = 4_000 if options["sparse"] else 12
    fast, slow = _model(options, d), _model(options, d)
    patch = pytest.MonkeyPatch()
    for X, y, weights in _stream(options):
        a = fast.learn_batch(X, y, weights)
        with patch.context() as p:
            p.setattr(model_module, "batch_sums", oracle_batch_sums)
            p.setattr(optimizer_module, "propose_step", oracle_propose_step)
            b = slow.learn_batch(X, y, weights)
        assert a.skipped == b.skipped and a.n_misclassified == b.n_misclassified
        assert math.isclose(a.loss, b.loss, rel_tol=RTOL, abs_tol=RTOL)
        scale = max(float(np.max(np.abs(slow._theta))), 1.0)
        np.testing.assert_allclose(fast._theta, slow._theta, rtol=RTOL, atol=RTOL * scale)
        assert math.isclose(fast.row_scale, slow.row_scale, rel_tol=RTOL)
    assert fast.n_updates == slow.n_updates
    if fast.inputs.enabled:
        np.testing.assert_allclose(fast.inputs.mean, slow.inputs.mean, rtol=RTOL, atol=RTOL)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "params",
    [{}, {"l2": 0.1}, {"clip_norm_ratio": 0.0}, {"optimizer": "adagrad"}, {"standardize": True}],
)
def test_extreme_rows_neither_raise_nor_warn(params: dict[str, Any]) -> None:
    """The compiled path runs without an errstate context: overflow must stay quiet."""
    X = np.array([[1e300, 1e300, -1e300], [np.inf, 0.0, 0.0], [np.nan, 1.0, 1.0], [1.0, 2.0, 3.0]])
    model = OnlineLogisticRegression(3, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for rows in (X[:2], X[1:3], X[2:4], X, X[3:]):
            model.learn_batch(rows, np.ones(len(rows)))
    assert np.isfinite(model.parameters).all()
