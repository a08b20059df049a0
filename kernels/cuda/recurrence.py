"""The recurrence on the device: persistent kernels that run all steps in one launch, for the
forward pass and for backpropagation through time.

The per-step path (``steps``: one cuBLAS GEMM ``h_{t-1} @ W_h`` and one gate launch per
step, issued from Python) is launch-bound: tens of microseconds of host work per step. The
two persistent tiers run every step of a call (or of an inference chunk) inside one launch;
the input projection ``x @ W_x + b`` of all steps stays one large GEMM before it
(``lstm._input_projection``), the kernels do the recurrence:

- ``rows``: a block owns a group of batch rows and every hidden unit of them; steps are
  separated by ``cuda.syncthreads()``. Sequences are independent, so any number of blocks
  is correct (also in the simulator) and no inter-block barrier exists.
- ``units``: a block owns slices of hidden units (all four gates of each, so the gate math
  stays local) for every batch row; one grid-wide barrier per step
  (``cuda.cg.this_grid().sync()``: numba launches such a kernel cooperatively) before all
  blocks read ``h_{t-1}``. The grid is never larger than ``max_cooperative_grid_blocks``;
  a block loops over several slices when the grid is smaller than the work (in the
  simulator, where blocks run one after another, the grid is one block).

Both compute each (row, unit) of a step with the same device function (``_unit_step``):
the accumulation starts from the input projection and adds ``h_{t-1}[m] * W_h[m, :]`` for
``m = 0 .. P-1`` in that order, then the gate math of ``kernels/math/gates.py``. The order
depends neither on the tier nor on the grid: results are bit-identical across runs, grid
sizes and the two persistent tiers. (``steps`` sums in cuBLAS's order: equal to rounding.)

``h_{t-1}`` and ``c_{t-1}`` are read from the output arrays, which the step before wrote:
within a block after ``syncthreads``, across blocks after the grid barrier. ``W_h`` is read
through L1/L2 (a first version: shared-memory staging of ``W_h`` is for a measured GPU run).
BPTT runs the same way, last step first: a (row, unit) takes the gradient entering at step
t (padding and final-state rules: ``gradients_entering``, shared with the per-step kernels),
adds the recurrent ``sum_n dz_{t+1}[n] * W_h^T[n, j]`` (fixed order), and runs the gate
backward, keeping ``dc`` in its own slot; one ``syncthreads`` (rows) or grid barrier (units)
per step. ``dW_x``, ``dW_h``, ``dx`` and ``db`` stay the large GEMMs after the loop
(``lstm._gradients_after_the_loop``).

The plain cell and the cell with peephole connections; projections (``proj_size``: one
more GEMM per step) run on ``steps``.

Selection (``NBLSTM_CUDA_RECURRENCE``, read per call, like ``NBLSTM_CPU_GEMM``): ``auto``
(default), ``rows``, ``units`` or ``steps``; ``kernels/cuda_plan.py`` decides (it imports no
CUDA target, so ``nblstm info`` can describe the choice anywhere), ``launch_forward`` runs.
"""
from __future__ import annotations

import math
import warnings

from ..config import CUDA_RECURRENCE_THREADS, SIMULATOR
from ..cuda_plan import ENVIRONMENT_VARIABLE, choice, choose
from ..math import gates
from .target import cuda


# ----------------------------------------------------------------------------- kernels

@cuda.jit(device=True)
def store_step(t, r, j, z_all, c_all, h_all, i, f, g, o, c, h):
    """Write one (row, unit)'s step ``t``: the activated gates into ``z_all[t]`` (gate
    blocks i, f, g, o), ``c_all[t]``, ``h_all[t]`` (shared with ``lstm.py``'s gate kernels)."""
    H = c_all.shape[2]
    z_all[t, r, j] = i
    z_all[t, r, H + j] = f
    z_all[t, r, 2 * H + j] = g
    z_all[t, r, 3 * H + j] = o
    c_all[t, r, j] = c
    h_all[t, r, j] = h


