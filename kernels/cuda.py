"""CUDA kernels (numba-cuda) and the host-side LSTM loops: the GPU twin of ``cpu.py``.

Exports the same functions with the same argument order as ``kernels/cpu.py``:
``lstm_gates_forward``, ``lstm_gates_backward``, ``lstm_sequence_forward``,
``lstm_sequence_backward``, ``linear_softmax``, ``reverse_axes_copy``. Layouts, shapes and
gate order (i, f, g, o) are documented there and identical here. The arrays are either all
CuPy arrays or all numba device arrays (the dispatcher makes sure of that).

- The scalar math is ``kernels/gates.py``, the same ``@njit(inline="always")`` functions the
  CPU kernels inline; the kernels below call them directly (one thread per (batch row,
  hidden unit)), so there is no second copy of the math. float32 kernels do float32 math:
  constants are typed like the data (checked on PTX by ``tests/test_cuda_ptx.py``).
- GEMMs: cuBLAS through CuPy when the arrays are CuPy arrays (the dispatcher turns numba
  device arrays into zero-copy CuPy views when CuPy works); otherwise, and in the simulator,
  a tiled shared-memory GEMM written here. The cuBLAS path only runs on a real GPU: the
  simulator (CI) exercises the numba GEMM.
- Launch overhead: the time loop passes whole ``(T, B, ...)`` buffers plus the step index
  to the gate kernels (no slicing or re-wrapping per step); CuPy arrays are wrapped as numba
  device arrays once per call; kernels launch on CuPy's current stream (and CuPy's GEMMs run
  there too), on the device the arrays live on. Like any CuPy call, results may still be in
  flight when a function returns.
"""
import math

import numpy as np
from numba import float32, float64

from . import gates
from .cuda_arrays import DeviceArrayModule, copy as _copy_arrays, fill as _fill
from .cuda_target import SIMULATOR, cuda
from .fastmath import exp

# Small blocks in the simulator: it runs every thread of a block as Python.
_BLOCK_2D = (8, 4) if SIMULATOR else (32, 8)
_GEMM_TILE = 4 if SIMULATOR else 16
_THREADS_1D = 32 if SIMULATOR else 128


# ----------------------------------------------------------------------------- kernels

@cuda.jit
def _gates_forward_kernel(z_all, z_h, c0, c_all, h_all, t):
    """Step ``t``: ``z_all[t]`` (pre-activations) -> activated gates in place, and
    ``c_all[t]``, ``h_all[t]``; the previous cell state is ``c0`` at t == 0."""
    j, row = cuda.grid(2)
    H = c0.shape[1]
    if row < c0.shape[0] and j < H:
        c_prev = c0[row, j] if t == 0 else c_all[t - 1, row, j]
        i, f, g, o, c, h = gates.lstm_unit_forward(
            z_all[t, row, j] + z_h[row, j], z_all[t, row, H + j] + z_h[row, H + j],
            z_all[t, row, 2 * H + j] + z_h[row, 2 * H + j],
            z_all[t, row, 3 * H + j] + z_h[row, 3 * H + j], c_prev)
        z_all[t, row, j] = i
        z_all[t, row, H + j] = f
        z_all[t, row, 2 * H + j] = g
        z_all[t, row, 3 * H + j] = o
        c_all[t, row, j] = c
        h_all[t, row, j] = h


