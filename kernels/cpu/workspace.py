"""Working buffers of the CPU kernels, reused from call to call: one set per Python thread.

A kernel's scratch arrays (the packed weight panels, ``dz`` of the backward pass, per-worker
tiles, an inference pass's chunk buffers) were allocated afresh on every call: at mid-size
shapes that is tens of MB per call, which the kernel then faults in page by page. ``scratch``
hands out the same memory again instead:

- **Never stale:** a scratch array's contents are undefined when it is handed out; every
  kernel fills what it reads (the packed weights are packed from the live parameters on
  every call), so reuse changes no result. Nothing that leaves a kernel (results, a
  training cache) is ever scratch memory.
- **Per Python thread** (``threading.local``): two threads calling nblstm at once get
  separate buffers, so concurrent calls share nothing (numba's worker threads inside a
  parallel region are not Python threads: a call's regions all use its caller's buffers).
- **Bounded:** one array per role and thread, replaced when a call needs more, or less than
  half of it: the memory held is about what the last call of each shape needed. A thread's
  buffers are freed with the thread; ``release()`` frees the calling thread's now.
"""
from __future__ import annotations

import threading

import numpy as np

_THREAD = threading.local()


def scratch(role: str, shape: tuple, dtype) -> np.ndarray:
    """A C-contiguous array of ``shape`` and ``dtype`` for the kernel step ``role`` (a name
    unique to one use in one kernel), owned by the calling thread; its contents are
    undefined. The same memory may come back on the thread's next call with this role."""
    pool = getattr(_THREAD, "buffers", None)
    if pool is None:
        pool = _THREAD.buffers = {}
    dtype = np.dtype(dtype)
    size = 1
    for n in shape:
        size *= int(n)
    held = pool.get(role)
    if held is None or held.dtype != dtype or not size <= held.size <= 2 * max(size, 1):
        held = pool[role] = np.empty(max(size, 1), dtype)
    return held[:size].reshape(shape)


def zeroed(role: str, shape: tuple, dtype) -> np.ndarray:
    """``scratch`` filled with zeros (for buffers a kernel reads before writing)."""
    array = scratch(role, shape, dtype)
    array.fill(0)
    return array


def held_bytes() -> int:
    """Bytes of scratch memory the calling thread holds."""
    return sum(a.nbytes for a in getattr(_THREAD, "buffers", {}).values())


def release() -> None:
    """Free the calling thread's scratch memory (the next call allocates it again)."""
    _THREAD.buffers = {}
