"""What a checkpoint must hold for the run loop to resume from it (checked at load and save)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.model import STATE_FORMAT, OnlineLogisticRegression
from .errors import CheckpointError


def field(where: str, key: str) -> str:
    """``where.key``, with odd keys quoted so that a message stays on one line."""
    plain = key.isidentifier() and key.isascii()
    return f"{where}.{key}" if plain else f"{where}[{key!r:.60}]"


def _fail(where: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{where}: {problem}")


def _mapping(value: Any, where: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"expected an object, got {type(value).__name__}")
    missing = [key for key in required if key not in value]
    if missing:
        raise _fail(where, f"missing {', '.join(missing)}")
    return value


def _count(value: Any, where: str, minimum: int = 0) -> int:
    # bool is an int in Python but never a count in a checkpoint.
    if type(value) is not int:
        raise _fail(where, f"expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise _fail(where, f"{value} is below {minimum}")
    return value


def _real(value: Any, where: str) -> float:
    """A float statistic; NaN (not yet defined) and ±inf are allowed."""
    if type(value) is float:
        return value
    if type(value) is not int:
        raise _fail(where, f"expected a number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise _fail(where, "integer out of float range") from None


def _vector(value: Any, where: str, length: int | None, finite: bool) -> np.ndarray:
    if not (isinstance(value, np.ndarray) and value.dtype == np.float64 and value.ndim == 1):
        raise _fail(where, "expected a float64 vector")
    if length is not None and value.shape != (length,):
        raise _fail(where, f"expected {length} values, got {value.shape[0]}")
    if finite and not np.isfinite(value).all():
        raise _fail(where, "holds non-finite values")
    return value


def _plain(value: Any, where: str, scalars_only: bool = False) -> None:
    """JSON values only (no arrays): they are compared, logged and printed as they are."""
    if value is None or type(value) in (bool, int, float, str):
        return
    if scalars_only:
        raise _fail(
            where, f"expected a number, string, boolean or null, got {type(value).__name__}"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _plain(item, field(where, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _plain(item, f"{where}[{i}]")
    else:
        raise _fail(where, f"expected a JSON value, got {type(value).__name__}")


def _validate_gradient_stats(stats: Any, where: str) -> None:
    real_keys = (
        "per_sample_variance",
        "estimator_variance",
        "mean_gradient_squared_norm",
        "true_gradient_squared_norm",
        "mean_squared_norm",
    )
    required = ("smoothing", *real_keys, "mean_gradient", "last_batch_size", "within_batch_seen")
    stats = _mapping(stats, where, required)
    smoothing = _real(stats["smoothing"], f"{where}.smoothing")
    if not 0.0 < smoothing <= 1.0:
        raise _fail(f"{where}.smoothing", f"{smoothing!r} is not in (0, 1]")
    for key in real_keys:
        _real(stats[key], f"{where}.{key}")
    if stats["mean_gradient"] is not None:
        # Its length follows the step that produced it (sparse steps: touched columns).
        _vector(stats["mean_gradient"], f"{where}.mean_gradient", None, finite=False)
    _count(stats["last_batch_size"], f"{where}.last_batch_size")
    if type(stats["within_batch_seen"]) is not bool:
        raise _fail(f"{where}.within_batch_seen", "expected true or false")


def _validate_model(model: Any) -> None:
    """What :meth:`OnlineLogisticRegression.from_state` and the service's restore() read."""
    required = ("format", "params", "theta", "squared_gradient_sum", "n_updates")
    model = _mapping(model, "model", (*required, "n_samples_seen", "gradient_stats"))
    _plain(model["format"], "model.format", scalars_only=True)  # an array would not compare
    if model["format"] != STATE_FORMAT:
        raise _fail("model.format", f"{model['format']!r:.60} is not {STATE_FORMAT!r}")
    params = _mapping(model["params"], "model.params", ("n_features",))
    for key, value in params.items():
        _plain(value, field("model.params", key), scalars_only=True)
    n_features = _count(params["n_features"], "model.params.n_features", minimum=1)
    _vector(model["theta"], "model.theta", n_features + 1, finite=True)
    accumulators = model["squared_gradient_sum"]
    if accumulators is not None:
        _vector(accumulators, "model.squared_gradient_sum", n_features + 1, finite=True)
        if (accumulators < 0.0).any():
            raise _fail("model.squared_gradient_sum", "holds negative values")
    _count(model["n_updates"], "model.n_updates")
    _count(model["n_samples_seen"], "model.n_samples_seen")
    _validate_gradient_stats(model["gradient_stats"], "model.gradient_stats")
    try:  # the model must rebuild from it (inspect and the service's restore() do)
        OnlineLogisticRegression.from_state(model)
    except KeyError as exc:
        raise _fail("model", f"misses {exc}") from None
    # Any other failure to rebuild (a mistyped controller or standardiser state, say) makes
    # the checkpoint unusable just the same; its message names the part.
    except (LookupError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise _fail("model", detail) from None


_COUNTER_TOTALS = (
    "samples_consumed",
    "progressive_misclassified",
    "records_rejected",
    "updates_skipped",
)


def _validate_positions(positions: Any, offsets: Any) -> None:
    positions = _mapping(positions, "positions")
    for partition, position in positions.items():
        where = field("positions", partition)
        if not (isinstance(position, list) and len(position) == 2):
            raise _fail(where, "expected [offset, skip_samples]")
        _count(position[0], f"{where}[0]")
        _count(position[1], f"{where}[1]")
    offsets = _mapping(offsets, "offsets")
    for partition, offset in offsets.items():
        _count(offset, field("offsets", partition))
    # The service writes offsets as the positions' offsets: anything else is not its file.
    if offsets != {p: pos[0] for p, pos in positions.items()}:
        raise _fail("offsets", "do not match the offsets of positions")


def validate_state(state: Any) -> None:
    """Raise CheckpointError (one line naming the field) unless ``state`` is a checkpoint
    the run loop can resume from and ``streamsgd inspect`` can print.

    Checked: the keys and types of everything restore() and the model read; weights θ of
    shape (n_features + 1,) and finite; AdaGrad accumulators finite and ≥ 0; counters
    non-negative integers; positions ``[offset, skip_samples]`` of non-negative integers
    and offsets equal to their first elements. Unknown extra keys are allowed (a newer
    writer may add state; what this version reads is still checked). Running statistics
    may be NaN (not yet defined) or infinite.
    """
    required = ("model", "positions", "offsets", "totals", "source", "batch_size")
    state = _mapping(state, "state", required)
    _validate_model(state["model"])
    _validate_positions(state["positions"], state["offsets"])
    totals = _mapping(state["totals"], "totals", (*_COUNTER_TOTALS, "progressive_loss_sum"))
    for key, value in totals.items():
        if key in _COUNTER_TOTALS:
            _count(value, field("totals", key))
        elif _real(value, field("totals", key)) < 0.0:
            raise _fail(field("totals", key), "is negative")
    _plain(_mapping(state["source"], "source"), "source")
    _count(state["batch_size"], "batch_size", minimum=1)
