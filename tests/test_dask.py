"""``nblstm.dask.forward``: lazy, one task per chunk, equal to a direct call; checks before any
task exists; on a 2-process ``LocalCluster``, equal results and a killed worker survived.

The single-process tests use dask's synchronous scheduler; the cluster tests share one
``LocalCluster(n_workers=2, processes=True, threads_per_worker=1)`` per module.
"""
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
import dask  # noqa: E402

import nblstm.dask as nbdask  # noqa: E402
from nblstm import LSTM  # noqa: E402
from nblstm._dispatch import cupy_usable  # noqa: E402

T, B, X, H = 9, 12, 4, 5
#: float64 results through dask equal the direct call within this relative bound (they are
#: the same kernels on the same rows, only split differently)
RTOL = 1e-12


def _problem(batch_first=False, seed=0, dtype=np.float64):
    x = np.random.default_rng(seed).standard_normal((T, B, X)).astype(dtype)
    return np.ascontiguousarray(x.transpose(1, 0, 2)) if batch_first else x


def _assert_close(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, what
    scale = np.max(np.abs(expected))
    assert scale > 0.01, f"{what}: a degenerate problem proves nothing"
    error = np.max(np.abs(actual - expected))
    assert error <= RTOL * scale, f"{what}: max abs error {error:.3e}"


def _compute(*arrays, scheduler="sync"):
    return dask.compute(*arrays, scheduler=scheduler)


def _forward_keys(array) -> list:
    return [key for key in dict(array.__dask_graph__())
            if isinstance(key, tuple) and key[0].startswith(nbdask.FORWARD_KEY_PREFIX)]


# ---------------------------------------------------------------- single process

def test_import_nblstm_does_not_import_dask():
    code = "import sys, nblstm; print([m for m in ('dask', 'distributed') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("time_chunk", [T, 4])  # one chunk along time, or streamed in 3
def test_equals_a_direct_call_and_is_one_task_per_chunk(batch_first, time_chunk):
    model = LSTM(X, H, num_layers=2, batch_first=batch_first, dtype=np.float64, seed=1)
    x = _problem(batch_first)
    x_before = x.copy()
    chunks = (5, time_chunk, X) if batch_first else (time_chunk, 5, X)
    dx = da.from_array(x, chunks=chunks)
    out, (h_n, c_n) = nbdask.forward(model, dx)

    assert isinstance(out, da.Array) and isinstance(h_n, da.Array)
    n_time = len(range(0, T, time_chunk))
    assert len(_forward_keys(out)) == n_time * 3  # 3 batch blocks (5, 5, 2)
    graph = dict(out.__dask_graph__())
    assert [str(k).startswith(nbdask.MODEL_KEY_PREFIX) for k in graph].count(True) == 1
    time_axis, batch_axis = (1, 0) if batch_first else (0, 1)
    assert out.chunks[batch_axis] == (5, 5, 2) and out.chunks[time_axis] == dx.chunks[time_axis]
    assert h_n.chunks == ((2,), (5, 5, 2), (H,))

    ref_out, (ref_h, ref_c) = model(x)
    got_out, got_h, got_c = _compute(out, h_n, c_n)
    _assert_close(got_out, ref_out, "out")
    _assert_close(got_h, ref_h, "h_n")
    _assert_close(got_c, ref_c, "c_n")
    np.testing.assert_array_equal(x, x_before)


def test_bidirectional_given_state_and_lengths_in_batch_blocks():
    model = LSTM(X, H, bidirectional=True, dtype=np.float64, seed=2)
    x = _problem(seed=1)
    rng = np.random.default_rng(3)
    h0, c0 = rng.standard_normal((2, 2, B, H))
    lengths = rng.integers(1, T + 1, size=B)
    ref_out, (ref_h, ref_c) = model(x, (h0, c0), lengths=lengths)
    dx = da.from_array(x, chunks=(T, 4, X))
    for state, lens in (((h0, c0), lengths),  # NumPy state and lengths
                        ((da.from_array(h0, chunks=(2, 6, H)), da.from_array(c0)),
                         da.from_array(lengths, chunks=5))):  # dask, other chunks
        out, (h_n, c_n) = nbdask.forward(model, dx, state, lengths=lens)
        got_out, got_h, got_c = _compute(out, h_n, c_n)
        _assert_close(got_out, ref_out, "out")
        _assert_close(got_h, ref_h, "h_n")
        _assert_close(got_c, ref_c, "c_n")


def test_weights_are_copied_when_forward_is_called():
    model = LSTM(X, H, dtype=np.float64, seed=3)
    x = _problem(seed=2)
    expected, _ = model(x)
    out, _ = nbdask.forward(model, da.from_array(x, chunks=(3, 6, X)))
    for value in model.parameters().values():
        value *= 2.0  # an optimizer step after building the graph
    (got,) = _compute(out)
    _assert_close(got, expected, "out")


def test_threaded_scheduler_runs_blocks_concurrently_on_one_model():
    model = LSTM(X, H, dtype=np.float64, seed=4)
    x = _problem(seed=3)
    ref_out, (ref_h, _) = model(x)
    out, (h_n, _) = nbdask.forward(model, da.from_array(x, chunks=(3, 2, X)))
    got_out, got_h = _compute(out, h_n, scheduler="threads")
    _assert_close(got_out, ref_out, "out")
    _assert_close(got_h, ref_h, "h_n")


def _explode():
    raise RuntimeError("a task ran")


def _unrunnable(shape, dtype=np.float64, chunks=None):
    """A dask array whose chunks raise when computed: errors must come before any task."""
    array = da.from_delayed(dask.delayed(_explode)(), shape, dtype=dtype)
    return array.rechunk(chunks) if chunks else array


@pytest.mark.parametrize("make, error, match", [
    (lambda m: np.zeros((T, B, X)), TypeError, "x must be a dask.array.Array"),
    (lambda m: _unrunnable((T, B, X), np.float32), TypeError,
     "x has dtype float32; this LSTM is float64"),
    (lambda m: _unrunnable((T, B, X)).astype(np.int64), TypeError, "dtype int64"),
    (lambda m: _unrunnable((T, B, X), chunks=(T, B, 2)), ValueError,
     r"chunked along the feature axis \(axis 2, chunks \(2, 2\)\)"),
    (lambda m: _unrunnable((T, B, X + 1)), ValueError,
     r"must have 4 features .* got shape \(9, 12, 5\)"),
    (lambda m: _unrunnable((T, B)), ValueError, r"x must be a 3-D array \(T, B, X\)"),
])
def test_bad_input_is_refused_before_any_task_runs(make, error, match):
    model = LSTM(X, H, dtype=np.float64, seed=5)
    with pytest.raises(error, match=match):
        nbdask.forward(model, make(model))


def test_time_chunks_are_refused_for_bidirectional_layers_and_lengths():
    x = _unrunnable((T, B, X), chunks=(4, B, X))
    with pytest.raises(ValueError, match="bidirectional LSTM cannot be streamed"):
        nbdask.forward(LSTM(X, H, bidirectional=True, dtype=np.float64), x)
    with pytest.raises(ValueError, match=r"lengths needs x in one chunk along time \(axis 0\)"):
        nbdask.forward(LSTM(X, H, dtype=np.float64), x, lengths=np.full(B, T))
    batch_first = _unrunnable((B, T, X), chunks=(B, 4, X))
    with pytest.raises(ValueError, match=r"axis 1.*x.rechunk\(\{1: -1\}\)"):
        nbdask.forward(LSTM(X, H, bidirectional=True, batch_first=True, dtype=np.float64),
                       batch_first)


def test_bad_state_and_lengths_are_refused_before_any_task_runs():
    model = LSTM(X, H, dtype=np.float64)
    x = _unrunnable((T, B, X))
    zeros = np.zeros((1, B, H))
    with pytest.raises(ValueError, match=r"state h0 must have shape \(1, 12, 5\)"):
        nbdask.forward(model, x, (np.zeros((1, B + 1, H)), zeros))
    with pytest.raises(TypeError, match="state c0 has dtype float32"):
        nbdask.forward(model, x, (zeros, zeros.astype(np.float32)))
    with pytest.raises(TypeError, match="state must be a pair"):
        nbdask.forward(model, x, zeros)
    with pytest.raises(ValueError, match=r"lengths must lie in 1\.\.9"):
        nbdask.forward(model, x, lengths=np.full(B, T + 1))
    with pytest.raises(ValueError, match=r"lengths must have shape \(12,\)"):
        nbdask.forward(model, x, lengths=da.ones(B + 1, dtype=int))
    with pytest.raises(TypeError, match="lstm must be an nblstm.LSTM"):
        nbdask.forward(object(), x)


@pytest.mark.skipif(not cupy_usable(), reason="CuPy chunks need CuPy and a real GPU")
def test_cupy_chunks_run_on_the_gpu_backend():
    import cupy
    model = LSTM(X, H, dtype=np.float64, seed=6)
    x = _problem(seed=4)
    ref_out, (ref_h, _) = model(x)
    dx = da.from_array(cupy.asarray(x), chunks=(4, 5, X), asarray=False)
    out, (h_n, _) = nbdask.forward(model, dx)
    got_out, got_h = _compute(out, h_n)
    assert isinstance(got_out, cupy.ndarray) and isinstance(got_h, cupy.ndarray)
    _assert_close(got_out.get(), ref_out, "out")
    _assert_close(got_h.get(), ref_h, "h_n")


# ---------------------------------------------------------------- LocalCluster

@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    with cluster, distributed.Client(cluster) as client:
        yield client


def test_two_worker_cluster_equals_the_single_process_results(client):
    model = LSTM(X, H, num_layers=2, dtype=np.float64, seed=7)
    x = _problem(seed=5)
    dx = da.from_array(x, chunks=(3, 3, X))  # 3 time chunks x 4 batch blocks
    out, (h_n, c_n) = nbdask.forward(model, dx)
    local = _compute(out, h_n, c_n)
    on_cluster = client.compute([out, h_n, c_n], sync=True)
    for name, got, expected in zip(("out", "h_n", "c_n"), on_cluster, local):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, expected, err_msg=name)  # same kernels, same rows
    direct, (direct_h, _) = model(x)
    _assert_close(on_cluster[0], direct, "out vs a direct call")
    _assert_close(on_cluster[1], direct_h, "h_n vs a direct call")


