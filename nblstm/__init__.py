"""nblstm: Numba-compiled LSTM kernels for NumPy and GPU arrays (CPU and CUDA backends).

- ``nblstm.LSTM``: a multi-layer, bidirectional LSTM layer with ``torch.nn.LSTM``'s
  parameters and conventions (padded batches with ``lengths``, explicit ``backward``).
- The seed-compatible API (the deeplearning.ai course's functions, compiled):
  ``lstm_cell_forward``, ``lstm_forward``, ``lstm_cell_backward``, ``lstm_backward``.
- Training helpers (loss, optimizers, gradient clipping, minibatches): ``nblstm.training``.
- The plain NumPy oracle lives in ``nblstm.reference``.
"""
import importlib.util as _importlib_util
import os as _os
import sys as _sys


def _attach_source_kernels() -> None:
    """Make ``nblstm.kernels`` importable when this ``nblstm`` is a source checkout's folder.

    The repository keeps the kernels in a top-level ``kernels/`` folder that installs as
    ``nblstm.kernels``. Imported from a clone's root (not installed, or a non-editable
    install shadowed by the clone's ``nblstm/``), there is no ``nblstm/kernels``: then the
    checkout's own ``kernels/`` folder, beside this one, is registered as ``nblstm.kernels``
    (so the API and the kernels always come from one tree). An installed wheel has
    ``nblstm/kernels`` and this does nothing; an editable install maps the same folder.
    """
    here = _os.path.dirname(_os.path.abspath(__file__))
    folder = _os.path.join(_os.path.dirname(here), "kernels")
    init = _os.path.join(folder, "__init__.py")
    name = __name__ + ".kernels"
    if (name in _sys.modules or _os.path.isdir(_os.path.join(here, "kernels"))
            or not _os.path.isfile(init)):
        return
    spec = _importlib_util.spec_from_file_location(name, init,
                                                   submodule_search_locations=[folder])
    module = _importlib_util.module_from_spec(spec)
    _sys.modules[name] = module
    spec.loader.exec_module(module)
    globals()["kernels"] = module  # what the import system does for a found submodule


_attach_source_kernels()

from . import training  # noqa: E402  (after the kernels are importable)
from .layers import LSTM  # noqa: E402
from .seed import (lstm_backward, lstm_cell_backward, lstm_cell_forward,  # noqa: E402
                   lstm_forward)

__version__ = "0.1.0"

__all__ = ["LSTM", "training", "lstm_cell_forward", "lstm_forward", "lstm_cell_backward",
           "lstm_backward", "__version__"]
