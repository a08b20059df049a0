"""The benchmark harness behind ``nblstm bench`` and ``benchmarks/run_grid.py``.

What users call, timed as loops call it (``nblstm._timing``): every peer runs in this one
process on the same shapes, dtype and weights, samples of back-to-back calls interleaved
peer by peer, the median of the samples reported; a cold single-call latency is a separate
column. Peers:

- ``nblstm``: the layer, ``nblstm.LSTM`` on NumPy arrays (CPU); ``nblstm-cuda`` on CuPy
  arrays when a real GPU and CuPy are there.
- ``torch``: ``torch.nn.LSTM`` with the same weights and thread count (CPU; ``torch-cuda``
  = cuDNN).
- ``onnxruntime``: ONNX Runtime (CPU execution provider, its default threads) running the
  graph ``LSTM.to_onnx`` writes for the same weights; inference in float32 only (ONNX
  Runtime's LSTM has no backward and refuses float64).
- ``seed`` and ``reference``: nblstm's seed-compatible API against the plain NumPy
  reference (both in the course's layout, with a small softmax output layer).
- ``gemm``: only the GEMMs of nblstm's algorithm, same shapes, same BLAS: the floor.

Passes: ``inference`` (``lstm(x)`` / ``torch.inference_mode()``; the seed API has no
inference mode, so ``seed``/``reference`` run their forward with caches), ``training``
(forward plus backward of ``sum(out * d_out)``) and ``step`` (a training step: forward,
backward and an Adam step, ``nblstm.training.Adam`` against ``torch.optim.Adam``; the seed
API has no optimizer and is not timed there).

The GEMM peak that ``%peak`` refers to is measured in the same process (the best of several
large GEMMs, before and after the timings); a row above 100% means the peak was measured on
a busy machine, and the table says so instead of printing it as a result.
"""
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import _environment, _timing, reference, seed
from ._dispatch import cuda_unavailable_reason, device_array_kind
from ._files import atomic_open
from ._progress import progress_bar
from .layers import LSTM
from .training import Adam

#: (T, B, X, H) of the grid, by size class.
GRID = {
    "tiny": [(50, 1, 32, 32), (50, 16, 64, 64)],
    "mid": [(100, 64, 256, 256)],
    "large": [(100, 128, 512, 512), (20, 256, 1024, 1024)],
}
QUICK_SHAPES = [(50, 1, 32, 32), (50, 16, 64, 64), (100, 64, 256, 256)]
#: Many independent sequences (``--grid batch``, not part of ``full``): where ``auto`` runs
#: the batch-blocked CPU loops, T=50, X=64, B in {256, 1024, 4096}, H in {64, 128, 256}.
BATCH_SHAPES = [(50, B, 64, H) for B in (256, 1024, 4096) for H in (64, 128, 256)]
PASSES = ("inference", "training", "step")
OUTPUT_CLASSES = 8  # n_y of the seed API's softmax layer
#: Steady-state sampling: each sample lasts at least this long (auto-ranged calls).
MIN_SAMPLE_S = 0.2
#: Cold latency: one call after this much idleness, this many times.
COLD_IDLE_S = 0.5
COLD_REPEATS = 3
#: The learning rate of the ``step`` pass's Adam (both peers; small, so the weights stay
#: in a normal range over thousands of steps).
STEP_LR = 1e-4


def gemm_flops(T: int, B: int, X: int, H: int, pass_name: str) -> float:
    """Floating-point operations of the algorithm's GEMMs (the gate math is O(T*B*H)).

    Forward: ``2*T*B*(X + H)*4H``. Backward: three more GEMMs of the same size each
    (``dh_{t-1}``, ``dx`` with ``dW_x``, ``dW_h``), so training is 3x the forward; an
    optimizer step adds O(parameters), no GEMM.
    """
    forward = 2.0 * T * B * (X + H) * 4 * H
    return forward if pass_name == "inference" else 3 * forward


