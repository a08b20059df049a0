"""The batch-blocked CPU loops (``kernels/cpu/blocked_lstm.py``): each thread owns blocks of
batch rows for all T steps.

Checked against the float64 NumPy oracle: the training forward, the inference pass (final
states of a padded batch), BPTT with lengths (a row of length 0 too), for several tiles,
block sizes (one row, a partial last block, one block for the whole batch) and both
drivers; determinism (the serial driver running the same tasks gives the parallel
driver's bits); the plan's choice (auto from ``BLOCKED_MIN_BATCH`` rows, the forced
settings, the block size from the cache); and the layer on the blocked path against the
BLAS path. The whole parity suite also runs on it (``CPU_GEMM_VARIANTS``: avx512-blocked).
"""
import numpy as np
import pytest

import nblstm
from _lstm_oracle import numpy_backward, numpy_forward, random_problem, tolerance
from nblstm.kernels import cpu
from nblstm.kernels.config import BLOCKED_MIN_BATCH, TILES
from nblstm.kernels.cpu import blocked_lstm, packed_gemm
from nblstm.kernels.cpu import plan as gemm_plan

DTYPES = (np.float32, np.float64)


def _plan(tile, dtype, rows, parallel, workers=2):
    MR, vector_bytes = TILES[tile]
    return gemm_plan.Plan(tile, packed_gemm.TILE_IDS[tile], MR,
                          vector_bytes // np.dtype(dtype).itemsize, parallel, workers, True, rows)


def _run_all(plan, problem, lengths, seed=2):
    """Forward, inference and backward of ``problem`` on ``plan``: their outputs."""
    x, h0, c0, W_x, W_h, b = problem
    T, B, _ = x.shape
    H = h0.shape[1]
    dtype = x.dtype
    h_all, c_all, gates_all = (np.full((T, B, n), np.nan, dtype) for n in (H, H, 4 * H))
    blocked_lstm.sequence_forward(plan, x, h0, c0, W_x, W_h, b, h_all, c_all, gates_all)
    h_inf = np.full((T, B, H), np.nan, dtype)
    h_n, c_n = np.full((B, H), np.nan, dtype), np.full((B, H), np.nan, dtype)
    blocked_lstm.sequence_inference(plan, x, h0, c0, W_x, W_h, b, lengths, h_inf, h_n, c_n)
    rng = np.random.default_rng(seed)
    dh_all, dh_n, dc_n = (rng.standard_normal(s).astype(dtype)
                          for s in ((T, B, H), (B, H), (B, H)))
    grads = [np.full_like(a, np.nan) for a in (x, h0, c0, W_x, W_h, b)]
    blocked_lstm.sequence_backward(plan, x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all,
                                   dh_n, dc_n, lengths, *grads)
    return (h_all, c_all, gates_all), (h_inf, h_n, c_n), grads, (dh_all, dh_n, dc_n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tile,rows,parallel", [("sse", 1, True), ("sse", 3, False),
                                                ("avx2", 4, True), ("avx2", 64, True)])