@cuda.jit(device=True)
def cell_forward(z_i, z_f, z_g, z_o, c_prev, peephole, j, has_peephole):
    """The gate math of unit ``j``: ``gates.lstm_unit_forward``, or its peephole form with
    ``peephole (3, H)`` (rows i, f, o; not read without ``has_peephole``). Shared by the
    per-step (``lstm.py``) and the persistent kernels."""
    if has_peephole:
        return gates.lstm_unit_forward_peephole(z_i, z_f, z_g, z_o, c_prev, peephole[0, j],
                                                peephole[1, j], peephole[2, j])
    return gates.lstm_unit_forward(z_i, z_f, z_g, z_o, c_prev)


@cuda.jit(device=True)
def cell_backward(t, r, j, gates_all, c0, c_all, dh, dc_next, dz_all, dc, peephole,
                  has_peephole):
    """The gate backward of (row ``r``, unit ``j``) at BPTT step ``t``, given the gradients
    entering it (``dh``, ``dc_next``): writes ``dz_all[t]`` and dLoss/dc_{t-1} into ``dc``.
    Plain or peephole cell as ``cell_forward``; shared like it."""
    H = c_all.shape[2]
    c_prev = c0[r, j] if t == 0 else c_all[t - 1, r, j]
    if has_peephole:
        d_i, d_f, d_g, d_o, d_c_prev = gates.lstm_unit_backward_peephole(
            gates_all[t, r, j], gates_all[t, r, H + j], gates_all[t, r, 2 * H + j],
            gates_all[t, r, 3 * H + j], c_prev, c_all[t, r, j], dh, dc_next, peephole[0, j],
            peephole[1, j], peephole[2, j])
    else:
        d_i, d_f, d_g, d_o, d_c_prev = gates.lstm_unit_backward(
            gates_all[t, r, j], gates_all[t, r, H + j], gates_all[t, r, 2 * H + j],
            gates_all[t, r, 3 * H + j], c_prev, c_all[t, r, j], dh, dc_next)
    store_gate_gradients(t, r, j, dz_all, dc, d_i, d_f, d_g, d_o, d_c_prev)


@cuda.jit(device=True)
def _unit_step(t, r, j, z_all, W_h, h0, c0, h_all, c_all, save_gates, peephole,
               has_peephole):
    """Step ``t`` of batch row ``r``, hidden unit ``j``: the recurrent product (fixed order),
    the gate math (with the peephole weights ``peephole (3, H)`` when ``has_peephole``;
    otherwise that array is not read), and the writes (``c_all[t]``, ``h_all[t]``, and the
    activated gates into ``z_all[t]`` when ``save_gates``)."""
    H = c_all.shape[2]
    P = W_h.shape[0]
    acc_i = z_all[t, r, j]
    acc_f = z_all[t, r, H + j]
    acc_g = z_all[t, r, 2 * H + j]
    acc_o = z_all[t, r, 3 * H + j]
    for m in range(P):
        h_m = h0[r, m] if t == 0 else h_all[t - 1, r, m]
        acc_i += h_m * W_h[m, j]
        acc_f += h_m * W_h[m, H + j]
        acc_g += h_m * W_h[m, 2 * H + j]
        acc_o += h_m * W_h[m, 3 * H + j]
    c_prev = c0[r, j] if t == 0 else c_all[t - 1, r, j]
    i, f, g, o, c, h = cell_forward(acc_i, acc_f, acc_g, acc_o, c_prev, peephole, j,
                                    has_peephole)
    if save_gates:
        store_step(t, r, j, z_all, c_all, h_all, i, f, g, o, c, h)
    else:
        c_all[t, r, j] = c
        h_all[t, r, j] = h


@cuda.jit
def _rows_recurrence_kernel(z_all, W_h, h0, c0, h_all, c_all, save_gates, peephole,
                            has_peephole, rows_per_block):
    """``rows`` tier: block b runs rows ``[b * rows_per_block, ...)`` through every step.

    z_all (T, B, 4H) in: input projections (bias included); out: the activated gates when
    ``save_gates`` (else left as they are); W_h (H, 4H); h0, c0 (B, H); h_all, c_all
    (T, B, H) out; peephole (3, H), read only when ``has_peephole``."""
    T = z_all.shape[0]
    B = z_all.shape[1]
    H = c_all.shape[2]
    first = cuda.blockIdx.x * rows_per_block
    rows = min(rows_per_block, B - first)
    for t in range(T):
        for item in range(cuda.threadIdx.x, rows * H, cuda.blockDim.x):
            row = item // H
            _unit_step(t, first + row, item - row * H, z_all, W_h, h0, c0, h_all, c_all,
                       save_gates, peephole, has_peephole)
        cuda.syncthreads()  # step t's h is complete before any thread reads it