@dataclass
class Case:
    """One shape and dtype: the model every peer runs (its weights) and the inputs, in
    both layouts."""
    T: int
    B: int
    X: int
    H: int
    dtype: np.dtype
    arrays: dict = field(default_factory=dict)
    model: LSTM | None = None

    @property
    def label(self) -> str:
        return f"({self.T},{self.B},{self.X},{self.H})"

    def build(self, seed_value: int = 0) -> "Case":
        rng = np.random.default_rng(seed_value)
        T, B, X, H, dt = self.T, self.B, self.X, self.H, self.dtype
        self.model = LSTM(X, H, dtype=dt, seed=seed_value)
        p = self.model.parameters()
        a = self.arrays
        a["x"] = rng.standard_normal((T, B, X)).astype(dt)
        a["W_x"] = np.ascontiguousarray(p["weight_ih_l0"].T)
        a["W_h"] = np.ascontiguousarray(p["weight_hh_l0"].T)
        a["b"] = p["bias_ih_l0"] + p["bias_hh_l0"]
        a["h0"], a["c0"] = np.zeros((B, H), dt), np.zeros((B, H), dt)
        a["d_out"] = rng.standard_normal((T, B, H)).astype(dt)
        params = {}
        for k, gate in enumerate("ifco"):  # the seed's letters of torch's (i, f, g, o)
            rows = slice(k * H, (k + 1) * H)
            params["W" + gate] = np.ascontiguousarray(np.concatenate(
                [p["weight_hh_l0"][rows], p["weight_ih_l0"][rows]], axis=1))
            params["b" + gate] = (p["bias_ih_l0"][rows] + p["bias_hh_l0"][rows])[:, None]
        params["Wy"] = (rng.standard_normal((OUTPUT_CLASSES, H)) / np.sqrt(H)).astype(dt)
        params["by"] = np.zeros((OUTPUT_CLASSES, 1), dt)
        a["seed_parameters"] = params
        a["seed_x"] = np.ascontiguousarray(a["x"].transpose(2, 1, 0))
        a["seed_a0"] = np.zeros((H, B), dt)
        a["seed_da"] = np.ascontiguousarray(a["d_out"].transpose(2, 1, 0))
        return self


# ------------------------------------------------------------------------------- peers

def _layer_runner(case: Case, pass_name: str, device: str = "cpu",
                  sync: Callable = lambda: None) -> Callable:
    """``nblstm.LSTM`` as a user calls it (a copy of the case's model, so the step pass's
    updates change no other peer's weights)."""
    lstm = LSTM._from_parameters(case.model.config(),
                                 {k: v.copy() for k, v in case.model.parameters().items()})
    x, d_out = case.arrays["x"], case.arrays["d_out"]
    if device == "cuda":
        import cupy
        lstm.to("cuda")
        x, d_out = cupy.asarray(x), cupy.asarray(d_out)
    if pass_name == "inference":
        def run():
            lstm(x)
            sync()
        return run
    optimizer = Adam(lstm.parameters(), lr=STEP_LR) if pass_name == "step" else None

    def run():
        _, _, cache = lstm.forward(x, train=True)
        _, _, grads = lstm.backward(cache, d_out)
        if optimizer is not None:
            optimizer.step(grads)
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
        if pass_name != "inference":
            gemm_floor.backward_gemms(a["x"], W_x_T, W_h_T, h_all, z_all, dh, dx, dW_x, dW_h)
    return run


def _torch_runner(torch, case: Case, pass_name: str, device: str = "cpu") -> Callable:
    from ._torch_interop import build_module
    module = build_module(case.model.config(), case.model.parameters(), device == "cuda")
    to = lambda v: torch.from_numpy(v).to(device)
    x, d_out = to(case.arrays["x"]), to(case.arrays["d_out"])
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if pass_name == "inference":
        def run():
            with torch.inference_mode():
                module(x)
            sync()
        return run
    optimizer = torch.optim.Adam(module.parameters(), lr=STEP_LR) if pass_name == "step" else None

    def run():
        module.zero_grad(set_to_none=True)
        out, _ = module(x)
        out.backward(d_out)
        if optimizer is not None:
            optimizer.step()
        sync()
    return run


def _onnxruntime_runner(ort, case: Case, pass_name: str) -> Callable | None:
    """ONNX Runtime (CPU) running ``LSTM.to_onnx``'s graph of the case's model: inference
    only, float32 only (its LSTM kernel has no backward and refuses float64)."""
    if pass_name != "inference" or case.dtype != np.float32:
        return None
    from ._onnx_export import DEFAULT_OPSET, build_model
    model = build_model(case.model.config(), case.model.parameters(), DEFAULT_OPSET)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # to_onnx's optional inputs draw a warning per session
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feeds = {"x": case.arrays["x"]}

    def run():
        session.run(None, feeds)
    return run


