"""A description of the machine and software a benchmark ran on."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    wanted = ["avx2", "fma", "avx512f", "avx512_bf16"]
                    return ",".join(f for f in wanted if f in flags)
    except OSError:
        pass
    return ""


def _mem_total_gib() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, str]:
    """Machine, OS, Python, numpy/BLAS and peer versions, as strings."""
    import numpy as np

    blas = "unknown"
    try:
        from threadpoolctl import threadpool_info

        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if infos:
            i = infos[0]
            blas = (
                f"{i.get('internal_api')} {i.get('version')} "
                f"kernel={i.get('architecture')} threads={i.get('num_threads')}"
            )
    except ImportError:
        pass
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    if coretype:
        blas += f" (OPENBLAS_CORETYPE={coretype})"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": f"{_cpu_model()} [{_cpu_flags()}]",
        "cores": f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable",
        "memory": f"{_mem_total_gib():.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "numpy": f"{np.__version__}, BLAS {blas}",
        "peers": (
            f"river {_version('river')}, scikit-learn {_version('scikit-learn')}, "
            f"vowpalwabbit {_version('vowpalwabbit')} (no vw CLI in the wheel), "
            f"pandas {_version('pandas')}"
        ),
        "load average at start": " ".join(f"{v:.2f}" for v in load),
    }
