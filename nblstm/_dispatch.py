"""Array type -> backend.

NumPy arrays run on the CPU backend (``nblstm.kernels.cpu``). GPU arrays (CuPy, numba
device arrays, anything exposing ``__cuda_array_interface__``, and the CUDA simulator's
``__cuda_ndarray__``) are recognised so that the error says what happened, but there is no
CUDA backend yet: they get a ``TypeError``. Mixed host and device arguments are refused
(no silent copies). Nothing here imports CuPy or touches a GPU driver.
"""
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np


def is_gpu_array(value: Any) -> bool:
    """True for objects that live in GPU memory (checked by attribute, imports nothing)."""
    return hasattr(value, "__cuda_array_interface__") or hasattr(value, "__cuda_ndarray__")


@dataclass(frozen=True)
class Backend:
    """A place where arrays live and the kernels that run there.

    name:  "cpu" or "cuda"
    xp:    the array module used for allocation and layout changes (numpy on the CPU)
    """
    name: str
    xp: ModuleType

    @property
    def kernels(self) -> ModuleType:
        """The kernel module (imported on first use, so ``import nblstm`` stays cheap)."""
        if self.name == "cpu":
            from nblstm.kernels import cpu
            return cpu
        raise RuntimeError(f"no kernels for backend {self.name!r}")


CPU = Backend("cpu", np)


def select_backend(named_arrays: dict[str, Any]) -> Backend:
    """The backend for these arguments (``{name: value}``), or a ``TypeError`` naming the
    argument that is not an array, or saying which arguments live where."""
    on_host, on_gpu = [], []
    for name, value in named_arrays.items():
        if isinstance(value, np.ndarray):
            on_host.append(name)
        elif is_gpu_array(value):
            on_gpu.append(name)
        else:
            raise TypeError(f"{name} must be an array (numpy.ndarray), "
                            f"got {type(value).__module__}.{type(value).__qualname__}")
    if on_host and on_gpu:
        raise TypeError(f"arguments live on different devices: {', '.join(on_host)} on the host "
                        f"(NumPy), {', '.join(on_gpu)} on the GPU; nblstm does not copy silently, "
                        f"move them to one place first")
    if on_gpu:
        raise TypeError(f"{on_gpu[0]} is a GPU array ({type(named_arrays[on_gpu[0]]).__name__}), "
                        f"but this version of nblstm has no CUDA backend; pass NumPy arrays")
    return CPU
