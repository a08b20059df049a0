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

Threads (``auto`` and ``<tile>``): one parallel region per time step when numba's threading
layer is omp or tbb (1-2 us per region), more than one numba thread is configured, and a
step has enough work to amortise the region; numba's ``workqueue`` layer costs ~100 us per
region (and is not safe for concurrent callers), so with it the serial driver runs.
"""
import functools
import os
from dataclasses import dataclass

import numpy as np

from ..config import PARALLEL_MIN_STEP_MACS, TILES
from .packed_gemm import TILE_IDS

ENVIRONMENT_VARIABLE = "NBLSTM_CPU_GEMM"


@dataclass(frozen=True)
class Plan:
    """A packed-GEMM configuration for one dtype: tile, vector width, threads."""
    tile: str        # key of packed_gemm.TILES
    tile_id: int     # its index, what the jitted kernels take
    MR: int          # rows of a tile
    U: int           # elements per vector (hidden units per gate panel)
    parallel: bool   # run the parallel drivers
    workers: int     # per-worker buffers to allocate

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
    if value in ("auto", "blas") or (tile in TILES and mode in ("", "serial", "parallel")):
        return value
    names = ", ".join(["auto", "blas"] + [f"{t}[-serial|-parallel]" for t in TILES])
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


def plan(dtype, step_macs: int, backward: bool = False, training: bool = False) -> Plan | None:
    """The configuration for a call on ``dtype`` data whose recurrent product has
    ``step_macs`` multiply-adds per step (``backward``: for the backward pass;
    ``training``: for a training forward); ``None`` means plain BLAS."""
    value = choice()
    if value == "blas":
        return None
    tile, _, mode = value.partition("-")
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
    MR, vector_bytes = TILES[tile]
    return Plan(tile, TILE_IDS[tile], MR, vector_bytes // np.dtype(dtype).itemsize, parallel,
                numba.config.NUMBA_NUM_THREADS if parallel else 1)


def describe() -> str:
    """One line for ``nblstm info``: what the CPU kernels will use."""
    try:
        value = choice()
    except ValueError as error:
        return str(error)
    if value == "blas":
        return f"BLAS per step ({ENVIRONMENT_VARIABLE}=blas)"
    tile, _, mode = value.partition("-")
    tile_is_auto = tile == "auto"
    source = "chosen from CPU features" if tile_is_auto else f"{ENVIRONMENT_VARIABLE}={value}"
    tile = tile_for_this_cpu() if tile == "auto" else tile
    MR, vector_bytes = TILES[tile]
    shape = f"{MR}x{4 * vector_bytes // 4} float32, {MR}x{4 * vector_bytes // 8} float64"
    if FORKED_AFTER_THREADS:
        threads = "serial: " + _threads_usable()[1]
    elif mode == "serial":
        threads = "serial (forced)"
    elif mode == "parallel":
        threads = "parallel regions (forced)"
    else:
        usable, why = _threads_usable()
        threads = (f"parallel per step when B*H*4H >= {PARALLEL_MIN_STEP_MACS} ({why})" if usable
                   else f"serial: {why}")
        if tile_is_auto:
            threads += (f"; BLAS per step below B*H*4H = {PARALLEL_MIN_STEP_MACS}"
                        f" and in training (forward(train=True) and backward: one pool)")
    return f"packed micro-kernel, tile {tile} ({shape}; {source}); {threads}"
