# cython: language_level=3
from ._online_dense import run_scattered as run_sparse
