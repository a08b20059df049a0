"""CUDA LSTM kernels (numba-cuda) and their host-side loops: the GPU twin of ``cpu/lstm.py``.

Exports the LSTM functions of the twin contract (``kernels/contract.py``) with the same
parameters as ``kernels/cpu/lstm.py``. Layouts, shapes and gate order (i, f, g, o) are
documented there and identical here. The arrays are either all
CuPy arrays or all numba device arrays (the dispatcher makes sure of that).

- The scalar math is ``kernels/math/gates.py``, the same ``@njit(inline="always")`` functions the
  CPU kernels inline; the per-step gate kernels below (one thread per (batch row, hidden
  unit)) reach them through the cell device functions of ``recurrence.py``
  (``cell_forward``, ``cell_backward``), which the persistent kernels share, so there is no
  second copy of the math. float32 kernels do float32 math:
  constants are typed like the data (checked on PTX by ``tests/test_cuda_ptx.py``).
- GEMMs: cuBLAS through CuPy when the arrays are CuPy arrays (the dispatcher turns numba
  device arrays into zero-copy CuPy views when CuPy works); otherwise, and in the simulator,
  the tiled shared-memory GEMM of ``launch.py``. The cuBLAS path only runs on a real GPU: the
  simulator (CI) exercises the numba GEMM.
- Launch overhead: the time loop passes whole ``(T, B, ...)`` buffers plus the step index
  to the gate kernels (no slicing or re-wrapping per step); CuPy arrays are wrapped as numba
  device arrays once per call; kernels launch on CuPy's current stream (and CuPy's GEMMs run
  there too), on the device the arrays live on. Like any CuPy call, results may still be in
  flight when a function returns.
"""
import numpy as np

from .. import time_chunks
from ..config import SIMULATOR
from ..math import dropout as dropout_math
from ..math.softmax import add_bias_softmax_in_place, shifted_exp
from . import recurrence
from .launch import Launch
from .target import cuda, simulator_twin

# In the simulator, the Python source of the array-taking helper (target.simulator_twin).
_add_bias_softmax_in_place = (
    simulator_twin(add_bias_softmax_in_place, shifted_exp=shifted_exp.py_func) if SIMULATOR
    else add_bias_softmax_in_place)


# ----------------------------------------------------------------------------- kernels

@cuda.jit
def _gates_forward_kernel(z_all, z_h, c0, c_all, h_all, peephole, has_peephole, t):
    """Step ``t``: ``z_all[t]`` (pre-activations) -> activated gates in place, and
    ``c_all[t]``, ``h_all[t]``; the previous cell state is ``c0`` at t == 0. The peephole
    cell when ``has_peephole`` (``peephole (3, H)``, rows i, f, o; otherwise not read)."""
    j, row = cuda.grid(2)
    H = c0.shape[1]
    if row < c0.shape[0] and j < H:
        c_prev = c0[row, j] if t == 0 else c_all[t - 1, row, j]
        i, f, g, o, c, h = recurrence.cell_forward(
            z_all[t, row, j] + z_h[row, j], z_all[t, row, H + j] + z_h[row, H + j],
            z_all[t, row, 2 * H + j] + z_h[row, 2 * H + j],
            z_all[t, row, 3 * H + j] + z_h[row, 3 * H + j], c_prev, peephole, j, has_peephole)
        recurrence.store_step(t, row, j, z_all, c_all, h_all, i, f, g, o, c, h)


@cuda.jit
def _gates_backward_kernel(gates_all, c0, c_all, dh_all, dh_recurrent, dc, dh_n, dc_n, lengths,
                           dz_all, peephole, has_peephole, t):
    """Step ``t`` of BPTT: ``dh = dh_all[t] + dh_recurrent``; writes ``dz_all[t]`` and
    replaces ``dc`` (dLoss/dc_t) by dLoss/dc_{t-1}; padded batches as in
    ``recurrence.gradients_entering``; the peephole cell as in ``_gates_forward_kernel``."""
    j, row = cuda.grid(2)
    if row < c0.shape[0] and j < c0.shape[1]:
        kind, dh, dc_next = recurrence.gradients_entering(t, row, j, lengths, dh_all, dh_n,
                                                          dc_n, dc, dz_all)
        if kind == recurrence.PADDING:
            return
        if kind == recurrence.INTERIOR:
            dh += dh_recurrent[row, j]
        recurrence.cell_backward(t, row, j, gates_all, c0, c_all, dh, dc_next, dz_all, dc,
                                 peephole, has_peephole)


