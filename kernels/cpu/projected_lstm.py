"""CPU sequence loops of the LSTM with a projection (LSTMP, ``proj_size`` in torch).

The cell is the one of ``lstm.py``; the hidden state that leaves a step is projected:

    z_t = x_t @ W_x + b + h_{t-1} @ W_h        (B, 4H), gate blocks (i, f, g, o)
    c_t = f * c_{t-1} + i * g                  (B, H)
    m_t = o * tanh(c_t)                        (B, H)   the unprojected hidden state
    h_t = m_t @ W_r                            (B, P)   W_r = weight_hr.T, (H, P)

so ``W_h`` is ``(P, 4H)`` and ``h`` has ``P < H`` features. The projection feeds the next
step's recurrent product, so it is one more GEMM inside the time loop (it cannot be batched
over steps). These loops run on BLAS (numba's ``np.dot``); the packed micro-kernel of
``packed_lstm.py`` does not implement the projection, so ``NBLSTM_CPU_GEMM=auto`` runs these
and a forced tile is a ``ValueError`` (``plan.require_blas``). Layout and dtype rules are
those of ``lstm.py``: time-major, C-contiguous outputs, one float dtype per call.
"""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS
from . import plan
from .loops import (gates_backward_units, gradients_after_the_loop, input_projection,
                    transpose_into)
from .lstm import lstm_gates_forward
from .workspace import scratch, zeroed


def lstm_projected_sequence_forward(x: np.ndarray, h0: np.ndarray, c0: np.ndarray,
                                    W_x: np.ndarray, W_h: np.ndarray, b: np.ndarray,
                                    W_r: np.ndarray, h_all: np.ndarray, c_all: np.ndarray,
                                    m_all: np.ndarray, gates_all: np.ndarray) -> None:
    """Forward pass of a projected LSTM over a sequence, saving what backward needs.

    x         (T, B, X)   inputs, time-major
    h0        (B, P)      initial (projected) hidden state
    c0        (B, H)      initial cell state
    W_x       (X, 4H)     input weights, gate blocks (i, f, g, o) along the columns
    W_h       (P, 4H)     recurrent weights (they act on the projected state)
    b         (4H,)       bias (the sum of torch's two biases)
    W_r       (H, P)      projection, torch's ``weight_hr`` transposed
    h_all     (T, B, P)   out: projected hidden state of every step
    c_all     (T, B, H)   out: cell state of every step
    m_all     (T, B, H)   out: unprojected hidden state ``o * tanh(c)`` of every step
    gates_all (T, B, 4H)  out: activated gates (i, f, g, o) of every step

    Inputs may be non-contiguous (copied); the outputs must be C-contiguous.
    """
    plan.require_blas("proj_size (the projection of LSTMP)")
    x, h0, c0, W_x, W_h, b, W_r = (np.ascontiguousarray(a) for a in (x, h0, c0, W_x, W_h, b, W_r))
    _projected_forward(x, h0, c0, W_x, W_h, b, W_r, h_all, c_all, m_all, gates_all)


@njit(**JIT_OPTIONS)
def _projected_forward(x, h0, c0, W_x, W_h, b, W_r, h_all, c_all, m_all, gates_all):
    T, B, _ = x.shape
    input_projection(x, W_x, b, gates_all)
    z_h = np.empty((B, W_h.shape[1]), dtype=x.dtype)
    np.dot(h0, W_h, z_h)
    lstm_gates_forward(gates_all[0], z_h, c0, c_all[0], m_all[0])
    np.dot(m_all[0], W_r, h_all[0])
    for t in range(1, T):
        np.dot(h_all[t - 1], W_h, z_h)
        lstm_gates_forward(gates_all[t], z_h, c_all[t - 1], c_all[t], m_all[t])
        np.dot(m_all[t], W_r, h_all[t])


