"""Target-free scalar math, written once for every numba target.

Every function here is ``@njit(inline="always")``: the CPU kernels (``kernels/cpu``) inline it
into their vectorized loops and the CUDA kernels (``kernels/cuda``) call it from device code,
so the LSTM and optimizer arithmetic exists in exactly one copy.

- ``fastmath``: an ``exp`` that LLVM can vectorize (polynomial, no libm call).
- ``gates``: the LSTM gate math of one hidden unit, forward and backward (gate order i, f, g, o).
- ``training``: per-element SGD / Adam updates and the softmax cross-entropy of one row.

Nothing is imported here (import the submodule you need); nothing is compiled at import.
"""
