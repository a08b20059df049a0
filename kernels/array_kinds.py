"""What kind of array an object is: the one function that tells, for all of nblstm.

Kinds: ``"numpy"`` (``numpy.ndarray``), ``"cupy"`` (``cupy.ndarray``), ``"torch"``
(``torch.Tensor``, CPU or CUDA), ``"jax"`` (``jax.Array``) and ``"numba"`` (numba device
arrays, the CUDA simulator's arrays, and any other object exposing
``__cuda_array_interface__``); ``None`` for everything else. torch and JAX are recognised by
their classes before the ``__cuda_array_interface__`` fallback (a torch CUDA tensor has one).

No framework is ever imported here: an object can only be a CuPy array (or a torch / JAX
tensor) if that module is already in ``sys.modules``, so the test looks there (as
array-api-compat does) and caches the ``issubclass`` answer per type. This module is the lowest layer of the package: the
dispatcher (``nblstm._dispatch``), the CUDA kernels' host code and the tests all call it,
and it imports nothing of nblstm.
"""
import functools
import sys
from typing import Any

import numpy as np

ARRAY_KINDS = ("numpy", "cupy", "numba", "torch", "jax")
#: Tensor frameworks whose arrays nblstm takes through DLPack / the CUDA array interface.
FRAMEWORK_KINDS = ("torch", "jax")


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
    if _is_subclass_of(type(value), "torch", "Tensor"):
        return "torch"
    if _is_subclass_of(type(value), "jax", "Array"):
        return "jax"
    # Checked on the object, not its type: the interface may be an instance attribute.
    if hasattr(value, "__cuda_ndarray__") or hasattr(value, "__cuda_array_interface__"):
        return "numba"
    return None


def framework_device(value: Any) -> str:
    """``"cpu"`` or ``"cuda"``: where a torch or JAX tensor lives; ``TypeError`` for another
    device (MPS, XPU, TPU...), which nblstm has no backend for."""
    kind = array_kind(value)
    if kind == "torch":
        device = value.device.type
    else:
        platforms = {getattr(d, "platform", "?") for d in value.devices()}
        device = "cpu" if platforms == {"cpu"} else ("cuda" if platforms <= {"gpu", "cuda"}
                                                    else "/".join(sorted(platforms)))
    if device not in ("cpu", "cuda"):
        raise TypeError(f"a {kind} array on device {device!r}: nblstm runs on the CPU and on "
                        f"CUDA GPUs only")
    return device


def is_device_array(value: Any) -> bool:
    """True for a GPU array of any kind (CuPy, numba, ``__cuda_array_interface__``, a torch
    or JAX tensor on a GPU)."""
    kind = array_kind(value)
    if kind in FRAMEWORK_KINDS:
        return framework_device(value) == "cuda"
    return kind in ("cupy", "numba")
