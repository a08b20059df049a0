"""Compile options shared by every CPU kernel module.

numba's on-disk cache: on by default; ``NBLSTM_NUMBA_CACHE=0`` turns it off (e.g. read-only
installs, or when measuring cold compile time). One jitted function per Python function, so
cached variants never collide.
"""
import os

CACHE = os.environ.get("NBLSTM_NUMBA_CACHE", "1") != "0"
#: ``error_model="numpy"``: IEEE division (lets sigmoid/tanh vectorize); ``nogil``: callers may
#: run kernels from several threads at once.
JIT_OPTIONS = dict(cache=CACHE, error_model="numpy", nogil=True)
#: The same, for kernels with a ``prange`` parallel region.
PARALLEL_JIT_OPTIONS = dict(JIT_OPTIONS, parallel=True)
