"""Which GEMM the CPU LSTM kernels use: the packed micro-kernel (which tile, threaded or not)
or plain BLAS. Decided per call, from the environment variable ``NBLSTM_CPU_GEMM``:

    auto (default)   inference: the tile for this CPU's features, threads when worth it
                     (below); for steps too small to thread (B*H*4H below
                     ``config.PARALLEL_MIN_STEP_MACS``), BLAS per step. training (the
                     forward of ``forward(train=True)`` and the backward): BLAS for both,
                     so that a training step runs on one thread pool, OpenBLAS's: a packed
                     forward on numba's OpenMP threads followed by a BLAS backward had the
                     two pools take the cores from each other in every loop (measured in
                     loops; benchmarks/README.md, "How auto chooses")
    blas             numba's ``np.dot`` (scipy's BLAS) per step: the original design
    <tile>           a tile of ``config.TILES`` (avx512, avx2, sse) on any CPU
    <tile>-serial    that tile on the calling thread only
    <tile>-parallel  that tile in numba parallel regions, whatever the size
    blocked          the batch-blocked loops (``blocked_lstm``: threads own blocks of batch
                     rows for all T steps) with the tile for this CPU, for inference and
                     training; ``<tile>-blocked`` with that tile. ``auto`` runs them from
                     ``config.BLOCKED_MIN_BATCH`` rows on (below, "Batch-blocked")

Batch-blocked: a block holds as many rows as fill half of one core's L2 cache with a
step's working set (``rows_per_block``); ``NBLSTM_CPU_BLOCK_ROWS`` sets it instead (for
measurements and tests). A call on B rows caps it at one worker's share of B
(``blocked_lstm._tasks``), so that no thread is left without a block. Threads: one task
per numba thread (``numba.get_num_threads()``) when threads are usable (below), each a
contiguous run of blocks, one parallel region per pass.

Threads (``auto`` and ``<tile>``): one parallel region per time step when numba's threading
layer is omp or tbb (1-2 us per region), more than one numba thread is configured, and a
step has enough work to amortise the region; numba's ``workqueue`` layer costs ~100 us per
region (and is not safe for concurrent callers), so with it the serial driver runs.
"""
import functools
import os
from dataclasses import dataclass

import numpy as np

from ..config import BLOCKED_MIN_BATCH, PARALLEL_MIN_STEP_MACS, TILES
from .packed_gemm import TILE_IDS

ENVIRONMENT_VARIABLE = "NBLSTM_CPU_GEMM"
BLOCK_ROWS_VARIABLE = "NBLSTM_CPU_BLOCK_ROWS"


@dataclass(frozen=True)
class Plan:
    """A packed-GEMM configuration for one dtype: tile, vector width, threads."""
    tile: str        # key of packed_gemm.TILES
    tile_id: int     # its index, what the jitted kernels take
    MR: int          # rows of a tile
    U: int           # elements per vector (hidden units per gate panel)
    parallel: bool   # run the parallel drivers
    workers: int     # per-worker buffers to allocate
    blocked: bool = False     # the batch-blocked loops (``blocked_lstm``)
    rows_per_block: int = 0   # their block size (batch rows a task runs through all
    # steps); a call caps it at one worker's share of its batch (``blocked_lstm._tasks``)

    @property
    def NR(self) -> int:
        """Columns of a tile and of a packed panel."""
        return 4 * self.U


@functools.cache  # asking LLVM for the host's features costs ~0.1 ms: once per process
def tile_for_this_cpu() -> str:
    """The tile matching this CPU's vector registers (every tile is correct everywhere)."""
    flags = _cpu_flags()
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags and "fma" in flags:
        return "avx2"
    return "sse"


