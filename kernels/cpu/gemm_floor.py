"""Only the GEMMs of nblstm's CPU algorithm, with the same shapes and the same BLAS
(numba's ``np.dot``, i.e. scipy's): the honest floor of the design, timed by the benchmarks.

Layouts as in ``lstm.py``: x (T, B, X), h_all (T, B, H), W_x (X, 4H), W_h (H, 4H).
"""
import numpy as np
from numba import njit

from ..config import JIT_OPTIONS as _JIT_OPTIONS


@njit(**_JIT_OPTIONS)
def forward_gemms(x, W_x, W_h, h_all, z_all, z_h):
    """The forward pass's GEMMs: the input projection of all steps, then one recurrent GEMM
    per step (``h_all[t]`` stands in for ``h_{t-1}``). z_all (T, B, 4H), z_h (B, 4H)."""
    T, B, X = x.shape
    G = W_h.shape[1]
    np.dot(x.reshape(T * B, X), W_x, z_all.reshape(T * B, G))
    for t in range(T):
        np.dot(h_all[t], W_h, z_h)


@njit(**_JIT_OPTIONS)
def backward_gemms(x, W_x_T, W_h_T, h_all, dz_all, dh, dx, dW_x, dW_h):
    """The backward pass's GEMMs: one ``dz_t @ W_h^T`` per step, then ``dx``, ``dW_x`` and
    ``dW_h`` over all steps. W_x_T (4H, X), W_h_T (4H, H), dz_all (T, B, 4H), dh (B, H)."""
    T, B, X = x.shape
    H = h_all.shape[2]
    G = W_h_T.shape[0]
    for t in range(T):
        np.dot(dz_all[t], W_h_T, dh)
    dz_2d = dz_all.reshape(T * B, G)
    np.dot(dz_2d, W_x_T, dx.reshape(T * B, X))
    np.dot(x.reshape(T * B, X).T, dz_2d, dW_x)
    np.dot(h_all.reshape(T * B, H).T, dz_2d, dW_h)
