"""Loops shared by the CPU LSTM passes (the BLAS path in ``lstm.py`` and the packed path in
``packed_lstm.py``): each rule of the algorithm written once.

All arrays C-contiguous, one float dtype; gate blocks (i, f, g, o) along the 4H axis.
"""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS
from ..math import gates


@njit(inline="always", **JIT_OPTIONS)
def task_share(task, tasks, items):
    """Items ``[first, end)`` of task ``task`` of ``tasks`` (panels of a packed weight, blocks
    of batch rows): contiguous, sizes differ by <= 1, always the same for one task count."""
    return task * items // tasks, (task + 1) * items // tasks


@njit(**JIT_OPTIONS)
def gates_backward_units(t, lengths, gates_t, c_prev, c_t, dh_t, dh_n, dc_n, dc, dz_t, dh_rec_all,
                          j0, j1, peephole):
    """One BPTT step ``t`` of the gate backward for hidden units ``[j0, j1)``, all rows: the
    padding and final-state rules of a padded batch, written once for both CPU paths.

    lengths (B,) int64; gates_t (B, 4H) activated gates (i, f, g, o) of step t; c_prev, c_t,
    dh_t (B, H): cell states and dLoss/dh_t from the outputs; dh_n, dc_n (B, H): gradients of
    the final state; dc (B, H): in dLoss/dc_t (from step t+1), out dLoss/dc_{t-1}; dz_t
    (B, 4H) out; dh_rec (B, >= H): in dLoss/dh_t from step t+1 (``dz_{t+1} @ W_h^T``).
    Row b's final state was taken at step ``lengths[b] - 1``: that step takes dh_n, dc_n
    (copied into dh_rec and dc) instead of the recurrent gradients; rows with
    ``t >= lengths[b]`` are padding (dz_t and dc zero, nothing passed on). ``peephole``:
    (3, H) peephole weights (rows i, f, o; ``gates.lstm_unit_backward_peephole``), or None
    for the plain cell (numba compiles a specialisation without the peephole loop: a dead
    branch of another dtype would promote float32 math). A function of its own so that
    LLVM vectorizes the unit loop."""
    H = c_t.shape[1]
    for row in range(c_t.shape[0]):
        dz_r = dz_t[row]
        dz_i, dz_f, dz_g, dz_o = (dz_r[j0:j1], dz_r[H + j0:H + j1], dz_r[2 * H + j0:2 * H + j1],
                                  dz_r[3 * H + j0:3 * H + j1])
        d_c = dc[row, j0:j1]
        length = lengths[row]
        if t >= length:
            for u in range(j1 - j0):
                dz_i[u] = 0
                dz_f[u] = 0
                dz_g[u] = 0
                dz_o[u] = 0
                d_c[u] = 0
            continue
        dh_rec = dh_rec_all[row, j0:j1]
        if t == length - 1:
            # The final state's gradients enter at the row's last step. Copied into the
            # buffers the loop below always reads: a loop reading one of two arrays (chosen
            # at run time) fails LLVM's overlap check against its in-place output and
            # runs scalar.
            dh_final, dc_final = dh_n[row, j0:j1], dc_n[row, j0:j1]
            for u in range(j1 - j0):
                dh_rec[u] = dh_final[u]
                d_c[u] = dc_final[u]
        g_r = gates_t[row]
        g_i, g_f, g_g, g_o = (g_r[j0:j1], g_r[H + j0:H + j1], g_r[2 * H + j0:2 * H + j1],
                              g_r[3 * H + j0:3 * H + j1])
        c_p, c_c, dh_o = c_prev[row, j0:j1], c_t[row, j0:j1], dh_t[row, j0:j1]
        if peephole is None:
            for u in range(j1 - j0):
                d_i, d_f, d_g, d_o, d_c_prev = gates.lstm_unit_backward(
                    g_i[u], g_f[u], g_g[u], g_o[u], c_p[u], c_c[u], dh_o[u] + dh_rec[u],
                    d_c[u])
                dz_i[u] = d_i
                dz_f[u] = d_f
                dz_g[u] = d_g
                dz_o[u] = d_o
                d_c[u] = d_c_prev
        else:
            p_i, p_f, p_o = peephole[0, j0:j1], peephole[1, j0:j1], peephole[2, j0:j1]
            for u in range(j1 - j0):
                d_i, d_f, d_g, d_o, d_c_prev = gates.lstm_unit_backward_peephole(
                    g_i[u], g_f[u], g_g[u], g_o[u], c_p[u], c_c[u], dh_o[u] + dh_rec[u],
                    d_c[u], p_i[u], p_f[u], p_o[u])
                dz_i[u] = d_i
                dz_f[u] = d_f
                dz_g[u] = d_g
                dz_o[u] = d_o
                d_c[u] = d_c_prev


