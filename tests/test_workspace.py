"""The CPU kernels' reused work buffers (``kernels/cpu/workspace.py``): never stale, never
returned or cached, per thread, bounded. Run on every CPU GEMM variant (``cpu_gemm``)."""
import threading

import numpy as np
import pytest

import nblstm
from nblstm.kernels.cpu import workspace

pytestmark = pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM


def problem(T=5, B=3, X=4, H=8, seed=0, **kwargs):
    lstm = nblstm.LSTM(X, H, dtype=np.float64, seed=seed, **kwargs)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, X))
    d_out = rng.standard_normal((T, B, H * lstm.num_directions))
    return lstm, x, d_out


def scratch_arrays():
    return list(getattr(workspace._THREAD, "buffers", {}).values())


def test_two_training_forwards_then_both_backwards():
    lstm, x, d_out = problem(num_layers=2)
    x2 = x[::-1].copy()
    expected = [lstm.backward(lstm.forward(v, train=True)[2], d_out) for v in (x, x2)]
    _, _, cache_1 = lstm.forward(x, train=True)
    _, _, cache_2 = lstm.forward(x2, train=True)
    for cache, reference in ((cache_2, expected[1]), (cache_1, expected[0])):
        dx, (dh0, dc0), grads = lstm.backward(cache, d_out)
        np.testing.assert_array_equal(dx, reference[0])
        for name in grads:
            np.testing.assert_array_equal(grads[name], reference[2][name])


def test_results_and_caches_never_hold_scratch_memory():
    lstm, x, d_out = problem(T=40, B=16, X=16, H=64, bidirectional=True)
    out, (h_n, c_n), cache = lstm.forward(x, train=True)
    dx, (dh0, dc0), grads = lstm.backward(cache, d_out)
    inference = lstm(x)
    held = scratch_arrays()
    assert held, "the kernels used no work buffers"
    results = [out, h_n, c_n, dx, dh0, dc0, *grads.values(), inference[0], *inference[1]]
    for direction in (d for layer in cache.directions for d in layer):
        results += [direction.x, direction.h0, direction.c0, direction.W_x, direction.W_h,
                    direction.h_all, direction.c_all, direction.gates_all]
    for array in results:
        assert not any(np.shares_memory(array, buffer) for buffer in held)


def test_reused_buffers_are_never_stale():
    """Parameters updated in place between calls are seen: the packed weights and every
    work buffer are refilled on each call."""
    lstm, x, d_out = problem(T=20, B=8, X=8, H=32)
    before = lstm(x)[0]
    for value in lstm.parameters().values():
        value *= 0.5
    after = lstm(x)[0]
    fresh = nblstm.LSTM(8, 32, dtype=np.float64)
    fresh.parameters().update({k: v.copy() for k, v in lstm.parameters().items()})
    workspace.release()
    np.testing.assert_array_equal(after, fresh(x)[0])
    assert not np.allclose(before, after)


def test_the_pool_is_bounded_by_the_last_shapes(cpu_gemm):
    lstm_big, x_big, d_big = problem(T=50, B=32, X=32, H=64)
    lstm_small, x_small, d_small = problem(T=3, B=2, X=32, H=64)
    workspace.release()
    lstm_big.backward(lstm_big.forward(x_big, train=True)[2], d_big)
    lstm_big(x_big)
    big = workspace.held_bytes()
    lstm_small.backward(lstm_small.forward(x_small, train=True)[2], d_small)
    lstm_small(x_small)
    if "blocked" in cpu_gemm:
        # the batch-blocked loops' buffers are per task and block of rows (and the packed
        # weights): they never grow with T or B, so the big call held no more than this
        lstm_small.backward(lstm_small.forward(x_small, train=True)[2], d_small)
        assert big <= workspace.held_bytes() * 1.01
    else:
        assert workspace.held_bytes() < big / 4  # the big buffers were replaced, not kept


def test_threads_calling_one_model_at_once_get_correct_results():
    lstm, _, _ = problem(T=30, B=8, X=8, H=32, num_layers=2)
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal((30, 8, 8)) for _ in range(4)]
    d_out = rng.standard_normal((30, 8, 32))
    expected = [(lstm(v)[0], lstm.backward(lstm.forward(v, train=True)[2], d_out)[0])
                for v in inputs]
    errors = []
    barrier = threading.Barrier(len(inputs))

    def worker(k):
        try:
            barrier.wait()
            for _ in range(5):
                out = lstm(inputs[k])[0]
                dx = lstm.backward(lstm.forward(inputs[k], train=True)[2], d_out)[0]
                np.testing.assert_array_equal(out, expected[k][0])
                np.testing.assert_array_equal(dx, expected[k][1])
        except Exception as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


def test_scratch_hands_out_the_shape_and_dtype_asked_for():
    a = workspace.scratch("test role", (3, 4), np.float32)
    assert a.shape == (3, 4) and a.dtype == np.float32 and a.flags.c_contiguous
    b = workspace.scratch("test role", (2, 5), np.float32)
    assert np.shares_memory(a, b)  # reused: it fits and is not more than twice the size
    c = workspace.scratch("test role", (2, 5), np.float64)
    assert c.dtype == np.float64 and not np.shares_memory(b, c)
    assert not workspace.zeroed("test zeros", (4,), np.float64).any()
