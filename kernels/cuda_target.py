"""The one place that imports the numba CUDA target.

Every CUDA kernel module gets ``cuda`` from here, so moving to another numba CUDA target
(numba's built-in one, numba-cuda, a fork) is a one-line change. Importing this module
loads numba-cuda but does not touch a GPU driver; ``nblstm`` itself never imports it at
``import nblstm`` (only when a GPU array or ``backend="cuda"`` is first used).

``SIMULATOR`` is true when ``NUMBA_ENABLE_CUDASIM=1`` was set before numba was imported:
kernels then run as Python, one thread at a time, on host memory.
"""
from numba import config as _numba_config
from numba import cuda  # noqa: F401  (re-exported: the CUDA target used by nblstm)

SIMULATOR: bool = bool(_numba_config.ENABLE_CUDASIM)


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
