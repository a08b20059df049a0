"""The dropout mask as a counter-based hash, written once for every numba target.

A mask element is a pure function of ``(key, index)``: ``keep(index, k0, k1, threshold)``
hashes the element's flat index with a 64-bit key (two 32-bit words) into a uniform 32-bit
value ``u`` and keeps the element when ``u >= threshold``, with
``threshold = round(p * 2**32)``: each element is dropped with probability ``p`` (to within
2**-32), independently of the others. Why a hash and not a stream of random numbers:

- The mask needs no memory and no state: the backward pass recomputes exactly the mask of
  its forward from the key the training cache keeps, and the CUDA kernels draw it on the
  device, thread by thread, with no host round trip and no per-thread generator state.
- The CPU and CUDA kernels compute the same function, so a key gives the same mask on both
  backends (the parity tests compare them element by element).

The hash is three rounds of a 32-bit integer finalizer (Chris Wellons' "lowbias32", a
bijection of 32-bit integers with low bias) keyed by the two key words, the high index word
mixed into the second round. All arithmetic is on int64 values below 2**48, so it is exact
without overflow on every target (LLVM's int64, the simulator's Python integers): the
32-bit multiplications are split into two 16-bit halves.
"""
from numba import njit

_MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF


@njit(inline="always")
def _mul32(x, constant):
    """``(x * constant) mod 2**32`` for 32-bit ``x`` and ``constant``, without a product
    above 2**48: ``x * lo + ((x * hi) mod 2**16) * 2**16``."""
    low = x * (constant & _MASK16)
    high = ((x * (constant >> 16)) & _MASK16) << 16
    return (low + high) & _MASK32


@njit(inline="always")
def mix32(x):
    """lowbias32: a bijection of 32-bit integers whose output bits all depend on every
    input bit (``x`` and the result held in int64, in ``0 .. 2**32 - 1``)."""
    x ^= x >> 16
    x = _mul32(x, 0x7FEB352D)
    x ^= x >> 15
    x = _mul32(x, 0x846CA68B)
    x ^= x >> 16
    return x


@njit(inline="always")
def uniform32(index, k0, k1):
    """A uniform 32-bit integer for element ``index`` (int64 >= 0) under key ``(k0, k1)``
    (each in ``0 .. 2**32 - 1``). ``k0`` enters the first and the last round: entering only
    the first (``mix32(index ^ k0)``) would make the masks of keys that differ in ``k0``
    permutations of one another within aligned blocks of indices (the same drop counts)."""
    first = mix32((index & _MASK32) ^ k0)
    second = mix32(first ^ ((index >> 32) & _MASK32) ^ k1)
    return mix32(second ^ ((k0 << 16 | k0 >> 16) & _MASK32))


@njit(inline="always")
def keep(index, k0, k1, threshold):
    """True when element ``index`` survives dropout: ``uniform32 >= threshold``, with
    ``threshold = round(p * 2**32)`` (0: keep all; 2**32: drop all)."""
    return uniform32(index, k0, k1) >= threshold