@cuda.jit
def _peephole_gradient_kernel(c0, c_all, dz_all, dpeephole):
    """``dpeephole (3, H)``: one thread per (gate, unit) sums ``dz * c`` over steps and rows
    in a fixed order (``kernels.cpu.loops.peephole_gradient``)."""
    j, k = cuda.grid(2)
    T, B, H = c_all.shape
    if k < 3 and j < H:
        block = 3 if k == 2 else k  # rows (i, f, o) of the gate blocks (i, f, g, o)
        total = type(dpeephole[k, j])(0)
        for t in range(T):
            for row in range(B):
                if k == 2:
                    c = c_all[t, row, j]
                else:
                    c = c0[row, j] if t == 0 else c_all[t - 1, row, j]
                total += dz_all[t, row, block * H + j] * c
        dpeephole[k, j] = total


@cuda.jit
def _add_bias_kernel(z, b):
    """``z[r, k] += b[k]`` for a (rows, K) array."""
    k, r = cuda.grid(2)
    if r < z.shape[0] and k < z.shape[1]:
        z[r, k] += b[k]


@cuda.jit
def _softmax_rows_kernel(z, b):
    """Row ``r`` of ``z`` (logits without bias) -> ``softmax(z[r] + b)``, in place; one
    thread per row (the number of classes is small for the seed's output layer)."""
    r = cuda.grid(1)
    if r < z.shape[0]:
        _add_bias_softmax_in_place(z[r], b)


@cuda.jit
def _column_sums_kernel(a, out):
    """``out[k] = sum_r a[r, k]``."""
    k = cuda.grid(1)
    if k < a.shape[1]:
        total = type(out[k])(0)
        for r in range(a.shape[0]):
            total += a[r, k]
        out[k] = total


@cuda.jit
def _copy_time_steps_kernel(src, lengths, reverse, out):
    """``out[t, b] = src[t or lengths[b] - 1 - t, b]`` for ``t < lengths[b]``, else 0."""
    f, tb = cuda.grid(2)
    B = out.shape[1]
    t = tb // B
    b = tb - t * B
    if t < out.shape[0] and f < out.shape[2]:
        length = lengths[b]
        if t < length:
            out[t, b, f] = src[length - 1 - t if reverse else t, b, f]
        else:
            out[t, b, f] = 0


@cuda.jit
def _add_arrays_kernel(a, b, out):
    """``out[k] = a[k] + b[k]``."""
    k = cuda.grid(1)
    if k < out.shape[0]:
        out[k] = a[k] + b[k]


@cuda.jit
def _gather_steps_kernel(src, lengths, offset, out):
    """``out[b] = src[lengths[b] - 1 - offset, b]`` where that step is inside ``src``."""
    j, b = cuda.grid(2)
    if b < out.shape[0] and j < out.shape[1]:
        s = lengths[b] - 1 - offset
        if 0 <= s < src.shape[0]:
            out[b, j] = src[s, b, j]


@cuda.jit
def _projected_hidden_gradient_kernel(dh_all, dh_recurrent, dh_n, lengths, dh_total, t):
    """Step ``t`` of a projected LSTM's BPTT: ``dh_total[t]`` (B, P) = dLoss/dh_t, the output
    gradient plus the recurrent one (``dh_n`` at a row's last step), zero at padding."""
    k, row = cuda.grid(2)
    if row < dh_total.shape[1] and k < dh_total.shape[2]:
        length = lengths[row]
        if t >= length:
            dh_total[t, row, k] = 0
        elif t == length - 1:
            dh_total[t, row, k] = dh_all[t, row, k] + dh_n[row, k]
        else:
            dh_total[t, row, k] = dh_all[t, row, k] + dh_recurrent[row, k]


