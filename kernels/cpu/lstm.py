"""CPU LSTM kernels: ``@njit`` fused gate updates and whole-sequence LSTM loops.

Layout: time-major ``(T, B, F)``, C-contiguous (the caller, ``nblstm.ops``, converts at the
edge). Fused weights ``W_x (X, 4H)``, ``W_h (H, 4H)``, bias ``b (4H,)``; the 4H axis holds
the gate blocks in the order (i, f, g, o). float32 and float64; all arrays of one call share
one dtype. Output buffers are passed in (so the CUDA backend can export the same signatures).

Design notes:
- The time loop runs inside ``@njit``: no Python per step. Each step is one BLAS GEMM
  (numba's ``np.dot``, i.e. scipy's BLAS) and one fused loop over the hidden units.
- The fused loop reads 1-D row slices (``z[0:H]``, ``z[H:2H]``...), not ``z[b, H + j]``:
  index arithmetic on a 2-D array keeps LLVM from vectorizing it.
- ``error_model="numpy"``: division by zero follows IEEE instead of raising, which is what
  lets the divisions in sigmoid/tanh vectorize.
- No ``fastmath``: it would assume finite math and NaN inputs must reach the outputs.
- No ``parallel=True`` on the BLAS path: a parallel region next to multithreaded BLAS calls
  is many times slower (threads fight); BLAS provides the threads there.
- The sequence loops have two implementations, chosen per call by ``plan``
  (``NBLSTM_CPU_GEMM``): the packed-weight micro-kernel GEMM with the gate math in the same
  parallel region (``packed_lstm``, the default) and the BLAS-per-step loops below.

The functions without a leading underscore are part of the twin contract
(``kernels/contract.py``): ``kernels/cuda/lstm.py`` has each of them with the same parameters.
"""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS as _JIT_OPTIONS
from ..math import dropout as dropout_math, gates
from ..math.softmax import add_bias_softmax_in_place
from .. import time_chunks
from . import blocked_lstm, packed_lstm, plan
from .loops import (gates_backward_units, gradients_after_the_loop,
                    input_projection, peephole_gradient, transpose_into)
from .workspace import scratch


@njit(**_JIT_OPTIONS)
def _gates_forward_row(z, z_h, c_prev, c_out, h_out, peephole):
    """One batch row of ``lstm_gates_forward`` (the arrays 1-D); the peephole cell when
    ``peephole`` (3, H) is given, the plain one for None (numba compiles a specialisation
    without the peephole loop)."""
    H = c_prev.shape[0]
    z_i, z_f, z_g, z_o = z[0:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:4 * H]
    zh_i, zh_f, zh_g, zh_o = z_h[0:H], z_h[H:2 * H], z_h[2 * H:3 * H], z_h[3 * H:4 * H]
    if peephole is None:
        for j in range(H):
            i, f, g, o, c, h = gates.lstm_unit_forward(
                z_i[j] + zh_i[j], z_f[j] + zh_f[j], z_g[j] + zh_g[j], z_o[j] + zh_o[j],
                c_prev[j])
            z_i[j] = i
            z_f[j] = f
            z_g[j] = g
            z_o[j] = o
            c_out[j] = c
            h_out[j] = h
    else:
        p_i, p_f, p_o = peephole[0], peephole[1], peephole[2]
        for j in range(H):
            i, f, g, o, c, h = gates.lstm_unit_forward_peephole(
                z_i[j] + zh_i[j], z_f[j] + zh_f[j], z_g[j] + zh_g[j], z_o[j] + zh_o[j],
                c_prev[j], p_i[j], p_f[j], p_o[j])
            z_i[j] = i
            z_f[j] = f
            z_g[j] = g
            z_o[j] = o
            c_out[j] = c
            h_out[j] = h


@njit(**_JIT_OPTIONS)
def lstm_gates_forward(z, z_h, c_prev, c_out, h_out):
    """Fused gate update of one time step for a whole batch.

    z       (B, 4H)  in: input projection ``x_t @ W_x + b`` (pre-activation, bias included);
                     out: the activated gates (i, f, g, o), overwritten in place
    z_h     (B, 4H)  recurrent projection ``h_{t-1} @ W_h``
    c_prev  (B, H)   cell state of the previous step
    c_out   (B, H)   out: new cell state (must not overlap ``c_prev``)
    h_out   (B, H)   out: new hidden state

    In place on purpose: reading and writing ``z`` through the same slice lets LLVM
    vectorize the loop. A separate output that aliases an input would fail LLVM's runtime
    overlap check and silently run the scalar loop (measured: 5-10x slower).
    """
    for row in range(c_prev.shape[0]):
        _gates_forward_row(z[row], z_h[row], c_prev[row], c_out[row], h_out[row], None)


