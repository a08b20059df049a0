"""Orchestration shared by the public APIs: fused weights, internal layout, backend calls.

Internal layout is time-major ``(T, B, F)``, C-contiguous. Fused weights: ``W_x (X, 4H)``,
``W_h (H, 4H)``, ``b (4H,)`` with the gate blocks in the order (i, f, g, o) along the 4H
axis (PyTorch's order). Every function takes the ``Backend`` to run on; allocation goes
through ``backend.xp`` so the arrays live where the kernels run.
"""
from typing import Any

import numpy as np

from ._dispatch import Backend, transposed
from .kernels.time_chunks import (  # noqa: F401  (re-exported: the chunking rule)
    INFERENCE_CHUNK_BYTES, INFERENCE_CHUNK_MIN_ROWS, inference_chunk_steps, run_in_chunks)

#: The seed's letter for each gate of nblstm's (i, f, g, o) order: the candidate g is "c".
SEED_GATE_LETTERS = ("i", "f", "c", "o")


def fuse_seed_weights(parameters: dict, n_a: int, backend: Backend) -> tuple:
    """The seed's per-gate ``W* (n_a, n_a + n_x)``/``b* (n_a, 1)`` -> ``(W_x, W_h, b)``.

    ``W*`` acts on ``concat = [a_prev; xt]``, so its first ``n_a`` columns are the
    recurrent weights: ``W_h = W[:, :n_a].T`` and ``W_x = W[:, n_a:].T`` per gate.
    """
    xp = backend.xp
    W_h = xp.concatenate([transposed(parameters["W" + g][:, :n_a]) for g in SEED_GATE_LETTERS],
                         axis=1)
    W_x = xp.concatenate([transposed(parameters["W" + g][:, n_a:]) for g in SEED_GATE_LETTERS],
                         axis=1)
    b = xp.concatenate([parameters["b" + g][:, 0] for g in SEED_GATE_LETTERS])
    return W_x, W_h, b


def unfuse_seed_gradients(dW_x: Any, dW_h: Any, db: Any, backend: Backend) -> dict:
    """Fused gradients -> the seed's ``dWf, dbf, dWi, dbi, dWc, dbc, dWo, dbo``."""
    xp = backend.xp
    H = dW_h.shape[0]
    grads = {}
    for k, g in enumerate(SEED_GATE_LETTERS):
        block = slice(k * H, (k + 1) * H)
        grads["dW" + g] = xp.concatenate([transposed(dW_h[:, block]), transposed(dW_x[:, block])],
                                         axis=1)
        grads["db" + g] = xp.ascontiguousarray(db[block].reshape(H, 1))
    return {key: grads[key] for key in ("dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo")}


def reverse_axes(backend: Backend, array: Any) -> Any:
    """New C-contiguous array ``out[k, j, i] = array[i, j, k]`` (3-D): the seed's
    (features, batch, time) <-> nblstm's time-major (time, batch, features)."""
    xp = backend.xp
    source = xp.ascontiguousarray(array)
    out = xp.empty(source.shape[::-1], dtype=source.dtype)
    backend.kernels.reverse_axes_copy(source, out)
    return out


def sequence_forward(backend: Backend, x, h0, c0, W_x, W_h, b, peephole=None) -> tuple:
    """Training forward over a sequence: ``(h_all, c_all, gates_all)``.

    x (T, B, X), h0 and c0 (B, H); returns h_all and c_all (T, B, H) and the activated
    gates (T, B, 4H) in the order (i, f, g, o). ``peephole`` (3, H): the peephole weights
    (rows i, f, o) of a cell with peephole connections, or None.
    """
    xp = backend.xp
    T, B, _ = x.shape
    H = h0.shape[1]
    h_all = xp.empty((T, B, H), dtype=x.dtype)
    c_all = xp.empty((T, B, H), dtype=x.dtype)
    gates_all = xp.empty((T, B, 4 * H), dtype=x.dtype)
    if peephole is None:
        backend.kernels.lstm_sequence_forward(x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all)
    else:
        backend.kernels.lstm_peephole_sequence_forward(x, h0, c0, W_x, W_h, b, peephole, h_all,
                                                       c_all, gates_all)
    return h_all, c_all, gates_all


