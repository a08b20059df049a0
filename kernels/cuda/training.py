"""CUDA kernels (numba-cuda) of the training helpers: the GPU twin of ``cpu/training.py``.

Same functions, same argument order as ``kernels/cpu/training.py`` (see there for shapes;
the twin contract, ``kernels/contract.py``) and the same per-element math: both call
``kernels/math/training.py``. The arrays are all CuPy arrays or all numba device arrays;
kernels launch through ``launch.Launch`` (CuPy's current stream and the arrays' device for
CuPy arrays, the default stream for numba device arrays).

- Elementwise kernels use grid-stride loops over a capped grid (small in the simulator,
  where every thread runs as Python).
- ``sum_of_squares``: each thread sums the squares of its elements in the data's dtype into
  its own slot of a partial array; the partials are summed in float64 on the host (there is
  a host value to return anyway). Deterministic: no atomics.
- float32 kernels do float32 math: the scalars arrive in the data's dtype and constants are
  typed like the data (checked on PTX by ``tests/test_cuda_ptx.py``).
"""
import numpy as np

from ..config import SIMULATOR
from ..math import training as math_
from ..math.softmax import shifted_exp
from .launch import Launch
from .target import cuda, simulator_twin

# In the simulator, the Python source of the array-taking helper (target.simulator_twin).
_cross_entropy_row = (
    simulator_twin(math_.cross_entropy_row, shifted_exp=shifted_exp.py_func) if SIMULATOR
    else math_.cross_entropy_row)


# ----------------------------------------------------------------------------- kernels

@cuda.jit
def _sgd_kernel(param, grad, lr, weight_decay):
    for k in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        param[k] = math_.sgd_step(param[k], grad[k], lr, weight_decay)


@cuda.jit
def _sgd_momentum_kernel(param, grad, buffer, lr, momentum, weight_decay, nesterov):
    for k in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        param[k], buffer[k] = math_.sgd_momentum_step(param[k], grad[k], buffer[k], lr,
                                                      momentum, weight_decay, nesterov)


@cuda.jit
def _adam_kernel(param, grad, exp_avg, exp_avg_sq, step_size, one_minus_beta1, beta2,
                 one_minus_beta2, eps, weight_decay, bias_correction2_sqrt):
    for k in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        param[k], exp_avg[k], exp_avg_sq[k] = math_.adam_step(
            param[k], grad[k], exp_avg[k], exp_avg_sq[k], step_size, one_minus_beta1, beta2,
            one_minus_beta2, eps, weight_decay, bias_correction2_sqrt)


@cuda.jit
def _partial_sums_of_squares_kernel(a, partial):
    """``partial[thread]`` = sum of the squares of the elements this thread visits."""
    start = cuda.grid(1)
    total = type(a[0])(0)
    for k in range(start, a.shape[0], cuda.gridsize(1)):
        total += a[k] * a[k]
    if start < partial.shape[0]:
        partial[start] = total


@cuda.jit
def _scale_kernel(a, factor):
    for k in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[k] = a[k] * factor


@cuda.jit
def _softmax_cross_entropy_kernel(logits, targets, dlogits, losses, scale):
    """One thread per row; see ``kernels.cpu.training.softmax_cross_entropy_rows``."""
    r = cuda.grid(1)
    if r < logits.shape[0]:
        losses[r] = _cross_entropy_row(logits[r], targets[r], dlogits[r], scale)


@cuda.jit
def _gather_rows_kernel(src, index, dst):
    """``dst[i, k] = src[index[i], k]``, one thread per element of ``dst`` (grid-stride)."""
    cols = dst.shape[1]
    for flat in range(cuda.grid(1), dst.shape[0] * cols, cuda.gridsize(1)):
        i = flat // cols
        k = flat - i * cols
        dst[i, k] = src[index[i], k]


# ------------------------------------------------------------------------- host side

def sgd_update(param, grad, lr, weight_decay):
    """Plain SGD step in place; see ``kernels.cpu.training.sgd_update``."""
    with Launch(param) as run:
        run.launch_grid_stride(_sgd_kernel, param.shape[0])(
            run.kernel_arg(param), run.kernel_arg(grad), lr, weight_decay)


def sgd_momentum_update(param, grad, buffer, lr, momentum, weight_decay, nesterov):
    """SGD step with momentum in place; see ``kernels.cpu.training.sgd_momentum_update``."""
    with Launch(param) as run:
        run.launch_grid_stride(_sgd_momentum_kernel, param.shape[0])(
            *(run.kernel_arg(a) for a in (param, grad, buffer)), lr, momentum, weight_decay,
            nesterov)


def adam_update(param, grad, exp_avg, exp_avg_sq, step_size, one_minus_beta1, beta2,
                one_minus_beta2, eps, weight_decay, bias_correction2_sqrt):
    """Adam step in place; see ``kernels.cpu.training.adam_update``."""
    with Launch(param) as run:
        run.launch_grid_stride(_adam_kernel, param.shape[0])(
            *(run.kernel_arg(a) for a in (param, grad, exp_avg, exp_avg_sq)), step_size,
            one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, bias_correction2_sqrt)


def sum_of_squares(a) -> float:
    """``sum(a ** 2)`` of a non-empty 1-D array as a Python float; see
    ``kernels.cpu.training.sum_of_squares``. Waits for the GPU (the value goes to the host)."""
    with Launch(a) as run:
        blocks, threads = run.grid_stride_size(a.shape[0])
        partial = run.zeros((blocks * threads,), a.dtype)
        run.launch_grid_stride(_partial_sums_of_squares_kernel, a.shape[0])(
            run.kernel_arg(a), run.kernel_arg(partial))
        host = run.to_host(partial)
    return float(host.astype(np.float64).sum())


def scale_in_place(a, factor):
    """``a *= factor`` in place; see ``kernels.cpu.training.scale_in_place``."""
    with Launch(a) as run:
        run.launch_grid_stride(_scale_kernel, a.shape[0])(run.kernel_arg(a), factor)


def softmax_cross_entropy_rows(logits, targets, dlogits, losses, scale):
    """Per-row softmax cross-entropy; see ``kernels.cpu.training.softmax_cross_entropy_rows``."""
    with Launch(logits) as run:
        run.launch_1d(_softmax_cross_entropy_kernel, logits.shape[0])(
            *(run.kernel_arg(a) for a in (logits, targets, dlogits, losses)), scale)


def gather_rows(src, index, dst):
    """``dst[i, :] = src[index[i], :]``; see ``kernels.cpu.training.gather_rows``."""
    with Launch(src) as run:
        run.launch_grid_stride(_gather_rows_kernel, dst.shape[0] * dst.shape[1])(
            *(run.kernel_arg(a) for a in (src, index, dst)))
