"""What this machine and process run with: versions, CPU, BLAS pools, numba threading.

Shared by ``nblstm info`` and the benchmark harness (which records it with every result).
"""
import importlib
import importlib.metadata
import os
import platform

import numpy as np


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_description() -> dict:
    """CPU model, logical CPU count and the SIMD features that matter to the kernels."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    features = [name for name in ("avx512f", "avx2", "fma", "neon", "asimd") if name in flags]
    return {"model": model, "machine": platform.machine(), "logical_cpus": os.cpu_count(),
            "simd": features}


def blas_pools() -> list[dict]:
    """The BLAS libraries loaded in this process, with thread counts and kernel.

    numpy and scipy each bundle their own OpenBLAS (numba's ``np.dot`` calls scipy's);
    threadpoolctl shows both. Without threadpoolctl only numpy's build info is known.
    """
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS, the one numba's np.dot calls)
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        return [{"owner": "numpy (build info; pip install threadpoolctl for more)",
                 "library": config.get("name", "?"), "version": config.get("version", "?")}]
    pools = []
    for pool in threadpool_info():
        if pool.get("user_api") != "blas":
            continue
        path = pool["filepath"]
        # numpy's wheel bundles its own "scipy_openblas" build: tell them apart by folder
        owner = ("numpy" if "numpy.libs" in path or "/numpy/" in path else
                 "scipy (numba's np.dot)" if "scipy.libs" in path or "/scipy/" in path else path)
        pools.append({"owner": owner, "library": pool["internal_api"],
                      "version": pool.get("version"), "threads": pool["num_threads"],
                      "kernel": pool.get("architecture"), "path": path})
    return pools


def describe_blas_pool(pool: dict) -> str:
    text = f"{pool['library']} {pool['version']} for {pool['owner']}"
    if "threads" in pool:
        text += f": {pool['threads']} threads, kernel {pool['kernel']}"
    return text


def numba_threading() -> dict:
    """The configured numba threading layer, the layers importable here, and the threads."""
    import numba
    available = []
    for layer, module in (("tbb", "tbbpool"), ("omp", "omppool"), ("workqueue", "workqueue")):
        try:
            importlib.import_module(f"numba.np.ufunc.{module}")
            available.append(layer)
        except ImportError:
            pass
    return {"configured": numba.config.THREADING_LAYER, "available": available,
            "threads": numba.config.NUMBA_NUM_THREADS}


def cpu_gemm() -> str:
    """What the CPU kernels multiply with: the packed micro-kernel's tile and threading, or
    BLAS (``NBLSTM_CPU_GEMM``); says when numba's threading layer forces the serial path."""
    from .kernels.cpu import plan
    return plan.describe()


def cuda_recurrence() -> str:
    """Which recurrence tier CUDA forwards run (``NBLSTM_CUDA_RECURRENCE``), described; an
    invalid value is described as such rather than raised."""
    from .kernels import cuda_plan
    try:
        return cuda_plan.describe()
    except ValueError as error:
        return f"invalid: {error}"


def versions() -> dict:
    import numba
    from . import __version__
    return {"nblstm": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "llvmlite": package_version("llvmlite"),
            "scipy": package_version("scipy"), "numba-cuda": package_version("numba-cuda"),
            "torch": package_version("torch"), "platform": platform.platform()}