def _release_when_set(block, event_name, block_id=None, gated_time_index=0):
    """Pass ``block`` through; blocks of time index ``gated_time_index`` first wait for a
    ``distributed.Event``, outside the worker's thread pool (``secede``), so the run stays
    mid-way until the test says go."""
    if block_id[0] == gated_time_index:
        distributed.secede()
        distributed.Event(event_name).wait()
        distributed.rejoin()
    return block


def _scheduler_workers(dask_scheduler) -> list:
    return list(dask_scheduler.workers)


def test_a_killed_worker_does_not_change_the_results(client):
    """Kill a worker holding finished output blocks while the last time chunks are still
    gated (so the run is provably mid-way), then let the run finish: Dask recomputes the
    lost tasks and the results equal the single-process ones."""
    model = LSTM(X, H, dtype=np.float64, seed=8)
    x = _problem(seed=6)
    dx = da.from_array(x, chunks=(3, 2, X))  # 3 time chunks x 6 batch blocks
    ref_out, (ref_h, ref_c) = nbdask.forward(model, dx)
    expected = _compute(ref_out, ref_h, ref_c)
    event = distributed.Event("nblstm-test-go", client=client)
    gated = dx.map_blocks(_release_when_set, event.name, gated_time_index=2, meta=dx._meta)
    out, (h_n, c_n) = nbdask.forward(model, gated)

    pids = client.run(os.getpid)
    persisted = client.persist([out, h_n, c_n])
    out_futures = distributed.futures_of(persisted[0])
    ungated = [future for future in out_futures if future.key[1] < 2]
    assert len(ungated) == 12  # 2 time chunks x 6 batch blocks
    distributed.wait(ungated, timeout=300)  # a guard against hanging, not a timing assertion
    assert not any(future.done() for future in out_futures if future.key[1] == 2)
    holders = client.who_has(ungated)
    addresses = [address for owners in holders.values() for address in owners]
    victim = max(set(addresses), key=addresses.count)
    assert any(tuple(owners) == (victim,) for owners in holders.values()), \
        "the killed worker must hold results that only it has"
    os.kill(pids[victim], signal.SIGKILL)
    deadline = time.monotonic() + 300
    while victim in client.run_on_scheduler(_scheduler_workers):
        assert time.monotonic() < deadline, "the scheduler did not notice the killed worker"
        time.sleep(0.05)
    event.set()

    results = client.gather(persisted)
    for name, got, want in zip(("out", "h_n", "c_n"), results, expected):
        np.testing.assert_array_equal(got, want, err_msg=name)
    client.wait_for_workers(2, timeout=300)  # the nanny restarts the killed worker
