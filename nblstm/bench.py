"""The benchmark harness behind ``nblstm bench`` and ``benchmarks/run_grid.py``.

Honest by construction: every peer runs in this one process on the same shapes and dtype,
interleaved round by round (so drifting clocks and neighbours hit everyone alike), and the
reported time is the median of the rounds. Peers:

- ``nblstm``: the fused kernels on time-major arrays (``nblstm.ops``), CPU; ``nblstm-cuda``
  on CuPy arrays when a real GPU and CuPy are there.
- ``torch``: ``torch.nn.LSTM`` with the same thread count (CPU; ``torch-cuda`` = cuDNN).
- ``seed`` and ``reference``: nblstm's seed-compatible API against the plain NumPy
  reference (both in the course's layout, with a small softmax output layer).
- ``gemm``: only the GEMMs of nblstm's algorithm, same shapes, same BLAS: the floor.

Passes: ``inference`` (forward, nothing kept for backward; the seed API has no inference
mode, so ``seed``/``reference`` run their forward with caches) and ``training`` (forward
plus backward). Between timed runs the harness sleeps briefly: numpy's and scipy's
OpenBLAS and torch's OpenMP threads keep spinning ~0.1 s after a call and would steal the
cores from the next peer timed.
"""
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import _environment, ops, reference, seed
from ._dispatch import (CPU, Backend, backend_named, cuda_unavailable_reason,
                        device_array_kind)
from ._files import atomic_open
from ._progress import progress_bar

#: (T, B, X, H) of the grid, by size class.
GRID = {
    "tiny": [(50, 1, 32, 32), (50, 16, 64, 64)],
    "mid": [(100, 64, 256, 256)],
    "large": [(100, 128, 512, 512), (20, 256, 1024, 1024)],
}
QUICK_SHAPES = [(50, 1, 32, 32), (50, 16, 64, 64), (100, 64, 256, 256)]
PASSES = ("inference", "training")
OUTPUT_CLASSES = 8  # n_y of the seed API's softmax layer
COOLDOWN_S = 0.15


def gemm_flops(T: int, B: int, X: int, H: int, pass_name: str) -> float:
    """Floating-point operations of the algorithm's GEMMs (the gate math is O(T*B*H)).

    Forward: ``2*T*B*(X + H)*4H``. Backward: three more GEMMs of the same size each
    (``dh_{t-1}``, ``dx`` with ``dW_x``, ``dW_h``), so training is 3x the forward.
    """
    forward = 2.0 * T * B * (X + H) * 4 * H
    return forward if pass_name == "inference" else 3 * forward


@dataclass
class Case:
    """One shape and dtype, with its arrays in both layouts."""
    T: int
    B: int
    X: int
    H: int
    dtype: np.dtype
    arrays: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"({self.T},{self.B},{self.X},{self.H})"

    def build(self, seed_value: int = 0) -> "Case":
        rng = np.random.default_rng(seed_value)
        T, B, X, H, dt = self.T, self.B, self.X, self.H, self.dtype
        scale = 1 / np.sqrt(X + H)
        a = self.arrays
        a["x"] = rng.standard_normal((T, B, X)).astype(dt)
        a["h0"] = np.zeros((B, H), dt)
        a["c0"] = np.zeros((B, H), dt)
        a["W_x"] = (rng.standard_normal((X, 4 * H)) * scale).astype(dt)
        a["W_h"] = (rng.standard_normal((H, 4 * H)) * scale).astype(dt)
        a["b"] = np.zeros(4 * H, dt)
        a["d_out"] = rng.standard_normal((T, B, H)).astype(dt)
        params = {}
        for gate in "fico":
            params["W" + gate] = (rng.standard_normal((H, H + X)) * scale).astype(dt)
            params["b" + gate] = np.zeros((H, 1), dt)
        params["Wy"] = (rng.standard_normal((OUTPUT_CLASSES, H)) * scale).astype(dt)
        params["by"] = np.zeros((OUTPUT_CLASSES, 1), dt)
        a["seed_parameters"] = params
        a["seed_x"] = np.ascontiguousarray(a["x"].transpose(2, 1, 0))
        a["seed_a0"] = np.zeros((H, B), dt)
        a["seed_da"] = np.ascontiguousarray(a["d_out"].transpose(2, 1, 0))
        return self


