"""Seeded benchmark data: a dense d = 100 stream and a hashed sparse stream (2^18 buckets).

Both are deterministic functions of (n, seed), so every system in a run — and every run on
every machine — learns from exactly the same samples.

Dense stream
    ``streamsgd.datasets.synthetic_stream.SyntheticStream(100, seed)``: x ~ N(0, I₁₀₀), y ~
    Bernoulli(σ(w*ᵀx + b*)) with ‖w*‖ = 2, b* = 0.25, no label noise, no drift.

Sparse stream ("CTR-like", with learnable structure)
    20 categorical fields. Field j has a vocabulary of V_j categories, V_j log-spaced from 4 to
    20,000 (≈ 76 k distinct features in all); each sample draws one category per field from a
    Zipf law p(v) ∝ (v + 1)^(−1.1), so a few categories are frequent and most are rare —
    the regime where per-coordinate adaptive step sizes pay off. The feature "f{j}={v}" is
    hashed with ``streamsgd.core.hashing.feature_index`` (MurmurHash3) into 2^18 buckets, value 1.
    Every sample thus has 20 active features (19 in the ≈ 0.1 % of rows where two of its
    features share a bucket: they are merged into one bucket of value 2, as the hashing trick
    does). Each category has a true weight w*_{j,v} ~ N(0, 0.45²) and
    y ~ Bernoulli(σ(Σ_j w*_{j,v_j} − 0.5)). Hash collisions across fields are part of the
    stream (≈ 76 k names in 262 k buckets), as in production.

For each stream the Bayes loss — the mean log loss of the true probabilities on the same
samples — is returned too: no learner can beat it in expectation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from streamsgd.core.hashing import feature_index
from streamsgd.core.losses import log_loss
from streamsgd.core.sparse import SparseRows
from streamsgd.datasets.synthetic_stream import SyntheticStream

FloatArray = NDArray[np.float64]

DENSE_FEATURES = 100
SPARSE_BITS = 18
SPARSE_FIELDS = 20
SPARSE_VOCAB_MIN, SPARSE_VOCAB_MAX = 4, 20_000
SPARSE_ZIPF = 1.1
SPARSE_WEIGHT_STD = 0.45
SPARSE_INTERCEPT = -0.5

CACHE_DIR = Path(os.environ.get("STREAMSGD_BENCH_CACHE", "/tmp/streamsgd-bench-cache"))


@dataclass(frozen=True)
class DenseData:
    X: FloatArray  # (n, 100), C-contiguous
    y: FloatArray  # (n,)
    bayes_loss: float
    seed: int

    @property
    def n(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class SparseData:
    X: SparseRows  # n rows, 2^18 columns
    y: FloatArray
    bayes_loss: float
    seed: int

    @property
    def n(self) -> int:
        return len(self.y)


def dense_stream(n: int, seed: int = 0) -> DenseData:
    """The first n samples of the dense d = 100 stream."""
    stream = SyntheticStream(DENSE_FEATURES, seed=seed)
    X, y = stream.samples(0, n)
    z_true = X @ stream.true_weights(0) + stream.intercept
    return DenseData(np.ascontiguousarray(X), y, float(log_loss(z_true, y).mean()), seed)


def _sparse_tables(seed: int) -> tuple[list[NDArray[np.int64]], list[FloatArray], list[FloatArray]]:
    rng = np.random.default_rng([seed, 0x5BA55E])
    vocab = np.geomspace(SPARSE_VOCAB_MIN, SPARSE_VOCAB_MAX, SPARSE_FIELDS).astype(np.int64)
    buckets, weights, probs = [], [], []
    for j, size in enumerate(vocab):
        buckets.append(
            np.array([feature_index(f"f{j}={v}", SPARSE_BITS) for v in range(size)], np.int64)
        )
        weights.append(rng.normal(0.0, SPARSE_WEIGHT_STD, size))
        p = (np.arange(size) + 1.0) ** -SPARSE_ZIPF
        probs.append(np.cumsum(p / p.sum()))
    return buckets, weights, probs


def _sparse_draws(n: int, seed: int) -> tuple[NDArray[np.int64], FloatArray, FloatArray]:
    """Category of every field of the first n samples, shape (n, fields); labels; true z."""
    _, weights, cdfs = _sparse_tables(seed)
    rng = np.random.default_rng([seed, 1])
    cats = np.empty((n, SPARSE_FIELDS), np.int64)
    z_true = np.full(n, SPARSE_INTERCEPT)
    for j in range(SPARSE_FIELDS):
        cat = np.searchsorted(cdfs[j], rng.random(n), side="right")
        cats[:, j] = np.minimum(cat, len(cdfs[j]) - 1)
        z_true += weights[j][cats[:, j]]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z_true))).astype(np.float64)
    return cats, y, z_true


def sparse_named_records(n: int, seed: int = 0) -> list[dict[str, object]]:
    """The same samples as :func:`sparse_stream`, as the JSON records a producer would send:
    ``{"features": {"f0": "17", ...}, "y": 1}`` (the decoder hashes "f0=17" into the same
    bucket as the stream)."""
    cats, y, _ = _sparse_draws(n, seed)
    return [
        {"features": {f"f{j}": str(v) for j, v in enumerate(row)}, "y": int(label)}
        for row, label in zip(cats.tolist(), y.tolist(), strict=True)
    ]


def sparse_stream(n: int, seed: int = 0) -> SparseData:
    """The first n samples of the hashed sparse stream (module docstring)."""
    buckets, _, _ = _sparse_tables(seed)
    cats, y, z_true = _sparse_draws(n, seed)
    idx = np.empty((n, SPARSE_FIELDS), np.int64)
    for j in range(SPARSE_FIELDS):
        idx[:, j] = buckets[j][cats[:, j]]
    # Sort each row; merge the rare within-row hash collisions into one bucket of value 2.
    idx.sort(axis=1)
    keep = np.ones_like(idx, dtype=bool)
    keep[:, 1:] = idx[:, 1:] != idx[:, :-1]
    values = np.ones_like(idx, dtype=np.float64)
    if not keep.all():
        # Add the value of each dropped duplicate to the kept entry before it.
        rows, cols = np.nonzero(~keep)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            k = c - 1
            while not keep[r, k]:
                k -= 1
            values[r, k] += 1.0
    counts = keep.sum(axis=1)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    X = SparseRows(indptr, idx[keep], values[keep], 1 << SPARSE_BITS)
    return SparseData(X, y, float(log_loss(z_true, y).mean()), seed)


# ---------------------------------------------------------------------- VW text files
def _vw_labels(y: FloatArray) -> list[str]:
    return ["1" if v == 1.0 else "-1" for v in y.tolist()]


def vw_dense_lines(X: FloatArray, y: FloatArray) -> list[str]:
    """VW text lines ``"±1 |f 0:x0 1:x1 …"``. Integer feature names are not hashed by VW
    (index = name + namespace hash, masked to 2^b), so VW sees the same features.
    Values are written with 7 significant digits (VW stores features as float32)."""
    template = "%s |f " + " ".join(f"{j}:%.7g" for j in range(X.shape[1]))
    return [template % (lab, *row) for lab, row in zip(_vw_labels(y), X.tolist(), strict=True)]


def vw_sparse_lines(X: SparseRows, y: FloatArray) -> list[str]:
    """VW text lines ``"±1 |f 1234 98765:2 …"`` with our bucket numbers as feature names."""
    out = []
    indptr, indices, values = X.indptr.tolist(), X.indices.tolist(), X.values.tolist()
    for i, lab in enumerate(_vw_labels(y)):
        feats = " ".join(
            str(c) if v == 1.0 else f"{c}:{v:g}"
            for c, v in zip(
                indices[indptr[i] : indptr[i + 1]], values[indptr[i] : indptr[i + 1]], strict=True
            )
        )
        out.append(f"{lab} |f {feats}")
    return out


def vw_file(kind: str, n: int, seed: int, lines_fn) -> Path:  # type: ignore[no-untyped-def]
    """Path of the cached VW text file for (kind, n, seed); written on first use."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"{kind}-n{n}-seed{seed}.vw"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            for chunk in lines_fn():
                fh.write("\n".join(chunk))
                fh.write("\n")
        tmp.rename(path)
    return path
