"""The per-element math of the training helpers, written once for every numba target.

Like ``gates.py``: ``@njit(inline="always")`` functions that the CPU kernels
(``kernels/cpu/training.py``) and the CUDA kernels (``kernels/cuda/training.py``) both call, so the update
rules exist in one copy. The formulas follow ``torch.optim.SGD`` / ``torch.optim.Adam``
operation by operation (so float64 agrees with torch to rounding). Scalars arrive in the
data's dtype and constants are typed like the data (``type(x)(0)``): float32 stays float32.
"""
import math

from numba import njit

from .softmax import shifted_exp


@njit(inline="always")
def with_weight_decay(g, p, weight_decay):
    """``g + weight_decay * p`` (torch adds the term only when weight_decay != 0)."""
    if weight_decay != type(weight_decay)(0):
        return g + weight_decay * p
    return g


@njit(inline="always")
def sgd_step(p, g, lr, weight_decay):
    """Plain SGD: the new parameter ``p - lr * (g + weight_decay * p)``."""
    return p + (-lr) * with_weight_decay(g, p, weight_decay)


@njit(inline="always")
def sgd_momentum_step(p, g, buf, lr, momentum, weight_decay, nesterov):
    """SGD with momentum (dampening 0): the new ``(parameter, momentum buffer)``.

    ``buf = momentum * buf + g``; the step is ``g + momentum * buf`` (Nesterov) or ``buf``.
    A buffer starting at 0 gives torch's first-step buffer ``g`` exactly.
    """
    g = with_weight_decay(g, p, weight_decay)
    buf = buf * momentum + g
    step = g + momentum * buf if nesterov else buf
    return p + (-lr) * step, buf


@njit(inline="always")
def adam_step(p, g, m, v, step_size, one_minus_beta1, beta2, one_minus_beta2, eps,
              weight_decay, bias_correction2_sqrt):
    """Adam: the new ``(parameter, first moment, second moment)``.

    ``m += (1 - beta1) * (g - m)`` (torch's lerp), ``v = v * beta2 + (1 - beta2) * g * g``,
    ``p -= step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)`` with
    ``step_size = lr / (1 - beta1**t)`` and ``bias_correction2_sqrt = sqrt(1 - beta2**t)``.
    """
    g = with_weight_decay(g, p, weight_decay)
    m = m + one_minus_beta1 * (g - m)
    v = v * beta2 + one_minus_beta2 * g * g
    denom = math.sqrt(v) / bias_correction2_sqrt + eps
    return p + (-step_size) * m / denom, m, v


@njit(inline="always")
def cross_entropy_row(z, label, grad, scale):
    """Softmax cross-entropy of one row; returns its loss and writes its gradient.

    z      (C,)  logits (read only)
    label        the target class; outside ``0..C-1`` the loss is -1 (a mark for the
                 caller: a real loss is never negative) and ``grad`` is 0
    grad   (C,)  out: ``scale * (softmax(z) - onehot(label))``
    Stable (the maximum is subtracted before ``exp``); NaN in ``z`` gives a NaN loss.
    """
    C = z.shape[0]
    if label < 0 or label >= C:
        for k in range(C):
            grad[k] = type(scale)(0)
        return type(scale)(-1)
    largest, total = shifted_exp(z, grad)
    for k in range(C):
        grad[k] = grad[k] / total * scale
    grad[label] -= scale
    return math.log(total) - (z[label] - largest)