def available_peers(include_reference: bool = True) -> tuple[dict, list[str]]:
    """Peer name -> factory(case, pass) -> run(), or None where the peer has no such pass;
    plus notes on peers that are missing."""
    peers = {"nblstm": _layer_runner}
    notes = []
    if cuda_unavailable_reason() is None and device_array_kind() == "cupy":
        import cupy
        sync = cupy.cuda.get_current_stream().synchronize
        peers["nblstm-cuda"] = lambda c, p: _layer_runner(c, p, "cuda", sync)
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
    try:
        import importlib
        importlib.import_module("onnx")  # to_onnx builds the graph
        import onnxruntime
    except ImportError:
        notes.append("onnx/onnxruntime are not installed: no ONNX Runtime column "
                     "(pip install onnx onnxruntime to compare)")
    else:
        peers["onnxruntime"] = lambda c, p: _onnxruntime_runner(onnxruntime, c, p)
    peers["seed"] = lambda c, p: None if p == "step" else _seed_api_runner(seed, c, p)
    if include_reference:
        peers["reference"] = lambda c, p: (None if p == "step"
                                           else _seed_api_runner(reference, c, p))
    peers["gemm"] = _gemm_floor_runner
    return peers, notes


# ----------------------------------------------------------------------------- measure

def gemm_peak(dtype, size: int = 2048, repeats: int = 7) -> dict:
    """Best GFLOP/s of a large square GEMM with the BLAS libraries present (numpy's; torch's
    when installed), the best of ``repeats`` back-to-back runs each: the machine's practical
    GEMM peak for this dtype, measured now, in this process."""
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
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        best[name] = 2.0 * size ** 3 / min(times) / 1e9
    library = max(best, key=best.get)
    return {"gflops": best[library], "library": library, "all": best, "size": size}


def _best_peak(first: dict, second: dict) -> dict:
    best = dict(first if first["gflops"] >= second["gflops"] else second)
    best["measurements"] = [first["gflops"], second["gflops"]]
    return best