@functools.cache
def l2_cache_bytes() -> int:
    """Bytes of one core's L2 cache (Linux sysfs); 512 KiB where it cannot be read."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(base)):
            path = os.path.join(base, index)
            with open(os.path.join(path, "level")) as level, \
                    open(os.path.join(path, "type")) as kind:
                if level.read().strip() == "2" and kind.read().strip() in ("Unified", "Data"):
                    with open(os.path.join(path, "size")) as size:
                        text = size.read().strip().upper()
                    scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
                    return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return 512 << 10


def rows_per_block(dtype, inputs: int, hidden: int, MR: int) -> int:
    """Batch rows per block of the blocked loops: a step's working set of a row (the
    pre-activations 4H, cell states 2H, hidden state H, input X) times the rows fills half
    of one core's L2 (the packed weights stream from L2/L3 beside it); a multiple of the
    tile's ``MR`` rows, 8..256. ``NBLSTM_CPU_BLOCK_ROWS`` overrides it."""
    forced = os.environ.get(BLOCK_ROWS_VARIABLE, "").strip()
    if forced:
        try:
            rows = int(forced)
        except ValueError:
            rows = 0
        if rows < 1:
            raise ValueError(f"{BLOCK_ROWS_VARIABLE}={forced!r}: expected a positive integer")
        return rows
    per_row = (7 * hidden + inputs) * np.dtype(dtype).itemsize
    rows = l2_cache_bytes() // 2 // max(per_row, 1)
    return int(min(256, max(8, rows // MR * MR)))


def _cpu_flags() -> set:
    try:
        import llvmlite.binding as llvm
        features = llvm.get_host_cpu_features()
        return {name.lstrip("+") for name, enabled in features.items() if enabled}
    except Exception:  # pragma: no cover - llvmlite always has it; be safe on odd hosts
        return set()


_LAYER = []

#: True in a process forked (``os.fork``, multiprocessing's "fork") after this process had
#: started numba's thread pool. numba's threading layers cannot be re-initialised after a
#: fork (GNU OpenMP aborts the child: "fork() called from a process already using GNU
#: OpenMP, this is unsafe"), so such a child runs every CPU kernel on its serial driver:
#: same results, one thread. Set by the handler registered below.
FORKED_AFTER_THREADS = False


def _numba_threads_started() -> bool:
    from numba.np.ufunc import parallel
    return bool(_LAYER) or bool(getattr(parallel, "_is_initialized", False))


def _after_fork_in_child() -> None:
    global FORKED_AFTER_THREADS
    if FORKED_AFTER_THREADS or _numba_threads_started():
        FORKED_AFTER_THREADS = True


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def threading_layer() -> str:
    """The numba threading layer this process runs (starting numba's thread pool once)."""
    if not _LAYER:
        import numba
        from numba.np.ufunc import parallel
        try:
            parallel._launch_threads()
            _LAYER.append(numba.threading_layer())
        except Exception as error:  # no layer could start: only the serial drivers work
            _LAYER.append(f"unavailable ({error})")
    return _LAYER[0]


def _threads_usable() -> tuple[bool, str]:
    import numba
    if FORKED_AFTER_THREADS:
        return False, "a process forked after numba's threads started (they do not survive fork)"
    if numba.config.NUMBA_NUM_THREADS < 2:
        return False, "1 numba thread"
    layer = threading_layer()
    if layer not in ("omp", "tbb"):
        return False, f"numba threading layer {layer!r}: ~100 us per parallel region"
    return True, f"numba threading layer {layer!r}, {numba.get_num_threads()} threads"


def choice() -> str:
    """The raw setting: ``NBLSTM_CPU_GEMM`` or ``auto``; ValueError if unknown."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip().lower() or "auto"
    tile, _, mode = value.partition("-")
    if value in ("auto", "blas", "blocked") or (
            tile in TILES and mode in ("", "serial", "parallel", "blocked")):
        return value
    names = ", ".join(["auto", "blas", "blocked"]
                      + [f"{t}[-serial|-parallel|-blocked]" for t in TILES])
    raise ValueError(f"{ENVIRONMENT_VARIABLE}={value!r}: expected one of {names}")


def require_blas(feature: str) -> None:
    """For a pass only the BLAS loops implement (``feature``, e.g. proj_size): ``ValueError``
    when ``NBLSTM_CPU_GEMM`` forces the packed micro-kernel; ``auto`` routes such a pass to
    BLAS."""
    value = choice()
    if value not in ("auto", "blas"):
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={value} forces the packed micro-kernel, which "
                         f"does not implement {feature}: use {ENVIRONMENT_VARIABLE}=auto or "
                         f"blas for this model")


def plan(dtype, step_macs: int, backward: bool = False, training: bool = False,
         batch: int = 0, inputs: int = 0, hidden: int = 0) -> Plan | None:
    """The configuration for a call on ``dtype`` data whose recurrent product has
    ``step_macs`` multiply-adds per step (``backward``: for the backward pass;
    ``training``: for a training forward); ``None`` means plain BLAS. ``batch``, ``inputs``
    and ``hidden`` (B, X, H) are given by the callers that can run the blocked loops (0:
    the per-step loops only)."""
    value = choice()
    if value == "blas":
        return None
    if value == "blocked":
        value = "auto-blocked"
    tile, _, mode = value.partition("-")
    if tile == "auto" and mode != "blocked" and batch >= BLOCKED_MIN_BATCH:
        mode = "blocked"
    if mode == "blocked":
        if batch:
            return _blocked_plan(dtype, tile_for_this_cpu() if tile == "auto" else tile,
                                 inputs, hidden)
        if tile == "auto":  # a caller without a blocked loop: what auto runs there
            return None
        mode = ""  # a forced tile: that tile per step
    if tile == "auto":
        if step_macs < PARALLEL_MIN_STEP_MACS or backward or training:
            return None
        tile = tile_for_this_cpu()
    if mode == "serial" or FORKED_AFTER_THREADS:  # a forked child: serial even if forced
        parallel = False
    elif mode == "parallel":
        parallel = True
    else:
        parallel = _threads_usable()[0] and step_macs >= PARALLEL_MIN_STEP_MACS
    import numba
    return _tile_plan(dtype, tile, parallel, numba.config.NUMBA_NUM_THREADS if parallel else 1)


def _blocked_plan(dtype, tile: str, inputs: int, hidden: int) -> Plan:
    """The batch-blocked plan of ``tile``: one task per numba thread when threads work."""
    import numba
    parallel = not FORKED_AFTER_THREADS and _threads_usable()[0]
    return _tile_plan(dtype, tile, parallel, numba.get_num_threads() if parallel else 1,
                      rows_per_block(dtype, inputs, hidden, TILES[tile][0]))


def _tile_plan(dtype, tile: str, parallel: bool, workers: int, rows: int = 0) -> Plan:
    """The ``Plan`` of ``tile`` for ``dtype``; batch-blocked when ``rows`` (per block) > 0."""
    MR, vector_bytes = TILES[tile]
    return Plan(tile, TILE_IDS[tile], MR, vector_bytes // np.dtype(dtype).itemsize, parallel,
                workers, rows > 0, rows)


def describe() -> str:
    """One line for ``nblstm info``: what the CPU kernels will use."""
    try:
        value = choice()
    except ValueError as error:
        return str(error)
    if value == "blas":
        return f"BLAS per step ({ENVIRONMENT_VARIABLE}=blas)"
    source_value = value
    if value == "blocked":
        value = "auto-blocked"
    tile, _, mode = value.partition("-")
    tile_is_auto = tile == "auto" and source_value == "auto"
    source = ("chosen from CPU features" if tile_is_auto
              else f"{ENVIRONMENT_VARIABLE}={source_value}")
    tile = tile_for_this_cpu() if tile == "auto" else tile
    MR, vector_bytes = TILES[tile]
    shape = f"{MR}x{4 * vector_bytes // 4} float32, {MR}x{4 * vector_bytes // 8} float64"
    if FORKED_AFTER_THREADS:
        threads = "serial: " + _threads_usable()[1]
    elif mode == "serial":
        threads = "serial (forced)"
    elif mode == "parallel":
        threads = "parallel regions (forced)"
    elif mode == "blocked":
        usable, why = _threads_usable()
        threads = (f"batch-blocked loops (forced), rows per block from L2 "
                   f"({l2_cache_bytes() >> 10} KiB); " + (why if usable else f"serial: {why}"))
    else:
        usable, why = _threads_usable()
        threads = (f"parallel per step when B*H*4H >= {PARALLEL_MIN_STEP_MACS} ({why})" if usable
                   else f"serial: {why}")
        if tile_is_auto:
            threads += (f"; batch-blocked loops from B >= {BLOCKED_MIN_BATCH} (inference and "
                        f"training); below, BLAS per step under B*H*4H = "
                        f"{PARALLEL_MIN_STEP_MACS} and in training (forward(train=True) and "
                        f"backward: one pool)")
    return f"packed micro-kernel, tile {tile} ({shape}; {source}); {threads}"