@cuda.jit
def _dropout_kernel(src, k0, k1, threshold, scale, out):
    """``out[i] = src[i] * (scale or 0)`` by the keyed hash of ``kernels/math/dropout.py``:
    the mask of the CPU kernel, element for element."""
    zero = scale - scale
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = src[i] * (scale if dropout_math.keep(i, k0, k1, threshold) else zero)


# ------------------------------------------------------------------------- host side

def _input_projection(run, x, W_x, b, gates_all) -> None:
    """``gates_all[t] = x_t @ W_x + b`` for every step: one GEMM and one bias launch."""
    T, B, X = x.shape
    G = W_x.shape[1]
    z_x_all = gates_all.reshape(T * B, G)
    run.gemm(x.reshape(T * B, X), W_x, z_x_all)
    run.launch_2d(_add_bias_kernel, G, T * B)(run.kernel_arg(z_x_all), run.kernel_arg(b))


def _gradients_after_the_loop(run, x, h0, h_all, W_x, dz_all, dx, dW_x, dW_h, db) -> None:
    """``dx``, ``dW_x``, ``dW_h`` and ``db`` from ``dz_all`` once BPTT's time loop is done
    (see ``kernels.cpu.loops.gradients_after_the_loop``): GEMMs over all steps."""
    T, B, X = x.shape
    R = h0.shape[1]
    G = dz_all.shape[2]
    dz_2d = dz_all.reshape(T * B, G)
    W_x_T = run.empty((G, X), x.dtype)
    run.copy(run.transpose(W_x), W_x_T)
    run.gemm(dz_2d, W_x_T, dx.reshape(T * B, X))
    run.gemm(run.transpose(x.reshape(T * B, X)), dz_2d, dW_x)
    run.gemm(run.transpose(h0), dz_all[0], dW_h)
    if T > 1:
        run.gemm(run.transpose(h_all[:T - 1].reshape((T - 1) * B, R)),
                 dz_all[1:].reshape((T - 1) * B, G), dW_h, accumulate=True)
    run.launch_1d(_column_sums_kernel, G)(run.kernel_arg(dz_2d), run.kernel_arg(db))


def lstm_gates_forward(z, z_h, c_prev, c_out, h_out):
    """Fused gate update of one step; see ``kernels.cpu.lstm.lstm_gates_forward``."""
    B, G = z.shape
    H = c_prev.shape[1]
    with Launch(z) as run:
        args = [run.kernel_arg(a) for a in (z.reshape(1, B, G), z_h, c_prev,
                                             c_out.reshape(1, B, H), h_out.reshape(1, B, H))]
        run.launch_2d(_gates_forward_kernel, H, B)(*args, args[2], False, 0)


def lstm_gates_backward(gates_in, c_prev, c, dh, dc, dz_out):
    """Fused backward of one step; see ``kernels.cpu.lstm.lstm_gates_backward``."""
    B, G = gates_in.shape
    H = c_prev.shape[1]
    with Launch(gates_in) as run:
        # a one-step sequence whose rows all end at step 0: dh and dc enter as dh_n, dc_n
        no_gradient = run.zeros((1, B, H), dh.dtype)
        one_step = run.empty((B,), np.int64)
        run.fill(one_step, 1)
        args = [run.kernel_arg(a) for a in (gates_in.reshape(1, B, G), c_prev,
                                             c.reshape(1, B, H), no_gradient, dh, dc, dh, dc,
                                             one_step, dz_out.reshape(1, B, G))]
        run.launch_2d(_gates_backward_kernel, H, B)(*args, args[1], False, 0)


def lstm_sequence_forward(x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all, training=True):
    """Forward over a sequence; see ``kernels.cpu.lstm.lstm_sequence_forward``.

    One GEMM for the input projection of all steps and one bias launch, then the recurrence
    on the tier ``NBLSTM_CUDA_RECURRENCE`` selects (``recurrence.py``): all steps in one
    persistent launch (``rows``, ``units``), or per step one GEMM ``h_{t-1} @ W_h`` and one
    fused gate launch (``steps``). ``training=False`` (an inference chunk): the persistent
    tiers do not write the activated gates into ``gates_all`` (nothing reads them).
    """
    _forward_loop(x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all, save_gates=training)