@njit(**_JIT_OPTIONS)
def _peephole_gates_forward(z, z_h, c_prev, peephole, c_out, h_out):
    """``lstm_gates_forward`` of the cell with peephole connections: ``peephole (3, H)``
    holds the weights of the (i, f, o) gates (``gates.lstm_unit_forward_peephole``)."""
    for row in range(c_prev.shape[0]):
        _gates_forward_row(z[row], z_h[row], c_prev[row], c_out[row], h_out[row], peephole)


@njit(**_JIT_OPTIONS)
def _gates_backward_row(gates_in, c_prev, c, dh, dc, dz_out):
    """One batch row of ``lstm_gates_backward`` (all arrays 1-D); see there."""
    H = c_prev.shape[0]
    g_i, g_f, g_g, g_o = (gates_in[0:H], gates_in[H:2 * H],
                          gates_in[2 * H:3 * H], gates_in[3 * H:4 * H])
    dz_i, dz_f, dz_g, dz_o = (dz_out[0:H], dz_out[H:2 * H],
                              dz_out[2 * H:3 * H], dz_out[3 * H:4 * H])
    for j in range(H):
        d_i, d_f, d_g, d_o, d_c_prev = gates.lstm_unit_backward(
            g_i[j], g_f[j], g_g[j], g_o[j], c_prev[j], c[j], dh[j], dc[j])
        dz_i[j] = d_i
        dz_f[j] = d_f
        dz_g[j] = d_g
        dz_o[j] = d_o
        dc[j] = d_c_prev


@njit(**_JIT_OPTIONS)
def lstm_gates_backward(gates_in, c_prev, c, dh, dc, dz_out):
    """Fused backward of one time step's gate update for a whole batch.

    gates_in  (B, 4H)  activated gates (i, f, g, o) saved by the forward pass
    c_prev    (B, H)   cell state of the previous step
    c         (B, H)   cell state of this step
    dh        (B, H)   dLoss/dh_t (output gradient plus the recurrent one)
    dc        (B, H)   in: dLoss/dc_t arriving from step t+1; out: dLoss/dc_{t-1} (in place,
                       for the same vectorization reason as ``lstm_gates_forward``)
    dz_out    (B, 4H)  out: dLoss/d(pre-activations), gate order (i, f, g, o)
    """
    for row in range(c_prev.shape[0]):
        _gates_backward_row(gates_in[row], c_prev[row], c[row], dh[row], dc[row], dz_out[row])


def lstm_sequence_forward(x: np.ndarray, h0: np.ndarray, c0: np.ndarray, W_x: np.ndarray,
                          W_h: np.ndarray, b: np.ndarray, h_all: np.ndarray, c_all: np.ndarray,
                          gates_all: np.ndarray, training: bool = True) -> None:
    """Forward pass over a whole sequence, saving what the backward pass needs.

    x         (T, B, X)   inputs, time-major
    h0, c0    (B, H)      initial hidden and cell state
    W_x       (X, 4H)     input weights, gate blocks (i, f, g, o) along the columns
    W_h       (H, 4H)     recurrent weights, same column blocks
    b         (4H,)       bias (the sum of PyTorch's two biases)
    h_all     (T, B, H)   out: hidden state of every step
    c_all     (T, B, H)   out: cell state of every step
    gates_all (T, B, 4H)  out: activated gates (i, f, g, o) of every step
    training  bool        True: a training forward, whose backward follows; False: part of
                          an inference pass (``NBLSTM_CPU_GEMM=auto`` runs the two on
                          different GEMMs, see ``plan``; the results are the same)

    Algorithm: ``gates_all`` first receives the input projection of all steps (one GEMM),
    then each step adds ``h_{t-1} @ W_h`` (one GEMM) and the bias, and the fused gate
    update overwrites that step's slice with the activated gates. The GEMMs run on the
    packed micro-kernel or BLAS, as ``NBLSTM_CPU_GEMM`` says (``plan``). Inputs may be
    non-contiguous (copied); the outputs must be C-contiguous.
    """
    (_, B, X), H = x.shape, h0.shape[1]
    gemm = plan.plan(x.dtype, B * H * 4 * H, training=training, batch=B, inputs=X, hidden=H)
    x, h0, c0, W_x, W_h, b = (np.ascontiguousarray(a) for a in (x, h0, c0, W_x, W_h, b))
    if gemm is None:
        _blas_sequence_forward(x, h0, c0, W_x, W_h, b, None, h_all, c_all, gates_all)
    elif gemm.blocked:
        blocked_lstm.sequence_forward(gemm, x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all)
    else:
        packed_lstm.sequence_forward(gemm, x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all)


