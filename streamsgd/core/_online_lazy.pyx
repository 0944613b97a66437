# cython: language_level=3
"""The deferred work of the O(nnz) m = 1 loop (:mod:`._online_sparse`), with the work of
the coordinates a row does not touch deferred (the ideas of scikit-learn's ``WeightVector``
and of Tsuruoka, Tsujii and Ananiadou 2009; the code is this project's own):

* **Lazy L2.** w = σ v: the shrink w ← (1 − ηλ₂) w of every coordinate is σ ← (1 − ηλ₂) σ,
  and a touched coordinate is stored as v_j = w_j / σ. σ is folded back into v (O(d),
  :func:`canonical`) when it falls below 1e-100 and every 65,536 samples — points that
  depend on the stream only, never on how it is cut into calls: between calls the state
  stays deferred (the model carries it, :mod:`.deferred`), and is folded only where θ is
  read densely or changed by another kind of step.
* **Cumulative L1.** The prox of the untouched coordinates composes:
  prox_a(prox_b(v)) = prox_{a+b}(v). With SGD the threshold of step t in v units is
  η_t λ₁ / σ_{t+1}; with AdaGrad (no L2 then) it is η_t λ₁ / (√G_j + ε) with G_j constant
  while j is untouched. U sums η_t λ₁ / σ_{t+1} (SGD) or η_t (AdaGrad) over the applied
  steps; a coordinate remembers U at its last update and takes the missed threshold when
  it is touched again (or at the end).
* **Statistics.** M = μ m (the EWMA of g_t decays every coordinate: μ ← (1 − α) μ), with
  ‖m‖², P = Σ_j m_j v_j and V = ‖v‖² kept as running sums, so ‖M‖² = μ² ‖m‖² and
  ‖M + ρ‖² = ‖M‖² + 2 λ₂ μ σ P + λ₂² σ² V; the sums are recomputed exactly every 65,536
  steps and at every renormalisation, so round-off cannot accumulate. (L1 with L2 and these
  statistics would need ‖w‖² after the deferred prox: that case runs the scattered loop.)
"""

from ._online_math cimport soft_threshold


cdef double _dot(const double* a, const double* b, Py_ssize_t n) noexcept nogil:
    """Σ a_j b_j in four interleaved partial sums (one fixed order: the sums of a canonical
    state must be the same bits wherever they are computed), so that the O(d) passes of
    a call are not bound by the latency of one chain of additions."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t j, quad = n - n % 4
    for j in range(0, quad, 4):
        s0 += a[j] * b[j]
        s1 += a[j + 1] * b[j + 1]
        s2 += a[j + 2] * b[j + 2]
        s3 += a[j + 3] * b[j + 3]
    for j in range(quad, n):
        s0 += a[j] * b[j]
    return (s0 + s1) + (s2 + s3)


cdef void resync(Lazy* k) noexcept nogil:
    """‖m‖², P and V recomputed exactly from the arrays (O(d))."""
    k.mean_norm = k.cross = k.weight_norm = 0.0
    if k.track_mean and k.st.has_mean:
        k.mean_norm = _dot(k.mvec, k.mvec, k.d + 1)
    if k.track_weights:
        k.cross = _dot(k.mvec, k.v, k.d)
        k.weight_norm = _dot(k.v, k.v, k.d)
    k.since_resync = 0.0


cdef void canonical(Lazy* k, bint resync_sums) noexcept nogil:
    """The state a new call would start from — σ = 1, U = 0, μ = 1 and (``resync_sums``) the
    running sums exact — so that runs cut at these points give the same bits however calls
    group them (O(d), in tight loops). Also the rare fold-back when σ or μ falls below
    1e-100."""
    cdef Py_ssize_t j
    cdef double sigma = k.sigma, mu = k.mu
    if k.last != NULL:
        for j in range(k.d):
            if k.v[j] != 0.0:  # (the prox keeps a zero: no threshold to compute)
                k.v[j] = soft_threshold(k.v[j], pending(k, j)) * sigma
            k.last[j] = 0.0
    elif sigma != 1.0:
        for j in range(k.d):
            k.v[j] = k.v[j] * sigma
    if k.track_mean and k.st.has_mean and mu != 1.0:
        for j in range(k.d + 1):
            k.mvec[j] = k.mvec[j] * mu
    k.sigma = k.mu = 1.0
    k.total = 0.0
    k.since_fold = 0.0
    if resync_sums:
        resync(k)
