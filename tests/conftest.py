"""Fixtures shared by the whole suite.

The parity suite is written once against two fixtures:
- ``backend``: where the arrays live. ``put`` moves a host (NumPy) array there, ``get``
  brings a result back to NumPy. ``cpu`` (NumPy arrays), ``cuda`` (numba device arrays: on
  the GPU, or in the CUDA simulator) and, on a real GPU with CuPy, ``cupy``. The CPU runs
  once per CPU GEMM variant (``CPU_GEMM_VARIANTS``, set through ``NBLSTM_CPU_GEMM``): the
  default choice, plain BLAS, and every micro-kernel tile on both drivers between them, so
  every variant is checked on any machine (a tile wider than the CPU's vectors is slower,
  never different). Tests without arrays on a backend take ``cpu_gemm`` for the same.
- ``dtype``: float32 / float64 with the project's tolerances.

Without a CUDA driver the CUDA simulator is switched on here, before numba is imported
(unless ``NUMBA_ENABLE_CUDASIM`` is already set), so plain ``pytest`` runs the CUDA kernels
everywhere: as Python on a CPU-only machine, on the GPU where there is one.
"""
import ctypes
import os


def _cuda_driver_present() -> bool:
    for library in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            ctypes.CDLL(library)
            return True
        except OSError:
            continue
    return False


if "NUMBA_ENABLE_CUDASIM" not in os.environ and not _cuda_driver_present():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

from dataclasses import dataclass  # noqa: E402  (after the simulator decision)
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nblstm._dispatch import cuda_unavailable_reason, cupy_usable  # noqa: E402

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@dataclass(frozen=True)
class BackendCase:
    name: str
    put: Callable[[np.ndarray], Any]
    get: Callable[[Any], np.ndarray]
    simulated: bool = False  # kernels run as Python: keep shapes tiny


def _numba_put(array):
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(array))


def _cupy_put(array):
    import cupy
    return cupy.asarray(array)


def _device_get(array):
    if type(array).__module__.split(".")[0] == "cupy":
        return array.get()
    return array.copy_to_host()


BACKENDS = {
    "cpu": BackendCase("cpu", put=lambda a: a, get=lambda a: np.asarray(a)),
    "cuda": BackendCase("cuda", put=_numba_put, get=_device_get, simulated=SIMULATED),
    "cupy": BackendCase("cupy", put=_cupy_put, get=_device_get),
}


def _backend_skip_reason(name: str) -> str | None:
    if name == "cpu":
        return None
    reason = cuda_unavailable_reason()
    if reason is not None:
        return f"CUDA backend unavailable: {reason}"
    if name == "cupy" and (SIMULATED or not cupy_usable()):
        return "CuPy arrays need CuPy and a real GPU (not the simulator)"
    return None


#: NBLSTM_CPU_GEMM values the CPU parity tests run under (see kernels/gemm_plan.py): the
#: default, plain BLAS, and each tile, on the parallel and the serial driver between them.
CPU_GEMM_VARIANTS = ("auto", "blas", "avx512-parallel", "avx2-serial", "sse-parallel",
                     "avx512-serial")


@pytest.fixture(params=CPU_GEMM_VARIANTS)
def cpu_gemm(request, monkeypatch) -> str:
    """Runs the test under each CPU GEMM variant (sets ``NBLSTM_CPU_GEMM``)."""
    monkeypatch.setenv("NBLSTM_CPU_GEMM", request.param)
    return request.param


@pytest.fixture(params=[f"cpu-{v}" for v in CPU_GEMM_VARIANTS] + ["cuda", "cupy"])
def backend(request, monkeypatch) -> BackendCase:
    name, _, gemm_variant = request.param.partition("-")
    reason = _backend_skip_reason(name)
    if reason:
        pytest.skip(reason)
    if gemm_variant:
        monkeypatch.setenv("NBLSTM_CPU_GEMM", gemm_variant)
    return BACKENDS[name]


def pytest_report_header(config):
    reason = cuda_unavailable_reason()
    if reason is not None:
        cuda_mode = f"unavailable ({reason})"
    else:
        from nblstm.kernels.cuda_target import device_description
        cuda_mode = device_description()
    cupy_mode = "yes" if (reason is None and not SIMULATED and cupy_usable()) else "no"
    from nblstm.kernels import gemm_plan
    return (f"nblstm backends: cpu ({gemm_plan.describe()}); cuda: {cuda_mode}; "
            f"cupy arrays: {cupy_mode}")


@dataclass(frozen=True)
class DtypeCase:
    """A dtype and how close its results must be to a float64 reference."""
    dtype: np.dtype
    output_tol: float       # |actual - ref| <= output_tol * (1 + max|ref|)
    gradient_rel_tol: float  # ||actual - ref|| <= gradient_rel_tol * ||ref||

    def assert_output_close(self, actual, reference, what: str = "") -> None:
        actual = np.asarray(actual, dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        assert actual.shape == reference.shape, what
        bound = self.output_tol * (1 + np.max(np.abs(reference), initial=0.0))
        err = np.max(np.abs(actual - reference), initial=0.0)
        assert err <= bound, f"{what}: max abs error {err:.3e} > {bound:.3e}"

    def assert_gradient_close(self, actual, reference, what: str = "") -> None:
        actual = np.asarray(actual, dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        assert actual.shape == reference.shape, what
        if self.dtype == np.float64:
            # float64 gradients: the same elementwise bound as the outputs
            self.assert_output_close(actual, reference, what)
            return
        err = np.linalg.norm(actual - reference)
        bound = self.gradient_rel_tol * max(np.linalg.norm(reference), 1e-30)
        assert err <= bound, f"{what}: relative norm error {err / bound * self.gradient_rel_tol:.3e}"


DTYPES = {
    "float32": DtypeCase(np.dtype(np.float32), output_tol=1e-5, gradient_rel_tol=1e-4),
    "float64": DtypeCase(np.dtype(np.float64), output_tol=1e-9, gradient_rel_tol=1e-9),
}


@pytest.fixture(params=sorted(DTYPES))
def dtype(request) -> DtypeCase:
    return DTYPES[request.param]
