"""The scalar LSTM gate math, written once and compiled for every numba target.

Every function is ``@njit(inline="always")``: numba inlines it into the calling kernel, so a
loop over hidden units that calls it stays one loop that LLVM can vectorize, and numba-cuda
kernels can call the same functions directly (no second copy of the math).

Gate order everywhere in nblstm is (i, f, g, o), as in PyTorch:
    i = sigmoid(z_i)      input ("update") gate
    f = sigmoid(z_f)      forget gate
    g = tanh(z_g)         candidate cell value ("c tilde", the seed's ``cct``)
    o = sigmoid(z_o)      output gate
    c = f * c_prev + i * g
    h = o * tanh(c)

Constants are typed like the data (``type(x)(1)``): a Python float or int literal would
promote float32 math to float64. ``exp`` is the vectorizable one from ``fastmath``; with it,
NaN inputs propagate to the outputs and +-inf saturate the gates to exactly 0/1 or -1/1
(within one denormal).
"""
from numba import njit

from .fastmath import exp


@njit(inline="always")
def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))``; never overflows (``exp`` saturates)."""
    one = type(x)(1)
    return one / (one + exp(-x))


@njit(inline="always")
def tanh(x):
    """Hyperbolic tangent as ``1 - 2 / (1 + exp(2x))``: exact limits at +-inf, no overflow.

    Near 0 this loses relative (not absolute) precision: the absolute error stays within a
    few ulp of 1, which is what the LSTM's outputs and gradients see.
    """
    one = type(x)(1)
    two = type(x)(2)
    return one - two / (one + exp(two * x))


@njit(inline="always")
def lstm_unit_forward(z_i, z_f, z_g, z_o, c_prev):
    """One hidden unit, one step: pre-activations (bias included) -> gates and new state.

    Returns ``(i, f, g, o, c, h)``: the activated gates, the new cell state and the new
    hidden state.
    """
    i = sigmoid(z_i)
    f = sigmoid(z_f)
    g = tanh(z_g)
    o = sigmoid(z_o)
    c = f * c_prev + i * g
    h = o * tanh(c)
    return i, f, g, o, c, h


@njit(inline="always")
def lstm_unit_backward(i, f, g, o, c_prev, c, dh, dc):
    """One hidden unit, one step of backpropagation through the cell.

    ``dh`` and ``dc`` are the loss gradients with respect to this step's ``h`` and ``c``
    (``dc`` from the next step only: the path through ``h`` is added here).
    Returns ``(dz_i, dz_f, dz_g, dz_o, dc_prev)``: the gradients with respect to the
    pre-activations and with respect to ``c_prev``.
    """
    one = type(i)(1)
    tanh_c = tanh(c)
    dc_total = dc + dh * o * (one - tanh_c * tanh_c)
    dz_i = dc_total * g * i * (one - i)
    dz_f = dc_total * c_prev * f * (one - f)
    dz_g = dc_total * i * (one - g * g)
    dz_o = dh * tanh_c * o * (one - o)
    return dz_i, dz_f, dz_g, dz_o, dc_total * f


@njit(inline="always")
def lstm_unit_forward_peephole(z_i, z_f, z_g, z_o, c_prev, p_i, p_f, p_o):
    """``lstm_unit_forward`` with peephole connections (Gers & Schmidhuber 2000; ONNX's
    ``P``): the input and forget gates also see ``c_prev``, the output gate sees the new
    cell state ``c``, each through a per-unit weight (``p_i``, ``p_f``, ``p_o``):

        i = sigmoid(z_i + p_i * c_prev)    f = sigmoid(z_f + p_f * c_prev)
        c = f * c_prev + i * tanh(z_g)     o = sigmoid(z_o + p_o * c)     h = o * tanh(c)

    Returns ``(i, f, g, o, c, h)`` like ``lstm_unit_forward``.
    """
    i = sigmoid(z_i + p_i * c_prev)
    f = sigmoid(z_f + p_f * c_prev)
    g = tanh(z_g)
    c = f * c_prev + i * g
    o = sigmoid(z_o + p_o * c)
    h = o * tanh(c)
    return i, f, g, o, c, h


@njit(inline="always")
def lstm_unit_backward_peephole(i, f, g, o, c_prev, c, dh, dc, p_i, p_f, p_o):
    """``lstm_unit_backward`` of ``lstm_unit_forward_peephole``.

    The output gate depends on ``c`` (through ``p_o``), so its gradient joins ``dc`` before
    the cell's; ``c_prev`` reaches the loss through the forget path and through the input and
    forget gates' peepholes. Returns ``(dz_i, dz_f, dz_g, dz_o, dc_prev)``; the peephole
    weights' own gradients are ``dz_i * c_prev``, ``dz_f * c_prev`` and ``dz_o * c``, summed
    over steps and rows by the caller.
    """
    one = type(i)(1)
    tanh_c = tanh(c)
    dz_o = dh * tanh_c * o * (one - o)
    dc_total = dc + dh * o * (one - tanh_c * tanh_c) + dz_o * p_o
    dz_i = dc_total * g * i * (one - i)
    dz_f = dc_total * c_prev * f * (one - f)
    dz_g = dc_total * i * (one - g * g)
    return dz_i, dz_f, dz_g, dz_o, dc_total * f + dz_i * p_i + dz_f * p_f
