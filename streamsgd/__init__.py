"""streamsgd: streaming online logistic regression with minibatch-averaged SGD."""

from .core import BatchStats, BatchSums, OnlineLogisticRegression, SparseRows

__version__ = "0.1.0"

__all__ = ["BatchStats", "BatchSums", "OnlineLogisticRegression", "SparseRows", "__version__"]
