"""streamsgd: streaming online logistic regression with minibatch-averaged SGD.

One step per minibatch on the mean of the per-sample gradients; every sample is scored
before the step that learns it (the first step's loss is log 2 at zero weights):

>>> import numpy as np
>>> from streamsgd import OnlineLogisticRegression
>>> model = OnlineLogisticRegression(n_features=2, learning_rate=0.5)
>>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])  # (m, d)
>>> y = np.array([1, 0, 1, 0])                                        # (m,) in {0, 1}
>>> stats = model.learn_batch(X, y)
>>> stats.n_samples, round(stats.loss, 6), model.n_updates
(4, 0.693147, 1)
>>> model.predict_proba(X).round(3)                                   # (m,) P(y = 1 | x)
array([0.547, 0.5  , 0.547, 0.453])

The package's tree is its architecture (docs/design.md#architecture): ``core`` (the model),
``codec`` (wire format), ``training`` (the loop), ``distributed`` (N replicas), the adapters
(``kafka``, ``sources``, ``checkpoint``, ``http``, ``telemetry``), ``config`` and ``cli``.
"""

import gc as _gc

# No collection while the package imports: what an import creates (modules, classes,
# functions) lives as long as the process, so a collection would only traverse it, and
# numpy's and this package's imports allocate enough to set off several. The collector's
# state is restored after.
_collecting = _gc.isenabled()
_gc.disable()
try:
    from .core import BatchStats, BatchSums, OnlineLogisticRegression, SparseRows
finally:
    if _collecting:
        _gc.enable()

__version__ = "0.1.0"

__all__ = ["BatchStats", "BatchSums", "OnlineLogisticRegression", "SparseRows", "__version__"]
