"""The one place that imports the numba CUDA target.

Every CUDA kernel module gets ``cuda`` from here, so moving to another numba CUDA target
(numba's built-in one, numba-cuda, a fork) is a one-line change. Importing this module
loads numba-cuda but does not touch a GPU driver; ``nblstm`` itself never imports it at
``import nblstm`` (only when a GPU array or ``backend="cuda"`` is first used).

``SIMULATOR`` is true when ``NUMBA_ENABLE_CUDASIM=1`` was set before numba was imported:
kernels then run as Python, one thread at a time, on host memory.

Simulator settings, only ever applied when the simulator is on:
- a library fix for a race in the simulator's ``cuda.shared.array`` (below), applied to the
  numba-cuda versions known to have it: users of the simulator need it as much as our tests;
- ``NBLSTM_CUDASIM_SWITCH_INTERVAL`` (seconds, e.g. ``5e-5``): if set, the Python thread
  switch interval (``sys.setswitchinterval``) is lowered to it at import. It is a
  process-wide setting, so the library never changes it by itself; the test suite sets the
  variable (which its subprocesses inherit), because the simulator busy-polls its threads
  and with Python's default 5 ms interval most of a simulated kernel's time is waiting
  (nblstm's simulated kernels ran 4-5x faster at 5e-5 s, measured).
"""
import os
import sys
import types
from importlib import metadata

from numba import cuda  # noqa: F401  (re-exported: the CUDA target used by nblstm)

from ..config import SIMULATOR  # noqa: F401  (re-exported)

SWITCH_INTERVAL_VARIABLE = "NBLSTM_CUDASIM_SWITCH_INTERVAL"

#: The newest numba-cuda release checked to have the unlocked shared-array lookup: every
#: release up to it does (and numba's own simulator has the same code). Raise it after
#: checking a newer release's ``simulator/kernelapi.py``; drop the fix once upstream locks.
SHARED_ARRAY_RACE_LAST_CHECKED = (0, 30, 4)


def _numba_cuda_version() -> tuple:
    """numba-cuda's version as a tuple of ints (``(0,)`` if unknown)."""
    try:
        text = metadata.version("numba-cuda")
    except metadata.PackageNotFoundError:
        return (0,)
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def shared_array_race_present(version: tuple | None = None) -> bool:
    """Whether this numba-cuda version's simulator has the unlocked shared-array lookup."""
    version = _numba_cuda_version() if version is None else tuple(version)
    return version <= SHARED_ARRAY_RACE_LAST_CHECKED


def _make_simulator_shared_arrays_thread_safe() -> None:
    """Fix a race in the simulator's ``cuda.shared.array`` (numba-cuda up to
    ``SHARED_ARRAY_RACE_LAST_CHECKED``).

    Upstream behaviour: the simulator runs the threads of a block as Python threads that
    all call ``cuda.shared.array`` at kernel start; ``FakeCUDAShared.array`` looks the array
    up by the caller's source line in a dict and creates it when missing, without a lock
    (``res = self._allocations.get(caller); if res is None: res = np.empty(...); ...``). Two
    threads can both miss and get different arrays, so a tiled GEMM then reads tiles other
    threads never wrote (seen here: wrong GEMM results once in a few hundred launches). The
    replacement does the same lookup under a lock; dynamic shared memory (``shape == 0``) and
    ``alignment`` go to the original method unchanged.
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


def _apply_switch_interval() -> None:
    """``sys.setswitchinterval`` from ``NBLSTM_CUDASIM_SWITCH_INTERVAL``, if set (lowered only)."""
    value = os.environ.get(SWITCH_INTERVAL_VARIABLE, "").strip()
    if not value:
        return
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{SWITCH_INTERVAL_VARIABLE}={value!r}: expected seconds, e.g. 5e-5")
    if not seconds > 0:
        raise ValueError(f"{SWITCH_INTERVAL_VARIABLE}={value!r}: must be positive")
    sys.setswitchinterval(min(sys.getswitchinterval(), seconds))


if SIMULATOR:
    if shared_array_race_present():
        _make_simulator_shared_arrays_thread_safe()
    _apply_switch_interval()


def simulator_twin(dispatcher, **helpers):
    """The Python source of an ``@njit`` function that takes arrays, for simulated kernels.

    The simulator hands kernels its own array objects, which compiled numba code cannot
    take; scalar-only ``@njit`` functions (the gate math, ``exp``) are fine as they are.
    The twin runs the function's own code with the array-taking ``@njit`` helpers it calls
    replaced by ``helpers`` (their twins), so the math still exists once.
    """
    function = dispatcher.py_func
    namespace = {**function.__globals__, **helpers}
    return types.FunctionType(function.__code__, namespace, function.__name__,
                              function.__defaults__, function.__closure__)


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