def lstm_sequence_inference(x: np.ndarray, h0: np.ndarray, c0: np.ndarray, W_x: np.ndarray,
                            W_h: np.ndarray, b: np.ndarray, lengths: np.ndarray,
                            chunk_steps: int, h_all: np.ndarray, h_n: np.ndarray,
                            c_n: np.ndarray) -> None:
    """Inference over a whole sequence (or a padded batch), keeping nothing per step.

    x, h0, c0, W_x, W_h, b   as in ``lstm_sequence_forward``
    lengths      (B,)      int64, 1 <= lengths[b] <= T: row b's final state is the one of
                           step ``lengths[b] - 1`` (all T for full sequences)
    chunk_steps  int       steps per chunk where the pass runs in chunks (0: automatic,
                           ``time_chunks.inference_chunk_steps``)
    h_all        (T, B, H) out: hidden state of every step (past a row's end: as computed)
    h_n, c_n     (B, H)    out: each row's final hidden and cell state

    Large batches (``plan``: ``NBLSTM_CPU_GEMM=auto`` from ``config.BLOCKED_MIN_BATCH``
    rows, or ``blocked``) run the batch-blocked loops (``blocked_lstm``), whose
    pre-activations and cell states stay in per-thread buffers; otherwise the sequence
    runs in chunks of steps through ``lstm_sequence_forward`` (``time_chunks``). Inputs may
    be non-contiguous (copied); the outputs must be C-contiguous.
    """
    (_, B, X), H = x.shape, h0.shape[1]
    gemm = plan.plan(x.dtype, B * H * 4 * H, batch=B, inputs=X, hidden=H)
    if gemm is not None and gemm.blocked:
        x, h0, c0, W_x, W_h, b, lengths = (np.ascontiguousarray(a)
                                           for a in (x, h0, c0, W_x, W_h, b, lengths))
        blocked_lstm.sequence_inference(gemm, x, h0, c0, W_x, W_h, b, lengths, h_all, h_n, c_n)
        return

    def forward_chunk(x_c, h, c, h_c, c_c, gates_c, _):
        lstm_sequence_forward(x_c, h, c, W_x, W_h, b, h_c, c_c, gates_c, False)

    time_chunks.run_in_chunks(forward_chunk, scratch, gather_steps, x, h0, c0, lengths,
                              int(chunk_steps), h_all, h_n, c_n)


@njit(**_JIT_OPTIONS)
def _blas_sequence_forward(x, h0, c0, W_x, W_h, b, peephole, h_all, c_all, gates_all):
    """``lstm_sequence_forward`` with numba's ``np.dot`` (scipy's BLAS) per step; with
    peephole connections when ``peephole`` (3, H) is given (None: the plain cell)."""
    T, B, _ = x.shape
    input_projection(x, W_x, b, gates_all)
    z_h = np.empty((B, W_h.shape[1]), dtype=x.dtype)
    for t in range(T):
        h_prev, c_prev = (h0, c0) if t == 0 else (h_all[t - 1], c_all[t - 1])
        np.dot(h_prev, W_h, z_h)
        if peephole is None:
            lstm_gates_forward(gates_all[t], z_h, c_prev, c_all[t], h_all[t])
        else:
            _peephole_gates_forward(gates_all[t], z_h, c_prev, peephole, c_all[t], h_all[t])