@cuda.jit
def _gates_backward_kernel(gates_all, c0, c_all, dh_all, dh_recurrent, dc, dh_n, dc_n, lengths,
                           dz_all, t):
    """Step ``t`` of BPTT: ``dh = dh_all[t] + dh_recurrent``; writes ``dz_all[t]`` and
    replaces ``dc`` (dLoss/dc_t) by dLoss/dc_{t-1}. Row b's final state was taken at step
    ``lengths[b] - 1``, which receives ``dh_n``, ``dc_n`` instead of the recurrent
    gradient; later steps are padding (``dz = 0``, nothing passed on)."""
    j, row = cuda.grid(2)
    H = c0.shape[1]
    if row < c0.shape[0] and j < H:
        length = lengths[row]
        if t >= length:
            for k in range(4):
                dz_all[t, row, k * H + j] = 0
            dc[row, j] = 0
            return
        if t == length - 1:
            dh = dh_all[t, row, j] + dh_n[row, j]
            dc_next = dc_n[row, j]
        else:
            dh = dh_all[t, row, j] + dh_recurrent[row, j]
            dc_next = dc[row, j]
        c_prev = c0[row, j] if t == 0 else c_all[t - 1, row, j]
        d_i, d_f, d_g, d_o, d_c_prev = gates.lstm_unit_backward(
            gates_all[t, row, j], gates_all[t, row, H + j], gates_all[t, row, 2 * H + j],
            gates_all[t, row, 3 * H + j], c_prev, c_all[t, row, j], dh, dc_next)
        dz_all[t, row, j] = d_i
        dz_all[t, row, H + j] = d_f
        dz_all[t, row, 2 * H + j] = d_g
        dz_all[t, row, 3 * H + j] = d_o
        dc[row, j] = d_c_prev


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
        Y = z.shape[1]
        largest = z[r, 0] + b[0]
        for k in range(Y):
            z[r, k] += b[k]
            if z[r, k] > largest:
                largest = z[r, k]
        total = type(largest)(0)  # typed like the data: no float64 promotion
        for k in range(Y):
            e = exp(z[r, k] - largest)
            z[r, k] = e
            total += e
        for k in range(Y):
            z[r, k] = z[r, k] / total


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


def _make_matmul_kernel(element_type):
    """Tiled shared-memory GEMM ``C = A @ B (+ C if accumulate)`` for one dtype (the
    shared-memory tiles need the element type at compile time)."""
    tile = _GEMM_TILE

    @cuda.jit
    def matmul(A, B, C, accumulate):
        tile_a = cuda.shared.array((tile, tile), element_type)
        tile_b = cuda.shared.array((tile, tile), element_type)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty
        col = cuda.blockIdx.x * tile + tx
        M, K = A.shape
        N = B.shape[1]
        zero = element_type(0)
        acc = zero
        for k0 in range(0, K, tile):
            tile_a[ty, tx] = A[row, k0 + tx] if row < M and k0 + tx < K else zero
            tile_b[ty, tx] = B[k0 + ty, col] if k0 + ty < K and col < N else zero
            cuda.syncthreads()
            for k in range(tile):
                acc += tile_a[ty, k] * tile_b[k, tx]
            cuda.syncthreads()
        if row < M and col < N:
            if accumulate:
                C[row, col] += acc
            else:
                C[row, col] = acc

    return matmul


_MATMUL_KERNELS = {np.dtype(np.float32): _make_matmul_kernel(float32),
                   np.dtype(np.float64): _make_matmul_kernel(float64)}


# ------------------------------------------------------------------------- host side

def _is_cupy(array) -> bool:
    return type(array).__module__.split(".")[0] == "cupy"


