"""The CUDA target module (``kernels/cuda/target.py``): the simulator's fixes are gated and
process-wide settings are never changed by importing the library."""
import os
import subprocess
import sys

import pytest

from _backends import SIMULATED, skip_unless_cuda

SWITCH = "NBLSTM_CUDASIM_SWITCH_INTERVAL"
PROBE = ("import sys; before = sys.getswitchinterval(); import nblstm.kernels.cuda; "
         "print(before, sys.getswitchinterval())")


def _simulator_process(**variables) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != SWITCH}
    env.update(NUMBA_ENABLE_CUDASIM="1", **variables)
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    before, after = map(float, result.stdout.split())
    return before, after


def test_importing_the_cuda_target_leaves_the_switch_interval_alone():
    skip_unless_cuda()
    before, after = _simulator_process()
    assert after == before


def test_the_switch_interval_variable_lowers_it_in_the_simulator():
    skip_unless_cuda()
    before, after = _simulator_process(**{SWITCH: "5e-5"})
    assert after == pytest.approx(5e-5) and before > after


def test_a_bad_switch_interval_is_a_clear_error():
    skip_unless_cuda()
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", SWITCH: "fast"}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode != 0 and f"{SWITCH}='fast'" in result.stderr


def test_the_shared_array_fix_is_gated_by_numba_cuda_version():
    skip_unless_cuda()
    from nblstm.kernels.cuda import target
    last = target.SHARED_ARRAY_RACE_LAST_CHECKED
    assert target.shared_array_race_present((0, 20, 0))
    assert target.shared_array_race_present(last)
    assert not target.shared_array_race_present(last[:-1] + (last[-1] + 1,))
    if SIMULATED:
        from numba.cuda.simulator import kernelapi
        patched = kernelapi.FakeCUDAShared.array.__module__ == target.__name__
        assert patched == target.shared_array_race_present()


THREADS = 16


def _shared_sum_kernel():
    """A kernel whose threads each write one slot of a shared array, then sum all slots.
    ``cuda`` is made a module global: the simulator swaps the kernel's global ``cuda``
    for its fake module while the kernel runs (a closure variable would not be swapped)."""
    global cuda
    from numba import float64

    from nblstm.kernels.cuda.target import cuda

    @cuda.jit
    def kernel(out):
        shared = cuda.shared.array(THREADS, float64)
        k = cuda.threadIdx.x
        shared[k] = k
        cuda.syncthreads()
        total = 0.0
        for j in range(THREADS):
            total += shared[j]
        out[k] = total

    return kernel


@pytest.mark.skipif(not SIMULATED, reason="the simulator's shared arrays only")
def test_every_thread_of_a_simulated_block_sees_one_shared_array():
    """The race the fix closes: the threads of one block must get the same shared array."""
    import numpy as np
    kernel = _shared_sum_kernel()
    for _ in range(5):
        out = np.zeros(THREADS)
        kernel[1, THREADS](out)
        np.testing.assert_array_equal(out, np.full(THREADS, THREADS * (THREADS - 1) / 2))