@cuda.jit
def _units_recurrence_kernel(z_all, W_h, h0, c0, h_all, c_all, save_gates, peephole,
                             has_peephole, slice_units):
    """``units`` tier: slices of ``slice_units`` hidden units (all rows, all four gates)
    spread over the grid; a grid barrier after each step (arrays as in the rows kernel)."""
    grid = cuda.cg.this_grid()
    T = z_all.shape[0]
    B = z_all.shape[1]
    H = c_all.shape[2]
    slices = (H + slice_units - 1) // slice_units
    for t in range(T):
        for s in range(cuda.blockIdx.x, slices, cuda.gridDim.x):
            first = s * slice_units
            units = min(slice_units, H - first)
            for item in range(cuda.threadIdx.x, B * units, cuda.blockDim.x):
                row = item // units
                _unit_step(t, row, first + item - row * units, z_all, W_h, h0, c0, h_all,
                           c_all, save_gates, peephole, has_peephole)
        grid.sync()  # every block's part of step t is written before step t + 1 reads it


# ------------------------------------------------------------------- backward kernels

#: What ``gradients_entering`` found for one (row, unit) at step t of BPTT.
PADDING, FINAL, INTERIOR = 0, 1, 2


@cuda.jit(device=True)
def gradients_entering(t, r, j, lengths, dh_all, dh_n, dc_n, dc, dz_all):
    """The padding and final-state rules of BPTT step ``t`` for one (row, unit): returns
    ``(kind, dh, dc_next)``. Row r's final state was taken at step ``lengths[r] - 1``
    (``FINAL``: ``dh = dh_all + dh_n``, ``dc_next = dc_n``); later steps are padding
    (``PADDING``: ``dz`` and ``dc`` zeroed here, nothing passed on); earlier steps are
    ``INTERIOR``: ``dh`` holds the output gradient only, the caller adds the recurrent one,
    and ``dc_next`` is ``dc`` (from step t + 1). Shared by the per-step and the persistent
    kernels."""
    H = dc.shape[1]
    length = lengths[r]
    if t >= length:
        for k in range(4):
            dz_all[t, r, k * H + j] = 0
        dc[r, j] = 0
        return PADDING, dc[r, j], dc[r, j]
    if t == length - 1:
        return FINAL, dh_all[t, r, j] + dh_n[r, j], dc_n[r, j]
    return INTERIOR, dh_all[t, r, j], dc[r, j]


@cuda.jit(device=True)
def store_gate_gradients(t, r, j, dz_all, dc, d_i, d_f, d_g, d_o, d_c_prev):
    """Write one (row, unit)'s pre-activation gradients (blocks i, f, g, o) into
    ``dz_all[t]`` and dLoss/dc_{t-1} into ``dc``."""
    H = dc.shape[1]
    dz_all[t, r, j] = d_i
    dz_all[t, r, H + j] = d_f
    dz_all[t, r, 2 * H + j] = d_g
    dz_all[t, r, 3 * H + j] = d_o
    dc[r, j] = d_c_prev


@cuda.jit(device=True)
def _recurrent_gradient(t, r, j, dz_all, W_h_T):
    """dLoss/dh_{t-1}[r, j] through step t: ``sum_n dz_all[t, r, n] * W_h_T[n, j]``, n in
    order (W_h_T (4H, H): consecutive units read consecutive addresses)."""
    total = dz_all[t, r, 0] * W_h_T[0, j]
    for n in range(1, W_h_T.shape[0]):
        total += dz_all[t, r, n] * W_h_T[n, j]
    return total


@cuda.jit(device=True)
def _unit_backward_step(t, r, j, gates_all, c0, c_all, dh_all, dh_n, dc_n, lengths, W_h_T,
                        dz_all, dc, peephole, has_peephole):
    """BPTT step ``t`` of batch row ``r``, hidden unit ``j``: the gradient entering
    (``gradients_entering``, plus the recurrent one from ``dz_all[t + 1]``), the gate
    backward, and the writes (``dz_all[t]``, ``dc``)."""
    kind, dh, dc_next = gradients_entering(t, r, j, lengths, dh_all, dh_n, dc_n, dc, dz_all)
    if kind == PADDING:
        return
    if kind == INTERIOR:
        dh += _recurrent_gradient(t + 1, r, j, dz_all, W_h_T)
    cell_backward(t, r, j, gates_all, c0, c_all, dh, dc_next, dz_all, dc, peephole,
                  has_peephole)