def sequence_inference(backend: Backend, x, h0, c0, W_x, W_h, b, lengths=None,
                       chunk_steps: int | None = None, W_r=None, peephole=None) -> tuple:
    """Inference over a sequence: ``(h_all, h_n, c_n)``, keeping nothing per step.

    x (T, B, X), h0 (B, P) and c0 (B, H) -> h_all (T, B, P), final states h_n (B, P) and
    c_n (B, H); ``P = H`` without a projection, else ``W_r`` (H, P) is the projection and
    ``W_h`` is (P, 4H) (``projected_sequence_forward``); ``peephole`` (3, H) or None: the
    peephole weights of a cell with peephole connections (``sequence_forward``).
    ``lengths`` (B,) int64 on the backend, or None for full sequences: row b's final state
    is then the one at step ``lengths[b] - 1`` (``h_all`` past that step is left as computed;
    the caller zeroes it).

    The plain cell runs the kernels' ``lstm_sequence_inference`` (on the CPU the
    batch-blocked loops for large batches, else chunks of steps); the other cells run in
    chunks of ``chunk_steps`` steps through their training kernels
    (``kernels/time_chunks.py``: about 32 MiB of work buffers, at least 4096 rows, for
    None). ``chunk_steps`` also sets the plain cell's chunks where it runs in chunks.
    """
    xp = backend.xp
    T, B, _ = x.shape
    P, H = h0.shape[1], c0.shape[1]
    h_all = xp.empty((T, B, P), dtype=x.dtype)
    h_n = xp.empty((B, P), dtype=x.dtype)
    c_n = xp.empty((B, H), dtype=x.dtype)
    if lengths is None:
        lengths = full_lengths(backend, T, B)
    steps = 0 if chunk_steps is None else max(1, int(chunk_steps))
    kernels = backend.kernels
    if peephole is None and W_r is None:
        kernels.lstm_sequence_inference(x, h0, c0, W_x, W_h, b, lengths, steps, h_all, h_n,
                                        c_n)
        return h_all, h_n, c_n
    if peephole is not None:
        def forward_chunk(x_c, h, c, h_c, c_c, gates_c, _):
            kernels.lstm_peephole_sequence_forward(x_c, h, c, W_x, W_h, b, peephole, h_c, c_c,
                                                   gates_c)
    else:
        def forward_chunk(x_c, h, c, h_c, c_c, gates_c, m_c):
            kernels.lstm_projected_sequence_forward(x_c, h, c, W_x, W_h, b, W_r, h_c, c_c, m_c,
                                                    gates_c)
    run_in_chunks(forward_chunk, backend.scratch, kernels.gather_steps, x, h0, c0, lengths,
                  steps, h_all, h_n, c_n, projected=W_r is not None)
    return h_all, h_n, c_n


def projected_sequence_forward(backend: Backend, x, h0, c0, W_x, W_h, b, W_r) -> tuple:
    """Training forward of an LSTM with a projection (LSTMP): ``(h_all, c_all, m_all,
    gates_all)``.

    x (T, B, X), h0 (B, P), c0 (B, H), W_x (X, 4H), W_h (P, 4H), b (4H,), W_r (H, P) (torch's
    ``weight_hr`` transposed); returns h_all (T, B, P) (``h_t = m_t @ W_r``), c_all and m_all
    (T, B, H) (``m_t = o_t * tanh(c_t)``) and the activated gates (T, B, 4H), order (i, f, g, o).
    """
    xp = backend.xp
    T, B, _ = x.shape
    P, H = h0.shape[1], c0.shape[1]
    h_all = xp.empty((T, B, P), dtype=x.dtype)
    c_all = xp.empty((T, B, H), dtype=x.dtype)
    m_all = xp.empty((T, B, H), dtype=x.dtype)
    gates_all = xp.empty((T, B, 4 * H), dtype=x.dtype)
    backend.kernels.lstm_projected_sequence_forward(x, h0, c0, W_x, W_h, b, W_r, h_all, c_all,
                                                    m_all, gates_all)
    return h_all, c_all, m_all, gates_all


def full_lengths(backend: Backend, T: int, B: int) -> Any:
    """int64 ``(B,)`` lengths on the backend, all ``T``: a batch without padding."""
    return backend.adopt(np.full(B, T, dtype=np.int64))