def lstm_sequence_inference(x, h0, c0, W_x, W_h, b, lengths, chunk_steps, h_all, h_n, c_n):
    """Inference over a sequence, keeping nothing per step; see
    ``kernels.cpu.lstm.lstm_sequence_inference``. Runs in chunks of steps through
    ``lstm_sequence_forward`` (``kernels/time_chunks.py``), each chunk on the recurrence tier
    ``NBLSTM_CUDA_RECURRENCE`` selects; the chunk buffers are device arrays of the inputs'
    kind (CuPy's memory pool reuses them)."""
    with Launch(x) as run:
        def scratch(_role, shape, dtype):
            return run.empty(shape, dtype)

        def forward_chunk(x_c, h, c, h_c, c_c, gates_c, _):
            lstm_sequence_forward(x_c, h, c, W_x, W_h, b, h_c, c_c, gates_c, False)

        time_chunks.run_in_chunks(forward_chunk, scratch, gather_steps, x, h0, c0, lengths,
                                  int(chunk_steps), h_all, h_n, c_n)


def lstm_peephole_sequence_forward(x, h0, c0, W_x, W_h, b, peephole, h_all, c_all, gates_all):
    """Forward of the cell with peephole connections; see
    ``kernels.cpu.lstm.lstm_peephole_sequence_forward``."""
    _forward_loop(x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all, peephole=peephole)


def _forward_loop(x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all, W_r=None, m_all=None,
                  peephole=None, save_gates=True):
    """The forward time loop: the input projection, then the recurrence on a persistent
    tier (``recurrence.run_forward``) or per step, with the peephole cell when ``peephole``
    (3, H) is given, and with the projection ``h_t = m_t @ W_r`` after each step's gate
    launch when ``W_r`` is given (the gate kernel then writes ``m_t`` into ``m_all``; a
    projection always runs per step)."""
    T, B, _ = x.shape
    H = c0.shape[1]
    G = W_h.shape[1]
    with Launch(x) as run:
        _input_projection(run, x, W_x, b, gates_all)
        # the kernels read ``peephole`` only with peepholes: c0 stands in
        k_peephole = run.kernel_arg(c0 if peephole is None else peephole), peephole is not None
        persistent_args = (run.kernel_arg(gates_all), run.kernel_arg(W_h), run.kernel_arg(h0),
                           run.kernel_arg(c0), run.kernel_arg(h_all), run.kernel_arg(c_all),
                           bool(save_gates)) + k_peephole
        if recurrence.run_forward(run.stream, persistent_args, B, H,
                                  persistent=W_r is None) != "steps":
            return
        z_h = run.empty((B, G), x.dtype)
        unprojected = h_all if W_r is None else m_all
        k_cell = tuple(run.kernel_arg(a) for a in (gates_all, z_h, c0, c_all, unprojected)
                       ) + k_peephole
        gate_launch = run.launch_2d(_gates_forward_kernel, H, B)
        for t in range(T):
            run.gemm(h0 if t == 0 else h_all[t - 1], W_h, z_h)
            gate_launch(*k_cell, t)
            if W_r is not None:
                run.gemm(m_all[t], W_r, h_all[t])


def lstm_sequence_backward(x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all, dh_n, dc_n,
                           lengths, dx, dh0, dc0, dW_x, dW_h, db):
    """Backpropagation through time; see ``kernels.cpu.lstm.lstm_sequence_backward``."""
    _backward_loop(x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all, dh_n, dc_n, lengths,
                   dx, dh0, dc0, dW_x, dW_h, db)


def lstm_peephole_sequence_backward(x, h0, c0, W_x, W_h, peephole, h_all, c_all, gates_all,
                                    dh_all, dh_n, dc_n, lengths, dx, dh0, dc0, dW_x, dW_h,
                                    dpeephole, db):
    """BPTT of the cell with peephole connections; see
    ``kernels.cpu.lstm.lstm_peephole_sequence_backward``."""
    _backward_loop(x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all, dh_n, dc_n, lengths,
                   dx, dh0, dc0, dW_x, dW_h, db, peephole, dpeephole)