@pytest.mark.parametrize("T,B,X,H", [(5, 7, 6, 19), (2, 5, 33, 40)])
def test_blocked_loops_match_the_oracle(dtype, tile, rows, parallel, T, B, X, H):
    """Every output of the three passes, padding rules included, against float64 NumPy."""
    problem = random_problem(T, B, X, H, dtype, seed=1)
    lengths = np.array(([T, 1, 3, 0, 4, 2, T] * B)[:B], dtype=np.int64).clip(0, T)
    (h_all, c_all, gates_all), (h_inf, h_n, c_n), grads, (dh_all, dh_n, dc_n) = _run_all(
        _plan(tile, dtype, rows, parallel, workers=1 if rows >= B else 2), problem, lengths)
    ref = numpy_forward(*problem)
    tol = tolerance(dtype) * 10
    for got, want in zip((h_all, c_all, gates_all), ref):
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * (1 + np.abs(want).max()))
    np.testing.assert_allclose(h_inf, ref[0], rtol=0, atol=tol)
    for row in range(B):
        if lengths[row] > 0:
            np.testing.assert_allclose(h_n[row], ref[0][lengths[row] - 1, row], rtol=0, atol=tol)
            np.testing.assert_allclose(c_n[row], ref[1][lengths[row] - 1, row], rtol=0,
                                       atol=tol * (1 + np.abs(ref[1]).max()))
    x, h0, c0, W_x, W_h, _ = problem
    # the oracle's backward from the kernel's own saved forward
    ref_grads = numpy_backward(x, h0, c0, W_x.astype(np.float64), W_h.astype(np.float64),
                               h_all, c_all, gates_all, dh_all, dh_n, dc_n, lengths)
    for got, want, name in zip(grads, ref_grads, ("dx", "dh0", "dc0", "dW_x", "dW_h", "db")):
        np.testing.assert_allclose(got, want, rtol=0,
                                   atol=tolerance(dtype) * 20 * (1 + np.abs(want).max()),
                                   err_msg=name)
    padded = np.arange(T)[:, None] >= lengths[None, :]
    assert not grads[0][padded].any()  # no gradient reaches padding steps


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_serial_driver_running_the_same_tasks_gives_the_same_bits(dtype):
    """Deterministic for a given task count and block size: the parallel driver's results
    are exactly the serial driver's on the same tasks (and the same on a second call)."""
    problem = random_problem(4, 11, 9, 21, dtype, seed=3)
    lengths = np.array([4, 2, 4, 1, 3, 4, 4, 2, 1, 4, 3], dtype=np.int64)
    parallel = _run_all(_plan("avx2", dtype, 2, True), problem, lengths)
    serial = _run_all(_plan("avx2", dtype, 2, False), problem, lengths)
    again = _run_all(_plan("avx2", dtype, 2, True), problem, lengths)
    for a, b, c in zip(sum(map(list, parallel[:3]), []), sum(map(list, serial[:3]), []),
                       sum(map(list, again[:3]), [])):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_the_kernels_never_modify_their_inputs():
    problem = random_problem(3, 6, 5, 10, np.float64, seed=4)
    before = [a.copy() for a in problem]
    lengths = np.array([3, 1, 2, 3, 3, 2], dtype=np.int64)
    _run_all(_plan("sse", np.float64, 2, True), problem, lengths)
    for a, b in zip(problem, before):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ the plan

def test_auto_runs_the_blocked_loops_from_the_crossover_on(monkeypatch):
    monkeypatch.setenv("NBLSTM_CPU_GEMM", "auto")
    monkeypatch.delenv("NBLSTM_CPU_BLOCK_ROWS", raising=False)
    big, small = BLOCKED_MIN_BATCH, BLOCKED_MIN_BATCH - 1
    for kwargs in (dict(), dict(training=True), dict(backward=True)):
        plan = gemm_plan.plan(np.float32, big * 64 * 256, batch=big, inputs=32, hidden=64,
                              **kwargs)
        assert plan is not None and plan.blocked, kwargs
        assert plan.tile == gemm_plan.tile_for_this_cpu()
        below = gemm_plan.plan(np.float32, small * 64 * 256, batch=small, inputs=32, hidden=64,
                               **kwargs)
        assert below is None or not below.blocked
    # callers that cannot run the blocked loops (no batch given) never get them
    assert gemm_plan.plan(np.float32, 10 ** 9) is None or not gemm_plan.plan(
        np.float32, 10 ** 9).blocked


@pytest.mark.parametrize("value,tile", [("blocked", None), ("sse-blocked", "sse")])
def test_forced_blocked_settings(value, tile, monkeypatch):
    monkeypatch.setenv("NBLSTM_CPU_GEMM", value)
    monkeypatch.delenv("NBLSTM_CPU_BLOCK_ROWS", raising=False)
    plan = gemm_plan.plan(np.float64, 1, batch=3, inputs=2, hidden=2)
    assert plan.blocked and plan.tile == (tile or gemm_plan.tile_for_this_cpu())
    assert "blocked" in gemm_plan.describe()
    monkeypatch.setenv("NBLSTM_CPU_BLOCK_ROWS", "5")
    assert gemm_plan.plan(np.float64, 1, batch=3, inputs=2, hidden=2).rows_per_block == 5
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("NBLSTM_CPU_BLOCK_ROWS", bad)
        with pytest.raises(ValueError, match="NBLSTM_CPU_BLOCK_ROWS"):
            gemm_plan.plan(np.float64, 1, batch=3, inputs=2, hidden=2)


def test_rows_per_block_fill_half_the_l2_cache(monkeypatch):
    monkeypatch.delenv("NBLSTM_CPU_BLOCK_ROWS", raising=False)
    l2 = gemm_plan.l2_cache_bytes()
    assert 64 << 10 <= l2 <= 64 << 20
    for dtype in DTYPES:
        for X, H in ((64, 64), (64, 128), (256, 256), (4, 4096)):
            for MR in (3, 4):
                rows = gemm_plan.rows_per_block(dtype, X, H, MR)
                assert 8 <= rows <= 256
                working_set = rows * (7 * H + X) * np.dtype(dtype).itemsize
                assert working_set <= l2 // 2 or rows == 8
                if 8 < rows < 256:
                    assert rows % MR == 0
                    assert (rows + MR) * (7 * H + X) * np.dtype(dtype).itemsize > l2 // 2


