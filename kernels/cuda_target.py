"""The one place that imports the numba CUDA target.

Every CUDA kernel module gets ``cuda`` from here, so moving to another numba CUDA target
(numba's built-in one, numba-cuda, a fork) is a one-line change. Importing this module
loads numba-cuda but does not touch a GPU driver; ``nblstm`` itself never imports it at
``import nblstm`` (only when a GPU array or ``backend="cuda"`` is first used).

``SIMULATOR`` is true when ``NUMBA_ENABLE_CUDASIM=1`` was set before numba was imported:
kernels then run as Python, one thread at a time, on host memory.
"""
import sys

from numba import config as _numba_config
from numba import cuda  # noqa: F401  (re-exported: the CUDA target used by nblstm)

SIMULATOR: bool = bool(_numba_config.ENABLE_CUDASIM)



def _make_simulator_shared_arrays_thread_safe() -> None:
    """Fix a race in the simulator's ``cuda.shared.array`` (numba-cuda 0.30).

    The simulator runs the threads of a block as Python threads that all call
    ``cuda.shared.array`` at kernel start; it looks the array up by source line and creates
    it when missing, without a lock. Two threads can both miss and get different arrays, so
    a tiled GEMM then reads tiles other threads never wrote (seen here: wrong GEMM results
    once in a few hundred launches). Same lookup, under a lock.
    """
    import threading
    import traceback

    import numpy as np
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original = kernelapi.FakeCUDAShared.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory / unsupported
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = traceback.extract_stack(sys._getframe(1), limit=1)[-1][0:2]
        with lock:
            found = self._allocations.get(caller)
            if found is None:
                found = self._allocations[caller] = np.empty(shape, dtype)
        return found

    kernelapi.FakeCUDAShared.array = array


if SIMULATOR:
    _make_simulator_shared_arrays_thread_safe()
    # The simulator runs each GPU thread as a Python thread and busy-polls them from the
    # launching thread; with Python's default 5 ms GIL switch interval most of that time is
    # spent waiting. A shorter interval made nblstm's simulated kernels 4-5x faster
    # (measured). Only ever set when the simulator is on, i.e. in tests and debugging.
    sys.setswitchinterval(min(sys.getswitchinterval(), 5e-5))


def unavailable_reason() -> str | None:
    """None when CUDA kernels can run (a GPU, or the simulator); otherwise why not."""
    if SIMULATOR:
        return None
    try:
        if cuda.is_available():
            return None
        return "no CUDA driver or GPU found (cuda.is_available() is False)"
    except Exception as error:  # the driver can fail in many ways; report, never crash
        return f"CUDA driver error: {error}"


def device_description() -> str:
    """``"simulator"`` or the name of the current GPU."""
    if SIMULATOR:
        return "simulator (NUMBA_ENABLE_CUDASIM=1)"
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    return f"{name} (compute capability {device.compute_capability[0]}.{device.compute_capability[1]})"
