"""Compile every CUDA kernel of nblstm to PTX, without a GPU (run by test_cuda_ptx.py).

Run in a process with the CUDA simulator off. Prints one JSON line per (cc, dtype, kernel)
with the number of double-precision (``.f64``) PTX instructions. Exit status 3 means NVVM
is not installed (``pip install ".[ptx]"``).

numba-cuda compiles device functions called from a kernel (nblstm's shared gate math) for
"the current device", which needs a driver; for an offline compile the current device's
compute capability is set to the one being compiled for. Nothing is launched.
"""
import json
import re
import sys

import numpy as np
from numba import boolean, float32, float64, int64

import numba.cuda.dispatcher as cuda_dispatcher
from numba import cuda


class _OfflineDevice:
    compute_capability = (7, 5)


cuda_dispatcher.get_current_device = lambda: _OfflineDevice

import importlib  # noqa: E402
import pkgutil  # noqa: E402

import nblstm.kernels.cuda as cuda_target_package  # noqa: E402
from nblstm.kernels.cuda import launch  # noqa: E402
from nblstm.kernels.cuda import lstm as kernels  # noqa: E402
from nblstm.kernels.cuda import recurrence  # noqa: E402
from nblstm.kernels.cuda import training as training_cuda  # noqa: E402

#: Every module of ``nblstm.kernels.cuda``: all their ``@cuda.jit`` kernels must be compiled here.
KERNEL_MODULES = tuple(importlib.import_module(f"{cuda_target_package.__name__}.{info.name}")
                       for info in pkgutil.iter_modules(cuda_target_package.__path__))


def signatures(ty):
    a1, a2, a3 = ty[::1], ty[:, ::1], ty[:, :, ::1]
    any2 = ty[:, :]
    lengths = int64[::1]
    return {
        "_gates_forward_kernel": (kernels._gates_forward_kernel,
                                  (a3, a2, a2, a3, a3, a2, boolean, int64)),
        "_gates_backward_kernel": (kernels._gates_backward_kernel,
                                   (a3, a2, a3, a3, a2, a2, a2, a2, lengths, a3, a2, boolean,
                                    int64)),
        "_peephole_gradient_kernel": (kernels._peephole_gradient_kernel, (a2, a3, a3, a2)),
        "_rows_recurrence_kernel": (recurrence._rows_recurrence_kernel,
                                    (a3, a2, a2, a2, a3, a3, boolean, a2, boolean, int64)),
        "_units_recurrence_kernel": (recurrence._units_recurrence_kernel,
                                     (a3, a2, a2, a2, a3, a3, boolean, a2, boolean, int64)),
        "_rows_backward_kernel": (recurrence._rows_backward_kernel,
                                  (a3, a2, a3, a3, a2, a2, lengths, a2, a3, a2, a2, a2,
                                   boolean, int64)),
        "_units_backward_kernel": (recurrence._units_backward_kernel,
                                   (a3, a2, a3, a3, a2, a2, lengths, a2, a3, a2, a2, a2,
                                    boolean, int64)),
        "_copy_time_steps_kernel": (kernels._copy_time_steps_kernel, (a3, lengths, boolean, a3)),
        "_add_arrays_kernel": (kernels._add_arrays_kernel, (a1, a1, a1)),
        "_gather_steps_kernel": (kernels._gather_steps_kernel, (a3, lengths, int64, a2)),
        "_add_bias_kernel": (kernels._add_bias_kernel, (a2, a1)),
        "_softmax_rows_kernel": (kernels._softmax_rows_kernel, (a2, a1)),
        "_column_sums_kernel": (kernels._column_sums_kernel, (a2, a1)),
        "_projected_hidden_gradient_kernel": (kernels._projected_hidden_gradient_kernel,
                                              (a3, a2, a2, lengths, a3, int64)),
        "_dropout_kernel": (kernels._dropout_kernel, (a1, int64, int64, int64, ty, a1)),
        "matmul": (launch.MATMUL_KERNELS[np.dtype(str(ty))], (any2, any2, a2, boolean)),
        "_fill_kernel": (launch._fill_kernel, (a1, ty)),
        "_copy_1d_kernel": (launch._copy_1d_kernel, (ty[:], a1)),
        "_copy_2d_kernel": (launch._copy_2d_kernel, (any2, a2)),
        "_copy_3d_kernel": (launch._copy_3d_kernel, (ty[:, :, :], a3)),
        **training_signatures(ty),
    }


def training_signatures(ty):
    """The kernels of ``nblstm.training`` (``kernels/cuda/training.py``)."""
    a1, a2 = ty[::1], ty[:, ::1]
    k = training_cuda
    return {
        "_sgd_kernel": (k._sgd_kernel, (a1, a1, ty, ty)),
        "_sgd_momentum_kernel": (k._sgd_momentum_kernel, (a1, a1, a1, ty, ty, ty, boolean)),
        "_adam_kernel": (k._adam_kernel, (a1, a1, a1, a1) + (ty,) * 7),
        "_partial_sums_of_squares_kernel": (k._partial_sums_of_squares_kernel, (a1, a1)),
        "_scale_kernel": (k._scale_kernel, (a1, ty)),
        "_softmax_cross_entropy_kernel": (k._softmax_cross_entropy_kernel,
                                          (ty[:, :], int64[:], a2, a1, ty)),
        "_gather_rows_kernel": (k._gather_rows_kernel, (a2, int64[::1], a2)),
    }


def uncovered_kernels(table: dict) -> list[str]:
    """Module-level CUDA kernels of nblstm that ``signatures`` does not list (device
    functions, ``cuda.jit(device=True)``, are compiled inside the kernels that call them)."""
    from numba.cuda.dispatcher import CUDADispatcher
    listed = {id(kernel) for kernel, _ in table.values()}
    return [f"{module.__name__}.{name}" for module in KERNEL_MODULES
            for name, value in vars(module).items()
            if isinstance(value, CUDADispatcher) and id(value) not in listed
            and not value.targetoptions.get("device", False)]


def _probe_kernel(a):
    a[0] = 1.0


def main() -> int:
    try:  # probe the whole toolchain (NVVM and every library compile_ptx loads) on a
        # trivial kernel: a machine can have libnvvm without libnvrtc, say
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
        cuda.compile_ptx(_probe_kernel, (float32[::1],), cc=(7, 5))
    except Exception as error:  # the toolchain is missing or incomplete
        print(json.dumps({"nvvm_missing": f"{type(error).__name__}: {error}"}))
        return 3
    missing = uncovered_kernels(signatures(float32))
    if missing:
        print(json.dumps({"uncovered_kernels": missing}))
        return 4
    for cc in ((7, 5), (9, 0)):
        _OfflineDevice.compute_capability = cc
        for ty in (float32, float64):
            for name, (kernel, sig) in signatures(ty).items():
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
                f64 = [line.strip() for line in ptx.splitlines() if re.search(r"\.f64\b", line)]
                print(json.dumps({"cc": list(cc), "dtype": str(ty), "kernel": name,
                                  "ptx_chars": len(ptx), "f64_instructions": len(f64),
                                  "f64_examples": f64[:3]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