def final_states(backend: Backend, h_all, c_all, lengths) -> tuple:
    """``(h_n, c_n)`` (B, P) and (B, H): each row's states at its step ``lengths[b] - 1``."""
    xp = backend.xp
    _, B, P = h_all.shape
    h_n = xp.empty((B, P), dtype=h_all.dtype)
    c_n = xp.empty((B, c_all.shape[2]), dtype=h_all.dtype)
    backend.kernels.gather_steps(h_all, lengths, 0, h_n)
    backend.kernels.gather_steps(c_all, lengths, 0, c_n)
    return h_n, c_n


def time_steps_copy(backend: Backend, source, lengths, reverse: bool) -> Any:
    """New ``(T, B, F)`` array: each sequence of a padded batch copied (``reverse``: in
    reversed order within its own length), zeros at the padding steps."""
    source = backend.xp.ascontiguousarray(source)
    out = backend.xp.empty(source.shape, dtype=source.dtype)
    backend.kernels.copy_time_steps(source, lengths, bool(reverse), out)
    return out


def zero_padding(backend: Backend, array, lengths) -> None:
    """Zero ``array (T, B, F)`` (C-contiguous) in place at the steps ``t >= lengths[b]``."""
    backend.kernels.copy_time_steps(array, lengths, False, array)


def contiguous_copy(backend: Backend, array) -> Any:
    """A new C-contiguous copy of ``array`` (any strides), never a view."""
    if backend.array_kind == "numba":
        return backend.xp.copy(array)  # DeviceArrayModule.copy: C order
    out = backend.xp.empty(array.shape, dtype=array.dtype)
    out[...] = array
    return out


def add(backend: Backend, a, b) -> Any:
    """New C-contiguous ``a + b`` (arrays of one shape), on any backend's arrays."""
    xp = backend.xp
    a, b = xp.ascontiguousarray(a), xp.ascontiguousarray(b)
    out = xp.empty(a.shape, dtype=a.dtype)
    backend.kernels.add_arrays(a.reshape(-1), b.reshape(-1), out.reshape(-1))
    return out


def sequence_backward(backend: Backend, x, h0, c0, W_x, W_h, h_all, c_all, gates_all,
                      dh_all, dh_n, dc_n, lengths=None) -> tuple:
    """Backpropagation through time: ``(dx, dh0, dc0, dW_x, dW_h, db)``.

    Takes what ``sequence_forward`` saved and the loss gradients ``dh_all (T, B, H)`` with
    respect to every hidden state and ``dh_n, dc_n (B, H)`` with respect to the final state.
    ``lengths`` (B,) int64 on the backend, or None: the final states were taken at steps
    ``lengths[b] - 1`` and later steps are padding (no gradient; see the kernel).
    """
    xp = backend.xp
    if lengths is None:
        lengths = full_lengths(backend, x.shape[0], x.shape[1])
    dx = xp.empty(x.shape, dtype=x.dtype)
    dh0 = xp.empty(h0.shape, dtype=x.dtype)
    dc0 = xp.empty(c0.shape, dtype=x.dtype)
    dW_x = xp.empty(W_x.shape, dtype=x.dtype)
    dW_h = xp.empty(W_h.shape, dtype=x.dtype)
    db = xp.empty((W_h.shape[1],), dtype=x.dtype)
    backend.kernels.lstm_sequence_backward(x, h0, c0, W_x, W_h, h_all, c_all, gates_all,
                                           dh_all, dh_n, dc_n, lengths, dx, dh0, dc0, dW_x,
                                           dW_h, db)
    return dx, dh0, dc0, dW_x, dW_h, db


