"""Build of the compiled kernels (Cython); everything else is declared in pyproject.toml.

Every ``streamsgd/**/*.pyx`` becomes an extension module beside its source. The flags keep
floating point strict and portable: no ``-ffast-math`` (it reorders sums), no
``-march=native`` (replicas on different hosts must compute every step bit for bit alike),
and ``-ffp-contract=off`` so that no compiler fuses a multiply and an add into an FMA.
"""

from __future__ import annotations

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).parent
COMPILE_ARGS = ["-O3", "-ffp-contract=off", "-fno-strict-aliasing"]


def extensions() -> list[Extension]:
    modules = []
    for source in sorted((ROOT / "streamsgd").rglob("*.pyx")):
        relative = source.relative_to(ROOT)
        name = ".".join(relative.with_suffix("").parts)
        modules.append(
            Extension(
                name,
                [str(relative)],
                include_dirs=[numpy.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=COMPILE_ARGS,
            )
        )
    return modules


setup(
    ext_modules=cythonize(
        extensions(),
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )
)
