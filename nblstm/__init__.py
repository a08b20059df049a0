"""nblstm: Numba-compiled LSTM kernels for NumPy and GPU arrays (CPU and CUDA backends).

- ``nblstm.LSTM``: a multi-layer, bidirectional LSTM layer with ``torch.nn.LSTM``'s
  parameters and conventions (padded batches with ``lengths``, explicit ``backward``).
- The seed-compatible API (the deeplearning.ai course's functions, compiled):
  ``lstm_cell_forward``, ``lstm_forward``, ``lstm_cell_backward``, ``lstm_backward``.
- Training helpers (loss, optimizers, gradient clipping, minibatches): ``nblstm.training``.
- The plain NumPy oracle lives in ``nblstm.reference``.
"""
from . import training
from .layers import LSTM
from .seed import lstm_backward, lstm_cell_backward, lstm_cell_forward, lstm_forward

__version__ = "0.1.0"

__all__ = ["LSTM", "training", "lstm_cell_forward", "lstm_forward", "lstm_cell_backward",
           "lstm_backward", "__version__"]
