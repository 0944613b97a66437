# cython: language_level=3
# The step's struct and loop, shared with the multi-step loop (_multi_step.pyx).

cdef struct Step:
    const double* theta        # the entries that move (gathered in column mode)
    const double* direction    # Σ g_i
    const double* accumulator  # AdaGrad's G at those entries, or NULL
    double* values             # out: new θ
    double* accumulated        # out: new G, or NULL
    Py_ssize_t n               # entries (the intercept last)
    double divisor             # m (mean) or 1 (sum)
    double eta
    double l1
    double l2
    double epsilon
    double forget              # γ^m, AdaGrad's forgetting factor of this step (1: never)


cdef bint step_loop(const Step* p) noexcept nogil