# ------------------------------------------------------------------------------- peers

def _nblstm_runner(case: Case, pass_name: str, backend: Backend = CPU,
                   sync: Callable = lambda: None) -> Callable:
    a = {k: backend.adopt(v) for k, v in case.arrays.items() if not k.startswith("seed")}
    zeros = backend.xp.zeros(a["h0"].shape, a["h0"].dtype)
    if pass_name == "inference":
        def run():
            ops.sequence_inference(backend, a["x"], a["h0"], a["c0"], a["W_x"], a["W_h"], a["b"])
            sync()
    else:
        def run():
            h_all, c_all, gates = ops.sequence_forward(backend, a["x"], a["h0"], a["c0"],
                                                       a["W_x"], a["W_h"], a["b"])
            ops.sequence_backward(backend, a["x"], a["h0"], a["c0"], a["W_x"], a["W_h"], h_all,
                                  c_all, gates, a["d_out"], zeros, zeros)
            sync()
    return run


def _seed_api_runner(module, case: Case, pass_name: str) -> Callable:
    a = case.arrays

    def run():
        _, _, _, caches = module.lstm_forward(a["seed_x"], a["seed_a0"], a["seed_parameters"])
        if pass_name == "training":
            module.lstm_backward(a["seed_da"], caches)
    return run


def _gemm_floor_runner(case: Case, pass_name: str) -> Callable:
    from .kernels.cpu import gemm_floor
    a, dt = case.arrays, case.dtype
    T, B, X, H = case.T, case.B, case.X, case.H
    z_all = np.empty((T, B, 4 * H), dt)
    z_h = np.empty((B, 4 * H), dt)
    h_all = np.ones((T, B, H), dt)
    W_x_T, W_h_T = np.ascontiguousarray(a["W_x"].T), np.ascontiguousarray(a["W_h"].T)
    dh, dx = np.empty((B, H), dt), np.empty((T, B, X), dt)
    dW_x, dW_h = np.empty_like(a["W_x"]), np.empty_like(a["W_h"])

    def run():
        gemm_floor.forward_gemms(a["x"], a["W_x"], a["W_h"], h_all, z_all, z_h)
        if pass_name == "training":
            gemm_floor.backward_gemms(a["x"], W_x_T, W_h_T, h_all, z_all, dh, dx, dW_x, dW_h)
    return run


def _torch_runner(torch, case: Case, pass_name: str, device: str = "cpu") -> Callable:
    a = case.arrays
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[case.dtype]
    lstm = torch.nn.LSTM(case.X, case.H, dtype=dtype, device=device)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(a["W_x"].T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(a["W_h"].T.copy()))
        lstm.bias_ih_l0.zero_()
        lstm.bias_hh_l0.zero_()
    to = lambda v: torch.from_numpy(v).to(device)
    x, h0, c0, d_out = to(a["x"]), to(a["h0"])[None], to(a["c0"])[None], to(a["d_out"])
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if pass_name == "inference":
        def run():
            with torch.inference_mode():
                lstm(x, (h0, c0))
            sync()
    else:
        x_train = x.clone().requires_grad_()

        def run():
            lstm.zero_grad(set_to_none=True)
            x_train.grad = None
            out, _ = lstm(x_train, (h0, c0))
            out.backward(d_out)
            sync()
    return run


def available_peers(include_reference: bool = True) -> tuple[dict, list[str]]:
    """Peer name -> factory(case, pass) -> run(); plus notes on peers that are missing."""
    peers = {"nblstm": _nblstm_runner}
    notes = []
    if cuda_unavailable_reason() is None and device_array_kind() == "cupy":
        import cupy
        sync = cupy.cuda.get_current_stream().synchronize
        gpu = backend_named("cuda")
        peers["nblstm-cuda"] = lambda c, p: _nblstm_runner(c, p, gpu, sync)
    try:
        import torch
    except ImportError:
        torch = None
        notes.append("torch is not installed: no torch.nn.LSTM column "
                     "(pip install torch, the CPU build is enough, to compare)")
    if torch is not None:
        peers["torch"] = lambda c, p: _torch_runner(torch, c, p)
        if torch.cuda.is_available():
            peers["torch-cuda"] = lambda c, p: _torch_runner(torch, c, p, "cuda")
    peers["seed"] = lambda c, p: _seed_api_runner(seed, c, p)
    if include_reference:
        peers["reference"] = lambda c, p: _seed_api_runner(reference, c, p)
    peers["gemm"] = _gemm_floor_runner
    return peers, notes