def lstm_projected_sequence_backward(x: np.ndarray, h0: np.ndarray, c0: np.ndarray,
                                     W_x: np.ndarray, W_h: np.ndarray, W_r: np.ndarray,
                                     h_all: np.ndarray, c_all: np.ndarray, m_all: np.ndarray,
                                     gates_all: np.ndarray, dh_all: np.ndarray,
                                     dh_n: np.ndarray, dc_n: np.ndarray, lengths: np.ndarray,
                                     dx: np.ndarray, dh0: np.ndarray, dc0: np.ndarray,
                                     dW_x: np.ndarray, dW_h: np.ndarray, dW_r: np.ndarray,
                                     db: np.ndarray) -> None:
    """Backpropagation through time of a projected LSTM (padded batches too).

    Inputs as saved by ``lstm_projected_sequence_forward`` (same shapes), plus
    dh_all  (T, B, P)  dLoss/dh_t from the outputs of every step
    dh_n    (B, P)     dLoss/d(final hidden state) (zeros if unused)
    dc_n    (B, H)     dLoss/d(final cell state) (zeros if unused)
    lengths (B,)       int64 in 1..T, the padding rules of ``lstm.lstm_sequence_backward``
    Outputs (overwritten): dx (T, B, X), dh0 (B, P), dc0 (B, H), dW_x (X, 4H), dW_h (P, 4H),
    dW_r (H, P), db (4H,).

    Per step (reversed): the total gradient of ``h_t`` (outputs plus the recurrent
    ``dz_{t+1} @ W_h^T``, or ``dh_n`` at a row's last step, zero at padding) is kept for
    ``dW_r``; it goes back through the projection (``dm_t = dh_t @ W_r^T``) into the fused
    gate backward. After the loop the weight gradients and ``dx`` are GEMMs over all steps,
    ``dW_r = sum_t m_t^T dh_t`` among them.
    """
    plan.require_blas("proj_size (the projection of LSTMP)")
    x, h0, c0, W_x, W_h, W_r, h_all, c_all, m_all, gates_all, dh_all, dh_n, dc_n, lengths = (
        np.ascontiguousarray(a) for a in (x, h0, c0, W_x, W_h, W_r, h_all, c_all, m_all,
                                          gates_all, dh_all, dh_n, dc_n, lengths))
    (T, B, X), H, P, dtype = x.shape, c0.shape[1], h0.shape[1], x.dtype
    G = 4 * H
    _projected_backward(x, h0, c0, W_x, W_h, W_r, h_all, c_all, m_all, gates_all, dh_all, dh_n,
                        dc_n, lengths, dx, dh0, dc0, dW_x, dW_h, dW_r, db,
                        scratch("projected backward dz", (T, B, G), dtype),
                        scratch("projected backward dh", (T, B, P), dtype),
                        scratch("projected backward W_h^T", (G, P), dtype),
                        scratch("projected backward W_r^T", (P, H), dtype),
                        scratch("projected backward dm", (B, H), dtype),
                        zeroed("projected backward zeros", (B, H), dtype),
                        scratch("projected backward W_x^T", (G, X), dtype),
                        scratch("projected backward dW_h steps", (P, G), dtype))


@njit(**JIT_OPTIONS)
def _projected_hidden_gradient(t, lengths, dh_t, dh_n, dh_recurrent, out):
    """``out[b]`` = dLoss/dh_t of row b (B, P): the output gradient plus the recurrent one,
    or plus ``dh_n`` at the row's last step; zero at its padding steps."""
    for row in range(out.shape[0]):
        target, from_out = out[row], dh_t[row]
        length = lengths[row]
        if t >= length:
            for k in range(target.shape[0]):
                target[k] = 0
            continue
        later = dh_n[row] if t == length - 1 else dh_recurrent[row]
        for k in range(target.shape[0]):
            target[k] = from_out[k] + later[k]


@njit(**JIT_OPTIONS)
def _projected_backward(x, h0, c0, W_x, W_h, W_r, h_all, c_all, m_all, gates_all, dh_all, dh_n,
                        dc_n, lengths, dx, dh0, dc0, dW_x, dW_h, dW_r, db, dz_all, dh_total,
                        W_h_T, W_r_T, dm, zeros, W_x_T, later_steps):
    """The backward loops; the arguments from ``dz_all`` on are work buffers: dz_all
    (T, B, 4H), dh_total (T, B, P) (dLoss/dh_t, for dW_r), W_h_T (4H, P), W_r_T (P, H), dm
    (B, H), zeros (B, H) holding zeros, W_x_T (4H, X), later_steps (P, 4H)."""
    T, B, _ = x.shape
    H = c0.shape[1]
    P = h0.shape[1]
    transpose_into(W_h, W_h_T)
    transpose_into(W_r, W_r_T)
    # The gate backward's own hidden-gradient inputs stay zero (``zeros``, as dh_n and as the
    # recurrent gradient it copies dh_n into): dm already holds the whole gradient of m_t,
    # final-step rule included (applied to the projected gradient above).
    dh_recurrent = dh0  # carries dLoss/dh_t through the loop and ends as dLoss/dh0
    dc = dc0            # likewise for the cell state
    for t in range(T - 1, -1, -1):
        _projected_hidden_gradient(t, lengths, dh_all[t], dh_n, dh_recurrent, dh_total[t])
        np.dot(dh_total[t], W_r_T, dm)
        c_prev = c_all[t - 1] if t > 0 else c0
        gates_backward_units(t, lengths, gates_all[t], c_prev, c_all[t], dm, zeros, dc_n,
                             dc, dz_all[t], zeros, 0, H, None)
        np.dot(dz_all[t], W_h_T, dh_recurrent)
    np.dot(m_all.reshape(T * B, H).T, dh_total.reshape(T * B, P), dW_r)
    gradients_after_the_loop(x, h0, h_all, W_x, dz_all, W_x_T, later_steps, dx, dW_x, dW_h, db)
