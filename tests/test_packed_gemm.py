"""The packed-weight GEMM micro-kernel and the LSTM loops built on it (kernels/cpu/packed_gemm.py,
kernels/cpu/packed_lstm.py, kernels/cpu/plan.py), against plain NumPy.

Every tile runs on every machine (LLVM lowers vectors wider than the CPU's into several
registers), so each variant is checked here whatever CI runs on. Shapes are picked to hit
the edges: rows not a multiple of the tile's MR, columns and hidden units not a multiple
of the panel width, H=1, B=1, T=1, and K larger than the K-block (``config.KC``).
"""
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from _lstm_oracle import numpy_backward, numpy_forward, random_problem, tolerance as _tolerance
from nblstm.kernels import cpu
from nblstm.kernels.config import JIT_OPTIONS, TILES as TILE_SHAPES
from nblstm.kernels.cpu import loops, packed_gemm, packed_lstm
from nblstm.kernels.cpu import plan as gemm_plan

TILES = list(TILE_SHAPES)
DTYPES = [np.float32, np.float64]
# (T, B, X, H): edges of every kind; H=70 makes the backward's K = 4H exceed KC = 256,
# H=260 the forward's K = H.
SEQUENCE_SHAPES = [(1, 1, 1, 1), (3, 5, 7, 9), (4, 1, 33, 17), (2, 9, 70, 40), (3, 6, 5, 70),
                   (2, 3, 4, 260)]


def run_forward(x, h0, c0, W_x, W_h, b):
    T, B, _ = x.shape
    H = h0.shape[1]
    out = [np.empty((T, B, H), x.dtype), np.empty((T, B, H), x.dtype),
           np.empty((T, B, 4 * H), x.dtype)]
    cpu.lstm_sequence_forward(x, h0, c0, W_x, W_h, b, *out)
    return out


# ------------------------------------------------------------------------ micro-kernel

@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (7, 33, 70), (5, 300, 64), (9, 5, 193),
                                   (4, 600, 16)])
