"""CPU kernels (``@njit``) of the training helpers (``nblstm.training``).

``kernels/cuda/training.py`` exports the same functions with the same argument order (the
twin contract, ``kernels/contract.py``); both are reached through the target facades
(``nblstm.kernels.cpu`` / ``nblstm.kernels.cuda``).

Every array here is 1-D and C-contiguous unless stated otherwise (the caller flattens
C-contiguous parameters into views, so the updates land in the caller's arrays). Parameter,
gradient and state arrays of one call share one float dtype (float32 or float64), and the
scalar hyperparameters arrive already converted to that dtype, so float32 stays float32:
every constant below is typed like the data (``type(x)(1)``).

The update formulas follow ``torch.optim.SGD`` and ``torch.optim.Adam`` (defaults: no
dampening, no AMSGrad, L2-style weight decay added to the gradient) operation by operation,
so float64 results agree with torch to rounding. The per-element math is written once,
in ``kernels/math/training.py``, for both targets.
"""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS as _JIT_OPTIONS, SUM_CHUNK
from ..math import training as math_


@njit(**_JIT_OPTIONS)
def sgd_update(param, grad, lr, weight_decay):
    """Plain SGD step, in place: ``param -= lr * (grad + weight_decay * param)``.

    param  (n,)  parameters, updated in place
    grad   (n,)  gradient (read only)
    lr, weight_decay: scalars of the arrays' dtype
    """
    for k in range(param.shape[0]):
        param[k] = math_.sgd_step(param[k], grad[k], lr, weight_decay)


@njit(**_JIT_OPTIONS)
def sgd_momentum_update(param, grad, buffer, lr, momentum, weight_decay, nesterov):
    """SGD step with (Nesterov) momentum, in place, as ``torch.optim.SGD`` (dampening 0);
    the formula is ``kernels/math/training.sgd_momentum_step``.

    param   (n,)  parameters, updated in place
    grad    (n,)  gradient (read only)
    buffer  (n,)  momentum buffer, updated in place; starts at zeros
    lr, momentum, weight_decay: scalars of the arrays' dtype; nesterov: bool
    """
    for k in range(param.shape[0]):
        param[k], buffer[k] = math_.sgd_momentum_step(param[k], grad[k], buffer[k], lr,
                                                      momentum, weight_decay, nesterov)


@njit(**_JIT_OPTIONS)
def adam_update(param, grad, exp_avg, exp_avg_sq, step_size, one_minus_beta1, beta2,
                one_minus_beta2, eps, weight_decay, bias_correction2_sqrt):
    """Adam step, in place, as ``torch.optim.Adam`` (no AMSGrad); the formula is
    ``kernels/math/training.adam_step``.

    param       (n,)  parameters, updated in place
    grad        (n,)  gradient (read only)
    exp_avg     (n,)  first moment, updated in place (starts at zeros)
    exp_avg_sq  (n,)  second moment, updated in place (starts at zeros)
    Scalars of the arrays' dtype, computed by the caller in float64 for step ``t``:
    ``step_size = lr / (1 - beta1**t)``, ``bias_correction2_sqrt = sqrt(1 - beta2**t)``,
    ``one_minus_beta1 = 1 - beta1``, ``one_minus_beta2 = 1 - beta2``.
    """
    for k in range(param.shape[0]):
        param[k], exp_avg[k], exp_avg_sq[k] = math_.adam_step(
            param[k], grad[k], exp_avg[k], exp_avg_sq[k], step_size, one_minus_beta1, beta2,
            one_minus_beta2, eps, weight_decay, bias_correction2_sqrt)


@njit(**_JIT_OPTIONS)
def _chunk_sums_of_squares(a, partial):
    """``partial[c] = sum(a[c*SUM_CHUNK:(c+1)*SUM_CHUNK] ** 2)`` in the dtype of ``a``."""
    n = a.shape[0]
    for c in range(partial.shape[0]):
        total = partial[c]  # the caller passes zeros: a zero of the data's dtype
        for k in range(c * SUM_CHUNK, min(n, (c + 1) * SUM_CHUNK)):
            total += a[k] * a[k]
        partial[c] = total


def sum_of_squares(a) -> float:
    """``sum(a ** 2)`` of a 1-D array as a Python float.

    Squares are summed in the array's dtype over chunks of ``SUM_CHUNK`` elements, the chunk
    totals in float64 (the CUDA version sums per block, then the block totals on the host).
    """
    partial = np.zeros(max(1, -(-a.shape[0] // SUM_CHUNK)), dtype=a.dtype)
    _chunk_sums_of_squares(a, partial)
    return float(partial.astype(np.float64).sum())


@njit(**_JIT_OPTIONS)
def scale_in_place(a, factor):
    """``a *= factor`` for a 1-D array; ``factor`` is a scalar of the array's dtype."""
    for k in range(a.shape[0]):
        a[k] = a[k] * factor


@njit(**_JIT_OPTIONS)
def softmax_cross_entropy_rows(logits, targets, dlogits, losses, scale):
    """Per-row softmax cross-entropy and its gradient.

    logits   (N, C)  float, read only
    targets  (N,)    integer class of each row
    dlogits  (N, C)  out: ``scale * (softmax(logits[r]) - onehot(targets[r]))``
    losses   (N,)    out: ``logsumexp(logits[r]) - logits[r, targets[r]]`` (>= 0), or -1
                     where ``targets[r]`` is outside ``0..C-1`` (that row's ``dlogits`` is 0)
    scale            scalar of the float dtype (``1 / N`` for the mean over rows)

    Stable: the row maximum is subtracted before ``exp``; a NaN in a row makes that row's
    loss and gradient NaN.
    """
    for r in range(logits.shape[0]):
        losses[r] = math_.cross_entropy_row(logits[r], targets[r], dlogits[r], scale)


@njit(**_JIT_OPTIONS)
def gather_rows(src, index, dst):
    """``dst[i, :] = src[index[i], :]`` for 2-D arrays (any dtype; ``index`` integer, in
    range: the caller makes it)."""
    for i in range(index.shape[0]):
        source, target = src[index[i]], dst[i]
        for k in range(dst.shape[1]):
            target[k] = source[k]