def lstm_peephole_sequence_forward(x: np.ndarray, h0: np.ndarray, c0: np.ndarray,
                                   W_x: np.ndarray, W_h: np.ndarray, b: np.ndarray,
                                   peephole: np.ndarray, h_all: np.ndarray, c_all: np.ndarray,
                                   gates_all: np.ndarray) -> None:
    """``lstm_sequence_forward`` of the cell with peephole connections (ONNX's ``P``).

    peephole  (3, H)  the weights through which the input, forget and output gates (rows in
                      that order) see the cell state: ``i = sigmoid(z_i + p_i * c_{t-1})``,
                      ``f = sigmoid(z_f + p_f * c_{t-1})``, ``o = sigmoid(z_o + p_o * c_t)``
    The other arguments, the layout and what is saved are those of ``lstm_sequence_forward``
    (``gates_all`` holds the activated gates, peephole terms included). BLAS loops only: the
    packed micro-kernel declines peepholes (``NBLSTM_CPU_GEMM=auto`` runs BLAS; a forced
    tile is a ``ValueError``).
    """
    plan.require_blas("peephole connections")
    x, h0, c0, W_x, W_h, b, peephole = (np.ascontiguousarray(a)
                                        for a in (x, h0, c0, W_x, W_h, b, peephole))
    _blas_sequence_forward(x, h0, c0, W_x, W_h, b, peephole, h_all, c_all, gates_all)


def lstm_sequence_backward(x: np.ndarray, h0: np.ndarray, c0: np.ndarray, W_x: np.ndarray,
                           W_h: np.ndarray, h_all: np.ndarray, c_all: np.ndarray,
                           gates_all: np.ndarray, dh_all: np.ndarray, dh_n: np.ndarray,
                           dc_n: np.ndarray, lengths: np.ndarray, dx: np.ndarray, dh0: np.ndarray,
                           dc0: np.ndarray, dW_x: np.ndarray, dW_h: np.ndarray,
                           db: np.ndarray) -> None:
    """Backpropagation through time over a whole sequence (or a padded batch of sequences).

    Inputs as saved by ``lstm_sequence_forward`` (same shapes), plus
    dh_all  (T, B, H)  dLoss/dh_t from the outputs of every step
    dh_n    (B, H)     dLoss/d(final hidden state) (zeros if unused)
    dc_n    (B, H)     dLoss/d(final cell state) (zeros if unused)
    lengths (B,)       int64, 1 <= lengths[b] <= T: row b's sequence ends at step
                       ``lengths[b] - 1``, where its final state was taken; ``dh_n[b]`` and
                       ``dc_n[b]`` enter there. Steps ``t >= lengths[b]`` are padding: their
                       ``dh_all`` is ignored and they pass on no gradient (all T for a full batch).
    Outputs (overwritten):
    dx     (T, B, X)   dLoss/dx (zero at padding steps)
    dh0    (B, H)      dLoss/dh0
    dc0    (B, H)      dLoss/dc0
    dW_x   (X, 4H)     dLoss/dW_x
    dW_h   (H, 4H)     dLoss/dW_h
    db     (4H,)       dLoss/db

    Per step (reversed): the fused gate backward gives the pre-activation gradient
    ``dz_t`` and ``dc_{t-1}``; then ``dh_{t-1} = dz_t @ W_h^T`` (one GEMM). After the loop
    the weight gradients and ``dx`` are three GEMMs over all steps at once. Padding steps
    get ``dz = 0``, so they add nothing to the weight gradients. The GEMMs run on the packed
    micro-kernel or BLAS, as ``NBLSTM_CPU_GEMM`` says (``plan``). Inputs may be
    non-contiguous (copied); the outputs must be C-contiguous.
    """
    (_, B, X), H = x.shape, h0.shape[1]
    gemm = plan.plan(x.dtype, B * H * 4 * H, backward=True, batch=B, inputs=X, hidden=H)
    x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all, dh_n, dc_n, lengths = (
        np.ascontiguousarray(a)
        for a in (x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all, dh_n, dc_n, lengths))
    if gemm is None:
        _blas_backward_call(x, h0, c0, W_x, W_h, None, h_all, c_all, gates_all, dh_all,
                            dh_n, dc_n, lengths, dx, dh0, dc0, dW_x, dW_h, None, db)
    elif gemm.blocked:
        blocked_lstm.sequence_backward(gemm, x, h0, c0, W_x, W_h, h_all, c_all, gates_all,
                                       dh_all, dh_n, dc_n, lengths, dx, dh0, dc0, dW_x, dW_h, db)
    else:
        packed_lstm.sequence_backward(gemm, x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all,
                                      dh_n, dc_n, lengths, dx, dh0, dc0, dW_x, dW_h, db)


