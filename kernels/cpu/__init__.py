"""The CPU target (``@njit``): the facade of the twin contract (``kernels/contract.py``).

Exports exactly ``contract.TWIN_FUNCTIONS``, with the same parameters as
``nblstm.kernels.cuda``. Layouts and shapes are stated on each function.

Modules:
- ``lstm``: the fused gate updates and the whole-sequence loops (BLAS per step, or the
  packed GEMM below, as ``plan`` decides); the peephole cell's loops (BLAS).
- ``packed_gemm``: the register-blocked micro-kernel on packed weight panels (LLVM vector IR).
- ``packed_lstm``: the sequence loops on the packed GEMM, the gate math in the same region.
- ``blocked_lstm``: the batch-blocked loops on the packed GEMM (threads own blocks of batch
  rows for all T steps; large batches).
- ``plan``: which GEMM, tile and threading a call uses (``NBLSTM_CPU_GEMM``).
- ``projected_lstm``: the sequence loops of the LSTM with a projection (``proj_size``), on BLAS.
- ``training``: the optimizer, loss and gather kernels of ``nblstm.training``.
- ``gemm_floor``: only the GEMMs of the algorithm, for the benchmarks.

Nothing is compiled at import: numba compiles each kernel on its first call (or loads it
from its on-disk cache).
"""
from ..contract import TWIN_FUNCTIONS
from .lstm import (add_arrays, copy_time_steps, dropout, gather_steps, linear_softmax,
                   lstm_gates_backward, lstm_gates_forward, lstm_peephole_sequence_backward,
                   lstm_peephole_sequence_forward, lstm_sequence_backward,
                   lstm_sequence_forward, lstm_sequence_inference, reverse_axes_copy)
from .projected_lstm import lstm_projected_sequence_backward, lstm_projected_sequence_forward
from .training import (adam_update, gather_rows, scale_in_place, sgd_momentum_update,
                       sgd_update, softmax_cross_entropy_rows, sum_of_squares)

__all__ = list(TWIN_FUNCTIONS)  # exactly the contract (tests/test_kernel_contract.py)
