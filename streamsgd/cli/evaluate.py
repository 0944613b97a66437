"""``streamsgd evaluate``: progressive validation of a labelled stream.

Takes every flag of ``streamsgd train`` (the same generated parser; the model and the
minibatch size come from the same configuration through :func:`.build.build_model`), reads
``--source file`` (``--path -`` = stdin) or the synthetic stream (then ``--max-samples`` is
required: the stream is endless) and prints::

    n_samples  n_updates  n_rejected  accuracy  log_loss  roc_auc  batch_size  learning_rate

``--json`` prints them as one JSON object (a value that is not finite, e.g. the AUC of a
one-class stream, is ``null``). ``--predictions PATH`` writes each sample's pre-step
probability σ(z), one per line in stream order (``%.17g``, exact), for the samples that were
scored: a rejected record has no line. Nothing else is written: no checkpoint (``--checkpoint-dir``
is refused), no HTTP, no Kafka (a progressive evaluation reads a bounded stream once).
See :mod:`streamsgd.training.evaluation` for what is measured.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any, TextIO

from ..codec import decode_poll
from ..config import TrainConfig
from ..core.model import OnlineLogisticRegression
from ..datasets.synthetic_stream import demo_stream
from ..sources.file import FileSource
from ..sources.synthetic import SyntheticSource
from ..training.evaluation import ProgressiveResult, ProgressiveValidation
from ..training.ports import Source
from .build import build_decoder, build_model, check_model_size
from .errors import UsageError

POLL_TIMEOUT_SECONDS = 1.0

REPORT_KEYS = (
    "n_samples",
    "n_updates",
    "n_rejected",
    "accuracy",
    "log_loss",
    "roc_auc",
    "batch_size",
    "learning_rate",
)


def check_config(config: TrainConfig) -> None:
    """Refuse what evaluate cannot honour (one line, exit 2)."""
    kind = config.source_kind
    if kind == "kafka":
        raise UsageError("evaluate reads --source file or synthetic, not kafka")
    if kind == "synthetic" and config.source.max_samples is None:
        raise UsageError("evaluate on the synthetic stream needs --max-samples (it is endless)")
    if config.checkpoint.checkpoint_dir:
        raise UsageError("evaluate neither reads nor writes checkpoints: drop --checkpoint-dir")


def batch_size_source(
    config: TrainConfig, model: OnlineLogisticRegression
) -> int | Callable[[], int]:
    """m of the next step: with ``--batch-size auto`` the model's noise controller (which its
    own ``learn_batch`` updates after each step) says it, read once per step; otherwise the
    configured fixed batch size."""
    controller = model.controller
    if controller is not None:
        return lambda: int(controller.batch_size)
    batch_size = config.minibatch.batch_size
    assert isinstance(batch_size, int)  # "auto" always comes with a controller
    return batch_size


def _source(config: TrainConfig) -> Source:
    s = config.source
    if config.source_kind == "synthetic":
        return SyntheticSource(demo_stream(config.n_features, s.seed, s.label_noise, s.drift))
    assert s.path is not None  # TrainConfig checks it
    try:
        return FileSource(s.path, s.max_record_bytes)
    except OSError as exc:
        raise UsageError(f"cannot open {s.path}: {exc.strerror}") from None


def validation(config: TrainConfig) -> ProgressiveValidation:
    """The runner of ``config``: its model (:func:`.build.build_model`, as train builds it),
    its m for every step (:func:`batch_size_source`) and its sample limit.
    bench/ feeds it decoded runs directly, so it measures exactly what evaluate measures."""
    model = build_model(config)
    batch_size = batch_size_source(config, model)
    return ProgressiveValidation(model, batch_size, max_samples=config.source.max_samples)


def evaluate(config: TrainConfig) -> ProgressiveResult:
    """Progressive validation of the stream ``config`` names, with the model it configures."""
    check_config(config)
    runner = validation(config)
    decoder = build_decoder(config)
    source = _source(config)
    try:
        while not (source.exhausted or runner.done):
            runner.feed(decode_poll(decoder, source.poll(POLL_TIMEOUT_SECONDS)))
    finally:
        source.close()
    return runner.finish()


def report(result: ProgressiveResult) -> dict[str, Any]:
    """The printed values by name (non-finite floats as None)."""
    values: dict[str, Any] = {
        "n_samples": result.n_samples,
        "n_updates": result.n_updates,
        "n_rejected": result.n_rejected,
        "accuracy": result.accuracy,
        "log_loss": result.log_loss,
        "roc_auc": result.roc_auc,
        "batch_size": result.batch_size,
        "learning_rate": result.learning_rate,
    }
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()
    }


def _open_predictions(path: str | None, source_path: str | None) -> TextIO | None:
    """A temporary file beside ``path``, opened before the run so that a bad path fails at
    once; :func:`_publish_predictions` renames it to ``path`` at the end. The input file is
    refused as the target (writing it would destroy what is read)."""
    if path is None:
        return None
    if source_path not in (None, "-") and _same_file(path, source_path):
        raise UsageError(f"--predictions {path} is the input file: choose another path")
    directory, name = os.path.split(os.path.abspath(path))
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        os.close(fd)
        umask = os.umask(0)  # mkstemp makes 0600: give the file the mode open() would
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        return open(temp, "w", encoding="ascii")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (or is unreadable): not the same file
        return os.path.realpath(a) == os.path.realpath(b)


def _publish_predictions(out: TextIO, path: str, probabilities: list[float]) -> str | None:
    """Write, flush to disk and rename the temporary file to ``path``; the error's one line
    on failure (the temporary file removed, an existing ``path`` untouched)."""
    try:
        with out:
            # One pre-step probability per line, in stream order; %.17g reads back exactly.
            out.writelines(f"{p:.17g}\n" for p in probabilities)
            out.flush()
            os.fsync(out.fileno())
        os.replace(out.name, path)
    except OSError as exc:
        _discard(out)
        return f"cannot write {path}: {exc.strerror or exc}"
    return None


def _discard(out: TextIO) -> None:
    try:
        out.close()
        os.unlink(out.name)
    except OSError:
        pass  # already gone: nothing is left behind either way


def run(config: TrainConfig, as_json: bool, predictions: str | None) -> int:
    """``streamsgd evaluate``; returns the exit code."""
    check_config(config)
    check_model_size(config.n_features)
    out = _open_predictions(predictions, config.source.path)
    try:
        result = evaluate(config)
    except BaseException:
        if out is not None:
            _discard(out)  # a failed run leaves an existing predictions file as it was
        raise
    if out is not None and predictions is not None:
        error = _publish_predictions(out, predictions, result.probabilities.tolist())
        if error is not None:
            print(f"streamsgd: error: {error}", file=sys.stderr)
            return 1
    values = report(result)
    if as_json:
        sys.stdout.write(json.dumps(values, allow_nan=False) + "\n")
        return 0
    for key in REPORT_KEYS:
        value = values[key]
        text = "nan" if value is None else (f"{value:.6g}" if isinstance(value, float) else value)
        sys.stdout.write(f"{key:<14} {text}\n")
    return 0
