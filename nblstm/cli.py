"""The ``nblstm`` command: ``nblstm info`` and ``nblstm check``."""
import argparse
import importlib.metadata
import platform
import sys
from typing import Callable

import numpy as np

from . import __version__, reference, seed

#: Same bounds as the test suite: float64 within 1e-9, float32 within 1e-5 (relative to
#: 1 + max|reference|) of the float64 reference.
CHECK_TOLERANCE = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-5}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _blas_lines() -> list[str]:
    """The BLAS libraries loaded in this process (numpy's and scipy's are separate)."""
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS, the one numba's np.dot calls)
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        return [f"numpy built with {config.get('name', '?')} {config.get('version', '')}".strip(),
                "(pip install threadpoolctl to see the BLAS libraries loaded and their threads)"]
    lines = []
    for pool in threadpool_info():
        if pool.get("user_api") != "blas":
            continue
        path = pool["filepath"]
        # numpy's wheel bundles its own "scipy_openblas" build: tell them apart by folder
        owner = ("numpy" if "numpy.libs" in path or "/numpy/" in path else
                 "scipy (numba's np.dot)" if "scipy.libs" in path or "/scipy/" in path else path)
        lines.append(f"{pool['internal_api']} {pool.get('version')} for {owner}: "
                     f"{pool['num_threads']} threads, kernel {pool.get('architecture')}")
    return lines


def _threading_layer() -> str:
    import numba
    available = []
    for layer, module in (("tbb", "tbbpool"), ("omp", "omppool"), ("workqueue", "workqueue")):
        try:
            importlib.import_module(f"numba.np.ufunc.{module}")
            available.append(layer)
        except ImportError:
            pass
    return (f"configured {numba.config.THREADING_LAYER!r}, available: {', '.join(available)} "
            f"({numba.config.NUMBA_NUM_THREADS} threads)")


def available_backends() -> dict[str, str]:
    """Backend name -> "available: <where>" or "not available: <why>"."""
    from ._dispatch import cuda_unavailable_reason
    reason = cuda_unavailable_reason()
    if reason is None:
        from nblstm.kernels.cuda_target import device_description
        cuda_status = f"available: {device_description()}"
    else:
        cuda_status = f"not available: {reason}"
    return {"cpu": "available", "cuda": cuda_status}


def info() -> int:
    import numba
    rows = [("nblstm", __version__), ("python", platform.python_version()),
            ("platform", platform.platform()), ("cpu", platform.processor() or platform.machine()),
            ("numpy", np.__version__), ("numba", numba.__version__),
            ("llvmlite", _version("llvmlite")), ("scipy", _version("scipy")),
            ("numba threading layer", _threading_layer())]
    rows += [("BLAS", line) for line in _blas_lines()]
    rows += [(f"backend {name}", status) for name, status in available_backends().items()]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def _random_problem(rng) -> tuple:
    """A float64 seed-API problem: ``x, a0, parameters, da``."""
    n_x, m, T, n_a, n_y = 7, 5, 6, 9, 4  # small: the CUDA simulator runs threads as Python
    params = {}
    for gate in "fico":
        params["W" + gate] = rng.standard_normal((n_a, n_a + n_x)) * 0.4
        params["b" + gate] = rng.standard_normal((n_a, 1)) * 0.5
    params["Wy"] = rng.standard_normal((n_y, n_a)) * 0.4
    params["by"] = rng.standard_normal((n_y, 1)) * 0.5
    return (rng.standard_normal((n_x, m, T)), rng.standard_normal((n_a, m)), params,
            rng.standard_normal((n_a, m, T)))


def check(implementation=seed) -> int:
    """Forward and backward of every available backend against the NumPy reference.

    Prints a table of max errors and returns a non-zero exit status on any mismatch.
    ``implementation`` is the module under test (the seed API; replaceable for tests).
    """
    rng = np.random.default_rng(2024)
    x, a0, params, da = _random_problem(rng)
    ref_a, ref_y, ref_c, ref_caches = reference.lstm_forward(x, a0, params)
    ref_grads = reference.lstm_backward(da, ref_caches)
    failures = 0
    print(f"{'backend':<8} {'dtype':<8} {'quantity':<9} {'max abs error':>14} {'bound':>10}  result")
    for backend, status in available_backends().items():
        if not status.startswith("available"):
            print(f"{backend:<8} {'-':<8} {'-':<9} {'-':>14} {'-':>10}  skipped ({status})")
            continue
        for dtype in CHECK_TOLERANCE:
            cast: Callable = lambda v: v.astype(dtype)
            # backend= moves the NumPy inputs to the backend and the results back
            a, y, c, caches = implementation.lstm_forward(
                cast(x), cast(a0), {k: cast(v) for k, v in params.items()}, backend=backend)
            grads = implementation.lstm_backward(cast(da), caches, backend=backend)
            results = [("a", a, ref_a), ("y", y, ref_y), ("c", c, ref_c)]
            results += [(key, grads[key], ref_grads[key]) for key in ref_grads]
            for name, got, ref in results:
                got = np.asarray(got, dtype=np.float64)
                bound = CHECK_TOLERANCE[dtype] * (1 + np.max(np.abs(ref)))
                error = np.max(np.abs(got - ref)) if got.shape == ref.shape else np.inf
                ok = bool(error <= bound)  # NaN fails too
                failures += not ok
                print(f"{backend:<8} {dtype.name:<8} {name:<9} {error:>14.3e} {bound:>10.1e}  "
                      f"{'ok' if ok else 'MISMATCH'}")
    print("all checks passed" if not failures else f"{failures} check(s) FAILED")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nblstm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, BLAS, numba threading layer, backends")
    commands.add_parser("check", help="compare every available backend with the NumPy reference")
    args = parser.parse_args(argv)
    return {"info": info, "check": check}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
