"""Numba kernels of nblstm, installed as ``nblstm.kernels``.

- ``fastmath``: an ``exp`` that LLVM can vectorize (polynomial, no libm call).
- ``gates``: the scalar LSTM gate math, written once, compiled for every target.
- ``cpu``: ``@njit`` whole-sequence loops: GEMM per step plus one fused gate loop.

Nothing here is compiled at import: numba compiles each kernel on its first call.
"""
