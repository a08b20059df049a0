"""Fixtures shared by the whole suite.

The parity suite is written once against these fixtures:
- ``backend``: where the arrays live (``tests/_backends.py``): ``cpu`` (NumPy arrays), ``cuda``
  (numba device arrays: on the GPU, or in the CUDA simulator) and, on a real GPU with CuPy,
  ``cupy``. A test that takes only ``backend`` runs once per array backend.
- ``cpu_gemm``: the CPU GEMM variant (``NBLSTM_CPU_GEMM``, ``CPU_GEMM_VARIANTS``), for the
  tests that reach the LSTM kernels. A test that takes ``backend`` and ``cpu_gemm`` runs on
  ``cpu`` once per variant and once on each GPU backend (``cpu_gemm`` is None there): the
  variants are never crossed with the GPU. A test that takes ``cpu_gemm`` alone runs once
  per variant.
- ``dtype``: float32 / float64 with the project's tolerances.

Without a CUDA driver the CUDA simulator is switched on here, before numba is imported
(unless ``NUMBA_ENABLE_CUDASIM`` is already set), so plain ``pytest`` runs the CUDA kernels
everywhere: as Python on a CPU-only machine, on the GPU where there is one. The simulator's
thread-switch setting (``NBLSTM_CUDASIM_SWITCH_INTERVAL``, see ``kernels/cuda/target.py``) is
set here too, as an environment variable, so the subprocesses the suite starts get it.
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
# The simulator busy-polls its Python threads: a short switch interval makes simulated
# kernels 4-5x faster. Test-only (process-wide); inherited by the suite's subprocesses.
os.environ.setdefault("NBLSTM_CUDASIM_SWITCH_INTERVAL", "5e-5")

from dataclasses import dataclass  # noqa: E402  (after the simulator decision)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from _backends import (BACKENDS, BLOCKED_TEST_ROWS, CPU_GEMM_VARIANTS, SIMULATED,  # noqa: E402
                       BackendCase, backend_skip_reason)
from nblstm._dispatch import cuda_unavailable_reason, cupy_usable  # noqa: E402

ARRAY_BACKENDS = tuple(BACKENDS)


def pytest_generate_tests(metafunc):
    """Parametrize ``backend`` and ``cpu_gemm`` (module docstring): the CPU GEMM variants
    cross the ``cpu`` backend only."""
    names = metafunc.fixturenames
    wants_backend, wants_gemm = "backend" in names, "cpu_gemm" in names
    if wants_backend and wants_gemm:
        cases = [("cpu", variant) for variant in CPU_GEMM_VARIANTS]
        cases += [(name, None) for name in ARRAY_BACKENDS if name != "cpu"]
        metafunc.parametrize(("backend", "cpu_gemm"), cases, indirect=True,
                             ids=[name if variant is None else f"{name}-{variant}"
                                  for name, variant in cases])
    elif wants_backend:
        metafunc.parametrize("backend", ARRAY_BACKENDS, indirect=True)
    elif wants_gemm:
        metafunc.parametrize("cpu_gemm", CPU_GEMM_VARIANTS, indirect=True)


@pytest.fixture
def backend(request) -> BackendCase:
    """The array backend of this test case (skips when it cannot run here)."""
    reason = backend_skip_reason(request.param)
    if reason:
        pytest.skip(reason)
    return BACKENDS[request.param]


@pytest.fixture
def cpu_gemm(request, monkeypatch) -> str | None:
    """The CPU GEMM variant of this test case (sets ``NBLSTM_CPU_GEMM``); None on a GPU
    backend, where the CPU GEMM plays no part. A batch-blocked variant runs blocks of
    ``BLOCKED_TEST_ROWS`` rows, so that the tests' small batches span several blocks and
    both threads' tasks."""
    if request.param is not None:
        monkeypatch.setenv("NBLSTM_CPU_GEMM", request.param)
        if "blocked" in request.param:
            monkeypatch.setenv("NBLSTM_CPU_BLOCK_ROWS", str(BLOCKED_TEST_ROWS))
    return request.param


def pytest_report_header(config):
    reason = cuda_unavailable_reason()
    if reason is not None:
        cuda_mode = f"unavailable ({reason})"
    else:
        from nblstm.kernels.cuda.target import device_description
        cuda_mode = device_description()
    cupy_mode = "yes" if (reason is None and not SIMULATED and cupy_usable()) else "no"
    from nblstm.kernels.cpu import plan
    return (f"nblstm backends: cpu ({plan.describe()}); cuda: {cuda_mode}; "
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