# ----------------------------------------------------------------------------- measure

def gemm_peak(dtype, size: int = 2048, repeats: int = 5) -> dict:
    """Best GFLOP/s of a large square GEMM with the BLAS libraries present (numpy's; torch's
    when installed): the machine's practical GEMM peak for this dtype."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    candidates = {"numpy": lambda: np.matmul(a, b)}
    try:
        import torch
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        candidates["torch"] = lambda: torch.matmul(ta, tb)
    except ImportError:
        pass
    best = {}
    for name, fn in candidates.items():
        fn()
        times = []
        for _ in range(repeats):
            time.sleep(COOLDOWN_S)
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        best[name] = 2.0 * size ** 3 / min(times) / 1e9
    library = max(best, key=best.get)
    return {"gflops": best[library], "library": library, "all": best, "size": size}


def environment() -> dict:
    import numba
    info = {"versions": _environment.versions(), "cpu": _environment.cpu_description(),
            "numba_threading": _environment.numba_threading(),
            "cpu_gemm": _environment.cpu_gemm(),
            "blas": _environment.blas_pools(),
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                    "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                    "NBLSTM_CPU_GEMM")}}
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    info["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    return info


def run_benchmark(shapes, dtypes=("float32", "float64"), passes=PASSES, repeats: int = 5,
                  include_reference: bool = True, threads: int | None = None,
                  peak_size: int = 2048) -> dict:
    """Time every peer on every (shape, dtype, pass); returns the results document."""
    threads = threads or os.cpu_count()
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    peers, notes = available_peers(include_reference)
    document = {"environment": environment(), "notes": notes, "repeats": repeats,
                "peaks": {dt: gemm_peak(np.dtype(dt), peak_size) for dt in dtypes}, "results": []}
    total = len(shapes) * len(dtypes) * len(passes) * len(peers) * (repeats + 1)
    with progress_bar(total, "nblstm bench", unit="run") as bar:
        for T, B, X, H in shapes:
            for dt in dtypes:
                case = Case(T, B, X, H, np.dtype(dt)).build()
                for pass_name in passes:
                    runs = {}
                    for name, factory in peers.items():
                        runs[name] = factory(case, pass_name)
                        runs[name]()  # warm-up: compilation, allocator, caches
                        bar.update()
                    times = time_interleaved(runs, repeats, after_each=bar.update)
                    document["results"].append(_summarise(case, pass_name, times,
                                                          document["peaks"][dt]["gflops"]))
    return document


def time_interleaved(runs: dict[str, Callable], repeats: int,
                     after_each: Callable = lambda: None) -> dict[str, list[float]]:
    """Seconds of each run, ``repeats`` rounds, every run once per round (so drifting clocks
    and neighbours hit all peers alike), with a cool-down before each timed call."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            time.sleep(COOLDOWN_S)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            after_each()
    return times


def _summarise(case: Case, pass_name: str, times: dict, peak_gflops: float) -> dict:
    median = {name: statistics.median(values) for name, values in times.items()}
    flops = gemm_flops(case.T, case.B, case.X, case.H, pass_name)
    row = {"shape": [case.T, case.B, case.X, case.H], "dtype": case.dtype.name,
           "pass": pass_name, "median_s": median, "all_s": times,
           "gemm_gflop": flops / 1e9, "nblstm_gflops": flops / median["nblstm"] / 1e9}
    row["nblstm_percent_of_peak"] = 100 * row["nblstm_gflops"] / peak_gflops
    row["gemm_floor_percent_of_peak"] = 100 * flops / median["gemm"] / 1e9 / peak_gflops
    row["nblstm_over_gemm_floor"] = median["nblstm"] / median["gemm"]
    if "torch" in median:
        row["torch_over_nblstm"] = median["torch"] / median["nblstm"]
    if "reference" in median:
        row["reference_over_seed"] = median["reference"] / median["seed"]
    if "nblstm-cuda" in median and "torch-cuda" in median:
        row["torch_cuda_over_nblstm_cuda"] = median["torch-cuda"] / median["nblstm-cuda"]
    return row