def environment() -> dict:
    import numba
    info = {"versions": _environment.versions(), "cpu": _environment.cpu_description(),
            "numba_threading": _environment.numba_threading(),
            "cpu_gemm": _environment.cpu_gemm(),
            "cuda_recurrence": _environment.cuda_recurrence(),
            "blas": _environment.blas_pools(),
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                    "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                    "NBLSTM_CPU_GEMM",
                                                    "NBLSTM_CUDA_RECURRENCE")}}
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    info["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    return info


def run_benchmark(shapes, dtypes=("float32", "float64"), passes=PASSES, repeats: int = 5,
                  include_reference: bool = True, threads: int | None = None,
                  peak_size: int = 2048, min_sample_s: float = MIN_SAMPLE_S,
                  cold_repeats: int = COLD_REPEATS) -> dict:
    """Time every peer on every (shape, dtype, pass); returns the results document.
    ``repeats``: steady-state samples per peer (median); ``cold_repeats``: cold calls (0:
    no cold column)."""
    threads = threads or os.cpu_count()
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    peers, notes = available_peers(include_reference)
    peaks_before = {dt: gemm_peak(np.dtype(dt), peak_size) for dt in dtypes}
    document = {"environment": environment(), "notes": notes, "repeats": repeats,
                "min_sample_s": min_sample_s, "cold": {"repeats": cold_repeats,
                                                       "idle_s": COLD_IDLE_S},
                "results": []}
    total = len(shapes) * len(dtypes) * len(passes) * len(peers) * (repeats + 1)
    raw = []
    with progress_bar(total, "nblstm bench", unit="sample") as bar:
        for T, B, X, H in shapes:
            for dt in dtypes:
                case = Case(T, B, X, H, np.dtype(dt)).build()
                for pass_name in passes:
                    runs = {}
                    for name, factory in peers.items():
                        run = factory(case, pass_name)
                        if run is None:
                            continue
                        run()  # warm-up: compilation, allocator, caches
                        runs[name] = run
                        bar.update()
                    times = _timing.time_steady(runs, repeats, min_sample_s,
                                                after_each=bar.update)
                    cold = (_timing.time_cold({k: runs[k] for k in runs if k != "gemm"},
                                              cold_repeats, COLD_IDLE_S)
                            if cold_repeats else {})
                    raw.append((case, pass_name, times, cold))
    peaks_after = {dt: gemm_peak(np.dtype(dt), peak_size) for dt in dtypes}
    document["peaks"] = {dt: _best_peak(peaks_before[dt], peaks_after[dt]) for dt in dtypes}
    for case, pass_name, times, cold in raw:
        document["results"].append(_summarise(case, pass_name, times, cold,
                                              document["peaks"][case.dtype.name]["gflops"]))
    if any(row["peak_suspect"] for row in document["results"]):
        document["notes"].append("a row exceeds 100% of the GEMM peak: the peak was measured "
                                 "while the machine was busy; rerun on an idle machine "
                                 "(marked '!' in %peak)")
    return document


def _summarise(case: Case, pass_name: str, times: dict, cold: dict,
               peak_gflops: float) -> dict:
    median = {name: _timing.median(values) for name, values in times.items()}
    flops = gemm_flops(case.T, case.B, case.X, case.H, pass_name)
    row = {"shape": [case.T, case.B, case.X, case.H], "dtype": case.dtype.name,
           "pass": pass_name, "median_s": median, "all_s": times,
           "cold_s": {name: _timing.median(values) for name, values in cold.items()},
           "gemm_gflop": flops / 1e9, "nblstm_gflops": flops / median["nblstm"] / 1e9}
    row["nblstm_percent_of_peak"] = 100 * row["nblstm_gflops"] / peak_gflops
    row["gemm_floor_percent_of_peak"] = 100 * flops / median["gemm"] / 1e9 / peak_gflops
    row["peak_suspect"] = max(row["nblstm_percent_of_peak"],
                              row["gemm_floor_percent_of_peak"]) > 100
    row["nblstm_over_gemm_floor"] = median["nblstm"] / median["gemm"]
    if "torch" in median:
        row["torch_over_nblstm"] = median["torch"] / median["nblstm"]
        row["torch_percent_of_peak"] = 100 * flops / median["torch"] / 1e9 / peak_gflops
    if "onnxruntime" in median:
        row["onnxruntime_over_nblstm"] = median["onnxruntime"] / median["nblstm"]
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
    if "cuda_recurrence" in env:
        lines.append(f"CUDA recurrence: {env['cuda_recurrence']}")
    lines.append(f"BLAS: {blas}")
    set_vars = {k: v for k, v in env["env"].items() if v and k.startswith("OPENBLAS")}
    if set_vars:
        lines.append(f"WARNING: {set_vars} set: OpenBLAS runs a slower kernel; unset both "
                     "for benchmark runs")
    for dt, peak in document["peaks"].items():
        measured = ("" if "measurements" not in peak else
                    f", measured {' and '.join(f'{g:.0f}' for g in peak['measurements'])}")
        lines.append(f"{dt} GEMM peak: {peak['gflops']:.0f} GFLOP/s ({peak['library']}, "
                     f"{peak['size']}^3, best of runs before and after the timings"
                     f"{measured})")
    for note in document["notes"]:
        lines.append(f"note: {note}")
    lines.append(f"steady state: median of {document['repeats']} interleaved samples of "
                 f"back-to-back calls (>= {document.get('min_sample_s', MIN_SAMPLE_S)} s "
                 f"each); cold: one call after {COLD_IDLE_S} s idle (median)")
    header = (f"{'shape (T,B,X,H)':<20} {'dtype':<8} {'pass':<10} {'nblstm ms':>10} "
              f"{'torch ms':>9} {'torch/nb':>8} {'ort ms':>8} {'ort/nb':>7} {'cold nb':>8} "
              f"{'cold tc':>8} "
              f"{'seed ms':>9} {'ref ms':>9} {'ref/seed':>8} {'gemm ms':>9} {'nb/gemm':>7} "
              f"{'GFLOP/s':>8} {'%peak':>6} {'tc%pk':>6}")
    lines += [header, "-" * len(header)]
    for row in document["results"]:
        m, cold = row["median_s"], row.get("cold_s", {})
        cell = lambda name, d=m: f"{d[name] * 1e3:.2f}" if name in d else "-"
        ratio = lambda key: f"{row[key]:.2f}x" if key in row else "-"
        flag = "!" if row.get("peak_suspect") else ""
        torch_peak = (f"{row['torch_percent_of_peak']:.1f}{flag}"
                      if "torch_percent_of_peak" in row else "-")
        lines.append(
            f"{'(' + ','.join(map(str, row['shape'])) + ')':<20} {row['dtype']:<8} "
            f"{row['pass']:<10} {cell('nblstm'):>10} {cell('torch'):>9} "
            f"{ratio('torch_over_nblstm'):>8} {cell('onnxruntime'):>8} "
            f"{ratio('onnxruntime_over_nblstm'):>7} {cell('nblstm', cold):>8} "
            f"{cell('torch', cold):>8} {cell('seed'):>9} {cell('reference'):>9} "
            f"{ratio('reference_over_seed'):>8} {cell('gemm'):>9} "
            f"{row['nblstm_over_gemm_floor']:>6.2f}x {row['nblstm_gflops']:>8.1f} "
            f"{row['nblstm_percent_of_peak']:>5.1f}{flag or ' '}{torch_peak:>6}")
        if "nblstm-cuda" in m:
            lines.append(f"{'':<20} {'':<8} {'GPU':<10} {cell('nblstm-cuda'):>10} "
                         f"{cell('torch-cuda'):>9} {ratio('torch_cuda_over_nblstm_cuda'):>8} "
                         f"{cell('nblstm-cuda', cold):>8} {cell('torch-cuda', cold):>8}")
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