@njit(**JIT_OPTIONS)
def column_sums(a, out):
    """``out[k] = sum_r a[r, k]`` for a (rows, K) array: ``db`` from ``dz``."""
    K = out.shape[0]
    for k in range(K):
        out[k] = 0
    for r in range(a.shape[0]):
        row = a[r]
        for k in range(K):
            out[k] += row[k]


@njit(**JIT_OPTIONS)
def transpose_into(src, dst):
    """``dst[:] = src.T`` (2-D), in 32 x 32 blocks so reads and writes stay in cache lines."""
    I, J = src.shape
    for i0 in range(0, I, 32):
        for j0 in range(0, J, 32):
            for j in range(j0, min(j0 + 32, J)):
                row = dst[j]
                for i in range(i0, min(i0 + 32, I)):
                    row[i] = src[i, j]


@njit(**JIT_OPTIONS)
def input_projection(x, W_x, b, gates_all):
    """``gates_all[t] = x_t @ W_x + b`` for every step at once (one GEMM): the pre-activations
    the time loop then completes with the recurrent product. x (T, B, X), W_x (X, 4H),
    b (4H,), gates_all (T, B, 4H) out."""
    T, B, X = x.shape
    G = W_x.shape[1]
    z_x_all = gates_all.reshape(T * B, G)
    np.dot(x.reshape(T * B, X), W_x, z_x_all)
    for row in range(T * B):
        z_row = z_x_all[row]
        for k in range(G):
            z_row[k] += b[k]


@njit(**JIT_OPTIONS)
def gradients_after_the_loop(x, h0, h_all, W_x, dz_all, W_x_T, later_steps, dx, dW_x, dW_h,
                             db):
    """What BPTT computes from ``dz_all (T, B, 4H)`` once the time loop is done, as GEMMs
    over all steps: ``dx = dz @ W_x^T`` (T, B, X), ``dW_x = x^T dz`` (X, 4H), ``dW_h =
    h_{t-1}^T dz_t`` summed over t (h0 at t = 0; (R, 4H) with R the features of h), and
    ``db`` the column sums of dz. ``W_x_T`` (4H, X) and ``later_steps`` (R, 4H): work
    buffers (``workspace``)."""
    T, B, X = x.shape
    R = h0.shape[1]
    G = dz_all.shape[2]
    # Every GEMM below has the form np.dot(A or A.T, B, out): few distinct np.dot
    # specialisations keep the compile time down (an allocating np.dot plus "+=" alone
    # cost ~0.5 s of compilation).
    dz_2d = dz_all.reshape(T * B, G)
    transpose_into(W_x, W_x_T)
    np.dot(dz_2d, W_x_T, dx.reshape(T * B, X))
    np.dot(x.reshape(T * B, X).T, dz_2d, dW_x)
    np.dot(h0.T, dz_all[0], dW_h)
    if T > 1:
        np.dot(h_all[:T - 1].reshape((T - 1) * B, R).T, dz_all[1:].reshape((T - 1) * B, G),
               later_steps)
        for i in range(R):
            row, add = dW_h[i], later_steps[i]
            for k in range(G):
                row[k] += add[k]
    column_sums(dz_2d, db)


@njit(**JIT_OPTIONS)
def peephole_gradient(c0, c_all, dz_all, dpeephole):
    """The peephole weights' gradient from BPTT's ``dz_all (T, B, 4H)``: ``dpeephole``
    (3, H) out, rows (i, f, o): ``sum_{t,b} dz_i * c_{t-1}``, ``dz_f * c_{t-1}`` and
    ``dz_o * c_t`` (``c_{-1} = c0 (B, H)``, ``c_all (T, B, H)``), summed in a fixed order.
    Padding steps have ``dz = 0`` and add nothing."""
    T, B, H = c_all.shape
    for k in range(3):
        for j in range(H):
            dpeephole[k, j] = 0
    for t in range(T):
        for row in range(B):
            c_p = c0[row] if t == 0 else c_all[t - 1, row]
            c_c, dz = c_all[t, row], dz_all[t, row]
            dz_i, dz_f, dz_o = dz[0:H], dz[H:2 * H], dz[3 * H:4 * H]
            d_i, d_f, d_o = dpeephole[0], dpeephole[1], dpeephole[2]
            for j in range(H):
                d_i[j] += dz_i[j] * c_p[j]
                d_f[j] += dz_f[j] * c_p[j]
                d_o[j] += dz_o[j] * c_c[j]
