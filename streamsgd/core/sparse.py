"""A minimal compressed-sparse-row matrix for hashed features (numpy only, no scipy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from .types import FloatArray, IndexArray


@dataclass(frozen=True)
class SparseRows:
    """Rows of a (n_samples, n_features) matrix in CSR form.

    Attributes
    ----------
    indptr : ndarray of shape (n_samples + 1,), int64
        Row i holds entries ``indptr[i]:indptr[i+1]``.
    indices : ndarray of shape (nnz,), int64
        Column of each entry, in [0, n_features).
    values : ndarray of shape (nnz,), float64
    n_features : int
    """

    indptr: IndexArray
    indices: IndexArray
    values: FloatArray
    n_features: int

    @property
    def n_samples(self) -> int:
        return len(self.indptr) - 1

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_samples, self.n_features)

    def __len__(self) -> int:
        return self.n_samples

    @cached_property
    def entry_rows(self) -> IndexArray:
        """The row of each entry, shape (nnz,)."""
        return np.repeat(np.arange(self.n_samples), np.diff(self.indptr))

    def matvec(self, w: FloatArray) -> FloatArray:
        """X @ w, shape (n_samples,)."""
        return np.bincount(  # type: ignore[return-value]  # float64 with weights
            self.entry_rows, weights=self.values * w[self.indices], minlength=self.n_samples
        )

    def rmatvec(self, r: FloatArray) -> FloatArray:
        """Xᵀ @ r, shape (n_features,)."""
        return np.bincount(  # type: ignore[return-value]  # float64 with weights
            self.indices, weights=self.values * r[self.entry_rows], minlength=self.n_features
        )

    def column_index(self, workspace: NDArray[np.intp]) -> tuple[IndexArray, NDArray[np.intp]]:
        """The distinct columns the rows touch and, for each entry, its column's position
        among them, in O(nnz) whatever ``n_features``.

        Parameters
        ----------
        workspace : int ndarray of shape (n_features,)
            Scratch space, overwritten; kept by the caller so that no O(n_features) array is
            allocated per call.

        Returns
        -------
        columns : ndarray of shape (k,)
            The distinct columns of the entries (in the order of their last entry).
        entry_columns : int ndarray of shape (nnz,)
            ``columns[entry_columns[e]] == indices[e]``.
        """
        nnz = len(self.indices)
        entry = np.arange(nnz)
        workspace[self.indices] = entry  # the last entry of each column wins
        columns = self.indices[workspace[self.indices] == entry]
        workspace[columns] = np.arange(len(columns))
        return columns, workspace[self.indices]

    def rmatvec_at(
        self, r: FloatArray, entry_columns: NDArray[np.intp], n_columns: int
    ) -> FloatArray:
        """(Xᵀr) at the k = ``n_columns`` columns of :meth:`column_index`, O(nnz); equal to
        :meth:`rmatvec` there bit for bit (each column adds its entries in the same order)."""
        return np.bincount(  # type: ignore[return-value]  # float64 with weights
            entry_columns, weights=self.values * r[self.entry_rows], minlength=n_columns
        )

    def rmatvec_columns(
        self, r: FloatArray, workspace: NDArray[np.intp]
    ) -> tuple[IndexArray, FloatArray]:
        """Xᵀ @ r at the columns the rows touch, in O(nnz) (:meth:`column_index` and
        :meth:`rmatvec_at`): (columns, sums); Xᵀr is 0 at every other column."""
        columns, entry_columns = self.column_index(workspace)
        return columns, self.rmatvec_at(r, entry_columns, len(columns))

    def row_squared_norms(self) -> FloatArray:
        """‖x_i‖², shape (n_samples,). Entries repeating a (row, column) cell add up first,
        as in :meth:`to_dense`."""
        rows = self.entry_rows
        values = self.values
        cells = rows * self.n_features + self.indices
        # Fast path: cells strictly increasing (rows with sorted, distinct columns) or at
        # least distinct; merge repeated cells only when there are some.
        if (
            len(cells) > 1
            and not (np.diff(cells) > 0).all()
            and not (np.diff(np.sort(cells)) > 0).all()
        ):
            cells, inverse = np.unique(cells, return_inverse=True)
            values = np.bincount(  # type: ignore[assignment]  # float64 with weights
                inverse.reshape(-1), weights=values, minlength=len(cells)
            )
            rows = cells // self.n_features
        return np.bincount(  # type: ignore[return-value]  # float64 with weights
            rows, weights=values * values, minlength=self.n_samples
        )

    def to_dense(self) -> FloatArray:
        dense = np.zeros(self.shape)
        np.add.at(dense, (self.entry_rows, self.indices), self.values)
        return dense

    def slice_rows(self, start: int, stop: int) -> SparseRows:
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        return SparseRows(
            self.indptr[start : stop + 1] - lo,
            self.indices[lo:hi],
            self.values[lo:hi],
            self.n_features,
        )

    @staticmethod
    def concatenate(parts: Sequence[SparseRows]) -> SparseRows:
        n_features = parts[0].n_features
        lengths = [p.indptr[-1] for p in parts]
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        indptr = np.concatenate(
            [np.zeros(1, dtype=np.int64)]
            + [p.indptr[1:] + o for p, o in zip(parts, offsets, strict=True)]
        )
        return SparseRows(
            indptr.astype(np.int64),
            np.concatenate([p.indices for p in parts]),
            np.concatenate([p.values for p in parts]),
            n_features,
        )

    @staticmethod
    def from_rows(rows: Sequence[tuple[IndexArray, FloatArray]], n_features: int) -> SparseRows:
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(ix) for ix, _ in rows], out=indptr[1:])
        if rows:
            indices = np.concatenate([ix for ix, _ in rows]).astype(np.int64)
            values = np.concatenate([v for _, v in rows]).astype(np.float64)
        else:
            indices, values = np.zeros(0, np.int64), np.zeros(0)
        return SparseRows(indptr, indices, values, n_features)
