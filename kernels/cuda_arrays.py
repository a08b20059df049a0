"""A small NumPy-like array module for numba device arrays (``cuda.device_array`` and the
simulator's arrays), used when CuPy is not there to play that role.

nblstm's orchestration (``nblstm.ops``, ``nblstm.seed``) needs only a handful of array
operations besides slicing and ``reshape``: allocation, zero fill, contiguous copies of
strided views, concatenation and stacking. This module implements exactly those with
numba-cuda copy kernels, so the CUDA backend works on numba device arrays without CuPy
(and in the CUDA simulator, which is what CI runs). With CuPy installed and a GPU present,
the dispatcher uses CuPy instead (zero-copy views) and this module is not involved.

Note: on a real GPU, ``DeviceNDArray.T`` is not a view: it compiles and launches a
transpose kernel on every call. ``DeviceArrayModule.transpose`` makes a strided view instead.
"""
import math

import numpy as np

from .cuda_target import cuda

_THREADS_1D = 128
_THREADS_2D = (16, 8)


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
    """``dst[...] = src`` for 1-3-D device arrays of one shape, any strides."""
    if tuple(src.shape) != tuple(dst.shape):
        raise ValueError(f"copy: shapes differ, {src.shape} vs {dst.shape}")
    if dst.size == 0:
        return
    if dst.ndim == 1:
        _copy_1d_kernel[math.ceil(dst.shape[0] / _THREADS_1D), _THREADS_1D, stream](src, dst)
    elif dst.ndim == 2:
        grid = (math.ceil(dst.shape[1] / _THREADS_2D[0]), math.ceil(dst.shape[0] / _THREADS_2D[1]))
        _copy_2d_kernel[grid, _THREADS_2D, stream](src, dst)
    elif dst.ndim == 3:
        rows = dst.shape[0] * dst.shape[1]
        grid = (math.ceil(dst.shape[2] / _THREADS_2D[0]), math.ceil(rows / _THREADS_2D[1]))
        _copy_3d_kernel[grid, _THREADS_2D, stream](src, dst)
    else:
        raise ValueError(f"copy: {dst.ndim}-D arrays are not supported")


def fill(array, value, stream=0) -> None:
    """Set every element of a C-contiguous device array to ``value``."""
    if array.size == 0:
        return
    flat = array.reshape(array.size)
    _fill_kernel[math.ceil(array.size / _THREADS_1D), _THREADS_1D, stream](
        flat, flat.dtype.type(value))


def is_c_contiguous(array) -> bool:
    return array.is_c_contiguous()


class DeviceArrayModule:
    """The subset of NumPy's API that nblstm's orchestration uses, on numba device arrays."""

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
    def zeros_like(cls, array):
        return cls.zeros(array.shape, array.dtype)

    @classmethod
    def copy(cls, array):
        out = cls.empty(array.shape, array.dtype)
        copy(array, out)
        return out

    @classmethod
    def ascontiguousarray(cls, array):
        if is_c_contiguous(array):
            return array
        out = cls.empty(array.shape, array.dtype)
        copy(array, out)
        return out

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
