from .types import FloatArray, IndexArray

def dense_batch_sums(
    X: FloatArray,
    y: FloatArray,
    sample_weight: FloatArray | None,
    theta: FloatArray,
    cap: float,
    scale: float,
    norms: bool,
    statistics: bool,
    direction: FloatArray | None,
    frame: tuple[FloatArray, FloatArray, FloatArray, IndexArray] | None,
    moment_cap: float,
    gradient_ratio: float = 3.0,
) -> tuple[
    FloatArray,
    float,
    float,
    int,
    int,
    int,
    float,
    FloatArray | None,
    tuple[FloatArray, FloatArray] | None,
    float,
]: ...
