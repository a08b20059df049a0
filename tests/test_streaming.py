"""Streaming: a unidirectional ``nblstm.LSTM`` called chunk after chunk along time, carrying
the returned state, gives the outputs and final states of one call on the whole sequence.

Runs on every backend of ``conftest.py`` (cpu, cuda - simulated here -, cupy on a GPU);
shapes stay tiny for the simulator.
"""
import numpy as np
import pytest

from _backends import BACKENDS
from nblstm import LSTM

#: float64 streaming equals one call within this relative bound (the issue's acceptance).
FLOAT64_STREAMING_RTOL = 1e-12

T, B, X, H = 7, 3, 4, 5


def _to(model: LSTM, backend) -> LSTM:
    return model.to("cpu" if backend.name == "cpu" else "cuda")


def _assert_streaming_close(actual, expected, dtype, what: str) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, what
    if dtype.dtype == np.float64:
        scale = np.max(np.abs(expected))
        assert scale > 0.01, f"{what}: a degenerate problem proves nothing"
        error = np.max(np.abs(actual - expected))
        assert error <= FLOAT64_STREAMING_RTOL * scale, (
            f"{what}: max abs error {error:.3e} > {FLOAT64_STREAMING_RTOL:g} * {scale:.3e}")
    else:
        dtype.assert_output_close(actual, expected, what)


def _stream(model, x, boundaries, backend, state=None, time_axis=0):
    """Call ``model`` on the time chunks ``x[b_k:b_{k+1}]`` carrying the state; returns the
    concatenated outputs (NumPy) and the last state (NumPy)."""
    outputs = []
    edges = [0, *boundaries, x.shape[time_axis]]
    for start, stop in zip(edges[:-1], edges[1:]):
        chunk = np.take(x, np.arange(start, stop), axis=time_axis)
        out, state = model(backend.put(chunk), state)
        outputs.append(backend.get(out))
    return np.concatenate(outputs, axis=time_axis), tuple(backend.get(s) for s in state)


@pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM
def test_chunked_calls_carrying_state_equal_one_call(backend, dtype):
    """Two layers: the state of every layer is carried (one layer is the special case)."""
    num_layers = 2
    model = _to(LSTM(X, H, num_layers=num_layers, dtype=dtype.dtype, seed=num_layers), backend)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((T, B, X)).astype(dtype.dtype)
    h0 = (0.5 * rng.standard_normal((num_layers, B, H))).astype(dtype.dtype)
    c0 = (0.5 * rng.standard_normal((num_layers, B, H))).astype(dtype.dtype)
    x_before = x.copy()

    out, (h_n, c_n) = model(backend.put(x), (backend.put(h0), backend.put(c0)))
    # uneven chunks, one of a single step
    streamed, (h_s, c_s) = _stream(model, x, [2, 3], backend,
                                   state=(backend.put(h0), backend.put(c0)))
    _assert_streaming_close(streamed, backend.get(out), dtype, "out")
    _assert_streaming_close(h_s, backend.get(h_n), dtype, "h_n")
    _assert_streaming_close(c_s, backend.get(c_n), dtype, "c_n")
    np.testing.assert_array_equal(x, x_before)


def test_streaming_batch_first_and_unbatched(backend, dtype):
    model = _to(LSTM(X, H, batch_first=True, dtype=dtype.dtype, seed=3), backend)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((B, T, X)).astype(dtype.dtype)  # (B, T, X): time is axis 1
    out, (h_n, c_n) = model(backend.put(x))
    streamed, (h_s, c_s) = _stream(model, x, [4], backend, time_axis=1)
    _assert_streaming_close(streamed, backend.get(out), dtype, "batch_first out")
    _assert_streaming_close(h_s, backend.get(h_n), dtype, "batch_first h_n")
    _assert_streaming_close(c_s, backend.get(c_n), dtype, "batch_first c_n")

    single = np.ascontiguousarray(x[0])  # (T, X): one unbatched sequence
    out, (h_n, c_n) = model(backend.put(single))
    streamed, (h_s, c_s) = _stream(model, single, [1, 5], backend)
    _assert_streaming_close(streamed, backend.get(out), dtype, "unbatched out")
    _assert_streaming_close(h_s, backend.get(h_n), dtype, "unbatched h_n")


def test_streaming_a_padded_batch_with_lengths_in_the_last_chunk(backend, dtype):
    """Padded batches stream when every sequence still has a valid step in the last chunk:
    the earlier chunks go without ``lengths``, the last with ``lengths - start``."""
    model = _to(LSTM(X, H, dtype=dtype.dtype, seed=4), backend)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((T, B, X)).astype(dtype.dtype)
    lengths = np.array([7, 5, 6])
    out, (h_n, c_n) = model(backend.put(x), lengths=lengths)

    first, state = model(backend.put(x[:4]))
    last, (h_s, c_s) = model(backend.put(x[4:]), state, lengths=lengths - 4)
    streamed = np.concatenate([backend.get(first), backend.get(last)])
    _assert_streaming_close(streamed, backend.get(out), dtype, "padded out")
    _assert_streaming_close(backend.get(h_s), backend.get(h_n), dtype, "padded h_n")
    _assert_streaming_close(backend.get(c_s), backend.get(c_n), dtype, "padded c_n")


def test_a_chunk_without_a_valid_step_is_refused():
    """A sequence that ended in an earlier chunk has no valid step in the next one: the
    layer refuses a length of 0 (streaming padded batches is documented as above)."""
    model = LSTM(X, H, seed=5)
    with pytest.raises(ValueError, match=r"lengths must lie in 1\.\.3"):
        model(np.zeros((3, 2, X), np.float32), lengths=np.array([3, 0]))


def test_a_bidirectional_layer_does_not_stream():
    """Why bidirectional layers are refused by the time-chunked paths: the backward
    direction of a chunk cannot see the later chunks, so chunked calls differ."""
    model = LSTM(X, H, bidirectional=True, dtype=np.float64, seed=6)
    x = np.random.default_rng(10).standard_normal((T, B, X))
    out, _ = model(x)
    streamed, _ = _stream(model, x, [3], BACKENDS["cpu"])
    forward_half = slice(0, H)
    np.testing.assert_allclose(streamed[..., forward_half], out[..., forward_half], rtol=1e-12)
    assert np.max(np.abs(streamed[..., H:] - out[..., H:])) > 1e-3
