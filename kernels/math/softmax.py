"""The max-subtracted softmax of one row, written once for every numba target (the seed
API's output layer on both targets and the training cross-entropy use it).

``@njit(inline="always")`` like the rest of ``kernels/math``; the row is a 1-D array (a row
view of a 2-D array works on both targets). Constants are typed like the data.
"""
from numba import njit

from .fastmath import exp


@njit(inline="always")
def shifted_exp(z, out):
    """``out[k] = exp(z[k] - max(z))``; returns ``(max(z), sum(out))``. ``out`` may be ``z``.

    Subtracting the maximum keeps ``exp`` from overflowing (the largest term is 1); a NaN
    anywhere in ``z`` makes the sum NaN, so a softmax built on it is NaN in the whole row.
    """
    largest = z[0]
    for k in range(1, z.shape[0]):
        if z[k] > largest:
            largest = z[k]
    total = type(largest)(0)  # typed like the data: no float64 promotion
    for k in range(z.shape[0]):
        e = exp(z[k] - largest)
        out[k] = e
        total += e
    return largest, total


@njit(inline="always")
def add_bias_softmax_in_place(z, b):
    """``z = softmax(z + b)`` for one row (the seed's ``softmax(Wy a + by)``)."""
    for k in range(z.shape[0]):
        z[k] += b[k]
    _, total = shifted_exp(z, z)
    for k in range(z.shape[0]):
        z[k] = z[k] / total
