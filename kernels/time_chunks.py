"""An inference pass in chunks of time steps, on any backend: the loop written once.

An inference pass keeps nothing per step, but the per-step sequence kernels write the cell
states and gates of every step they run. So the sequence runs in chunks of ``steps`` steps
through such a kernel, with the chunk's cell states and gates in work buffers that the next
chunk reuses: working memory beyond the input and output arrays is ``steps * B * 5H``
values (``6H`` with a projection), whatever T is. Used by both targets'
``lstm_sequence_inference`` (the CPU's when its batch-blocked loops do not run) and by
``nblstm.ops`` for the cells without such a kernel (peepholes, projection). Backend-neutral
Python: the kernels, the work-buffer allocator and ``gather_steps`` are passed in.
"""
from collections.abc import Callable
from typing import Any

#: Bytes of cell states, gates (and unprojected states) an inference pass holds at once:
#: the chunk length is as many steps as fit, but at least ``INFERENCE_CHUNK_MIN_ROWS`` batch
#: rows (steps x B): each chunk repacks the weights on the CPU, which must stay small
#: against the chunk's GEMM work. Measured in loops (float32 unless said; ms; the machine
#: is noisy, +-20%): B=4096, H=128 chunks of 3 / 6 / 32 steps 258 / 278 / 330; B=1024, H=128
#: 12 / 32 steps 48 / 57; (100,64,256,256) 32 / 64 / 100 steps 31 / 28 / 29; but at
#: (100,128,512,512) float64 12 / 32 steps 491 / 410 and at (20,256,1024,1024) 6 / 20 steps
#: 441 / 344-371, where 32 MiB alone gives too few rows for the repacking.
INFERENCE_CHUNK_BYTES = 32 << 20
INFERENCE_CHUNK_MIN_ROWS = 4096


def inference_chunk_steps(T: int, B: int, H: int, itemsize: int, projected: bool = False) -> int:
    """Steps per chunk of an inference pass, 1..T: ``INFERENCE_CHUNK_BYTES`` of
    ``(c, gates[, m])``, but at least ``INFERENCE_CHUNK_MIN_ROWS`` rows."""
    per_step = B * (6 if projected else 5) * H * itemsize
    fits = INFERENCE_CHUNK_BYTES // max(per_step, 1)
    return max(1, min(T, max(fits, -(-INFERENCE_CHUNK_MIN_ROWS // B))))


def run_in_chunks(forward_chunk: Callable, scratch: Callable, gather_steps: Callable, x: Any,
                  h0: Any, c0: Any, lengths: Any, chunk_steps: int, h_all: Any, h_n: Any,
                  c_n: Any, projected: bool = False) -> None:
    """Inference over ``x (T, B, X)`` from ``h0 (B, P)``, ``c0 (B, H)``: ``h_all (T, B, P)``
    and each row's final states ``h_n (B, P)``, ``c_n (B, H)`` at its step ``lengths[b] - 1``
    (``lengths`` (B,) int64, all T for full sequences), all written here.

    ``forward_chunk(x, h, c, h_all, c_all, gates_all, m_all)`` runs one chunk (``m_all``
    (steps, B, H) for a projected cell, else None); ``scratch(role, shape, dtype)`` gives
    work buffers; ``chunk_steps``: steps per chunk, 0 for ``inference_chunk_steps``.
    """
    T, B, _ = x.shape
    H = c0.shape[1]
    if chunk_steps <= 0:
        chunk_steps = inference_chunk_steps(T, B, H, x.dtype.itemsize, projected)
    steps = max(1, min(int(chunk_steps), T))
    c_chunk = scratch("inference c chunk", (steps, B, H), x.dtype)
    gates_chunk = scratch("inference gates chunk", (steps, B, 4 * H), x.dtype)
    m_chunk = scratch("inference m chunk", (steps, B, H), x.dtype) if projected else None
    h, c = h0, c0
    for start in range(0, T, steps):
        n = min(steps, T - start)
        # The next chunk reads h and c only at its first step, before overwriting any of
        # c_chunk, so they can stay views into this chunk's buffers.
        forward_chunk(x[start:start + n], h, c, h_all[start:start + n], c_chunk[:n],
                      gates_chunk[:n], None if m_chunk is None else m_chunk[:n])
        h, c = h_all[start + n - 1], c_chunk[n - 1]
        gather_steps(h_all[start:start + n], lengths, start, h_n)  # rows ending in the chunk
        gather_steps(c_chunk[:n], lengths, start, c_n)
