"""The systems under test: streamsgd configurations, the peers, and the reference loops.

Every runner takes the data and returns a :class:`Measurement`: the wall-clock seconds of
each timed repetition and the progressive (test-then-train) mean log loss of the stream.

What is timed
-------------
* streamsgd and the plain numpy loops: the learning loop, which scores every batch with the
  pre-step weights as part of the step (the progressive loss comes for free).
* Peers (River, scikit-learn, Vowpal Wabbit bindings): **only the learning calls**
  (``learn_one``/``learn_many``/``partial_fit``/``learn``). Scoring before learning, needed for
  their progressive loss, is done in one separate, untimed pass. Converting the numpy data to
  the peer's input type (dicts for River ``learn_one``, pandas DataFrames for ``learn_many``,
  VW text lines for the bindings) happens outside the timed region, chunk by chunk. Both
  choices favour the peers.
* Vowpal Wabbit reading a text file: the whole run of VW's own C++ driver on the file
  (``Workspace(arg_list=["--data", file, …])``, parse + learn, its parser in its own thread),
  which is what the ``vw`` command does; its "average loss" is VW's progressive loss.

Clocks
------
Every timed region is measured on two clocks: wall clock and this process's CPU time. The
machine these benchmarks run on is shared, so by default samples/s are per CPU-second
(scheduling delays caused by other processes do not count); the wall-clock figure is kept next
to it. BLAS is limited to one thread (bench.run), so for everything but the VW file driver
(whose parser thread also counts) CPU time is the time of the one learning thread.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamsgd import OnlineLogisticRegression
from streamsgd.core.losses import log_loss
from streamsgd.core.sequential import learn_sequence
from streamsgd.core.sparse import SparseRows

FloatArray = NDArray[np.float64]
CHUNK = 16_384  # samples converted to a peer's input type at a time (outside the timer)


Times = tuple[float, float]  # (wall-clock seconds, CPU seconds of this process)
ZERO: Times = (0.0, 0.0)
# Which clock the samples/s figures use: 1 = process CPU time (robust on a shared, loaded
# machine), 0 = wall clock. bench.run sets it from --clock.
CLOCK = {"index": 1}


def _now() -> Times:
    return (time.perf_counter(), time.process_time())


def _diff(later: Times, earlier: Times) -> Times:
    return (later[0] - earlier[0], later[1] - earlier[1])


def _since(start: Times) -> Times:
    return _diff(_now(), start)


def _add(a: Times, b: Times) -> Times:
    return (a[0] + b[0], a[1] + b[1])


@dataclass
class Measurement:
    seconds: list[Times]
    loss: float
    n: int
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def _median(self, index: int) -> float:
        return float(np.median([t[index] for t in self.seconds]))

    @property
    def median_seconds(self) -> float:
        return self._median(CLOCK["index"])

    @property
    def samples_per_s(self) -> float:
        """n / median seconds, on the selected clock."""
        return self.n / self.median_seconds

    @property
    def wall_samples_per_s(self) -> float:
        return self.n / self._median(0)

    @property
    def cpu_samples_per_s(self) -> float:
        return self.n / self._median(1)

    @property
    def spread(self) -> tuple[float, float]:
        values = [t[CLOCK["index"]] for t in self.seconds]
        return self.n / max(values), self.n / min(values)


def _chunks(n: int, size: int = CHUNK) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, size):
        yield lo, min(lo + size, n)


def _rows(X: FloatArray | SparseRows, lo: int, hi: int) -> FloatArray | SparseRows:
    return X.slice_rows(lo, hi) if isinstance(X, SparseRows) else X[lo:hi]


# ---------------------------------------------------------------------- streamsgd
def streamsgd_batches(
    X: FloatArray | SparseRows, y: FloatArray, m: int, repeats: int, **params: Any
) -> Measurement:
    """``OnlineLogisticRegression.learn_batch`` on consecutive minibatches of m samples
    (statistics on, as in the service)."""
    n = len(y)
    d = X.shape[1]
    batches = [(_rows(X, lo, min(lo + m, n)), y[lo : lo + m]) for lo in range(0, n, m)]
    times, loss = [], math.nan
    for _ in range(repeats):
        model = OnlineLogisticRegression(d, **params)
        loss_sum = 0.0
        t0 = _now()
        for Xb, yb in batches:
            stats = model.learn_batch(Xb, yb)
            loss_sum += stats.loss * stats.n_samples
        times.append(_since(t0))
        loss = loss_sum / n
    return Measurement(times, loss, n)


def streamsgd_sequence(
    X: FloatArray, y: FloatArray, repeats: int, chunk: int = 1024, **params: Any
) -> Measurement:
    """Pure online (m = 1) with ``streamsgd.core.sequential.learn_sequence``, fed ``chunk``
    samples per call (as a service would after each poll)."""
    n = len(y)
    times, loss = [], math.nan
    for _ in range(repeats):
        model = OnlineLogisticRegression(X.shape[1], **params)
        loss_sum = 0.0
        t0 = _now()
        for lo in range(0, n, chunk):
            loss_sum += learn_sequence(model, X[lo : lo + chunk], y[lo : lo + chunk]).loss_sum
        times.append(_since(t0))
        loss = loss_sum / n
    return Measurement(times, loss, n, note=f"{chunk} samples per call")


# ---------------------------------------------------------------------- numpy references
def numpy_loop(
    X: FloatArray, y: FloatArray, m: int, repeats: int, statistics: bool, eta: float = 0.1
) -> Measurement:
    """The loop a user writes by hand: z = Xw + b, r = σ(z) − y, (w, b) −= η (rᵀX, Σr)/m,
    plus the progressive loss; with ``statistics`` also tr Σ̂ = (Σ‖g_i‖² − m‖ḡ‖²)/(m − 1)
    from the row norms."""
    n = len(y)
    batches = [(X[lo : lo + m], y[lo : lo + m]) for lo in range(0, n, m)]
    times, loss = [], math.nan
    traces = 0.0
    for _ in range(repeats):
        w = np.zeros(X.shape[1])
        b = 0.0
        loss_sum = 0.0
        t0 = _now()
        for Xb, yb in batches:
            z = Xb @ w + b
            e = np.exp(-np.abs(z))
            loss_sum += float((np.log1p(e) + np.maximum(z, 0.0) - yb * z).sum())
            r = np.where(z >= 0.0, 1.0, e) / (1.0 + e) - yb
            k = len(yb)
            gw = (r @ Xb) / k
            gb = float(r.sum()) / k
            if statistics and k > 1:
                r2 = r * r
                sq = float(r2 @ np.einsum("ij,ij->i", Xb, Xb) + r2.sum())
                traces += (sq - k * (float(gw @ gw) + gb * gb)) / (k - 1)
            w = w - eta * gw
            b -= eta * gb
        times.append(_since(t0))
        loss = loss_sum / n
    return Measurement(times, loss, n)


def read_pass(X: FloatArray, m: int, repeats: int) -> Measurement:
    """Memory-bandwidth reference: one streaming read of every batch (``Xb.sum()``)."""
    n = X.shape[0]
    batches = [X[lo : lo + m] for lo in range(0, n, m)]
    times = []
    for _ in range(repeats):
        acc = 0.0
        t0 = _now()
        for Xb in batches:
            acc += Xb.sum()
        times.append(_since(t0))
    result = Measurement(times, math.nan, n)
    gbps = X.nbytes / result.median_seconds / 1e9
    result.note = f"{gbps:.1f} GB/s"
    result.extra["GB/s"] = gbps
    return result


# ---------------------------------------------------------------------- River
def _river_dicts(X: FloatArray | SparseRows, lo: int, hi: int) -> list[dict[int, float]]:
    if isinstance(X, SparseRows):
        part = X.slice_rows(lo, hi)
        ind, val, ptr = part.indices.tolist(), part.values.tolist(), part.indptr.tolist()
        return [
            dict(zip(ind[ptr[i] : ptr[i + 1]], val[ptr[i] : ptr[i + 1]], strict=True))
            for i in range(hi - lo)
        ]
    keys = range(X.shape[1])
    return [dict(zip(keys, row, strict=True)) for row in X[lo:hi].tolist()]


def river_learn_one(X: FloatArray | SparseRows, y: FloatArray, repeats: int) -> Measurement:
    from river import linear_model

    n = len(y)
    labels = (y == 1.0).tolist()
    times = []
    for _ in range(repeats):
        model = linear_model.LogisticRegression()
        elapsed = ZERO
        for lo, hi in _chunks(n):
            rows = _river_dicts(X, lo, hi)
            lab = labels[lo:hi]
            t0 = _now()
            for x, t in zip(rows, lab, strict=True):
                model.learn_one(x, t)
            elapsed = _add(elapsed, _since(t0))
        times.append(elapsed)
    # Progressive loss: predict_proba_one then learn_one (untimed).
    model = linear_model.LogisticRegression()
    loss_sum = 0.0
    for lo, hi in _chunks(n):
        for x, t in zip(_river_dicts(X, lo, hi), labels[lo:hi], strict=True):
            p = model.predict_proba_one(x).get(True, 0.5)
            p = min(max(p, 1e-15), 1.0 - 1e-15)
            loss_sum -= math.log(p if t else 1.0 - p)
            model.learn_one(x, t)
    return Measurement(times, loss_sum / n, n, note="SGD(0.01) default")


def river_learn_many(X: FloatArray, y: FloatArray, m: int, repeats: int) -> Measurement:
    import pandas as pd
    from river import linear_model

    n = len(y)
    labels = y == 1.0
    columns = list(range(X.shape[1]))

    def frames(lo: int, hi: int) -> list[tuple[Any, Any]]:
        return [
            (pd.DataFrame(X[i : i + m], columns=columns), pd.Series(labels[i : i + m]))
            for i in range(lo, hi, m)
        ]

    chunk = (CHUNK // m) * m
    times, times_with_build = [], []
    for _ in range(repeats):
        model = linear_model.LogisticRegression()
        elapsed = build = ZERO
        for lo, hi in _chunks(n, chunk):
            t0 = _now()
            batch = frames(lo, hi)
            t1 = _now()
            for df, ys in batch:
                model.learn_many(df, ys)
            elapsed = _add(elapsed, _since(t1))
            build = _add(build, _diff(t1, t0))
        times.append(elapsed)
        times_with_build.append(_add(elapsed, build))
    model = linear_model.LogisticRegression()
    loss_sum = 0.0
    for lo, hi in _chunks(n, chunk):
        for df, ys in frames(lo, hi):
            if model._weights:
                p = model.predict_proba_many(df)[True].to_numpy()
            else:
                p = np.full(len(ys), 0.5)
            p = np.clip(p, 1e-15, 1 - 1e-15)
            t = ys.to_numpy()
            loss_sum -= float(np.log(np.where(t, p, 1.0 - p)).sum())
            model.learn_many(df, ys)
    loss = loss_sum / n
    with_build = Measurement(
        times_with_build, loss, n, note="pd.DataFrame(Xb) + pd.Series(yb) timed"
    )
    return Measurement(
        times,
        loss,
        n,
        note="DataFrame built outside the timer",
        extra={"with_construction": with_build},
    )


# ---------------------------------------------------------------------- scikit-learn
def _to_sklearn(X: FloatArray | SparseRows, lo: int, hi: int) -> Any:
    if isinstance(X, SparseRows):
        from scipy.sparse import csr_matrix

        part = X.slice_rows(lo, hi)
        return csr_matrix((part.values, part.indices, part.indptr), shape=part.shape)
    return X[lo:hi]


def sklearn_partial_fit(
    X: FloatArray | SparseRows, y: FloatArray, m: int, repeats: int
) -> Measurement:
    from sklearn.linear_model import SGDClassifier

    n = len(y)
    batches = [(_to_sklearn(X, lo, min(lo + m, n)), y[lo : lo + m]) for lo in range(0, n, m)]
    classes = np.array([0.0, 1.0])
    times = []
    for _ in range(repeats):
        model = SGDClassifier(loss="log_loss")
        t0 = _now()
        for Xb, yb in batches:
            model.partial_fit(Xb, yb, classes=classes)
        times.append(_since(t0))
    model = SGDClassifier(loss="log_loss")
    loss_sum = 0.0
    for i, (Xb, yb) in enumerate(batches):
        z = model.decision_function(Xb) if i else np.zeros(len(yb))
        loss_sum += float(log_loss(np.asarray(z, dtype=np.float64), yb).sum())
        model.partial_fit(Xb, yb, classes=classes)
    return Measurement(times, loss_sum / n, n, note="updates per sample inside partial_fit")


# ---------------------------------------------------------------------- Vowpal Wabbit
VW_ARGS = ["--loss_function", "logistic"]


def vw_file(path: Path, n: int, repeats: int, extra_args: list[str] | None = None) -> Measurement:
    """VW's own driver on a text file (no ``vw`` binary ships with the PyPI package; the
    bindings run the same C++ driver and parser thread when given ``--data``)."""
    import vowpalwabbit

    times, loss = [], math.nan
    for _ in range(repeats):
        t0 = _now()
        vw = vowpalwabbit.Workspace(
            arg_list=["--data", str(path), *VW_ARGS, *(extra_args or [])], enable_logging=True
        )
        vw.finish()
        times.append(_since(t0))
        log = "\n".join(vw.get_log())
        loss = float(re.search(r"average loss = ([0-9.eE+-]+)", log).group(1))  # type: ignore[union-attr]
        count = int(re.search(r"number of examples = (\d+)", log).group(1))  # type: ignore[union-attr]
        if count != n:
            raise RuntimeError(f"VW read {count} examples from {path}, expected {n}")
    return Measurement(times, loss, n, note="VW driver reading text, -b 18, defaults")


def vw_bindings(lines_fn: Callable[[int, int], list[str]], n: int, repeats: int) -> Measurement:
    """``Workspace.learn(line)`` one example at a time from Python."""
    import vowpalwabbit

    times = []
    for _ in range(repeats):
        vw = vowpalwabbit.Workspace(arg_list=[*VW_ARGS, "--quiet"])
        elapsed = ZERO
        for lo, hi in _chunks(n):
            lines = lines_fn(lo, hi)
            t0 = _now()
            for line in lines:
                vw.learn(line)
            elapsed = _add(elapsed, _since(t0))
        times.append(elapsed)
        vw.finish()
    vw = vowpalwabbit.Workspace(arg_list=[*VW_ARGS, "--quiet"])
    loss_sum = 0.0
    for lo, hi in _chunks(n):
        for line in lines_fn(lo, hi):
            ex = vw.parse(line)
            vw.learn(ex)
            p = ex.get_simplelabel_prediction()
            label = 1.0 if line[0] == "1" else -1.0
            loss_sum += math.log1p(math.exp(-label * p)) if label * p > -30 else -label * p
            vw.finish_example(ex)
    vw.finish()
    return Measurement(times, loss_sum / n, n, note="text lines built outside the timer")
