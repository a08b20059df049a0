"""A driver compiled by ``kernels/cpu/variants.serial_and_parallel`` that records which
numba thread ran each iteration (run in fresh processes by ``test_packed_gemm.py``)."""
import numpy as np
from numba import get_thread_id, prange

from nblstm.kernels.cpu.variants import serial_and_parallel


def _record_threads(out):
    for i in prange(out.shape[0]):
        out[i] = get_thread_id()


record_serial, record_parallel = serial_and_parallel(_record_threads, "record_threads")


def threads_used(function) -> list:
    out = np.full(256, -1, np.int64)
    function(out)
    return sorted(set(out.tolist()))
