"""The CUDA target (``@cuda.jit``, numba-cuda): the facade of the twin contract.

Exports exactly ``contract.TWIN_FUNCTIONS`` (``kernels/contract.py``), with the same
parameters as ``nblstm.kernels.cpu``. The arrays of one call are all CuPy arrays or all
numba device arrays (the dispatcher, ``nblstm._dispatch``, makes sure of that).

Modules:
- ``target``: the one import of the numba CUDA target; simulator detection and its fixes.
- ``launch``: the host-side helper of every call (streams, devices, GEMMs, launch sizes)
  and ``DeviceArrayModule``, NumPy's role for numba device arrays.
- ``lstm``: the LSTM gate kernels and the per-step host loops.
- ``training``: the optimizer, loss and gather kernels of ``nblstm.training``.

Importing this package loads numba-cuda but touches no GPU driver; kernels compile on their
first launch.
"""
from ..contract import TWIN_FUNCTIONS
from .lstm import (add_arrays, copy_time_steps, dropout, gather_steps, linear_softmax,
                   lstm_gates_backward, lstm_gates_forward, lstm_peephole_sequence_backward,
                   lstm_peephole_sequence_forward, lstm_projected_sequence_backward,
                   lstm_projected_sequence_forward, lstm_sequence_backward,
                   lstm_sequence_forward, lstm_sequence_inference, reverse_axes_copy)
from .training import (adam_update, gather_rows, scale_in_place, sgd_momentum_update,
                       sgd_update, softmax_cross_entropy_rows, sum_of_squares)

__all__ = list(TWIN_FUNCTIONS)  # exactly the contract (tests/test_kernel_contract.py)
