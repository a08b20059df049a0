"""What kind of array an object is: the one function that tells, for all of nblstm.

Kinds: ``"numpy"`` (``numpy.ndarray``), ``"cupy"`` (``cupy.ndarray``) and ``"numba"``
(numba device arrays, the CUDA simulator's arrays, and any other object exposing
``__cuda_array_interface__``); ``None`` for everything else.

CuPy is never imported here: an object can only be a CuPy array if CuPy is already in
``sys.modules``, so the test looks there (as array-api-compat does) and caches the
``issubclass`` answer per type. This module is the lowest layer of the package: the
dispatcher (``nblstm._dispatch``), the CUDA kernels' host code and the tests all call it,
and it imports nothing of nblstm.
"""
import functools
import sys
from typing import Any

import numpy as np

ARRAY_KINDS = ("numpy", "cupy", "numba")


@functools.lru_cache(maxsize=256)
def _is_subclass_of(cls: type, module_name: str, class_name: str) -> bool:
    """``issubclass(cls, module.class_name)`` if that module is already imported, else False.

    Cached per type: once a type is known (not) to subclass it, the answer cannot change.
    A type created before the module was imported cannot subclass one of its classes, so a
    cached False stays right after the module is imported later.
    """
    module = sys.modules.get(module_name)
    if module is None:
        return False
    parent = getattr(module, class_name, None)
    return isinstance(parent, type) and issubclass(cls, parent)


def array_kind(value: Any) -> str | None:
    """``"numpy"``, ``"cupy"``, ``"numba"`` or None (not an array nblstm accepts)."""
    if isinstance(value, np.ndarray):
        return "numpy"
    if _is_subclass_of(type(value), "cupy", "ndarray"):
        return "cupy"
    # Checked on the object, not its type: the interface may be an instance attribute.
    if hasattr(value, "__cuda_ndarray__") or hasattr(value, "__cuda_array_interface__"):
        return "numba"
    return None


def is_device_array(value: Any) -> bool:
    """True for a GPU array of any kind (CuPy, numba, ``__cuda_array_interface__``)."""
    return array_kind(value) in ("cupy", "numba")
