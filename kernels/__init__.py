"""Numba kernels of nblstm, installed as ``nblstm.kernels``. Layers, lowest first:

- ``config``: every tunable (compile options, thresholds, tiles, launch sizes).
- ``array_kinds``: which kind of array an object is (NumPy, CuPy, numba device array),
  without importing CuPy: the one function the dispatcher and the kernels' host code share.
- ``contract``: ``TWIN_FUNCTIONS``, the functions both targets export with equal parameters.
- ``math/``: target-free scalar math (gates, a vectorizable exp, optimizer updates), written
  once as ``@njit(inline="always")`` functions that both targets compile.
- ``cpu/``: the ``@njit`` target (facade in ``cpu/__init__.py``).
- ``cuda/``: the ``@cuda.jit`` target (facade in ``cuda/__init__.py``).

``cpu`` and ``cuda`` are twins: each facade's ``__all__`` is ``contract.TWIN_FUNCTIONS``.
Nothing here imports a target at ``import nblstm.kernels``, and nothing is compiled at
import: numba compiles each kernel on its first call. Nothing here imports ``nblstm``'s API
modules (no import cycles: the API depends on the kernels, never the reverse).
"""