@cuda.jit
def _rows_backward_kernel(gates_all, c0, c_all, dh_all, dh_n, dc_n, lengths, W_h_T, dz_all,
                          dc, dh0, peephole, has_peephole, rows_per_block):
    """``rows`` tier of BPTT: block b runs its rows through every step, last to first.

    As ``kernels.cpu.lstm.lstm_sequence_backward`` (padding rules included): gates_all,
    c_all, dh_all (T, B, H or 4H) saved/given; dh_n, dc_n (B, H); lengths (B,) int64;
    W_h_T (4H, H); dz_all (T, B, 4H) out; dc (B, H) work (ends as dLoss/dc0); dh0 (B, H)
    out; peephole (3, H), read only when ``has_peephole`` (its own gradient is a reduction
    after the loop: ``lstm._peephole_gradient_kernel``)."""
    T = gates_all.shape[0]
    B = gates_all.shape[1]
    H = c_all.shape[2]
    first = cuda.blockIdx.x * rows_per_block
    rows = min(rows_per_block, B - first)
    for t in range(T - 1, -1, -1):
        for item in range(cuda.threadIdx.x, rows * H, cuda.blockDim.x):
            row = item // H
            _unit_backward_step(t, first + row, item - row * H, gates_all, c0, c_all, dh_all,
                                dh_n, dc_n, lengths, W_h_T, dz_all, dc, peephole,
                                has_peephole)
        cuda.syncthreads()  # step t's dz is complete before step t - 1 reads it
    for item in range(cuda.threadIdx.x, rows * H, cuda.blockDim.x):
        row = item // H
        dh0[first + row, item - row * H] = _recurrent_gradient(0, first + row, item - row * H,
                                                               dz_all, W_h_T)


@cuda.jit
def _units_backward_kernel(gates_all, c0, c_all, dh_all, dh_n, dc_n, lengths, W_h_T, dz_all,
                           dc, dh0, peephole, has_peephole, slice_units):
    """``units`` tier of BPTT: slices of hidden units over the grid, one grid barrier per
    step (arrays as in the rows kernel)."""
    grid = cuda.cg.this_grid()
    T = gates_all.shape[0]
    B = gates_all.shape[1]
    H = c_all.shape[2]
    slices = (H + slice_units - 1) // slice_units
    for t in range(T - 1, -1, -1):
        for s in range(cuda.blockIdx.x, slices, cuda.gridDim.x):
            first = s * slice_units
            units = min(slice_units, H - first)
            for item in range(cuda.threadIdx.x, B * units, cuda.blockDim.x):
                row = item // units
                _unit_backward_step(t, row, first + item - row * units, gates_all, c0, c_all,
                                    dh_all, dh_n, dc_n, lengths, W_h_T, dz_all, dc, peephole,
                                    has_peephole)
        grid.sync()  # every block's dz of step t is written before step t - 1 reads it
    for s in range(cuda.blockIdx.x, slices, cuda.gridDim.x):
        first = s * slice_units
        units = min(slice_units, H - first)
        for item in range(cuda.threadIdx.x, B * units, cuda.blockDim.x):
            row = item // units
            j = first + item - row * units
            dh0[row, j] = _recurrent_gradient(0, row, j, dz_all, W_h_T)


# --------------------------------------------------------------------------- launching