class _Launch:
    """How one host call launches work: on CuPy's current stream and the arrays' device
    with cuBLAS GEMMs (CuPy arrays), or on the default stream with the numba GEMM (numba
    device arrays). Used as a context manager around the call."""

    def __init__(self, like):
        self.cupy = None
        self.stream = 0
        self._device = None
        if _is_cupy(like):
            import cupy  # only reached with CuPy arrays in hand
            self.cupy = cupy
            self._device = like.device.id

    def __enter__(self):
        if self.cupy is not None:
            self._contexts = [self.cupy.cuda.Device(self._device), cuda.gpus[self._device]]
            for context in self._contexts:
                context.__enter__()
            self.stream = cuda.external_stream(self.cupy.cuda.get_current_stream().ptr)
        return self

    def __exit__(self, *exc):
        if self.cupy is not None:
            for context in reversed(self._contexts):
                context.__exit__(*exc)
        return False

    def kernel_arg(self, array):
        """A numba view of ``array`` for kernel launches (zero-copy, made once per call)."""
        if self.cupy is None:
            return array
        return cuda.as_cuda_array(array, sync=False)

    def empty(self, shape, dtype):
        if self.cupy is not None:
            return self.cupy.empty(shape, dtype=dtype)
        return DeviceArrayModule.empty(shape, dtype)

    def transpose(self, array):
        """Zero-copy view with the axes reversed (numba's ``.T`` launches a copy kernel on a
        GPU and handles 2-D arrays only)."""
        if self.cupy is not None:
            return array.T
        return DeviceArrayModule.transpose(array)

    def zeros(self, shape, dtype):
        if self.cupy is not None:
            return self.cupy.zeros(shape, dtype=dtype)
        out = DeviceArrayModule.empty(shape, dtype)
        _fill(out, 0, self.stream)
        return out

    def fill(self, array, value):
        if self.cupy is not None:
            array.fill(value)
        else:
            _fill(array, value, self.stream)

    def copy(self, src, dst):
        if self.cupy is not None:
            dst[...] = src
        else:
            _copy_arrays(src, dst, self.stream)

    def gemm(self, A, B, C, accumulate=False):
        """``C = A @ B`` (or ``C += A @ B``) for 2-D arrays; A and B may be strided views."""
        if self.cupy is not None:  # cuBLAS; only exercised on a real GPU
            if accumulate:
                C += self.cupy.matmul(A, B)
            else:
                self.cupy.matmul(A, B, out=C)
            return
        M, N = C.shape
        grid = (math.ceil(N / _GEMM_TILE), math.ceil(M / _GEMM_TILE))
        kernel = _MATMUL_KERNELS[np.dtype(C.dtype)]
        kernel[grid, (_GEMM_TILE, _GEMM_TILE), self.stream](A, B, C, accumulate)

    def launch_2d(self, kernel, n_cols, n_rows):
        grid = (math.ceil(n_cols / _BLOCK_2D[0]), math.ceil(n_rows / _BLOCK_2D[1]))
        return kernel[grid, _BLOCK_2D, self.stream]

    def launch_1d(self, kernel, n):
        return kernel[math.ceil(n / _THREADS_1D), _THREADS_1D, self.stream]


def lstm_gates_forward(z, z_h, c_prev, c_out, h_out):
    """Fused gate update of one step; see ``kernels.cpu.lstm_gates_forward``."""
    B, G = z.shape
    H = c_prev.shape[1]
    with _Launch(z) as run:
        args = [run.kernel_arg(a) for a in (z.reshape(1, B, G), z_h, c_prev,
                                             c_out.reshape(1, B, H), h_out.reshape(1, B, H))]
        run.launch_2d(_gates_forward_kernel, H, B)(*args, 0)


def lstm_gates_backward(gates_in, c_prev, c, dh, dc, dz_out):
    """Fused backward of one step; see ``kernels.cpu.lstm_gates_backward``."""
    B, G = gates_in.shape
    H = c_prev.shape[1]
    with _Launch(gates_in) as run:
        # a one-step sequence whose rows all end at step 0: dh and dc enter as dh_n, dc_n
        no_gradient = run.zeros((1, B, H), dh.dtype)
        one_step = run.empty((B,), np.int64)
        run.fill(one_step, 1)
        args = [run.kernel_arg(a) for a in (gates_in.reshape(1, B, G), c_prev,
                                             c.reshape(1, B, H), no_gradient, dh, dc, dh, dc,
                                             one_step, dz_out.reshape(1, B, G))]
        run.launch_2d(_gates_backward_kernel, H, B)(*args, 0)


def lstm_sequence_forward(x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all):
    """Forward over a sequence; see ``kernels.cpu.lstm_sequence_forward``.

    One GEMM for the input projection of all steps, one bias launch, then per step one GEMM
    ``h_{t-1} @ W_h`` and one fused gate launch.
    """
    T, B, X = x.shape
    H = h0.shape[1]
    G = W_h.shape[1]
    with _Launch(x) as run:
        z_h = run.empty((B, G), x.dtype)
        z_x_all = gates_all.reshape(T * B, G)
        run.gemm(x.reshape(T * B, X), W_x, z_x_all)
        run.launch_2d(_add_bias_kernel, G, T * B)(run.kernel_arg(z_x_all), run.kernel_arg(b))
        k_gates, k_z_h, k_c0, k_c, k_h = (run.kernel_arg(a) for a in (gates_all, z_h, c0,
                                                                      c_all, h_all))
        gate_launch = run.launch_2d(_gates_forward_kernel, H, B)
        for t in range(T):
            run.gemm(h0 if t == 0 else h_all[t - 1], W_h, z_h)
            gate_launch(k_gates, k_z_h, k_c0, k_c, k_h, t)


