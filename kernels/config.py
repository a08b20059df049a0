"""Every tunable of nblstm's kernels, in one place: compile options, thresholds, tiles and
launch sizes. The kernel modules read them from here; nothing else sets them.

Reading this module imports nothing but ``numba.config`` (no CUDA target, no GPU driver):
the CUDA launch sizes depend only on whether the CUDA simulator is on.

Environment variables read here (at import):
- ``NBLSTM_NUMBA_CACHE``: ``0`` turns numba's on-disk cache off (read-only installs, or
  measuring cold compile time); on by default.
"""
import os

from numba import config as _numba_config

# ---------------------------------------------------------------------- compile options

#: numba's on-disk cache for every ``@njit`` kernel (one jitted function per Python
#: function, so cached variants never collide; see ``cpu/packed_lstm.py`` for why a serial
#: and a parallel driver must be two functions).
CACHE: bool = os.environ.get("NBLSTM_NUMBA_CACHE", "1") != "0"
#: ``error_model="numpy"``: IEEE division (lets sigmoid/tanh vectorize); ``nogil``: callers may
#: run kernels from several threads at once. No ``fastmath``: NaN inputs must reach outputs.
JIT_OPTIONS: dict = dict(cache=CACHE, error_model="numpy", nogil=True)
#: The same, for kernels with a ``prange`` parallel region.
PARALLEL_JIT_OPTIONS: dict = dict(JIT_OPTIONS, parallel=True)

# ------------------------------------------------------------------------------- CPU

#: The packed GEMM's register tiles: name -> (MR rows, vector bytes). The index of a name in
#: this dict is the tile id the jitted kernels take. Every tile is correct on every CPU
#: (LLVM splits vectors wider than the machine's registers): only speed differs.
TILES: dict = {
    "avx512": (4, 64),   # 4 x 64 float32 / 4 x 32 float64: 16 zmm accumulators of 32
    "avx2": (3, 32),     # 3 x 32 float32 / 3 x 16 float64: 12 ymm accumulators of 16
    "sse": (4, 16),      # 4 x 16 float32 / 4 x 8 float64: 128-bit vectors (SSE, NEON)
}
#: Depth of the packed GEMM's K-blocks: one ``KC x NR`` slice of a packed panel (64 KiB for
#: the float32 AVX-512 tile) stays in L2 while every row block of A runs against it.
KC: int = 256
#: Multiply-adds of one step's recurrent product (B * H * 4H) below which
#: ``NBLSTM_CPU_GEMM=auto`` runs an inference pass on BLAS per step instead of the threaded
#: packed kernel: below it, a parallel region per step costs more than it saves. Measured
#: in steady-state loops of inference calls (benchmarks/README.md, "How auto chooses"): at
#: 2^20 (B=64, H=64) the threaded packed pass was 1.2-1.3x faster than BLAS, at 2^19 and
#: 2^18 mixed (float64 faster, float32 slower). It was 2^22 while a packed training forward
#: shared the cores with a BLAS backward; training now runs on BLAS only (``plan``).
PARALLEL_MIN_STEP_MACS: int = 1 << 20
#: Batch rows from which ``NBLSTM_CPU_GEMM=auto`` runs the batch-blocked loops
#: (``cpu/blocked_lstm.py``: threads own blocks of rows for all steps) for the plain cell's
#: inference and training passes, instead of the per-step loops. Measured crossover:
#: benchmarks/README.md, "Batch-blocked".
BLOCKED_MIN_BATCH: int = 256
#: Elements per partial sum of the CPU ``sum_of_squares`` (partials added in float64).
SUM_CHUNK: int = 1024

# ------------------------------------------------------------------------------ CUDA

#: True when ``NUMBA_ENABLE_CUDASIM=1`` was set before numba was imported: CUDA kernels then
#: run as Python, one thread at a time, so every launch size below is small there.
SIMULATOR: bool = bool(_numba_config.ENABLE_CUDASIM)

#: Threads per block of the 2-D (hidden unit x batch row) LSTM gate kernels.
CUDA_BLOCK_2D: tuple = (8, 4) if SIMULATOR else (32, 8)
#: Side of the shared-memory tiles of the numba GEMM (used without CuPy/cuBLAS).
CUDA_GEMM_TILE: int = 4 if SIMULATOR else 16
#: Threads per block of 1-D kernels (bias, softmax rows, column sums, copies and fills).
CUDA_THREADS_1D: int = 32 if SIMULATOR else 128
#: Threads per block of the 2-D and 3-D copy kernels of the device-array helper.
CUDA_COPY_BLOCK_2D: tuple = (8, 4) if SIMULATOR else (16, 8)
#: Grid-stride loops of the training kernels: threads per block and the grid's cap.
CUDA_TRAINING_THREADS: int = 32 if SIMULATOR else 256
CUDA_TRAINING_MAX_BLOCKS: int = 2 if SIMULATOR else 1024

# ----------------------------------------------------------------- CUDA recurrence tiers
# (kernels/cuda/recurrence.py; NBLSTM_CUDA_RECURRENCE picks one per call)

#: Threads per block of the persistent recurrence kernels (``rows`` and ``units``).
CUDA_RECURRENCE_THREADS: int = 32 if SIMULATOR else 256
#: ``auto`` runs the ``units`` tier (hidden units spread over the whole GPU, one grid
#: barrier per step) up to this batch size, the ``rows`` tier (blocks of batch rows, no
#: barrier between blocks) above it. Not yet measured on a GPU: a first guess from the work
#: per block (``rows`` has B/rows_per_block blocks: too few to fill the GPU at small B).
CUDA_UNITS_MAX_BATCH: int = 64