def _blas_backward_call(x, h0, c0, W_x, W_h, peephole, h_all, c_all, gates_all, dh_all, dh_n,
                        dc_n, lengths, dx, dh0, dc0, dW_x, dW_h, dpeephole, db):
    """``_blas_sequence_backward`` with its work buffers (contiguous inputs)."""
    (T, B, X), H, dtype = x.shape, h0.shape[1], x.dtype
    G = 4 * H
    _blas_sequence_backward(x, h0, c0, W_x, W_h, peephole, h_all, c_all, gates_all, dh_all,
                            dh_n, dc_n, lengths, dx, dh0, dc0, dW_x, dW_h, dpeephole, db,
                            scratch("blas backward dz", (T, B, G), dtype),
                            scratch("blas backward W_h^T", (G, H), dtype),
                            scratch("blas backward W_x^T", (G, X), dtype),
                            scratch("blas backward dW_h steps", (H, G), dtype))


def lstm_peephole_sequence_backward(x: np.ndarray, h0: np.ndarray, c0: np.ndarray,
                                    W_x: np.ndarray, W_h: np.ndarray, peephole: np.ndarray,
                                    h_all: np.ndarray, c_all: np.ndarray, gates_all: np.ndarray,
                                    dh_all: np.ndarray, dh_n: np.ndarray, dc_n: np.ndarray,
                                    lengths: np.ndarray, dx: np.ndarray, dh0: np.ndarray,
                                    dc0: np.ndarray, dW_x: np.ndarray, dW_h: np.ndarray,
                                    dpeephole: np.ndarray, db: np.ndarray) -> None:
    """``lstm_sequence_backward`` of the cell with peephole connections.

    ``peephole (3, H)`` as given to ``lstm_peephole_sequence_forward`` and what it saved;
    ``dpeephole (3, H)`` out: dLoss/d(peephole), rows (i, f, o). Everything else, padding
    rules included, is ``lstm_sequence_backward``'s. BLAS loops only (as the forward).
    """
    plan.require_blas("peephole connections")
    arrays = (x, h0, c0, W_x, W_h, peephole, h_all, c_all, gates_all, dh_all, dh_n, dc_n,
              lengths)
    _blas_backward_call(*(np.ascontiguousarray(a) for a in arrays), dx, dh0, dc0, dW_x, dW_h,
                        dpeephole, db)


@njit(**_JIT_OPTIONS)
def _blas_sequence_backward(x, h0, c0, W_x, W_h, peephole, h_all, c_all, gates_all, dh_all,
                            dh_n, dc_n, lengths, dx, dh0, dc0, dW_x, dW_h, dpeephole, db,
                            dz_all, W_h_T, W_x_T, later_steps):
    """``lstm_sequence_backward`` with numba's ``np.dot`` (scipy's BLAS) per step, with
    peephole connections when ``peephole`` (3, H) is given (then ``dpeephole`` (3, H) gets
    their gradient; None for both: the plain cell); the last four arguments are work
    buffers (``workspace``): dz_all (T, B, 4H), W_h_T (4H, H), W_x_T (4H, X),
    later_steps (H, 4H)."""
    T = x.shape[0]
    H = h0.shape[1]
    transpose_into(W_h, W_h_T)
    dh_recurrent = dh0  # dh0 carries dLoss/dh_t through the loop and ends as dLoss/dh0
    dc = dc0            # likewise for the cell state
    for t in range(T - 1, -1, -1):
        c_prev = c_all[t - 1] if t > 0 else c0
        # padding rows and the rows whose final state was taken at step t: loops.py
        gates_backward_units(t, lengths, gates_all[t], c_prev, c_all[t], dh_all[t], dh_n, dc_n,
                             dc, dz_all[t], dh_recurrent, 0, H, peephole)
        np.dot(dz_all[t], W_h_T, dh_recurrent)
    gradients_after_the_loop(x, h0, h_all, W_x, dz_all, W_x_T, later_steps, dx, dW_x, dW_h, db)
    if peephole is not None:
        peephole_gradient(c0, c_all, dz_all, dpeephole)