# ------------------------------------------------------------------------------ report

def format_table(document: dict) -> str:
    lines = []
    env = document["environment"]
    cpu = env["cpu"]
    blas = "; ".join(_environment.describe_blas_pool(p) for p in env["blas"])
    lines.append(f"machine: {cpu['model']}, {cpu['logical_cpus']} logical CPUs, "
                 f"{' '.join(cpu['simd'])}; numba threads {env['numba_threads']}, "
                 f"torch threads {env.get('torch_threads', '-')}")
    if "cpu_gemm" in env:
        lines.append(f"CPU GEMM: {env['cpu_gemm']}")
    lines.append(f"BLAS: {blas}")
    set_vars = {k: v for k, v in env["env"].items() if v and k.startswith("OPENBLAS")}
    if set_vars:
        lines.append(f"WARNING: {set_vars} set: OpenBLAS runs a slower kernel; unset both "
                     "for benchmark runs")
    for dt, peak in document["peaks"].items():
        lines.append(f"{dt} GEMM peak: {peak['gflops']:.0f} GFLOP/s ({peak['library']}, "
                     f"{peak['size']}^3)")
    for note in document["notes"]:
        lines.append(f"note: {note}")
    header = (f"{'shape (T,B,X,H)':<20} {'dtype':<8} {'pass':<10} {'nblstm ms':>10} "
              f"{'torch ms':>9} {'torch/nb':>8} {'seed ms':>9} {'ref ms':>9} {'ref/seed':>8} "
              f"{'gemm ms':>9} {'nb/gemm':>7} {'GFLOP/s':>8} {'%peak':>6}")
    lines += [header, "-" * len(header)]
    for row in document["results"]:
        m = row["median_s"]
        cell = lambda name: f"{m[name] * 1e3:.2f}" if name in m else "-"
        ratio = lambda key: f"{row[key]:.2f}x" if key in row else "-"
        lines.append(
            f"{'(' + ','.join(map(str, row['shape'])) + ')':<20} {row['dtype']:<8} "
            f"{row['pass']:<10} {cell('nblstm'):>10} {cell('torch'):>9} "
            f"{ratio('torch_over_nblstm'):>8} {cell('seed'):>9} {cell('reference'):>9} "
            f"{ratio('reference_over_seed'):>8} {cell('gemm'):>9} "
            f"{row['nblstm_over_gemm_floor']:>6.2f}x {row['nblstm_gflops']:>8.1f} "
            f"{row['nblstm_percent_of_peak']:>5.1f}%")
        if "nblstm-cuda" in m:
            lines.append(f"{'':<20} {'':<8} {'GPU':<10} {cell('nblstm-cuda'):>10} "
                         f"{cell('torch-cuda'):>9} {ratio('torch_cuda_over_nblstm_cuda'):>8}")
    return "\n".join(lines)


def plot(document: dict, path: str) -> None:
    """Bar chart of the speed ratios (higher is better for nblstm), log scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = document["results"]
    labels = ["x".join(map(str, r["shape"])) + f" f{r['dtype'][5:]} {r['pass'][:5]}" for r in rows]
    series = [("torch_over_nblstm", "torch / nblstm"), ("reference_over_seed", "reference / seed API"),
              ("nblstm_over_gemm_floor", "nblstm / GEMM floor (lower is better)")]
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(rows) + 3), 5))
    width = 0.8 / len(series)
    for k, (key, name) in enumerate(series):
        values = [r.get(key, np.nan) for r in rows]
        ax.bar(np.arange(len(rows)) + (k - 1) * width, values, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(rows)))
    ax.set_xticklabels(labels, fontsize=7, rotation=60, ha="right")
    ax.set_ylabel("time ratio")
    cpu = document["environment"]["cpu"]
    ax.set_title(f"nblstm benchmark: {cpu['model']}, {cpu['logical_cpus']} CPUs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as file:
        fig.savefig(file, dpi=110, format=os.path.splitext(os.fspath(path))[1][1:] or "png")
    plt.close(fig)


def save_json(document: dict, path: str) -> None:
    with atomic_open(path, "w") as f:
        json.dump(document, f, indent=1, default=float)