@pytest.mark.parametrize("tile", ["avx512", "avx2"])
def test_every_worker_gets_a_block_where_one_block_would_hold_the_batch(tile):
    """A large L2 (2 MiB: 256 rows) must not leave a thread idle at B = 256: blocks are at
    most a worker's share of the batch, rounded up to the tile's rows."""
    MR = TILES[tile][0]
    for B, workers in ((256, 2), (7, 2), (1000, 3), (5, 8)):
        tasks, rows = blocked_lstm._tasks(_plan(tile, np.float32, 256, True, workers), B)
        blocks = -(-B // rows)
        assert tasks == min(workers, blocks)
        assert rows <= max(MR, -(-B // workers) + MR - 1)
        assert blocks >= min(workers, -(-B // MR))
    assert blocked_lstm._tasks(_plan(tile, np.float32, 256, False, 1), 256) == (1, 256)
    assert blocked_lstm._tasks(_plan(tile, np.float32, 4, True, 2), 256)[1] == 4


def test_forcing_blocked_on_a_cell_it_does_not_implement_is_a_value_error(monkeypatch):
    monkeypatch.setenv("NBLSTM_CPU_GEMM", "blocked")
    lstm = nblstm.LSTM(3, 4, peephole=True)
    with pytest.raises(ValueError, match="NBLSTM_CPU_GEMM"):
        lstm(np.zeros((2, 2, 3), np.float32))


# ------------------------------------------------------------------------- the layer

@pytest.mark.parametrize("dtype", DTYPES)
def test_the_layer_on_the_blocked_path_matches_the_blas_path(dtype, monkeypatch):
    """``nblstm.LSTM`` at a batch where ``auto`` runs the blocked loops (2 layers,
    bidirectional, a padded batch): outputs, final states and every gradient equal the
    BLAS path's."""
    monkeypatch.delenv("NBLSTM_CPU_BLOCK_ROWS", raising=False)
    T, B, X, H = 3, BLOCKED_MIN_BATCH + 5, 4, 6
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, X)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=B)
    lstm = nblstm.LSTM(X, H, num_layers=2, bidirectional=True, dtype=dtype, seed=0)
    d_out = rng.standard_normal((T, B, 2 * H)).astype(dtype)
    results = {}
    for value in ("auto", "blas"):
        monkeypatch.setenv("NBLSTM_CPU_GEMM", value)
        inference = lstm(x, lengths=lengths)
        out, state, cache = lstm.forward(x, lengths=lengths, train=True)
        results[value] = (inference, out, state, lstm.backward(cache, d_out, state))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    (inf_a, out_a, state_a, grads_a), (inf_b, out_b, state_b, grads_b) = (results["auto"],
                                                                          results["blas"])
    for a, b in zip((inf_a[0], *inf_a[1], out_a, *state_a), (inf_b[0], *inf_b[1], out_b,
                                                              *state_b)):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)
    _assert_gradients_close(grads_a, grads_b, tol * 10)


def _assert_gradients_close(a, b, tol):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_gradients_close(a[key], b[key], tol)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _assert_gradients_close(u, v, tol)
    elif a is None:
        assert b is None
    else:
        scale = 1 + np.abs(np.asarray(b)).max()
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=tol * scale)


def test_the_facade_routes_inference_to_the_blocked_loops(monkeypatch):
    """``cpu.lstm_sequence_inference`` under ``blocked`` gives the chunked pass's results
    (final states of a padded batch too)."""
    problem = random_problem(6, 9, 5, 7, np.float64, seed=6)
    x, h0, c0, W_x, W_h, b = problem
    lengths = np.array([6, 1, 3, 6, 2, 5, 4, 6, 1], dtype=np.int64)
    out = {}
    for value in ("blocked", "blas"):
        monkeypatch.setenv("NBLSTM_CPU_GEMM", value)
        monkeypatch.setenv("NBLSTM_CPU_BLOCK_ROWS", "4")
        h_all, h_n, c_n = (np.empty((6, 9, 7)), np.empty((9, 7)), np.empty((9, 7)))
        cpu.lstm_sequence_inference(x, h0, c0, W_x, W_h, b, lengths, 2, h_all, h_n, c_n)
        out[value] = (h_all, h_n, c_n)
    for a, b_ in zip(out["blocked"], out["blas"]):
        np.testing.assert_allclose(a, b_, rtol=0, atol=1e-12)
