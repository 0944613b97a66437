"""A running estimate of the objective's largest curvature, for the noise controller's
step-size cap (:mod:`.controller`).

The objective J(θ) = (1/m) Σ_i s_i ℓ_i + ½ λ₂ ‖w‖² of a logistic model has the Hessian
H(θ) = (1/m) Σ_i s_i σ'(z_i) v_i v_iᵀ + λ₂ D, v_i = c_i [x_i ; 1], D = diag(1, …, 1, 0), and
σ' = σ(1 − σ) ≤ ¼, so for every θ

    H(θ) ⪯ ¼ M + λ₂ D,    M = E[s v vᵀ],    L = ¼ λ_max(M) + λ₂ ≤ T = ¼ tr M + λ₂,

T being the trace bound ¼ S̄ + λ₂ the controller used alone before (loose by up to a factor
d + 1 when M is far from isotropic). L is the smoothness constant of J over all θ (σ' is
replaced by its maximum ¼ on purpose: a σ'-weighted, local estimate shrinks as the weights
grow, which lets η grow, which grows the weights — it diverged on the dense benchmark).

Stochastic power iteration on ¼ M + λ₂ D, one more X u and Xᵀ(·) per step, O(m d)
(O(nnz + d) for sparse rows):

* each batch, scored with the current unit vector u, adds P = Σ_i ¼ s_i v_i (v_iᵀ u)
  (:attr:`BatchSums.curvature_product_sum`: a sum over samples, so replicas that share u and
  add their sums stay exact); H_B u = P/m + λ₂ D u;
* q = uᵀ H_B u, the batch's Rayleigh quotient (u is fixed before the batch is seen, so q is
  an unbiased sample of uᵀ(¼ M + λ₂ D)u ≤ L); λ̂ ← λ̂ + α (q − λ̂), α = 0.05;
* y ← y + β (H_B u − y), β = ¼, and u = y/‖y‖: power iteration on the smoothed product
  (β < 1 averages the rank-m batch products, so u settles on the top eigenvector of M
  rather than following each batch).

u starts at [1, …, 1]/√(d + 1); everything is deterministic and kept in the checkpoint.
Sparse rows (hashed features) in O(nnz). A sparse batch whose gradient is kept at the k
columns it touches (``BatchSums.gradient_columns``: no L1/L2 term) keeps P at the same
columns (P is 0 at every other one), reads u only at its entries, and y is stored scaled,
y = κ ŷ with ‖ŷ‖² kept up to date: the EWMA multiplies κ by (1 − β) and adds β P/(m κ) at
the k columns, O(k) per step instead of O(d) (ŷ is rescaled, O(d), once κ falls below
1e-100, every ≈ 800 steps). u = ŷ/‖ŷ‖ needs no κ. (The O(d) form made a step ≈ 90× slower
at d = 2^18, m = 16.)

The safe rule. λ̂ is a Rayleigh quotient, an underestimate of L until u has converged, and
noisy; the controller therefore uses, after ``WARMUP_STEPS`` = 40 steps (T before that and
whenever λ̂ is not finite),

    L̂ = min( T,  max( ρ λ̂,  (T − λ₂)/(d + 1) + λ₂ ) ),   ρ = 2 (``SAFETY_FACTOR``),

and caps η ≤ c/L̂ (c = 1: half of gradient descent's stability limit 2/L once λ̂ has
converged, and ≤ 1/L as long as λ̂ ≥ L/2). The floor is a lower bound of L itself
(λ_max ≥ tr/(d + 1)), so c/T ≤ η_max ≤ (d + 1) c/T: the cap is never tighter than the trace
bound's and never more than d + 1 times looser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .batch_sums import BatchSums, state_count
from .sparse import SparseRows
from .state_format import upgrade_curvature_state
from .types import FloatArray, IndexArray
from .validation import Features

__all__ = ["CurvatureDirection", "CurvatureEstimate", "curvature_product_sum"]

CURVATURE_SMOOTHING = 0.05  # α of the EWMA λ̂ of the batches' Rayleigh quotients
DIRECTION_SMOOTHING = 0.25  # β of the EWMA y of the products H_B u
WARMUP_STEPS = 40  # steps before λ̂ replaces the trace bound
SAFETY_FACTOR = 2.0  # ρ of L̂ = ρ λ̂
RESCALE_BELOW = 1e-100  # κ below which ŷ is rescaled (κ ← 1)


def curvature_product_sum(
    X: Features,
    intercept_inputs: FloatArray | None,
    hessian_weights: FloatArray,
    direction: FloatArray,
) -> FloatArray:
    """P = Σ_i h_i v_i (v_iᵀ u), shape (d + 1,), with v_i = [x_i ; c_i].

    Parameters
    ----------
    X : ndarray of shape (m, d), or SparseRows
        The rows as the step learns them (already scaled by their clipping factor c_i).
    intercept_inputs : ndarray of shape (m,), optional
        c_i, the intercept input of each row (None: all 1).
    hessian_weights : ndarray of shape (m,)
        h_i = s_i σ'(z_i).
    direction : ndarray of shape (d + 1,)
        u.
    """
    projection = X.matvec(direction[:-1]) if isinstance(X, SparseRows) else X @ direction[:-1]
    projection += direction[-1] if intercept_inputs is None else direction[-1] * intercept_inputs
    projection *= hessian_weights  # h_i (v_iᵀ u)
    product = np.empty(len(direction))
    product[:-1] = X.rmatvec(projection) if isinstance(X, SparseRows) else projection @ X
    product[-1] = projection.sum() if intercept_inputs is None else projection @ intercept_inputs
    return product


@dataclass(frozen=True)
class CurvatureDirection:
    """u = ``values`` · ``factor``, shape (d + 1,), without forming it (O(d)) unless asked.

    ``values`` is the estimate's own array (not a copy): valid until its next update, which
    comes after the batch sums scored with it.
    """

    values: FloatArray
    factor: float

    def dense(self) -> FloatArray:
        """u, shape (d + 1,)."""
        return self.values * self.factor

    def at(self, indices: IndexArray) -> FloatArray:
        """u at ``indices``, O(len(indices))."""
        return self.values[indices] * self.factor

    @property
    def intercept(self) -> float:
        """u's last entry (the intercept's)."""
        return float(self.values[-1]) * self.factor


def sparse_curvature_product_sum(
    X: SparseRows,
    intercept_inputs: FloatArray | None,
    hessian_weights: FloatArray,
    direction: CurvatureDirection,
    entry_columns: IndexArray,
    n_columns: int,
) -> FloatArray:
    """P = Σ_i h_i v_i (v_iᵀ u) at the k = ``n_columns`` columns the rows touch (and the
    intercept, last), shape (k + 1,), in O(nnz): ``entry_columns`` gives the position in
    those columns of each entry of X (:meth:`SparseRows.column_index`)."""
    projection: FloatArray = np.bincount(  # type: ignore[assignment]  # float64 with weights
        X.entry_rows, weights=X.values * direction.at(X.indices), minlength=X.n_samples
    )
    u_intercept = direction.intercept
    projection += u_intercept if intercept_inputs is None else u_intercept * intercept_inputs
    projection *= hessian_weights
    product = np.empty(n_columns + 1)
    product[:-1] = np.bincount(
        entry_columns, weights=X.values * projection[X.entry_rows], minlength=n_columns
    )
    product[-1] = projection.sum() if intercept_inputs is None else projection @ intercept_inputs
    return product


class CurvatureEstimate:
    """λ̂, y and the step count of the power iteration (formulas: module docstring).

    Attributes
    ----------
    rayleigh_quotient : float
        λ̂, the EWMA of the batches' uᵀ H_B u (NaN before the first step).
    product : ndarray of shape (d + 1,), optional
        y = κ ŷ, the EWMA of H_B u (None before the first step); u = y/‖y‖.
    n_steps : int
        Steps folded in.
    """

    def __init__(
        self,
        rayleigh_quotient: float = math.nan,
        product: FloatArray | None = None,
        n_steps: int = 0,
        *,
        scale: float = 1.0,
        squared_norm: float | None = None,
    ) -> None:
        self.rayleigh_quotient = rayleigh_quotient
        self.n_steps = n_steps
        self._values = product  # ŷ
        self._scale = scale  # κ
        if squared_norm is None:  # ‖ŷ‖², given by a state (bit-exact), else computed
            squared_norm = math.nan if product is None else float(product @ product)
        self._squared_norm = squared_norm
        self._direction: CurvatureDirection | None = None  # u, cached until y changes
        # (sums, l2, terms) of the last batch asked about: step_size and update ask twice.
        self._last_terms: tuple[BatchSums, float, tuple[FloatArray, float] | None] | None = None

    @property
    def product(self) -> FloatArray | None:
        """y = κ ŷ, shape (d + 1,) (a new array; None before the first step)."""
        return None if self._values is None else self._values * self._scale

    def direction(self, n_parameters: int) -> CurvatureDirection:
        """u, for ``n_parameters`` = d + 1 parameters (cached until the next update)."""
        cached = self._direction
        if cached is None or len(cached.values) != n_parameters:
            values, norm = self._values, math.sqrt(self._squared_norm)
            if values is None or len(values) != n_parameters or not (0.0 < norm < math.inf):
                values, norm = np.ones(n_parameters), math.sqrt(n_parameters)
            cached = self._direction = CurvatureDirection(values, 1.0 / norm)
        return cached

    def _direction_of(self, sums: BatchSums) -> CurvatureDirection | None:
        """The u ``sums`` were scored with: the cached one, else (a replica that scored no
        batch of its own this step) the one the state defines; None when d is unknown."""
        if self._direction is not None:
            return self._direction
        product = sums.curvature_product_sum
        if self._values is not None:
            return self.direction(len(self._values))
        if product is not None and sums.gradient_columns is None:
            return self.direction(len(product))
        return None

    def _batch_terms(self, sums: BatchSums, l2: float) -> tuple[FloatArray, float] | None:
        """(H_B u, uᵀ H_B u) of a batch (H_B u at ``sums.gradient_columns`` and the
        intercept when those are set), or None when it has no finite product."""
        last = self._last_terms
        if last is not None and last[0] is sums and last[1] == l2:
            return last[2]
        terms = self._compute_terms(sums, l2)
        self._last_terms = (sums, l2, terms)
        return terms

    def _compute_terms(self, sums: BatchSums, l2: float) -> tuple[FloatArray, float] | None:
        product, direction = sums.curvature_product_sum, self._direction_of(sums)
        if product is None or direction is None:
            return None
        hu = product / sums.n_samples
        if sums.gradient_columns is None:
            u = direction.dense()
            if l2:
                hu[:-1] += l2 * u[:-1]
        else:  # no L2 term on the column path
            u = direction.at(np.append(sums.gradient_columns, len(direction.values) - 1))
        quotient = float(u @ hu)
        if not (math.isfinite(quotient) and np.isfinite(hu).all()):
            return None
        return hu, quotient

    def quotient_after(self, sums: BatchSums, l2: float) -> float:
        """λ̂ including this batch (nothing is changed; NaN while unknown)."""
        terms = self._batch_terms(sums, l2)
        if terms is None:
            return self.rayleigh_quotient
        previous, q = self.rayleigh_quotient, terms[1]
        return q if math.isnan(previous) else previous + CURVATURE_SMOOTHING * (q - previous)

    def bound(self, sums: BatchSums, l2: float, trace_bound: float) -> float:
        """L̂ = min(T, max(ρ λ̂, (T − λ₂)/(d + 1) + λ₂)) after the warm-up, else T (the
        trace bound ``trace_bound`` = ¼ S̄ + λ₂); T itself while λ̂ is not finite."""
        direction = self._direction_of(sums)
        if (
            self.n_steps < WARMUP_STEPS
            or sums.curvature_product_sum is None
            or direction is None
            or not math.isfinite(trace_bound)
        ):
            return trace_bound
        quotient = self.quotient_after(sums, l2)
        if not math.isfinite(quotient):
            return trace_bound
        # λ_max(M) ≥ tr(M)/(d + 1): a floor that holds for the exact λ_max as well.
        floor = (trace_bound - l2) / len(direction.values) + l2
        return min(trace_bound, max(SAFETY_FACTOR * quotient, floor))

    def update(self, sums: BatchSums, l2: float) -> None:
        """Fold in an applied step's batch: λ̂, y (and so u) and the count."""
        terms = self._batch_terms(sums, l2)
        direction = self._direction_of(sums)
        if terms is None or direction is None:
            return
        self.rayleigh_quotient = self.quotient_after(sums, l2)
        hu, n_parameters = terms[0], len(direction.values)
        columns = sums.gradient_columns
        first = self._values is None or len(self._values) != n_parameters
        if first:  # y starts at the first product (O(d), once)
            self._values, self._scale = np.zeros(n_parameters), 1.0
            if columns is None:
                self._values[:] = hu
            else:
                self._values[columns], self._values[-1] = hu[:-1], hu[-1]
        elif columns is None:
            assert self._values is not None
            self._values = (1.0 - DIRECTION_SMOOTHING) * self._scale * self._values
            self._values += DIRECTION_SMOOTHING * hu
            self._scale = 1.0
        else:
            self._fold_columns(np.append(columns, n_parameters - 1), hu)
        assert self._values is not None
        if first or columns is None or self._scale < RESCALE_BELOW:
            self._values *= self._scale
            self._scale = 1.0
            self._squared_norm = float(self._values @ self._values)
        self._direction = self._last_terms = None  # u moved
        self.n_steps += 1

    def _fold_columns(self, active: IndexArray, hu: FloatArray) -> None:
        """y ← (1 − β) y + β H_B u with H_B u zero outside ``active``: O(len(active))."""
        assert self._values is not None
        self._scale *= 1.0 - DIRECTION_SMOOTHING
        old = self._values[active]
        new = old + (DIRECTION_SMOOTHING / self._scale) * hu
        self._values[active] = new
        self._squared_norm += float(new @ new - old @ old)

    def get_state(self) -> dict[str, Any]:
        """λ̂, ŷ (an array; None before the first step), κ, ‖ŷ‖² and the count: y = κ ŷ
        exactly as it is kept, so that a resumed run takes the same steps bit for bit."""
        return {
            "rayleigh_quotient": self.rayleigh_quotient,
            "product": None if self._values is None else self._values.copy(),
            "scale": self._scale,
            "squared_norm": self._squared_norm,
            "n_steps": self.n_steps,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> CurvatureEstimate:
        """The estimate of a state document (None: a fresh one; earlier layouts upgraded by
        :mod:`.state_format`); ValueError for a malformed one."""
        if state is None:
            return cls()
        state = upgrade_curvature_state(state)
        n_steps = state_count(state["n_steps"])
        product = state["product"]
        if product is not None:
            product = np.asarray(product, dtype=np.float64).copy()
            if product.ndim != 1 or not np.isfinite(product).all():
                raise ValueError("curvature product: expected a finite vector")
        scale = float(state["scale"])
        if not (math.isfinite(scale) and scale > 0.0):
            raise ValueError("curvature scale: expected a finite positive number")
        squared = state["squared_norm"]
        return cls(
            float(state["rayleigh_quotient"]),
            product,
            n_steps,
            scale=scale,
            squared_norm=None if squared is None or product is None else float(squared),
        )
