from .types import FloatArray, IndexArray

def propose(
    theta: FloatArray,
    gradient_sum: FloatArray,
    columns: IndexArray | None,
    n_samples: int,
    eta: float,
    mean: bool,
    l1: float,
    l2: float,
    accumulator: FloatArray | None,
    epsilon: float,
    forget: float = ...,
) -> tuple[IndexArray | None, FloatArray, FloatArray | None, bool]: ...
