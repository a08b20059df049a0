"""Fixtures shared by the whole suite.

The parity suite is written once against two fixtures:
- ``backend``: where the arrays live. ``put`` moves a host (NumPy) array there, ``get``
  brings a result back to NumPy. Only ``cpu`` exists today; the CUDA backend adds its
  entry to ``BACKENDS`` and every test runs for it too.
- ``dtype``: float32 / float64 with the project's tolerances.
"""
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest


@dataclass(frozen=True)
class BackendCase:
    name: str
    put: Callable[[np.ndarray], Any]
    get: Callable[[Any], np.ndarray]


BACKENDS = {
    "cpu": BackendCase("cpu", put=lambda a: a, get=lambda a: np.asarray(a)),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request) -> BackendCase:
    return BACKENDS[request.param]


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