@pytest.mark.parametrize("transposed_a", [False, True])
def test_panel_gemm_matches_numpy(tile, dtype, M, K, N, transposed_a):
    """``gemm_serial`` (every panel, K-blocked, edge panels) equals NumPy's product, with A
    read row-major or through transposed strides."""
    rng = np.random.default_rng(M * K + N)
    A = rng.standard_normal((M, K)).astype(dtype)
    W = rng.standard_normal((K, N)).astype(dtype)
    plan = gemm_plan.Plan(tile, packed_gemm.TILE_IDS[tile], TILE_SHAPES[tile][0],
                          packed_gemm.vector_width(tile, np.dtype(dtype).itemsize), False, 1)
    packed = np.empty((-(-N // plan.NR), K, plan.NR), dtype)
    packed_gemm.pack_panels(W, False, 0, packed)
    C = np.full((M, N), np.nan, dtype)
    edge = np.empty((1, plan.MR, plan.NR), dtype)
    if transposed_a:
        A_T = np.ascontiguousarray(A.T)
        packed_lstm.gemm_serial(plan.tile_id, plan.MR, A_T, 1, M, M, K, packed, C, 1, edge)
    else:
        packed_lstm.gemm_serial(plan.tile_id, plan.MR, A, K, 1, M, K, packed, C, 1, edge)
    expected = A.astype(np.float64) @ W.astype(np.float64)
    np.testing.assert_allclose(C, expected, rtol=0, atol=_tolerance(dtype) * np.sqrt(K) * 10)


@pytest.mark.parametrize("U,H", [(16, 40), (8, 8), (4, 1)])
def test_gate_panels_interleave_the_four_gates_of_U_units(U, H):
    K = 3
    W = np.arange(K * 4 * H, dtype=np.float64).reshape(K, 4 * H)
    packed = np.full((-(-H // U), K, 4 * U), np.nan)
    packed_gemm.pack_gate_panels(W, U, packed)
    for p in range(packed.shape[0]):
        for v in range(4):
            for u in range(U):
                j = p * U + u
                expected = W[:, v * H + j] if j < H else np.zeros(K)
                np.testing.assert_array_equal(packed[p, :, v * U + u], expected)


@pytest.mark.parametrize("transpose", [False, True])
def test_plain_panels_zero_pad_the_last_panel(transpose):
    W = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    M = W.T if transpose else W
    packed = np.full((2, M.shape[0], 4), np.nan, np.float32)
    packed_gemm.pack_panels(W, transpose, 0, packed)
    np.testing.assert_array_equal(packed[0], M[:, :4])
    np.testing.assert_array_equal(packed[1, :, :M.shape[1] - 4], M[:, 4:])
    assert not packed[1, :, M.shape[1] - 4:].any()


# ---------------------------------------------------------------------- LSTM sequences

@pytest.mark.parametrize("shape", SEQUENCE_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sequence_forward_and_backward_match_numpy(cpu_gemm, dtype, shape):
    T, B, X, H = shape
    x, h0, c0, W_x, W_h, b = random_problem(T, B, X, H, dtype, seed=sum(shape))
    h_all, c_all, gates_all = run_forward(x, h0, c0, W_x, W_h, b)
    expected = numpy_forward(*(a.astype(np.float64) for a in (x, h0, c0, W_x, W_h, b)))
    tol = _tolerance(dtype)
    for got, ref, name in zip((h_all, c_all, gates_all), expected, ("h", "c", "gates")):
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol * 4, err_msg=name)

    rng = np.random.default_rng(1)
    dh_all, dh_n, dc_n = (rng.standard_normal(s).astype(dtype)
                          for s in ((T, B, H), (B, H), (B, H)))
    grads = [np.empty_like(a) for a in (x, h0, c0, W_x, W_h, b)]
    cpu.lstm_sequence_backward(x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all, dh_n, dc_n,
                               np.full(B, T, np.int64), *grads)
    ref_grads = numpy_backward(x, h0, c0, W_x.astype(np.float64), W_h.astype(np.float64), h_all,
                               c_all, gates_all, dh_all, dh_n, dc_n, np.full(B, T))
    for got, ref, name in zip(grads, ref_grads, ("dx", "dh0", "dc0", "dW_x", "dW_h", "db")):
        scale = 1 + np.abs(ref).max()
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol * 20 * scale, err_msg=name)


@pytest.mark.parametrize("variant", ["avx512-serial", "avx2-parallel", "sse-serial"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_with_sequence_lengths(variant, dtype):
    """Rows shorter than T: padding steps get no gradient, the final state's gradients enter
    at the row's last step, and a row of length 0 passes them straight to dh0/dc0."""
    T, B, X, H = 5, 6, 4, 19
    lengths = np.array([5, 1, 3, 0, 4, 2], dtype=np.int64)
    x, h0, c0, W_x, W_h, b = random_problem(T, B, X, H, dtype, seed=7)
    h_all, c_all, gates_all = (a.astype(dtype) for a in
                               numpy_forward(x, h0, c0, W_x, W_h, b))
    rng = np.random.default_rng(2)
    dh_all, dh_n, dc_n = (rng.standard_normal(s).astype(dtype)
                          for s in ((T, B, H), (B, H), (B, H)))
    grads = [np.full_like(a, np.nan) for a in (x, h0, c0, W_x, W_h, b)]
    plan = _plan(variant, dtype)
    packed_lstm.sequence_backward(plan, x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all,
                                  dh_n, dc_n, lengths, *grads)
    ref_grads = numpy_backward(x, h0, c0, W_x.astype(np.float64), W_h.astype(np.float64), h_all,
                               c_all, gates_all, dh_all, dh_n, dc_n, lengths)
    for got, ref, name in zip(grads, ref_grads, ("dx", "dh0", "dc0", "dW_x", "dW_h", "db")):
        scale = 1 + np.abs(ref).max()
        np.testing.assert_allclose(got, ref, rtol=0, atol=_tolerance(dtype) * 20 * scale,
                                   err_msg=name)
    assert not grads[0][:, 3].any() and not grads[0][1:, 1].any()  # padding: no dx


def _plan(variant, dtype):
    tile, _, mode = variant.partition("-")
    MR, vector_bytes = TILE_SHAPES[tile]
    parallel = mode == "parallel"
    return gemm_plan.Plan(tile, packed_gemm.TILE_IDS[tile], MR,
                          vector_bytes // np.dtype(dtype).itemsize, parallel, 2 if parallel else 1)


def test_in_place_weight_updates_are_seen_by_the_next_call(cpu_gemm):
    """Packed copies of the weights are never stale: an optimizer-style in-place update
    between two calls changes the second call's result to exactly a fresh call's."""
    x, h0, c0, W_x, W_h, b = random_problem(4, 3, 5, 18, np.float64, seed=3)
    first = run_forward(x, h0, c0, W_x, W_h, b)
    W_h -= 0.1 * np.sign(W_h)
    W_x *= 0.5
    b += 1
    second = run_forward(x, h0, c0, W_x, W_h, b)
    fresh = run_forward(x, h0, c0, W_x.copy(), W_h.copy(), b.copy())
    assert not np.allclose(first[0], second[0])
    for got, ref in zip(second, fresh):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("variant", ["avx512-parallel", "avx2-serial", "auto"])
def test_two_threads_calling_at_once_get_their_own_results(variant, monkeypatch):
    """Work buffers are per call: two Python threads running different problems at the
    same time (the kernels release the GIL) each get exactly the single-threaded result."""
    monkeypatch.setenv("NBLSTM_CPU_GEMM", variant)
    problems = [random_problem(6, 9, 20, 40 + 8 * k, np.float32, seed=k) for k in range(2)]
    expected = [run_forward(*p) for p in problems]
    start = threading.Barrier(2)
    failures = []

    def worker(k):
        start.wait()
        for _ in range(15):
            got = run_forward(*problems[k])
            if not all(np.array_equal(g, e) for g, e in zip(got, expected[k])):
                failures.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


# --------------------------------------------------------------------------- the switch

def test_switch_values(monkeypatch):
    monkeypatch.setenv("NBLSTM_CPU_GEMM", "blas")
    assert gemm_plan.plan(np.float32, 10 ** 9) is None
    for tile in TILES:
        monkeypatch.setenv("NBLSTM_CPU_GEMM", f"{tile}-serial")
        plan = gemm_plan.plan(np.float64, 10 ** 9)
        assert (plan.tile, plan.parallel, plan.workers) == (tile, False, 1)
        assert plan.U * 8 == TILE_SHAPES[tile][1]
        monkeypatch.setenv("NBLSTM_CPU_GEMM", f"{tile}-parallel")
        assert gemm_plan.plan(np.float32, 1).parallel
    monkeypatch.setenv("NBLSTM_CPU_GEMM", "auto")
    assert gemm_plan.plan(np.float32, 10 ** 9).tile == gemm_plan.tile_for_this_cpu()
    assert gemm_plan.plan(np.float32, 1) is None  # tiny steps: BLAS per step is faster
    assert gemm_plan.plan(np.float32, 10 ** 9, backward=True) is None  # measured faster
    monkeypatch.setenv("NBLSTM_CPU_GEMM", "avx2")
    assert gemm_plan.plan(np.float32, 10 ** 9, backward=True).tile == "avx2"  # forced: packed
    monkeypatch.setenv("NBLSTM_CPU_GEMM", "avx1024")
    with pytest.raises(ValueError, match="NBLSTM_CPU_GEMM"):
        gemm_plan.plan(np.float32, 1)
    assert "NBLSTM_CPU_GEMM" in gemm_plan.describe()


def test_workqueue_threading_layer_runs_the_serial_driver_and_says_so():
    """numba's workqueue layer costs ~100 us per parallel region: the plan falls back to
    the serial driver (results unchanged) and ``describe`` (``nblstm info``) says why."""
    code = ("import numpy as np, os; from nblstm.kernels.cpu import plan as gemm_plan; "
            "p = gemm_plan.plan(np.float32, 10 ** 9); print(p.parallel); "
            "print(gemm_plan.describe())")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_ENABLE_CUDASIM", "NBLSTM_CPU_GEMM")}
    env["NUMBA_THREADING_LAYER"] = "workqueue"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    parallel, description = result.stdout.strip().splitlines()
    assert parallel == "False"
    assert "serial" in description and "workqueue" in description


# ---------------------------------------------------------------------------- codegen

def _fresh_llvm_ir(dispatcher, *args) -> str:
    """LLVM IR of a kernel compiled afresh (numba cannot show cached code)."""
    from numba import njit
    fresh = njit(**{**JIT_OPTIONS, "cache": False})(dispatcher.py_func)
    fresh(*args)
    return "\n".join(fresh.inspect_llvm(sig) for sig in fresh.signatures)


def test_float32_micro_kernel_uses_16_wide_float32_fmas_and_no_double_math():
    dtype = np.float32
    A = np.ones((5, 8), dtype)
    packed = np.ones((1, 8, 64), dtype)
    C = np.empty((5, 64), dtype)
    llvm_ir = _fresh_llvm_ir(packed_gemm.tile_product, 0, A, 0, 8, 1, 4, packed, 0, 8, C, 0, 64,
                             16, False)
    assert "llvm.fmuladd.v16f32" in llvm_ir
    assert not any(op in llvm_ir for op in (" fadd double", " fmul double", "fpext float",
                                            "fmuladd.v8f64"))


def test_float32_gate_loops_do_not_promote_and_are_vectorized():
    B, H = 2, 32
    z = np.zeros((B, 4 * H), np.float32)
    state = np.zeros((B, H), np.float32)
    llvm_ir = _fresh_llvm_ir(packed_lstm._gates_forward_units, z, np.zeros(4 * H, np.float32),
                             state, state.copy(), state.copy(), 0, H)
    assert "<16 x float>" in llvm_ir or "<8 x float>" in llvm_ir
    lengths = np.full(B, 3, np.int64)
    backward_ir = _fresh_llvm_ir(loops.gates_backward_units, 1, lengths, z, state, state,
                                 state, state, state, state.copy(), z.copy(), state.copy(), 0, H,
                                 None)
    # both CPU paths run this loop: it must vectorize too
    assert "<16 x float>" in backward_ir or "<8 x float>" in backward_ir
    peephole_ir = _fresh_llvm_ir(loops.gates_backward_units, 1, lengths, z, state, state,
                                 state, state, state, state.copy(), z.copy(), state.copy(), 0, H,
                                 np.ones((3, H), np.float32))
    assert "<16 x float>" in peephole_ir or "<8 x float>" in peephole_ir  # the peephole cell's
    llvm_ir += backward_ir + peephole_ir
    double_ops = [line for line in llvm_ir.splitlines()
                  if any(op in line for op in (" fadd double", " fmul double", " fdiv double",
                                               " fsub double", "fpext float"))]
    assert not double_ops, "\n".join(double_ops[:5])


VARIANT_PROBE = """
import json, sys
sys.path.insert(0, {tests!r})
import numba
from numba.np.ufunc import parallel
import _variant_probe as probe
report = {{}}
for name in sys.argv[1:]:
    function = getattr(probe, name)
    report[name] = probe.threads_used(function)
    report[name + "_cache_hits"] = sum(function.stats.cache_hits.values())
    report["pool_started_after_" + name] = bool(parallel._is_initialized)
print(json.dumps(report))
"""


def test_serial_variants_stay_serial_with_a_warm_cache(tmp_path):
    """numba's cache key ignores ``parallel=``: a serial twin compiled from the same source as
    a parallel one must still run on one thread (and start no thread pool) in a fresh
    process that loads both from the cache."""
    import json
    code = VARIANT_PROBE.format(tests=str(Path(__file__).parent))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(NUMBA_CACHE_DIR=str(tmp_path), NUMBA_NUM_THREADS="2")

    def run(*names):
        result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True,
                                text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    cold = run("record_parallel", "record_serial")  # compiles and stores both
    assert cold["record_parallel"] == [0, 1] and cold["record_serial"] == [0]
    warm = run("record_serial", "record_parallel")
    assert warm["record_serial_cache_hits"] >= 1 and warm["record_parallel_cache_hits"] >= 1
    assert warm["record_serial"] == [0] and not warm["pool_started_after_record_serial"]
    assert warm["record_parallel"] == [0, 1]


def test_the_packed_drivers_are_serial_and_parallel_twins():
    for name in ("gemm", "forward_loop", "backward_loop"):
        serial = getattr(packed_lstm, f"{name}_serial")
        parallel = getattr(packed_lstm, f"{name}_parallel")
        assert serial.py_func.__code__ is parallel.py_func.__code__  # one source
        assert serial.py_func.__qualname__ == f"{name}_serial"  # distinct cache entries
        assert parallel.py_func.__qualname__ == f"{name}_parallel"
        assert not serial.targetoptions.get("parallel") and parallel.targetoptions["parallel"]
