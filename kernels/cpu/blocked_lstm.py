"""The batch-blocked LSTM loops: each thread owns blocks of batch rows for all T steps.

For many independent sequences (large B) the per-step loops of ``packed_lstm``/``lstm``
stream every step's ``(B, 4H)`` pre-activations, and before the loop the all-steps input
projection (``T * B * 4H`` values), through DRAM, and put a barrier (a parallel region) on
every step. Sequences are independent, so here a thread takes a block of ``n`` rows and runs
it through all T steps before it takes the next block: no barrier between steps, and what a
step touches stays in the core's cache.

Forward, per block and step ``t`` (``n = rows_per_block`` rows, the last block fewer):
    z = x_t[rows] @ W_x + h_{t-1}[rows] @ W_h      two micro-kernel passes into one (n, 4H)
                                                   buffer: the product ``[x_t, h_{t-1}] @
                                                   [W_x; W_h]``, both on gate panels
    gates, c_t, h_t = the fused gate update of z (bias added there) while z is in cache
The weights are packed once per call into gate panels (``packed_gemm.pack_gate_panels``).
An inference pass keeps z and the cell state in per-task buffers (nothing per step is
kept; the final states are gathered at each row's last step); a training forward writes
the gates and cell states that the backward reads.

Backward (BPTT), per block and step ``t`` reversed, with ``dz`` (n, 4H) in cache:
    dz, dc_{t-1} = the gate backward (padding and final-state rules of ``loops``)
    dh_{t-1}    = dz @ W_h^T                        the recurrent gradient of the next step
    dx_t[rows]  = dz @ W_x^T
    dW^T       += dz^T @ [x_t[rows], h_{t-1}[rows]] this task's share of the weight gradients
    db         += column sums of dz
Each task accumulates its share of ``dW``/``db`` in buffers of its own; the shares are added
after the loop in task order. A task always takes the same contiguous run of blocks, so the
sums are deterministic for a given thread count and block size (not across them: float
addition is not associative).

Tasks: one per worker thread, each a contiguous run of blocks (``loops.task_share``); the work
buffers are per task, not per thread id. Each driver is one source compiled as a serial and
a parallel function (``variants.serial_and_parallel``). Layouts and semantics are those of
``lstm.lstm_sequence_forward``/``lstm_sequence_backward`` (time-major ``(T, B, F)``,
C-contiguous, gate blocks (i, f, g, o)); ``plan.plan`` chooses this path and the block size.
"""
import numpy as np
from numba import njit, prange

from ..config import JIT_OPTIONS, KC
from .loops import gates_backward_units, task_share
from .packed_gemm import pack_gate_panels, pack_panels, panel_product
from .packed_lstm import _gates_forward_units
from .variants import serial_and_parallel
from .workspace import scratch


# ------------------------------------------------------------------------------- forward

@njit(**JIT_OPTIONS)
def _forward_block(tile, MR, r0, r1, x, h0, c0, W_x_packed, W_h_packed, b, h_all, c_all,
                   gates_all, save, lengths, h_n, c_n, z_buffer, c_buffer, edge_tile):
    """All T steps of batch rows ``[r0, r1)``.

    W_x_packed (P, X, 4U), W_h_packed (P, H, 4U): gate panels; h_all (T, B, H) out. With
    ``save`` (a training forward) the activated gates and cell states go to gates_all
    (T, B, 4H) and c_all (T, B, H); without (inference) they live in z_buffer (>= n, 4H) and
    the ping-pong pair c_buffer (2, >= n, H), and each row's final states are copied to
    h_n, c_n (B, H) at its step ``lengths[row] - 1``.
    """
    T, _, X = x.shape
    H = h0.shape[1]
    n = r1 - r0
    P, _, NR = W_h_packed.shape
    U = NR // 4
    c_prev = c0[r0:r1]
    for t in range(T):
        x_t = x[t, r0:r1]
        h_prev = h0[r0:r1] if t == 0 else h_all[t - 1, r0:r1]
        if save:
            z = gates_all[t, r0:r1]
            c_out = c_all[t, r0:r1]
        else:
            z = z_buffer[0:n]
            c_out = c_buffer[t % 2, 0:n]
        for p in range(P):
            units = min(U, H - p * U)
            # z's gate blocks for the panel's units: x_t @ W_x, then + h_{t-1} @ W_h
            panel_product(tile, MR, x_t, 0, X, 1, n, X, W_x_packed, p, KC, z, p * U, 4 * H, H,
                          units, True, edge_tile, False)
            panel_product(tile, MR, h_prev, 0, H, 1, n, H, W_h_packed, p, KC, z, p * U, 4 * H,
                          H, units, True, edge_tile, True)
        h_out = h_all[t, r0:r1]
        _gates_forward_units(z, b, c_prev, c_out, h_out, 0, H)
        if not save:
            _gather_final_rows(t, lengths, r0, h_out, c_out, h_n, c_n)
        c_prev = c_out


