"""One driver source, compiled as a serial and a parallel function.

A packed-GEMM driver runs its tasks in a ``prange`` loop and picks its work buffer with
``get_thread_id()``. ``serial_and_parallel(driver, name)`` compiles that one source twice:

- ``<name>_parallel``: ``@njit(parallel=True)``, one parallel region per call (or per step);
- ``<name>_serial``: ``@njit`` with ``prange`` bound to ``range`` and ``get_thread_id`` to
  ``calling_thread`` (always 0), so it runs on the calling thread and never starts numba's
  thread pool (which is what a child forked after threaded work needs: ``plan.py``).

Why two distinct Python functions, each with its own ``__qualname__``: numba's on-disk cache
names its files after the function's qualified name and line and ignores ``parallel=`` in
its key, so one function compiled both ways would share cache entries, and a process with a
warm cache could load the parallel build for the "serial" variant
(``tests/test_architecture.py`` checks it in fresh processes).
"""
import types
from collections.abc import Callable

from numba import njit

from ..config import JIT_OPTIONS, PARALLEL_JIT_OPTIONS


@njit(inline="always")
def calling_thread():
    """``get_thread_id()`` of a serial driver: the calling thread is worker 0."""
    return 0


def _twin(function: Callable, name: str, namespace: dict) -> Callable:
    twin = types.FunctionType(function.__code__, namespace, name, function.__defaults__,
                              function.__closure__)
    twin.__qualname__ = name
    twin.__module__ = function.__module__
    twin.__doc__ = function.__doc__
    return twin


def serial_and_parallel(driver: Callable, name: str) -> tuple:
    """``(serial, parallel)`` numba functions compiled from ``driver``'s one source (module
    docstring). Call it after every function ``driver`` uses is defined: the serial twin
    reads a copy of the module's globals taken now."""
    serial_namespace = {**driver.__globals__, "prange": range, "get_thread_id": calling_thread}
    serial = njit(**JIT_OPTIONS)(_twin(driver, f"{name}_serial", serial_namespace))
    parallel = njit(**PARALLEL_JIT_OPTIONS)(_twin(driver, f"{name}_parallel",
                                                  driver.__globals__))
    return serial, parallel