def rows_per_block(B: int, H: int) -> int:
    """Batch rows per block of the ``rows`` tier: enough (row, unit) items to give every
    thread of the block one (H >= threads: one row per block, the most blocks)."""
    return max(1, min(B, CUDA_RECURRENCE_THREADS // max(H, 1)))


def slice_units(B: int, H: int) -> int:
    """Hidden units per slice of the ``units`` tier: about one (row, unit) item per thread,
    at least one unit."""
    return max(1, min(H, CUDA_RECURRENCE_THREADS // max(B, 1)))


def cooperative_blocks(kernel_args: tuple, B: int, H: int,
                       kernel=None) -> tuple[int, str]:
    """``(blocks, why)``: how many blocks a cooperative grid of a ``units`` kernel (the
    forward one by default) may have for these arguments on the current device (0 and the
    reason when it cannot)."""
    kernel = _units_recurrence_kernel if kernel is None else kernel
    try:
        if SIMULATOR:
            overload = kernel.overloads[None]
        else:
            specialized = kernel.specialize(*kernel_args, slice_units(B, H))
            overload = next(iter(specialized.overloads.values()))
        return int(overload.max_cooperative_grid_blocks(CUDA_RECURRENCE_THREADS)), ""
    except Exception as error:  # no cooperative launch here (driver, cudadevrt, device)
        return 0, f"{type(error).__name__}: {error}"


def _launch(kernels: tuple, tier: str, stream, kernel_args: tuple, B: int, H: int,
            max_blocks: int | None) -> None:
    """Launch ``kernels`` = (rows kernel, units kernel) on ``tier``."""
    rows_kernel, units_kernel = kernels
    threads = CUDA_RECURRENCE_THREADS
    if tier == "rows":
        per_block = rows_per_block(B, H)
        rows_kernel[math.ceil(B / per_block), threads, stream](*kernel_args, per_block)
        return
    units = slice_units(B, H)
    blocks, why = cooperative_blocks(kernel_args, B, H, units_kernel)
    if blocks < 1:
        raise RuntimeError(f"the units tier cannot launch: {why}")
    blocks = min(blocks, math.ceil(H / units), max_blocks or blocks)
    units_kernel[blocks, threads, stream](*kernel_args, units)


def launch_forward(tier: str, stream, kernel_args: tuple, B: int, H: int,
                   max_blocks: int | None = None) -> None:
    """Run the forward recurrence on ``tier`` (``rows`` or ``units``) with ``kernel_args``
    = ``(z_all, W_h, h0, c0, h_all, c_all, save_gates, peephole, has_peephole)`` (numba
    views; ``peephole`` any (3, H)-like array of the dtype when ``has_peephole`` is False). ``max_blocks`` caps
    the ``units`` grid (tests run it at several sizes: the results do not change)."""
    _launch((_rows_recurrence_kernel, _units_recurrence_kernel), tier, stream, kernel_args, B,
            H, max_blocks)


def launch_backward(tier: str, stream, kernel_args: tuple, B: int, H: int,
                    max_blocks: int | None = None) -> None:
    """Run BPTT's recurrence on ``tier`` with ``kernel_args`` = ``(gates_all, c0, c_all,
    dh_all, dh_n, dc_n, lengths, W_h_T, dz_all, dc, dh0, peephole, has_peephole)`` (numba
    views; see ``_rows_backward_kernel``)."""
    _launch((_rows_backward_kernel, _units_backward_kernel), tier, stream, kernel_args, B, H,
            max_blocks)


def _run(launch, kernel, stream, kernel_args: tuple, B: int, H: int, persistent: bool) -> str:
    tier = choose(B, persistent, lambda: cooperative_blocks(kernel_args, B, H, kernel))
    if tier == "steps":
        return tier
    if choice() != "auto":
        launch(tier, stream, kernel_args, B, H)
        return tier
    try:
        launch(tier, stream, kernel_args, B, H)
    except Exception as error:  # a launch failure on this device: the per-step path works
        warnings.warn(f"{ENVIRONMENT_VARIABLE}=auto: the {tier} tier could not launch "
                      f"({type(error).__name__}: {error}); running the per-step path",
                      RuntimeWarning, stacklevel=4)
        return "steps"
    return tier


def run_backward(stream, kernel_args: tuple, B: int, H: int) -> str:
    """``run_forward`` for BPTT (``launch_backward``'s arguments)."""
    return _run(launch_backward, _units_backward_kernel, stream, kernel_args, B, H, True)


def run_forward(stream, kernel_args: tuple, B: int, H: int, persistent: bool = True) -> str:
    """Choose a tier (``cuda_plan.choose``) and run the forward recurrence on it; returns
    the tier, or ``"steps"`` when the caller must run the per-step loop itself
    (``persistent=False``: a cell the persistent kernels do not run, a projection). Under
    ``auto``, a tier whose launch fails falls back to ``steps`` with a warning."""
    return _run(launch_forward, _units_recurrence_kernel, stream, kernel_args, B, H,
                persistent)
