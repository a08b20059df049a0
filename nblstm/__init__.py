"""nblstm: Numba-compiled LSTM kernels for NumPy and GPU arrays (CPU and CUDA backends).

The seed-compatible API (the deeplearning.ai course's functions, compiled):
``lstm_cell_forward``, ``lstm_forward``, ``lstm_cell_backward``, ``lstm_backward``.
The plain NumPy oracle lives in ``nblstm.reference``; training helpers (loss, optimizers,
gradient clipping, minibatches) in ``nblstm.training``.
"""
from . import training
from .seed import lstm_backward, lstm_cell_backward, lstm_cell_forward, lstm_forward

__version__ = "0.1.0"

__all__ = ["training", "lstm_cell_forward", "lstm_forward", "lstm_cell_backward", "lstm_backward",
           "__version__"]