def peephole_sequence_backward(backend: Backend, x, h0, c0, W_x, W_h, peephole, h_all, c_all,
                               gates_all, dh_all, dh_n, dc_n, lengths) -> tuple:
    """BPTT of the cell with peephole connections: ``(dx, dh0, dc0, dW_x, dW_h, dpeephole,
    db)``; as ``sequence_backward`` (``lengths`` required) with ``peephole`` (3, H) and its
    gradient ``dpeephole`` (3, H), rows (i, f, o)."""
    xp = backend.xp
    dtype = x.dtype
    dx, dh0, dc0 = (xp.empty(a.shape, dtype=dtype) for a in (x, h0, c0))
    dW_x, dW_h, dpeephole = (xp.empty(a.shape, dtype=dtype) for a in (W_x, W_h, peephole))
    db = xp.empty((W_h.shape[1],), dtype=dtype)
    backend.kernels.lstm_peephole_sequence_backward(x, h0, c0, W_x, W_h, peephole, h_all, c_all,
                                                    gates_all, dh_all, dh_n, dc_n, lengths, dx,
                                                    dh0, dc0, dW_x, dW_h, dpeephole, db)
    return dx, dh0, dc0, dW_x, dW_h, dpeephole, db


def projected_sequence_backward(backend: Backend, x, h0, c0, W_x, W_h, W_r, h_all, c_all,
                                m_all, gates_all, dh_all, dh_n, dc_n, lengths) -> tuple:
    """BPTT of an LSTM with a projection: ``(dx, dh0, dc0, dW_x, dW_h, dW_r, db)``.

    Takes what ``projected_sequence_forward`` saved, ``dh_all (T, B, P)``, ``dh_n (B, P)``,
    ``dc_n (B, H)`` and ``lengths`` (B,) int64 on the backend (all T for full sequences);
    dW_r is (H, P), the gradient of ``W_r`` (torch's ``weight_hr`` transposed).
    """
    xp = backend.xp
    dtype = x.dtype
    dx = xp.empty(x.shape, dtype=dtype)
    dh0 = xp.empty(h0.shape, dtype=dtype)
    dc0 = xp.empty(c0.shape, dtype=dtype)
    dW_x = xp.empty(W_x.shape, dtype=dtype)
    dW_h = xp.empty(W_h.shape, dtype=dtype)
    dW_r = xp.empty(W_r.shape, dtype=dtype)
    db = xp.empty((W_h.shape[1],), dtype=dtype)
    backend.kernels.lstm_projected_sequence_backward(x, h0, c0, W_x, W_h, W_r, h_all, c_all,
                                                     m_all, gates_all, dh_all, dh_n, dc_n,
                                                     lengths, dx, dh0, dc0, dW_x, dW_h, dW_r,
                                                     db)
    return dx, dh0, dc0, dW_x, dW_h, dW_r, db


#: ``dropout`` thresholds are 32-bit: element i is dropped when its hash is below
#: ``round(p * 2**32)`` (``kernels/math/dropout.py``).
DROPOUT_RESOLUTION = 1 << 32


def dropout(backend: Backend, array, key: tuple, p: float) -> Any:
    """New C-contiguous ``array * mask / (1 - p)``: the inverted dropout of ``key``'s mask.

    ``key`` is two integers in ``0 .. 2**32 - 1``; the mask is a function of the key and the
    element's flat index alone, so calling this on a gradient with the forward's key applies
    the forward's mask (its backward), on either backend. ``p = 1`` drops everything."""
    xp = backend.xp
    source = xp.ascontiguousarray(array)
    out = xp.empty(source.shape, dtype=source.dtype)
    threshold = min(DROPOUT_RESOLUTION, int(round(float(p) * DROPOUT_RESOLUTION)))
    scale = source.dtype.type(0.0 if p >= 1 else 1.0 / (1.0 - float(p)))
    backend.kernels.dropout(source.reshape(-1), int(key[0]), int(key[1]), threshold, scale,
                            out.reshape(-1))
    return out


def output_softmax(backend: Backend, h_all, Wy, by) -> Any:
    """The seed's output layer on every step: ``softmax(h @ Wy.T + by)`` over the classes.

    h_all (T, B, H), Wy (Y, H), by (Y, 1) -> probabilities (T, B, Y).
    """
    xp = backend.xp
    T, B, H = h_all.shape
    Y = Wy.shape[0]
    probabilities = xp.empty((T, B, Y), dtype=h_all.dtype)
    backend.kernels.linear_softmax(h_all.reshape(T * B, H), xp.ascontiguousarray(transposed(Wy)),
                                   xp.ascontiguousarray(by[:, 0]),
                                   probabilities.reshape(T * B, Y))
    return probabilities