def _backward_loop(x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all, dh_n, dc_n, lengths,
                   dx, dh0, dc0, dW_x, dW_h, db, peephole=None, dpeephole=None):
    """The BPTT time loop on the tier ``NBLSTM_CUDA_RECURRENCE`` selects (all steps in one
    persistent launch, ``recurrence.run_backward``, or per step one gate launch and one GEMM
    ``dz_t @ W_h^T``), of the plain cell or of the peephole cell when ``peephole`` (3, H) is
    given (its gradient goes to ``dpeephole``)."""
    T, B, _ = x.shape
    H = h0.shape[1]
    G = W_h.shape[1]
    with Launch(x) as run:
        dz_all = run.empty((T, B, G), x.dtype)
        W_h_T = run.empty((G, H), x.dtype)
        run.copy(run.transpose(W_h), W_h_T)
        dh_recurrent = run.empty((B, H), x.dtype)  # written before it is read (step T-1
        # takes dh_n for every row that is not padding)
        # the kernels read ``peephole`` only with peepholes: c0 stands in
        k_peephole = run.kernel_arg(c0 if peephole is None else peephole), peephole is not None
        persistent_args = tuple(run.kernel_arg(a) for a in (
            gates_all, c0, c_all, dh_all, dh_n, dc_n, lengths, W_h_T, dz_all, dc0, dh0)
            ) + k_peephole
        if recurrence.run_backward(run.stream, persistent_args, B, H) != "steps":
            # dc0 carried dLoss/dc_t through the steps; the kernel wrote dh0
            _gradients_after_the_loop(run, x, h0, h_all, W_x, dz_all, dx, dW_x, dW_h, db)
            if peephole is not None:
                _peephole_gradient(run, c0, c_all, dz_all, dpeephole)
            return
        k_args = tuple(run.kernel_arg(a) for a in (gates_all, c0, c_all, dh_all, dh_recurrent,
                                                   dc0, dh_n, dc_n, lengths, dz_all)
                       ) + k_peephole
        gate_launch = run.launch_2d(_gates_backward_kernel, H, B)
        for t in range(T - 1, -1, -1):
            gate_launch(*k_args, t)  # dc0 carries dLoss/dc_t through the loop
            run.gemm(dz_all[t], W_h_T, dh_recurrent)
        run.copy(dh_recurrent, dh0)
        _gradients_after_the_loop(run, x, h0, h_all, W_x, dz_all, dx, dW_x, dW_h, db)
        if peephole is not None:
            _peephole_gradient(run, c0, c_all, dz_all, dpeephole)


def _peephole_gradient(run, c0, c_all, dz_all, dpeephole) -> None:
    """``dpeephole (3, H)`` from BPTT's ``dz_all`` (``_peephole_gradient_kernel``)."""
    run.launch_2d(_peephole_gradient_kernel, c_all.shape[2], 3)(
        run.kernel_arg(c0), run.kernel_arg(c_all), run.kernel_arg(dz_all),
        run.kernel_arg(dpeephole))


def lstm_projected_sequence_forward(x, h0, c0, W_x, W_h, b, W_r, h_all, c_all, m_all,
                                    gates_all):
    """Forward of a projected LSTM; see
    ``kernels.cpu.projected_lstm.lstm_projected_sequence_forward``. Per step: the recurrent
    GEMM, the fused gate launch (writing ``m_t``), then the projection GEMM ``m_t @ W_r``."""
    _forward_loop(x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all, W_r, m_all)


