"""How the CUDA kernels' host code launches work and handles device arrays: one helper.

Two array kinds reach the CUDA target (``kernels/array_kinds.py`` tells them apart):

- **CuPy arrays** (a real GPU with CuPy): GEMMs are cuBLAS calls through CuPy, kernels are
  launched on CuPy's current stream, on the device the arrays live on, with zero-copy numba
  views of the CuPy arrays as arguments. Like any CuPy call, results may still be in flight
  when a function returns.
- **numba device arrays** (``cuda.device_array``, and the simulator's arrays, which is what
  CI runs): GEMMs are the tiled shared-memory kernel below, everything runs on the default
  stream, and ``DeviceArrayModule`` plays NumPy's role (allocation, fills, strided copies,
  concatenation) with the copy kernels below.

``Launch(like)`` is the context manager around one host call; ``DeviceArrayModule`` is also
the array module (``xp``) that ``nblstm.ops`` allocates with when a backend holds numba
device arrays. Launch sizes come from ``kernels/config.py``.

Note: on a real GPU, ``DeviceNDArray.T`` is not a view: it compiles and launches a
transpose kernel on every call. ``transpose`` here makes a strided view instead.
"""
import math
from typing import Any, Callable

import numpy as np
from numba import float32, float64

from ..array_kinds import array_kind
from ..config import (CUDA_BLOCK_2D, CUDA_COPY_BLOCK_2D, CUDA_GEMM_TILE, CUDA_THREADS_1D,
                      CUDA_TRAINING_MAX_BLOCKS, CUDA_TRAINING_THREADS)
from .target import cuda

# ----------------------------------------------------------------- copy and fill kernels


@cuda.jit
def _fill_kernel(flat, value):
    k = cuda.grid(1)
    if k < flat.shape[0]:
        flat[k] = value


@cuda.jit
def _copy_1d_kernel(src, dst):
    k = cuda.grid(1)
    if k < dst.shape[0]:
        dst[k] = src[k]


@cuda.jit
def _copy_2d_kernel(src, dst):
    j, i = cuda.grid(2)
    if i < dst.shape[0] and j < dst.shape[1]:
        dst[i, j] = src[i, j]


@cuda.jit
def _copy_3d_kernel(src, dst):
    k, ij = cuda.grid(2)
    J = dst.shape[1]
    i = ij // J
    j = ij - i * J
    if i < dst.shape[0] and k < dst.shape[2]:
        dst[i, j, k] = src[i, j, k]


def copy(src, dst, stream=0) -> None:
    """``dst[...] = src`` for 1-3-D numba device arrays of one shape, any strides."""
    if tuple(src.shape) != tuple(dst.shape):
        raise ValueError(f"copy: shapes differ, {src.shape} vs {dst.shape}")
    if dst.size == 0:
        return
    threads, block = CUDA_THREADS_1D, CUDA_COPY_BLOCK_2D
    if dst.ndim == 1:
        _copy_1d_kernel[math.ceil(dst.shape[0] / threads), threads, stream](src, dst)
    elif dst.ndim == 2:
        grid = (math.ceil(dst.shape[1] / block[0]), math.ceil(dst.shape[0] / block[1]))
        _copy_2d_kernel[grid, block, stream](src, dst)
    elif dst.ndim == 3:
        rows = dst.shape[0] * dst.shape[1]
        grid = (math.ceil(dst.shape[2] / block[0]), math.ceil(rows / block[1]))
        _copy_3d_kernel[grid, block, stream](src, dst)
    else:
        raise ValueError(f"copy: {dst.ndim}-D arrays are not supported")


def fill(array, value, stream=0) -> None:
    """Set every element of a C-contiguous numba device array to ``value``."""
    if array.size == 0:
        return
    flat = array.reshape(array.size)
    threads = CUDA_THREADS_1D
    _fill_kernel[math.ceil(array.size / threads), threads, stream](flat, flat.dtype.type(value))


# ------------------------------------------------------------------------ tiled GEMM

def _make_matmul_kernel(element_type):
    """Tiled shared-memory GEMM ``C = A @ B (+ C if accumulate)`` for one dtype (the
    shared-memory tiles need the element type at compile time). Used for numba device
    arrays only; CuPy arrays get cuBLAS."""
    tile = CUDA_GEMM_TILE

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


MATMUL_KERNELS = {np.dtype(np.float32): _make_matmul_kernel(float32),
                  np.dtype(np.float64): _make_matmul_kernel(float64)}


# --------------------------------------------------------------- numba device arrays

class DeviceArrayModule:
    """The subset of NumPy's API that nblstm's orchestration uses, on numba device arrays
    (all work on the default stream)."""

    @staticmethod
    def transpose(array, axes=None):
        """Zero-copy view with the axes permuted (reversed by default), any dimensions."""
        axes = tuple(range(array.ndim))[::-1] if axes is None else tuple(axes)
        if not hasattr(array, "gpu_data"):  # the simulator's arrays wrap a NumPy array
            return array.transpose(axes) if array.ndim > 1 else array
        from numba.cuda.cudadrv.devicearray import DeviceNDArray
        return DeviceNDArray(tuple(array.shape[a] for a in axes),
                             tuple(array.strides[a] for a in axes), array.dtype,
                             stream=array.stream, gpu_data=array.gpu_data)

    @staticmethod
    def empty(shape, dtype):
        return cuda.device_array(tuple(shape), dtype=np.dtype(dtype))

    @classmethod
    def zeros(cls, shape, dtype):
        out = cls.empty(shape, dtype)
        fill(out, 0)
        return out

    @classmethod
    def ones(cls, shape, dtype):
        out = cls.empty(shape, dtype)
        fill(out, 1)
        return out

    @classmethod
    def zeros_like(cls, array):
        return cls.zeros(array.shape, array.dtype)

    @classmethod
    def copy(cls, array):
        out = cls.empty(array.shape, array.dtype)
        copy(array, out)
        return out

    @classmethod
    def ascontiguousarray(cls, array):
        if array.is_c_contiguous():
            return array
        return cls.copy(array)

    @classmethod
    def concatenate(cls, arrays, axis=0):
        arrays = list(arrays)
        first = arrays[0]
        axis = axis % first.ndim
        shape = list(first.shape)
        shape[axis] = sum(a.shape[axis] for a in arrays)
        out = cls.empty(shape, first.dtype)
        offset = 0
        for a in arrays:
            index = [slice(None)] * first.ndim
            index[axis] = slice(offset, offset + a.shape[axis])
            copy(a, out[tuple(index)])
            offset += a.shape[axis]
        return out

    @classmethod
    def stack(cls, arrays):
        arrays = list(arrays)
        out = cls.empty((len(arrays),) + tuple(arrays[0].shape), arrays[0].dtype)
        for k, a in enumerate(arrays):
            copy(a, out[k])
        return out


