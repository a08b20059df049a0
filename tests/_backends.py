"""The array backends the suite runs on, and every skip helper, in one place.

Imported by ``conftest.py`` after it has decided on the CUDA simulator (so numba sees
``NUMBA_ENABLE_CUDASIM`` before its first import); test modules import the helpers from
here, never from ``conftest`` or from one another.

Skip helpers (named like numba-cuda's ``skip_on_cudasim``):
- ``skip_on_cudasim(reason)``: a mark; the test needs real GPU arrays or real typing.
- ``skip_unless_cuda()``: call inside a test: skips when no CUDA backend (GPU or simulator).
- ``skip_if_too_big_for_simulator(backend, units)``: call inside a test: skips a shape whose
  batch x hidden x time units would be too slow in the simulator (a thread is Python there).
- ``backend_skip_reason(name)``: why a backend cannot run here, or None.
"""
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from nblstm._dispatch import array_kind, cuda_unavailable_reason, cupy_usable

SIMULATED: bool = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

#: (batch x hidden x time) units above which a shape is too slow for the CUDA simulator
#: (~0.1-0.25 ms per simulated thread): such shapes run on the CPU and on real GPUs only.
SIMULATOR_MAX_UNITS = 400


@dataclass(frozen=True)
class BackendCase:
    """Where a test's arrays live: ``put`` moves a host array there, ``get`` brings a result
    back to NumPy."""
    name: str
    put: Callable[[np.ndarray], Any]
    get: Callable[[Any], np.ndarray]
    simulated: bool = False  # kernels run as Python: keep shapes tiny


def _numba_put(array: np.ndarray) -> Any:
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(array))


def _cupy_put(array: np.ndarray) -> Any:
    import cupy
    return cupy.asarray(array)


def _device_get(array: Any) -> np.ndarray:
    if array_kind(array) == "cupy":
        return array.get()
    return array.copy_to_host()


BACKENDS = {
    "cpu": BackendCase("cpu", put=lambda a: a, get=lambda a: np.asarray(a)),
    "cuda": BackendCase("cuda", put=_numba_put, get=_device_get, simulated=SIMULATED),
    "cupy": BackendCase("cupy", put=_cupy_put, get=_device_get),
}

#: NBLSTM_CPU_GEMM values the kernel-reaching CPU tests run under (see
#: kernels/cpu/plan.py): the default, plain BLAS, and each tile, on the parallel and the
#: serial driver between them, so every variant is checked on any machine (a tile wider than
#: the CPU's vectors is slower, never different), and the batch-blocked loops.
CPU_GEMM_VARIANTS = ("auto", "blas", "avx512-parallel", "avx2-serial", "sse-parallel",
                     "avx512-blocked")
#: Rows per block of the batch-blocked variant (``NBLSTM_CPU_BLOCK_ROWS``): small, so the
#: tests' batches span several blocks (a partial last one too) and both threads' tasks.
BLOCKED_TEST_ROWS = 2


def backend_skip_reason(name: str) -> str | None:
    """None when the backend ``name`` can run here; else why not."""
    if name == "cpu":
        return None
    reason = cuda_unavailable_reason()
    if reason is not None:
        return f"CUDA backend unavailable: {reason}"
    if name == "cupy" and (SIMULATED or not cupy_usable()):
        return "CuPy arrays need CuPy and a real GPU (not the simulator)"
    return None


def skip_on_cudasim(reason: str) -> pytest.MarkDecorator:
    """Mark a test that cannot run in the CUDA simulator."""
    return pytest.mark.skipif(SIMULATED, reason=f"not in the CUDA simulator: {reason}")


def skip_unless_cuda() -> None:
    """Skip the calling test when the CUDA backend cannot run (no GPU, no simulator)."""
    reason = cuda_unavailable_reason()
    if reason is not None:
        pytest.skip(f"CUDA backend unavailable: {reason}")


def skip_if_too_big_for_simulator(backend: BackendCase, units: int) -> None:
    """Skip the calling test on the simulated backend when ``units`` (batch x hidden x time)
    exceeds ``SIMULATOR_MAX_UNITS``."""
    if backend.simulated and units > SIMULATOR_MAX_UNITS:
        pytest.skip(f"{units} batch x hidden x time units is too large for the CUDA simulator")