def lstm_projected_sequence_backward(x, h0, c0, W_x, W_h, W_r, h_all, c_all, m_all, gates_all,
                                     dh_all, dh_n, dc_n, lengths, dx, dh0, dc0, dW_x, dW_h,
                                     dW_r, db):
    """BPTT of a projected LSTM; see
    ``kernels.cpu.projected_lstm.lstm_projected_sequence_backward``."""
    T, B, _ = x.shape
    H = c0.shape[1]
    P = h0.shape[1]
    G = W_h.shape[1]
    with Launch(x) as run:
        dz_all = run.empty((T, B, G), x.dtype)
        dh_total = run.empty((T, B, P), x.dtype)
        dm_all = run.empty((T, B, H), x.dtype)
        W_h_T = run.empty((G, P), x.dtype)
        run.copy(run.transpose(W_h), W_h_T)
        W_r_T = run.empty((P, H), x.dtype)
        run.copy(run.transpose(W_r), W_r_T)
        dh_recurrent = run.empty((B, P), x.dtype)  # written before it is read (step T-1
        # takes dh_n for every row that is not padding)
        # dm_all holds the whole gradient of m_t: the gate kernel's own hidden-gradient
        # inputs stay zero
        no_gradient = run.zeros((B, H), x.dtype)
        k_hidden = [run.kernel_arg(a) for a in (dh_all, dh_recurrent, dh_n, lengths, dh_total)]
        k_gates = [run.kernel_arg(a) for a in (gates_all, c0, c_all, dm_all, no_gradient, dc0,
                                               no_gradient, dc_n, lengths, dz_all)]
        k_gates += [k_gates[1], False]  # the plain cell: c0 stands in for the peepholes
        hidden_launch = run.launch_2d(_projected_hidden_gradient_kernel, P, B)
        gate_launch = run.launch_2d(_gates_backward_kernel, H, B)
        for t in range(T - 1, -1, -1):
            hidden_launch(*k_hidden, t)
            run.gemm(dh_total[t], W_r_T, dm_all[t])
            gate_launch(*k_gates, t)  # dc0 carries dLoss/dc_t through the loop
            run.gemm(dz_all[t], W_h_T, dh_recurrent)
        run.copy(dh_recurrent, dh0)
        run.gemm(run.transpose(m_all.reshape(T * B, H)), dh_total.reshape(T * B, P), dW_r)
        _gradients_after_the_loop(run, x, h0, h_all, W_x, dz_all, dx, dW_x, dW_h, db)


def dropout(src, k0, k1, threshold, scale, out):
    """Inverted dropout of a flat array; see ``kernels.cpu.lstm.dropout`` (same mask)."""
    with Launch(out) as run:
        run.launch_grid_stride(_dropout_kernel, out.shape[0])(
            run.kernel_arg(src), int(k0), int(k1), int(threshold), scale, run.kernel_arg(out))


def copy_time_steps(src, lengths, reverse, out):
    """Per-sequence time copy of a padded batch; see ``kernels.cpu.lstm.copy_time_steps``."""
    T, B, F = out.shape
    with Launch(out) as run:
        run.launch_2d(_copy_time_steps_kernel, F, T * B)(
            run.kernel_arg(src), run.kernel_arg(lengths), bool(reverse), run.kernel_arg(out))


def add_arrays(a, b, out):
    """``out = a + b`` for 1-D arrays; see ``kernels.cpu.lstm.add_arrays``."""
    with Launch(out) as run:
        run.launch_1d(_add_arrays_kernel, out.shape[0])(
            run.kernel_arg(a), run.kernel_arg(b), run.kernel_arg(out))


def gather_steps(src, lengths, offset, out):
    """Final states of a padded batch; see ``kernels.cpu.lstm.gather_steps``."""
    B, H = out.shape
    with Launch(out) as run:
        run.launch_2d(_gather_steps_kernel, H, B)(
            run.kernel_arg(src), run.kernel_arg(lengths), offset, run.kernel_arg(out))


def linear_softmax(h, W_T, b, out):
    """Output layer ``softmax(h @ W_T + b)`` per row; see ``kernels.cpu.lstm.linear_softmax``."""
    with Launch(h) as run:
        run.gemm(h, W_T, out)
        run.launch_1d(_softmax_rows_kernel, out.shape[0])(run.kernel_arg(out), run.kernel_arg(b))


def reverse_axes_copy(src, dst):
    """``dst[k, j, i] = src[i, j, k]``; see ``kernels.cpu.lstm.reverse_axes_copy``.

    A strided copy from a zero-copy axes-reversed view of ``src``."""
    with Launch(src) as run:
        run.copy(run.transpose(src), dst)