# ------------------------------------------------------------------------ one host call

class Launch:
    """How one host call launches work: on CuPy's current stream and the arrays' device
    with cuBLAS GEMMs (CuPy arrays), or on the default stream with the tiled GEMM (numba
    device arrays). Use as a context manager around the call:

    >>> with Launch(x) as run:                                          # doctest: +SKIP
    ...     out = run.empty((n,), x.dtype)
    ...     run.launch_1d(kernel, n)(run.kernel_arg(x), run.kernel_arg(out))
    """

    def __init__(self, like: Any) -> None:
        self.cupy = None
        self.stream = 0
        self._device = None
        if array_kind(like) == "cupy":
            import cupy  # only reached with CuPy arrays in hand
            self.cupy = cupy
            self._device = like.device.id

    def __enter__(self) -> "Launch":
        if self.cupy is not None:
            self._contexts = [self.cupy.cuda.Device(self._device), cuda.gpus[self._device]]
            for context in self._contexts:
                context.__enter__()
            self.stream = cuda.external_stream(self.cupy.cuda.get_current_stream().ptr)
        return self

    def __exit__(self, *exc) -> bool:
        if self.cupy is not None:
            for context in reversed(self._contexts):
                context.__exit__(*exc)
        return False

    # arrays

    def kernel_arg(self, array):
        """A numba view of ``array`` for kernel launches (zero-copy, made once per call)."""
        if self.cupy is None:
            return array
        return cuda.as_cuda_array(array, sync=False)

    def empty(self, shape, dtype):
        if self.cupy is not None:
            return self.cupy.empty(shape, dtype=dtype)
        return DeviceArrayModule.empty(shape, dtype)

    def zeros(self, shape, dtype):
        out = self.empty(shape, dtype)
        self.fill(out, 0)
        return out

    def fill(self, array, value) -> None:
        if self.cupy is not None:
            array.fill(value)
        else:
            fill(array, value, self.stream)

    def copy(self, src, dst) -> None:
        """``dst[...] = src`` (any strides)."""
        if self.cupy is not None:
            dst[...] = src
        else:
            copy(src, dst, self.stream)

    def transpose(self, array):
        """Zero-copy view with the axes reversed (numba's ``.T`` launches a copy kernel on a
        GPU and handles 2-D arrays only)."""
        if self.cupy is not None:
            return array.T
        return DeviceArrayModule.transpose(array)

    def to_host(self, array) -> np.ndarray:
        """A NumPy copy of a C-contiguous device array (waits for the GPU)."""
        return array.get() if self.cupy is not None else array.copy_to_host()

    # work

    def gemm(self, A, B, C, accumulate: bool = False) -> None:
        """``C = A @ B`` (or ``C += A @ B``) for 2-D arrays; A and B may be strided views."""
        if self.cupy is not None:  # cuBLAS; only exercised on a real GPU
            if accumulate:
                C += self.cupy.matmul(A, B)
            else:
                self.cupy.matmul(A, B, out=C)
            return
        M, N = C.shape
        tile = CUDA_GEMM_TILE
        grid = (math.ceil(N / tile), math.ceil(M / tile))
        MATMUL_KERNELS[np.dtype(C.dtype)][grid, (tile, tile), self.stream](A, B, C, accumulate)

    def launch_2d(self, kernel, n_cols: int, n_rows: int) -> Callable:
        """``kernel`` configured for one thread per (column, row) of an ``n_rows x n_cols``
        grid (``cuda.grid(2)`` gives ``(column, row)``)."""
        grid = (math.ceil(n_cols / CUDA_BLOCK_2D[0]), math.ceil(n_rows / CUDA_BLOCK_2D[1]))
        return kernel[grid, CUDA_BLOCK_2D, self.stream]

    def launch_1d(self, kernel, n: int) -> Callable:
        """``kernel`` configured for one thread per item of ``n``."""
        return kernel[math.ceil(n / CUDA_THREADS_1D), CUDA_THREADS_1D, self.stream]

    @staticmethod
    def grid_stride_size(n: int) -> tuple[int, int]:
        """``(blocks, threads)`` of a capped grid for a grid-stride loop over ``n`` items."""
        threads = CUDA_TRAINING_THREADS
        return max(1, min(math.ceil(n / threads), CUDA_TRAINING_MAX_BLOCKS)), threads

    def launch_grid_stride(self, kernel, n: int) -> Callable:
        """``kernel`` configured for a grid-stride loop over ``n`` items."""
        blocks, threads = self.grid_stride_size(n)
        return kernel[blocks, threads, self.stream]
