"""The forward recurrence on the device: persistent kernels that run all steps in one launch.

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
The plain cell only: peephole connections and projections run on ``steps``.

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
def _unit_step(t, r, j, z_all, W_h, h0, c0, h_all, c_all, save_gates):
    """Step ``t`` of batch row ``r``, hidden unit ``j``: the recurrent product (fixed order),
    the gate math, and the writes (``c_all[t]``, ``h_all[t]``, and the activated gates into
    ``z_all[t]`` when ``save_gates``)."""
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
    i, f, g, o, c, h = gates.lstm_unit_forward(acc_i, acc_f, acc_g, acc_o, c_prev)
    if save_gates:
        store_step(t, r, j, z_all, c_all, h_all, i, f, g, o, c, h)
    else:
        c_all[t, r, j] = c
        h_all[t, r, j] = h


@cuda.jit
def _rows_recurrence_kernel(z_all, W_h, h0, c0, h_all, c_all, save_gates, rows_per_block):
    """``rows`` tier: block b runs rows ``[b * rows_per_block, ...)`` through every step.

    z_all (T, B, 4H) in: input projections (bias included); out: the activated gates when
    ``save_gates`` (else left as they are); W_h (H, 4H); h0, c0 (B, H); h_all, c_all
    (T, B, H) out."""
    T = z_all.shape[0]
    B = z_all.shape[1]
    H = c_all.shape[2]
    first = cuda.blockIdx.x * rows_per_block
    rows = min(rows_per_block, B - first)
    for t in range(T):
        for item in range(cuda.threadIdx.x, rows * H, cuda.blockDim.x):
            row = item // H
            _unit_step(t, first + row, item - row * H, z_all, W_h, h0, c0, h_all, c_all,
                       save_gates)
        cuda.syncthreads()  # step t's h is complete before any thread reads it


@cuda.jit
def _units_recurrence_kernel(z_all, W_h, h0, c0, h_all, c_all, save_gates, slice_units):
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
                           c_all, save_gates)
        grid.sync()  # every block's part of step t is written before step t + 1 reads it


# --------------------------------------------------------------------------- launching

def rows_per_block(B: int, H: int) -> int:
    """Batch rows per block of the ``rows`` tier: enough (row, unit) items to give every
    thread of the block one (H >= threads: one row per block, the most blocks)."""
    return max(1, min(B, CUDA_RECURRENCE_THREADS // max(H, 1)))


def slice_units(B: int, H: int) -> int:
    """Hidden units per slice of the ``units`` tier: about one (row, unit) item per thread,
    at least one unit."""
    return max(1, min(H, CUDA_RECURRENCE_THREADS // max(B, 1)))


def _units_args(args: tuple, B: int, H: int) -> tuple:
    return args + (slice_units(B, H),)


def cooperative_blocks(kernel_args: tuple, B: int, H: int) -> tuple[int, str]:
    """``(blocks, why)``: how many blocks a cooperative grid of the ``units`` kernel may
    have for these arguments on the current device (0 and the reason when it cannot)."""
    try:
        if SIMULATOR:
            overload = _units_recurrence_kernel.overloads[None]
        else:
            specialized = _units_recurrence_kernel.specialize(*_units_args(kernel_args, B, H))
            overload = next(iter(specialized.overloads.values()))
        return int(overload.max_cooperative_grid_blocks(CUDA_RECURRENCE_THREADS)), ""
    except Exception as error:  # no cooperative launch here (driver, cudadevrt, device)
        return 0, f"{type(error).__name__}: {error}"


def launch_forward(tier: str, stream, kernel_args: tuple, B: int, H: int,
                   max_blocks: int | None = None) -> None:
    """Run the recurrence on ``tier`` (``rows`` or ``units``) with ``kernel_args`` =
    ``(z_all, W_h, h0, c0, h_all, c_all, save_gates)`` (numba views). ``max_blocks`` caps
    the ``units`` grid (tests run it at several sizes: the results do not change)."""
    threads = CUDA_RECURRENCE_THREADS
    if tier == "rows":
        per_block = rows_per_block(B, H)
        _rows_recurrence_kernel[math.ceil(B / per_block), threads, stream](*kernel_args,
                                                                           per_block)
        return
    units = slice_units(B, H)
    blocks, why = cooperative_blocks(kernel_args, B, H)
    if blocks < 1:
        raise RuntimeError(f"the units tier cannot launch: {why}")
    blocks = min(blocks, math.ceil(H / units), max_blocks or blocks)
    _units_recurrence_kernel[blocks, threads, stream](*kernel_args, units)


def run_forward(stream, kernel_args: tuple, B: int, H: int, plain_cell: bool = True) -> str:
    """Choose a tier (``choose``) and run the recurrence on it; returns the tier, or
    ``"steps"`` when the caller must run the per-step loop itself. Under ``auto``, a tier
    whose launch fails falls back to ``steps`` with a warning."""
    tier = choose(B, plain_cell, lambda: cooperative_blocks(kernel_args, B, H))
    if tier == "steps":
        return tier
    if choice() != "auto":
        launch_forward(tier, stream, kernel_args, B, H)
        return tier
    try:
        launch_forward(tier, stream, kernel_args, B, H)
    except Exception as error:  # a launch failure on this device: the per-step path works
        warnings.warn(f"{ENVIRONMENT_VARIABLE}=auto: the {tier} tier could not launch "
                      f"({type(error).__name__}: {error}); running the per-step path",
                      RuntimeWarning, stacklevel=3)
        return "steps"
    return tier
