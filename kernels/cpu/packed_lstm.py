"""The LSTM sequence loops on the packed-weight GEMM (``packed_gemm``): the CPU fast path.

Same layouts and semantics as ``lstm.lstm_sequence_forward``/``lstm_sequence_backward``:
time-major ``(T, B, F)`` C-contiguous arrays, fused weights ``W_x (X, 4H)``, ``W_h (H, 4H)``,
``b (4H,)`` with gate blocks (i, f, g, o). What differs is how the products are computed:

Forward, per call:
  1. ``W_h`` is packed into gate panels (``U`` hidden units x 4 gates per panel) and ``W_x``
     into plain panels; the packed copies are made afresh on every call (about 1% of a
     mid-size pass), so weights updated in place between calls are always seen.
  2. ``gates_all = x @ W_x`` (one parallel GEMM over all steps, bias added later).
  3. Per step, ONE parallel region: each worker takes gate panels, computes
     ``h_{t-1} @ W_h`` for its ``U`` units and all batch rows, and applies the gate math for
     those units right away (bias and input projection added there).
Backward, per call:
  1. Per step (reversed), one parallel region over panels of ``W_h^T`` (``NR`` hidden units
     each): ``dh_rec = dz_{t+1} @ W_h^T`` for the units of the panel, then the fused gate
     backward of those units gives ``dz_t`` and ``dc_{t-1}``.
  2. ``dh0 = dz_0 @ W_h^T``, ``dx = dz @ W_x^T``, and the weight gradients as
     ``dW^T = dz^T @ [x | h_prev]`` (the long T*B axis is the K of the product, K-blocked),
     transposed into place; ``db`` is the column sum of ``dz``.

Threads: each driver is one source compiled twice (``variants.serial_and_parallel``):
``*_parallel`` (one ``prange`` region per step; numba's threading layer) and ``*_serial``
(the same work on the calling thread). ``Plan`` says which to use. Work buffers (per-worker
scratch tiles, packed weights, ``dz``) come from ``workspace``: reused across calls, one set
per Python thread (so concurrent calls from several threads share nothing), and refilled on
every call (the weights are packed from the live parameters each time).
"""
import numpy as np
from numba import get_thread_id, njit, prange

from ..config import JIT_OPTIONS, KC
from ..math import gates
from .loops import column_sums, gates_backward_units, task_share, transpose_into
from .packed_gemm import pack_gate_panels, pack_panels, panel_product
from .variants import serial_and_parallel
from .workspace import scratch


# ------------------------------------------------------------------------------ plain GEMM

