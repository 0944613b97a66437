# The lazy state of the O(nnz) m = 1 loop (_online_sparse) and its deferred work
# (_online_lazy.pyx): w = σ v, the cumulative L1 threshold U, M = μ m and the running sums.

from libc.math cimport sqrt

from ._online_math cimport Settings
from ._online_rows cimport Table
from ._online_stats cimport Stats


cdef struct Lazy:
    Settings s
    Stats st
    Py_ssize_t d
    double* v            # w / σ, d
    double b             # the intercept (never scaled)
    double sigma
    double* accum        # G, d + 1 (NULL for SGD)
    double* last         # U at each coordinate's last update, d (NULL without L1)
    double total         # U
    double* mvec         # M / μ, d + 1
    double mu
    double mean_norm     # ‖m‖²
    double cross         # P = Σ_{j<d} m_j v_j
    double weight_norm   # V = ‖v‖²
    bint track_mean      # M is kept (statistics, no m ≥ 2 batch seen)
    bint track_weights   # P and V are kept (and λ₂ > 0)
    double since_resync
    double since_fold    # samples since the state was last canonical
    Table table          # finds a repeated column in a row (_online_rows)
    long long* cols      # scratch: the row's distinct columns
    double* xs           # scratch: their (clipped) values
    double* nv           # scratch: new v at the row's columns
    double* nacc         # scratch: new G at the row's columns
    double n_updates
    double row_scale
    double last_eta
    long long applied
    long long skipped
    long long missed
    long long clipped


cdef inline double pending(Lazy* k, Py_ssize_t j) noexcept nogil:
    """The L1 threshold coordinate j missed since its last update (v units)."""
    cdef double gap = k.total - k.last[j]
    if k.s.adagrad:
        return gap * k.s.l1 / (sqrt(k.accum[j]) + k.s.epsilon)
    return gap


cdef void resync(Lazy* k) noexcept nogil
cdef void canonical(Lazy* k, bint resync_sums) noexcept nogil