@njit(**JIT_OPTIONS)
def _gather_final_rows(t, lengths, r0, h_rows, c_rows, h_n, c_n):
    """Copy rows of the block whose sequence ends at step ``t`` into ``h_n``/``c_n``."""
    for r in range(h_rows.shape[0]):
        if lengths[r0 + r] - 1 == t:
            h_src, c_src, h_dst, c_dst = h_rows[r], c_rows[r], h_n[r0 + r], c_n[r0 + r]
            for j in range(h_dst.shape[0]):
                h_dst[j] = h_src[j]
                c_dst[j] = c_src[j]


def _forward_driver(tile, MR, tasks, rows_per_block, x, h0, c0, W_x_packed, W_h_packed, b,
                    h_all, c_all, gates_all, save, lengths, h_n, c_n, z_work, c_work,
                    edge_tiles):
    """One parallel region of ``tasks`` tasks for the whole pass (module docstring);
    z_work (tasks, n, 4H), c_work (tasks, 2, n, H), edge_tiles (tasks, MR, 4U): per task."""
    B = x.shape[1]
    blocks = -(-B // rows_per_block)
    for task in prange(tasks):
        first, end = task_share(task, tasks, blocks)
        for block in range(first, end):
            r0 = block * rows_per_block
            _forward_block(tile, MR, r0, min(B, r0 + rows_per_block), x, h0, c0, W_x_packed,
                           W_h_packed, b, h_all, c_all, gates_all, save, lengths, h_n, c_n,
                           z_work[task], c_work[task], edge_tiles[task])


forward_serial, forward_parallel = serial_and_parallel(_forward_driver, "blocked_forward")


# ------------------------------------------------------------------------------ backward

@njit(**JIT_OPTIONS)
def _pack_inputs_and_state(x_rows, h_rows, out):
    """Column panels of the block's ``[x_t | h_{t-1}]`` (n, X + H): ``out[p, k, c] =
    [x_rows | h_rows][k, p*NR + c]``, zeros past X + H. out (ceil((X + H)/NR), n, NR)."""
    n, X = x_rows.shape
    H = h_rows.shape[1]
    NR = out.shape[2]
    for p in range(out.shape[0]):
        for k in range(n):
            dst = out[p, k]
            x_row, h_row = x_rows[k], h_rows[k]
            for c in range(NR):
                column = p * NR + c
                if column < X:
                    dst[c] = x_row[column]
                elif column < X + H:
                    dst[c] = h_row[column - X]
                else:
                    dst[c] = 0


@njit(**JIT_OPTIONS)
def _backward_block(tile, MR, r0, r1, x, h0, c0, W_h_T_packed, W_x_T_packed, h_all, c_all,
                    gates_all, dh_all, dh_n, dc_n, lengths, dx, dh0, dc0, dz, xh_flat, dW_T,
                    db, edge_tile):
    """BPTT of batch rows ``[r0, r1)`` over all T steps (module docstring).

    W_h_T_packed (ceil(H/NR), 4H, NR), W_x_T_packed (ceil(X/NR), 4H, NR): plain panels of
    W_h^T and W_x^T; dz (>= n, 4H) and xh_flat (>= ceil((X+H)/NR) * n * NR) work buffers;
    dW_T (4H, X + H) and db (4H,): this task's sums, accumulated. dh0/dc0 rows carry
    dLoss/dh_t and dLoss/dc_t through the loop and end as the gradients of h0/c0.
    """
    T, _, X = x.shape
    H = h0.shape[1]
    G = 4 * H
    n = r1 - r0
    NR = W_h_T_packed.shape[2]
    U = NR // 4
    panels_xh = -(-(X + H) // NR)
    xh_packed = xh_flat[:panels_xh * n * NR].reshape((panels_xh, n, NR))
    dz_rows = dz[0:n]
    dh_rec = dh0[r0:r1]
    dc = dc0[r0:r1]
    row_lengths = lengths[r0:r1]
    for t in range(T - 1, -1, -1):
        c_prev = c0[r0:r1] if t == 0 else c_all[t - 1, r0:r1]
        h_prev = h0[r0:r1] if t == 0 else h_all[t - 1, r0:r1]
        gates_backward_units(t, row_lengths, gates_all[t, r0:r1], c_prev, c_all[t, r0:r1],
                             dh_all[t, r0:r1], dh_n[r0:r1], dc_n[r0:r1], dc, dz_rows, dh_rec,
                             0, H, None)
        for q in range(W_h_T_packed.shape[0]):  # dh_{t-1} = dz @ W_h^T
            panel_product(tile, MR, dz_rows, 0, G, 1, n, G, W_h_T_packed, q, KC, dh_rec,
                          q * NR, H, U, min(NR, H - q * NR), False, edge_tile, False)
        dx_t = dx[t, r0:r1]
        for q in range(W_x_T_packed.shape[0]):  # dx_t = dz @ W_x^T
            panel_product(tile, MR, dz_rows, 0, G, 1, n, G, W_x_T_packed, q, KC, dx_t,
                          q * NR, X, U, min(NR, X - q * NR), False, edge_tile, False)
        # dW^T += dz^T @ [x_t | h_{t-1}]: A = dz^T is a strided view (k runs over the rows)
        _pack_inputs_and_state(x[t, r0:r1], h_prev, xh_packed)
        for p in range(panels_xh):
            panel_product(tile, MR, dz_rows, 0, 1, G, G, n, xh_packed, p, KC, dW_T, p * NR,
                          X + H, U, min(NR, X + H - p * NR), False, edge_tile, True)
        for r in range(n):
            dz_r = dz_rows[r]
            for k in range(G):
                db[k] += dz_r[k]
    for r in range(n):  # rows with no step at all: the final state's gradients pass through
        if row_lengths[r] <= 0:
            for j in range(H):
                dh_rec[r, j] = dh_n[r0 + r, j]
                dc[r, j] = dc_n[r0 + r, j]


def _backward_driver(tile, MR, tasks, rows_per_block, x, h0, c0, W_h_T_packed, W_x_T_packed,
                     h_all, c_all, gates_all, dh_all, dh_n, dc_n, lengths, dx, dh0, dc0,
                     dz_work, xh_work, dW_T_work, db_work, edge_tiles):
    """One parallel region of ``tasks`` tasks for the whole BPTT (module docstring); the
    work buffers' first axis is the task: dz_work (tasks, n, 4H), xh_work (tasks, m),
    dW_T_work (tasks, 4H, X + H) and db_work (tasks, 4H) (zeroed here), edge_tiles."""
    B = x.shape[1]
    blocks = -(-B // rows_per_block)
    for task in prange(tasks):
        dW_T, db = dW_T_work[task], db_work[task]
        for k in range(db.shape[0]):
            db[k] = 0
            row = dW_T[k]
            for i in range(row.shape[0]):
                row[i] = 0
        first, end = task_share(task, tasks, blocks)
        for block in range(first, end):
            r0 = block * rows_per_block
            _backward_block(tile, MR, r0, min(B, r0 + rows_per_block), x, h0, c0, W_h_T_packed,
                            W_x_T_packed, h_all, c_all, gates_all, dh_all, dh_n, dc_n, lengths,
                            dx, dh0, dc0, dz_work[task], xh_work[task], dW_T, db,
                            edge_tiles[task])


backward_serial, backward_parallel = serial_and_parallel(_backward_driver, "blocked_backward")


@njit(**JIT_OPTIONS)
def _add_task_shares(dW_T_work, db_work, dW_x, dW_h, db):
    """dW_x (X, 4H), dW_h (H, 4H), db (4H,) = the tasks' shares added in task order
    (dW_T_work (tasks, 4H, X + H) holds them transposed)."""
    tasks, G, _ = dW_T_work.shape
    X = dW_x.shape[0]
    for k in range(G):
        db[k] = 0
    for i in range(dW_x.shape[0]):
        for k in range(G):
            dW_x[i, k] = 0
    for i in range(dW_h.shape[0]):
        for k in range(G):
            dW_h[i, k] = 0
    for task in range(tasks):
        share = dW_T_work[task]
        for k in range(G):
            db[k] += db_work[task, k]
            row = share[k]
            for i in range(X):
                dW_x[i, k] += row[i]
            for i in range(dW_h.shape[0]):
                dW_h[i, k] += row[X + i]


# ------------------------------------------------------------- orchestration (Python level)

def _tasks(plan, B: int) -> tuple[int, int]:
    """(tasks, rows per block) of a call on B rows: ``plan.rows_per_block``, but no more
    than a worker's share of B (rounded up to the tile's ``MR`` rows), so that every worker
    has a block even where a large L2 would fit the whole batch in one; one task per worker
    but no more than there are blocks."""
    share = -(-B // max(1, plan.workers))
    share = -(-share // plan.MR) * plan.MR
    rows = max(1, min(plan.rows_per_block, share, B))
    blocks = -(-B // rows)
    return max(1, min(plan.workers, blocks)), rows


def _packed_gate_weights(plan, W_x, W_h):
    """W_x (X, 4H) and W_h (H, 4H) as gate panels of ``plan.U`` units, packed afresh."""
    X, G = W_x.shape
    H = G // 4
    panels = -(-H // plan.U)
    W_x_packed = scratch("blocked forward W_x", (panels, X, plan.NR), W_x.dtype)
    pack_gate_panels(W_x, plan.U, W_x_packed)
    W_h_packed = scratch("blocked forward W_h", (panels, H, plan.NR), W_h.dtype)
    pack_gate_panels(W_h, plan.U, W_h_packed)
    return W_x_packed, W_h_packed


def _run_forward(plan, x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all, save, lengths, h_n,
                 c_n) -> None:
    T, B, _ = x.shape
    H = h0.shape[1]
    dtype = x.dtype
    tasks, rows = _tasks(plan, B)
    W_x_packed, W_h_packed = _packed_gate_weights(plan, W_x, W_h)
    if save:
        z_work = scratch("blocked forward z", (tasks, 1, 4 * H), dtype)  # unused
        c_work = scratch("blocked forward c", (tasks, 2, 1, H), dtype)  # unused
    else:
        z_work = scratch("blocked forward z", (tasks, rows, 4 * H), dtype)
        c_work = scratch("blocked forward c", (tasks, 2, rows, H), dtype)
    edge_tiles = scratch("blocked edge tiles", (tasks, plan.MR, plan.NR), dtype)
    driver = forward_parallel if plan.parallel and tasks > 1 else forward_serial
    driver(plan.tile_id, plan.MR, tasks, rows, x, h0, c0, W_x_packed, W_h_packed, b, h_all,
           c_all, gates_all, save, lengths, h_n, c_n, z_work, c_work, edge_tiles)


def sequence_forward(plan, x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all) -> None:
    """``cpu.lstm_sequence_forward`` (a training forward) on the blocked path: arguments and
    outputs as there. All arrays C-contiguous, one dtype; ``plan`` from ``plan.plan``."""
    B, H = h0.shape
    dummy_lengths = np.zeros(1, np.int64)
    dummy_state = np.empty((1, H), x.dtype)
    _run_forward(plan, x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all, True, dummy_lengths,
                 dummy_state, dummy_state)


def sequence_inference(plan, x, h0, c0, W_x, W_h, b, lengths, h_all, h_n, c_n) -> None:
    """``cpu.lstm_sequence_inference`` on the blocked path: h_all (T, B, H) and each row's
    final states h_n, c_n (B, H) at step ``lengths[b] - 1``; nothing per step is kept."""
    dtype = x.dtype
    H = h0.shape[1]
    unused_c = np.empty((1, 1, H), dtype)
    unused_gates = np.empty((1, 1, 4 * H), dtype)
    _run_forward(plan, x, h0, c0, W_x, W_h, b, h_all, unused_c, unused_gates, False, lengths,
                 h_n, c_n)


def sequence_backward(plan, x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all, dh_n, dc_n,
                      lengths, dx, dh0, dc0, dW_x, dW_h, db) -> None:
    """``cpu.lstm_sequence_backward`` on the blocked path; arguments and outputs as there
    (``lengths`` (B,) int64: rows with ``t >= lengths[b]`` are padding). C-contiguous."""
    T, B, X = x.shape
    H = h0.shape[1]
    G = 4 * H
    dtype = x.dtype
    NR = plan.NR
    tasks, rows = _tasks(plan, B)
    W_h_T_packed = scratch("blocked backward W_h^T", (-(-H // NR), G, NR), dtype)
    pack_panels(W_h, True, 0, W_h_T_packed)
    W_x_T_packed = scratch("blocked backward W_x^T", (-(-X // NR), G, NR), dtype)
    pack_panels(W_x, True, 0, W_x_T_packed)
    dz_work = scratch("blocked backward dz", (tasks, rows, G), dtype)
    xh_work = scratch("blocked backward [x|h]", (tasks, -(-(X + H) // NR) * rows * NR), dtype)
    dW_T_work = scratch("blocked backward dW^T", (tasks, G, X + H), dtype)
    db_work = scratch("blocked backward db", (tasks, G), dtype)
    edge_tiles = scratch("blocked edge tiles", (tasks, plan.MR, NR), dtype)
    driver = backward_parallel if plan.parallel and tasks > 1 else backward_serial
    driver(plan.tile_id, plan.MR, tasks, rows, x, h0, c0, W_h_T_packed, W_x_T_packed, h_all,
           c_all, gates_all, dh_all, dh_n, dc_n, lengths, dx, dh0, dc0, dz_work, xh_work,
           dW_T_work, db_work, edge_tiles)
    _add_task_shares(dW_T_work, db_work, dW_x, dW_h, db)