@njit(inline="always", **JIT_OPTIONS)
def _gemm_job(job, row_chunks, tile, MR, a, a_rs, a_ks, M, K, bp, c, N, edge_tile):
    """Job ``job`` of ``gemm_*``: one panel of ``bp`` times one chunk of A's rows."""
    NR = bp.shape[2]
    p = job // row_chunks
    chunk = -(-(-(-M // row_chunks)) // MR) * MR
    i0 = (job % row_chunks) * chunk
    if i0 < M:
        ldc = c.shape[1]
        panel_product(tile, MR, a, i0 * a_rs, a_rs, a_ks, min(chunk, M - i0), K, bp, p, KC,
                      c, i0 * ldc + p * NR, ldc, NR // 4, min(NR, N - p * NR), False, edge_tile,
                      False)


def _gemm_driver(tile, MR, a, a_rs, a_ks, M, K, bp, c, row_chunks, edge_tiles):
    """``c[0:M, 0:N] = A @ B`` with B packed in ``bp`` (P, K, NR), N = ``c.shape[1]``;
    A[m, k] = ``a.flat[m*a_rs + k*a_ks]``. One parallel region over panel x row-chunk jobs
    (``gemm_parallel``), or the same jobs on the calling thread (``gemm_serial``).
    edge_tiles (workers, MR, NR): per-worker scratch for the last, partial panel."""
    N = c.shape[1]
    for job in prange(bp.shape[0] * row_chunks):
        _gemm_job(job, row_chunks, tile, MR, a, a_rs, a_ks, M, K, bp, c, N,
                  edge_tiles[get_thread_id()])


gemm_serial, gemm_parallel = serial_and_parallel(_gemm_driver, "gemm")


# ------------------------------------------------------------------------------- forward

@njit(**JIT_OPTIONS)
def _forward_task(tile, MR, task, tasks, h_prev, W_h_packed, b, c_prev, z, c_out, h_out,
                  edge_tile):
    """One step for the hidden units of a contiguous run of gate panels, all batch rows.

    h_prev (B, H); W_h_packed (P, H, 4U) gate panels; b (4H,); c_prev, c_out, h_out (B, H);
    z (B, 4H): in: the input projection of this step (no bias), out: activated gates
    (i, f, g, o). The micro-kernel adds ``h_prev @ W_h`` into ``z`` in place, scattering
    each tile's four gate vectors into z's gate blocks; the gate loop then runs over the
    task's units contiguously (long loops vectorize; a loop over one panel's 16 units did
    not) and reads as few arrays as the BLAS path's (more would exceed LLVM's runtime
    alias checks and leave the loop scalar).
    """
    B, H = h_prev.shape
    P, _, NR = W_h_packed.shape
    U = NR // 4
    first, end = task_share(task, tasks, P)
    for p in range(first, end):
        panel_product(tile, MR, h_prev, 0, H, 1, B, H, W_h_packed, p, KC, z, p * U, 4 * H, H,
                      min(U, H - p * U), True, edge_tile, True)
    _gates_forward_units(z, b, c_prev, c_out, h_out, first * U, min(H, end * U))


@njit(**JIT_OPTIONS)
def _gates_forward_units(z, b, c_prev, c_out, h_out, j0, j1):
    """The gate update of hidden units ``[j0, j1)``, all rows: ``z`` (B, 4H) holds the
    pre-activations without bias and receives the activated gates (i, f, g, o); c_prev,
    c_out, h_out (B, H). A function of its own: inlined into the GEMM task, LLVM left
    this loop scalar (measured 8x slower)."""
    H = c_prev.shape[1]
    # 1-D slices, not 2-D indexing: keeps the unit loop vectorizable (see lstm.py).
    b_i, b_f, b_g, b_o = b[j0:j1], b[H + j0:H + j1], b[2 * H + j0:2 * H + j1], b[3 * H + j0:3 * H + j1]
    for row in range(c_prev.shape[0]):
        zr = z[row]
        z_i, z_f, z_g, z_o = (zr[j0:j1], zr[H + j0:H + j1], zr[2 * H + j0:2 * H + j1],
                              zr[3 * H + j0:3 * H + j1])
        c_p, c_o, h_o = c_prev[row, j0:j1], c_out[row, j0:j1], h_out[row, j0:j1]
        for u in range(j1 - j0):
            i, f, g, o, c, h = gates.lstm_unit_forward(z_i[u] + b_i[u], z_f[u] + b_f[u],
                                                       z_g[u] + b_g[u], z_o[u] + b_o[u], c_p[u])
            z_i[u] = i
            z_f[u] = f
            z_g[u] = g
            z_o[u] = o
            c_o[u] = c
            h_o[u] = h


def _forward_loop(tile, MR, tasks, h0, c0, W_h_packed, b, h_all, c_all, gates_all,
                  edge_tiles):
    """The time loop of the forward pass, one parallel region of ``tasks`` tasks per step
    (module docstring; the serial twin runs the tasks on the calling thread). gates_all
    (T, B, 4H) holds the input projection on entry; edge_tiles (workers, MR, 4U) are
    per-worker work buffers."""
    for t in range(h_all.shape[0]):
        h_prev = h_all[t - 1] if t > 0 else h0
        c_prev = c_all[t - 1] if t > 0 else c0
        for task in prange(tasks):
            _forward_task(tile, MR, task, tasks, h_prev, W_h_packed, b, c_prev, gates_all[t],
                          c_all[t], h_all[t], edge_tiles[get_thread_id()])


forward_loop_serial, forward_loop_parallel = serial_and_parallel(_forward_loop, "forward_loop")


# ------------------------------------------------------------------------------ backward

@njit(**JIT_OPTIONS)
def _backward_task(tile, MR, task, tasks, t, has_next, lengths, dz_next, W_h_T_packed, gates_t,
                   c_prev, c_t, dh_t, dh_n, dc_n, dc, dz_t, dh_rec_all, edge_tile):
    """One step ``t`` of BPTT for the hidden units of a contiguous run of panels of W_h^T.

    dz_next (B, 4H): dLoss/d(pre-activations) of step t+1, read only if ``has_next``;
    W_h_T_packed (Q, 4H, NR): plain panels of W_h^T; gates_t (B, 4H) activated gates
    (i, f, g, o); c_prev, c_t, dh_t (B, H); dh_n, dc_n (B, H): gradients of the final state,
    injected at step ``lengths[b] - 1``; dc (B, H): in dLoss/dc_t (from step t+1), out
    dLoss/dc_{t-1}; dz_t (B, 4H) out. Rows with ``t >= lengths[b]`` are padding: their
    dz_t and dc are zero. dh_rec_all (B, Q*NR): receives ``dz_next @ W_h^T``.
    """
    B, H = c_t.shape
    Q, _, NR = W_h_T_packed.shape
    first, end = task_share(task, tasks, Q)
    if has_next:
        for q in range(first, end):
            panel_product(tile, MR, dz_next, 0, 4 * H, 1, B, 4 * H, W_h_T_packed, q, KC,
                          dh_rec_all, q * NR, Q * NR, NR // 4, NR, False, edge_tile, False)
    gates_backward_units(t, lengths, gates_t, c_prev, c_t, dh_t, dh_n, dc_n, dc, dz_t,
                         dh_rec_all, first * NR, min(H, end * NR), None)


def _backward_loop(tile, MR, tasks, lengths, W_h_T_packed, c0, c_all, gates_all, dh_all,
                   dh_n, dc_n, dc, dz_all, dh_rec, edge_tiles):
    """The reversed time loop of BPTT, one parallel region of ``tasks`` tasks per step
    (module docstring; the serial twin runs the tasks on the calling thread). dz_all
    (T, B, 4H) out; dc (B, H) out: dLoss/dc0 (rows of length 0: zero). dh_rec (B, Q*NR) and
    edge_tiles (workers, MR, NR) are work buffers."""
    T = dz_all.shape[0]
    for t in range(T - 1, -1, -1):
        c_prev = c_all[t - 1] if t > 0 else c0
        dz_next = dz_all[t + 1] if t + 1 < T else dz_all[t]  # not read at the last step
        for task in prange(tasks):
            _backward_task(tile, MR, task, tasks, t, t + 1 < T, lengths, dz_next, W_h_T_packed,
                           gates_all[t], c_prev, c_all[t], dh_all[t], dh_n, dc_n, dc, dz_all[t],
                           dh_rec, edge_tiles[get_thread_id()])


backward_loop_serial, backward_loop_parallel = serial_and_parallel(_backward_loop,
                                                                   "backward_loop")


@njit(**JIT_OPTIONS)
def finish_backward(lengths, dh_n, dc_n, dz_2d, dW_x_T, dW_h_T, dh0, dc0, dW_x, dW_h, db):
    """After the GEMMs: transpose the weight gradients into place, sum ``db``, and give
    rows of length 0 (no step at all) the final state's gradients as dh0/dc0.

    dz_2d (T*B, 4H); dW_x_T (4H, X), dW_h_T (4H, H) -> dW_x (X, 4H), dW_h (H, 4H); db (4H,).
    """
    transpose_into(dW_x_T, dW_x)
    transpose_into(dW_h_T, dW_h)
    column_sums(dz_2d, db)
    for row in range(lengths.shape[0]):
        if lengths[row] <= 0:
            for j in range(dh0.shape[1]):
                dh0[row, j] = dh_n[row, j]
                dc0[row, j] = dc_n[row, j]


# ------------------------------------------------------------- orchestration (Python level)

def _panels(n: int, width: int) -> int:
    return -(-n // width)


def _tasks(plan, panels: int) -> int:
    """Tasks per step: one per worker (equal runs of panels), at most one per panel."""
    return max(1, min(plan.workers, panels))


def _gemm(plan, a, a_rs, a_ks, M, K, packed, c, edge_tiles) -> None:
    """``c = A @ B`` for B packed in ``packed``, on the plan's driver (see ``gemm_parallel``)."""
    if plan.parallel:
        panels = packed.shape[0]
        row_chunks = max(1, -(-2 * plan.workers // panels))  # >= 2 jobs per worker
        gemm_parallel(plan.tile_id, plan.MR, a, a_rs, a_ks, M, K, packed, c, row_chunks,
                      edge_tiles)
    else:
        gemm_serial(plan.tile_id, plan.MR, a, a_rs, a_ks, M, K, packed, c, 1, edge_tiles)


def sequence_forward(plan, x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all) -> None:
    """``cpu.lstm_sequence_forward`` on the packed GEMM; arguments and outputs as there.
    All arrays C-contiguous, one dtype; ``plan`` from ``plan.plan``."""
    T, B, X = x.shape
    H = h0.shape[1]
    dtype = x.dtype
    W_h_packed = scratch("packed forward W_h", (_panels(H, plan.U), H, plan.NR), dtype)
    pack_gate_panels(W_h, plan.U, W_h_packed)
    W_x_packed = scratch("packed forward W_x", (_panels(4 * H, plan.NR), X, plan.NR), dtype)
    pack_panels(W_x, False, 0, W_x_packed)
    edge_tiles = scratch("packed forward edge tiles", (plan.workers, plan.MR, plan.NR), dtype)
    _gemm(plan, x.reshape(T * B, X), X, 1, T * B, X, W_x_packed, gates_all.reshape(T * B, 4 * H),
          edge_tiles)
    loop = forward_loop_parallel if plan.parallel else forward_loop_serial
    loop(plan.tile_id, plan.MR, _tasks(plan, W_h_packed.shape[0]), h0, c0, W_h_packed, b, h_all,
         c_all, gates_all, edge_tiles)


def sequence_backward(plan, x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all, dh_n, dc_n,
                      lengths, dx, dh0, dc0, dW_x, dW_h, db) -> None:
    """``cpu.lstm_sequence_backward`` on the packed GEMM; arguments and outputs as there
    (``lengths`` (B,) int64: rows with ``t >= lengths[b]`` are padding). C-contiguous."""
    T, B, X = x.shape
    H = h0.shape[1]
    G = 4 * H
    dtype = x.dtype
    NR = plan.NR
    W_h_T_packed = scratch("packed backward W_h^T", (_panels(H, NR), G, NR), dtype)
    pack_panels(W_h, True, 0, W_h_T_packed)
    edge_tiles = scratch("packed backward edge tiles", (plan.workers, plan.MR, NR), dtype)
    dh_rec = scratch("packed backward dh_rec", (B, W_h_T_packed.shape[0] * NR), dtype)
    dz_all = scratch("packed backward dz", (T, B, G), dtype)
    loop = backward_loop_parallel if plan.parallel else backward_loop_serial
    loop(plan.tile_id, plan.MR, _tasks(plan, W_h_T_packed.shape[0]), lengths, W_h_T_packed, c0,
         c_all, gates_all, dh_all, dh_n, dc_n, dc0, dz_all, dh_rec, edge_tiles)
    dz_2d = dz_all.reshape(T * B, G)
    _gemm(plan, dz_all[0], G, 1, B, G, W_h_T_packed, dh0, edge_tiles)
    W_x_T_packed = scratch("packed backward W_x^T", (_panels(X, NR), G, NR), dtype)
    pack_panels(W_x, True, 0, W_x_T_packed)
    _gemm(plan, dz_2d, G, 1, T * B, G, W_x_T_packed, dx.reshape(T * B, X), edge_tiles)
    # Weight gradients transposed, dW^T = dz^T @ [x | h_prev]: the packed operand is then
    # x or h (T*B x X or H), not dz (T*B x 4H), and A = dz^T is a free strided view.
    x_packed = scratch("packed backward x", (_panels(X, NR), T * B, NR), dtype)
    pack_panels(x.reshape(T * B, X), False, 0, x_packed)
    dW_x_T = scratch("packed backward dW_x^T", (G, X), dtype)
    _gemm(plan, dz_2d, 1, G, G, T * B, x_packed, dW_x_T, edge_tiles)
    h_prev_packed = scratch("packed backward h_prev", (_panels(H, NR), T * B, NR), dtype)
    pack_panels(h0, False, 0, h_prev_packed)
    if T > 1:
        pack_panels(h_all[:T - 1].reshape((T - 1) * B, H), False, B, h_prev_packed)
    dW_h_T = scratch("packed backward dW_h^T", (G, H), dtype)
    _gemm(plan, dz_2d, 1, G, G, T * B, h_prev_packed, dW_h_T, edge_tiles)
    finish_backward(lengths, dh_n, dc_n, dz_2d, dW_x_T, dW_h_T, dh0, dc0, dW_x, dW_h, db)