@njit(**_JIT_OPTIONS)
def copy_time_steps(src, lengths, reverse, out):
    """Copy a padded batch along time, sequence by sequence; zeros past each end.

    src, out (T, B, F)  time-major; ``out`` may be ``src`` itself when ``reverse`` is False
                        (then this zeroes the padding in place)
    lengths  (B,)       int64, 1 <= lengths[b] <= T
    reverse  bool       False: ``out[t, b] = src[t, b]``; True: ``out[t, b] =
                        src[lengths[b] - 1 - t, b]`` (each sequence reversed within its own
                        length, which is how a bidirectional layer's backward direction reads
                        a padded batch); in both cases ``out[t, b] = 0`` for ``t >= lengths[b]``
    """
    T, B, F = out.shape
    for t in range(T):
        for b in range(B):
            length = lengths[b]
            row = out[t, b]
            if t < length:
                source = src[length - 1 - t, b] if reverse else src[t, b]
                for f in range(F):
                    row[f] = source[f]
            else:
                for f in range(F):
                    row[f] = 0


@njit(**_JIT_OPTIONS)
def gather_steps(src, lengths, offset, out):
    """Each sequence's final state from a (chunk of a) padded batch's states.

    src     (S, B, H)  states of steps ``offset .. offset + S - 1``
    lengths (B,)       int64; row b's final state is at step ``lengths[b] - 1``
    offset  int        the step ``src[0]`` holds
    out     (B, H)     out: ``out[b] = src[lengths[b] - 1 - offset, b]`` for the rows whose
                       final step lies in this chunk; the other rows are left as they are
    """
    for b in range(out.shape[0]):
        s = lengths[b] - 1 - offset
        if 0 <= s < src.shape[0]:
            source, row = src[s, b], out[b]
            for j in range(out.shape[1]):
                row[j] = source[j]


@njit(**_JIT_OPTIONS)
def add_arrays(a, b, out):
    """``out = a + b`` for 1-D arrays of one length; ``out`` may be ``a`` or ``b``."""
    for k in range(out.shape[0]):
        out[k] = a[k] + b[k]


@njit(**_JIT_OPTIONS)
def dropout(src, k0, k1, threshold, scale, out):
    """Inverted dropout of a flat array: ``out[i] = src[i] * scale`` where element ``i``
    survives, ``src[i] * 0`` where it is dropped (a NaN stays NaN, as in torch).

    src, out   (n,)  one float dtype; ``out`` may be ``src``
    k0, k1     int   the mask's key, each in 0 .. 2**32 - 1 (``kernels/math/dropout.py``):
                     the same key gives the same mask, on every backend
    threshold  int   ``round(p * 2**32)``: element i is dropped when its hash is below it
    scale            scalar of the dtype, ``1 / (1 - p)``

    The backward pass calls it with the forward's key on the gradient: the same mask.
    """
    zero = scale - scale
    for i in range(out.shape[0]):
        out[i] = src[i] * (scale if dropout_math.keep(i, k0, k1, threshold) else zero)


@njit(**_JIT_OPTIONS)
def linear_softmax(h, W_T, b, out):
    """Output layer: ``out = softmax(h @ W_T + b)`` row by row.

    h     (N, H)   hidden states (all steps and batch rows stacked)
    W_T   (H, Y)   output weights, transposed (the seed's ``Wy.T``)
    b     (Y,)     output bias
    out   (N, Y)   out: probabilities, each row sums to 1

    Numerically stable (the row maximum is subtracted before ``exp``); a NaN anywhere in a
    row makes the whole row NaN.
    """
    np.dot(h, W_T, out)
    for row in range(out.shape[0]):
        add_bias_softmax_in_place(out[row], b)


@njit(**_JIT_OPTIONS)
def reverse_axes_copy(src, dst):
    """``dst[k, j, i] = src[i, j, k]``: copy a 3-D array into its axes-reversed layout.

    src (I, J, K), dst (K, J, I), both C-contiguous. This is how the seed API moves between
    the course's (features, batch, time) and nblstm's time-major (time, batch, features).
    Tiled so that both the reads and the writes stay within cache lines: NumPy's
    ``ascontiguousarray(a.transpose(2, 1, 0))`` walks one side with a huge stride and
    is several times slower on the arrays of a mid-size problem.
    """
    I, J, K = src.shape
    tile = 32
    for j in range(J):
        for i0 in range(0, I, tile):
            i1 = min(i0 + tile, I)
            for k0 in range(0, K, tile):
                k1 = min(k0 + tile, K)
                for k in range(k0, k1):
                    dst_row = dst[k, j]
                    for i in range(i0, i1):
                        dst_row[i] = src[i, j, k]