def lstm_sequence_backward(x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all, dh_n, dc_n,
                           lengths, dx, dh0, dc0, dW_x, dW_h, db):
    """Backpropagation through time; see ``kernels.cpu.lstm_sequence_backward``."""
    T, B, X = x.shape
    H = h0.shape[1]
    G = W_h.shape[1]
    with _Launch(x) as run:
        dz_all = run.empty((T, B, G), x.dtype)
        W_h_T = run.empty((G, H), x.dtype)
        run.copy(run.transpose(W_h), W_h_T)
        dh_recurrent = run.empty((B, H), x.dtype)  # written before it is read (step T-1
        # takes dh_n for every row that is not padding)
        k_args = [run.kernel_arg(a) for a in (gates_all, c0, c_all, dh_all, dh_recurrent, dc0,
                                              dh_n, dc_n, lengths, dz_all)]
        gate_launch = run.launch_2d(_gates_backward_kernel, H, B)
        for t in range(T - 1, -1, -1):
            gate_launch(*k_args, t)  # dc0 carries dLoss/dc_t through the loop
            run.gemm(dz_all[t], W_h_T, dh_recurrent)
        run.copy(dh_recurrent, dh0)

        dz_2d = dz_all.reshape(T * B, G)
        W_x_T = run.empty((G, X), x.dtype)
        run.copy(run.transpose(W_x), W_x_T)
        run.gemm(dz_2d, W_x_T, dx.reshape(T * B, X))
        run.gemm(run.transpose(x.reshape(T * B, X)), dz_2d, dW_x)
        run.gemm(run.transpose(h0), dz_all[0], dW_h)
        if T > 1:
            run.gemm(run.transpose(h_all[:T - 1].reshape((T - 1) * B, H)),
                     dz_all[1:].reshape((T - 1) * B, G), dW_h, accumulate=True)
        run.launch_1d(_column_sums_kernel, G)(run.kernel_arg(dz_2d), run.kernel_arg(db))


def copy_time_steps(src, lengths, reverse, out):
    """Per-sequence time copy of a padded batch; see ``kernels.cpu.copy_time_steps``."""
    T, B, F = out.shape
    with _Launch(out) as run:
        run.launch_2d(_copy_time_steps_kernel, F, T * B)(
            run.kernel_arg(src), run.kernel_arg(lengths), bool(reverse), run.kernel_arg(out))


def add_arrays(a, b, out):
    """``out = a + b`` for 1-D arrays; see ``kernels.cpu.add_arrays``."""
    with _Launch(out) as run:
        run.launch_1d(_add_arrays_kernel, out.shape[0])(
            run.kernel_arg(a), run.kernel_arg(b), run.kernel_arg(out))


def gather_steps(src, lengths, offset, out):
    """Final states of a padded batch; see ``kernels.cpu.gather_steps``."""
    B, H = out.shape
    with _Launch(out) as run:
        run.launch_2d(_gather_steps_kernel, H, B)(
            run.kernel_arg(src), run.kernel_arg(lengths), offset, run.kernel_arg(out))


def linear_softmax(h, W_T, b, out):
    """Output layer ``softmax(h @ W_T + b)`` per row; see ``kernels.cpu.linear_softmax``."""
    with _Launch(h) as run:
        run.gemm(h, W_T, out)
        run.launch_1d(_softmax_rows_kernel, out.shape[0])(run.kernel_arg(out), run.kernel_arg(b))


def reverse_axes_copy(src, dst):
    """``dst[k, j, i] = src[i, j, k]``; see ``kernels.cpu.reverse_axes_copy``.

    A strided copy from a zero-copy axes-reversed view of ``src``."""
    with _Launch(src) as run:
        run.copy(run.transpose(src), dst)
from .training_cuda import adam_update, gather_rows, scale_in_place, sgd_momentum_update, sgd_update, softmax_cross_entropy_rows, sum_of_squares  # noqa: E402,F401  (nblstm.training)
