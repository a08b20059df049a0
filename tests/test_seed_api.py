"""The seed-compatible functions against the NumPy reference, on every backend and dtype.

float32 results are compared with the float64 reference computed from the same (rounded)
inputs, so they carry the float32 tolerances; float64 results carry 1e-9.
"""
import numpy as np
import pytest

import nblstm
from nblstm import reference
from _backends import skip_if_too_big_for_simulator
from _problems import as_dtype, assert_unchanged, cell_problem, sequence_problem, snapshot

# (n_x, m, T, n_a, n_y): edge sizes (T=1, B=1, H=1, X=1, Y=1) and a few ordinary ones.
SEQUENCE_SHAPES = [(3, 10, 7, 5, 2), (1, 1, 1, 1, 1), (2, 1, 6, 3, 4), (4, 3, 1, 2, 3),
                   (2, 5, 3, 1, 2), (5, 2, 4, 7, 1), (6, 17, 9, 13, 5)]
CELL_SHAPES = [(3, 10, 5, 2), (1, 1, 1, 1), (4, 1, 3, 3), (2, 7, 1, 2), (6, 3, 9, 1)]


def put_parameters(backend, parameters):
    return {k: backend.put(v) for k, v in parameters.items()}


@pytest.mark.parametrize("shape", SEQUENCE_SHAPES, ids=lambda s: "x{}_m{}_T{}_a{}_y{}".format(*s))
@pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM
def test_lstm_forward_matches_reference(backend, dtype, shape):
    n_x, m, T, n_a, n_y = shape
    skip_if_too_big_for_simulator(backend, m * n_a * T)
    prob = sequence_problem(n_x, m, T, n_a, n_y, seed=sum(shape), dtype=dtype.dtype)
    x, a0, params = prob["x"], prob["a0"], prob["parameters"]
    before = snapshot(x, a0, params)
    a, y, c, caches = nblstm.lstm_forward(backend.put(x), backend.put(a0),
                                          put_parameters(backend, params))
    assert_unchanged(before, x, a0, params)
    ra, ry, rc, rcaches = reference.lstm_forward(x.astype(np.float64), a0.astype(np.float64),
                                                 as_dtype(params, np.float64))
    for name, got, ref in (("a", a, ra), ("y", y, ry), ("c", c, rc)):
        got = backend.get(got)
        assert got.dtype == dtype.dtype, name
        dtype.assert_output_close(got, ref, name)
    # caches: (list of T 10-tuples, x), every array of every step as the reference has it
    assert len(caches) == 2 and caches[1] is not None and len(caches[0]) == T
    for t in range(T):
        assert len(caches[0][t]) == 10
        for k in range(9):
            dtype.assert_output_close(backend.get(caches[0][t][k]), rcaches[0][t][k],
                                      f"caches[0][{t}][{k}]")
        assert caches[0][t][9] is not None


@pytest.mark.parametrize("shape", SEQUENCE_SHAPES, ids=lambda s: "x{}_m{}_T{}_a{}_y{}".format(*s))
@pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM
def test_lstm_backward_matches_reference(backend, dtype, shape):
    n_x, m, T, n_a, n_y = shape
    skip_if_too_big_for_simulator(backend, m * n_a * T)
    prob = sequence_problem(n_x, m, T, n_a, n_y, seed=sum(shape) + 1, dtype=dtype.dtype)
    x, a0, params, da = prob["x"], prob["a0"], prob["parameters"], prob["da"]
    _, _, _, caches = nblstm.lstm_forward(backend.put(x), backend.put(a0),
                                          put_parameters(backend, params))
    before = snapshot(da)
    grads = nblstm.lstm_backward(backend.put(da), caches)
    assert_unchanged(before, da)
    _, _, _, rcaches = reference.lstm_forward(x.astype(np.float64), a0.astype(np.float64),
                                              as_dtype(params, np.float64))
    ref = reference.lstm_backward(da.astype(np.float64), rcaches)
    assert set(grads) == {"dx", "da0", "dWf", "dWi", "dWc", "dWo", "dbf", "dbi", "dbc", "dbo"}
    for key in ref:
        got = backend.get(grads[key])
        assert got.dtype == dtype.dtype and got.shape == ref[key].shape, key
        dtype.assert_gradient_close(got, ref[key], key)


@pytest.mark.parametrize("T_prime", [1, 3, 6])
@pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM
def test_lstm_backward_with_fewer_steps_than_forward(backend, dtype, T_prime):
    """As in the course's own test: da covers only the first T' steps of a T=6 forward."""
    prob = sequence_problem(3, 4, 6, 5, 2, seed=T_prime, dtype=dtype.dtype)
    x, a0, params = prob["x"], prob["a0"], prob["parameters"]
    da = prob["da"][:, :, :T_prime].copy()
    _, _, _, caches = nblstm.lstm_forward(backend.put(x), backend.put(a0),
                                          put_parameters(backend, params))
    grads = nblstm.lstm_backward(backend.put(da), caches)
    _, _, _, rcaches = reference.lstm_forward(x.astype(np.float64), a0.astype(np.float64),
                                              as_dtype(params, np.float64))
    ref = reference.lstm_backward(da.astype(np.float64), rcaches)
    assert backend.get(grads["dx"]).shape == (3, 4, T_prime)
    for key in ref:
        dtype.assert_gradient_close(backend.get(grads[key]), ref[key], key)


def test_lstm_backward_on_edited_or_hand_built_caches(backend, dtype):
    """A caches list that is not the one lstm_forward made (copied, or built step by step
    with lstm_cell_forward as course code does) gives the same gradients."""
    prob = sequence_problem(3, 4, 5, 6, 2, seed=7, dtype=dtype.dtype)
    x, a0, params, da = (backend.put(prob["x"]), backend.put(prob["a0"]),
                         put_parameters(backend, prob["parameters"]), backend.put(prob["da"]))
    _, _, _, caches = nblstm.lstm_forward(x, a0, params)
    fast = nblstm.lstm_backward(da, caches)
    copied = nblstm.lstm_backward(da, (list(caches[0]), caches[1]))
    steps, a_next = [], a0
    c_next = backend.put(np.zeros(prob["a0"].shape, dtype=dtype.dtype))
    for t in range(prob["x"].shape[2]):
        a_next, c_next, _, cache = nblstm.lstm_cell_forward(
            backend.put(np.ascontiguousarray(prob["x"][:, :, t])), a_next, c_next, params)
        steps.append(cache)
    hand_built = nblstm.lstm_backward(da, (steps, x))
    for key in fast:
        np.testing.assert_allclose(backend.get(copied[key]), backend.get(fast[key]), rtol=0, atol=0)
        dtype.assert_gradient_close(backend.get(hand_built[key]), backend.get(fast[key]), key)


@pytest.mark.parametrize("shape", CELL_SHAPES, ids=lambda s: "x{}_m{}_a{}_y{}".format(*s))
@pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM
def test_lstm_cell_forward_and_backward_match_reference(backend, dtype, shape):
    n_x, m, n_a, n_y = shape
    prob = cell_problem(n_x, m, n_a, n_y, seed=sum(shape), dtype=dtype.dtype)
    xt, a_prev, c_prev, params = prob["xt"], prob["a_prev"], prob["c_prev"], prob["parameters"]
    da_next, dc_next = prob["da_next"], prob["dc_next"]
    before = snapshot(xt, a_prev, c_prev, params, da_next, dc_next)
    a_next, c_next, yt, cache = nblstm.lstm_cell_forward(
        backend.put(xt), backend.put(a_prev), backend.put(c_prev), put_parameters(backend, params))
    grads = nblstm.lstm_cell_backward(backend.put(da_next), backend.put(dc_next), cache)
    assert_unchanged(before, xt, a_prev, c_prev, params, da_next, dc_next)

    f64 = lambda a: a.astype(np.float64)
    ra, rc, ry, rcache = reference.lstm_cell_forward(f64(xt), f64(a_prev), f64(c_prev),
                                                     as_dtype(params, np.float64))
    for name, got, ref in (("a_next", a_next, ra), ("c_next", c_next, rc), ("yt", yt, ry)):
        assert backend.get(got).dtype == dtype.dtype
        dtype.assert_output_close(backend.get(got), ref, name)
    assert len(cache) == 10 and cache[0] is a_next and cache[1] is c_next
    for k in range(9):
        dtype.assert_output_close(backend.get(cache[k]), rcache[k], f"cache[{k}]")
    ref = reference.lstm_cell_backward(f64(da_next), f64(dc_next), rcache)
    assert set(grads) == set(ref)
    for key in ref:
        got = backend.get(grads[key])
        assert got.dtype == dtype.dtype and got.shape == ref[key].shape, key
        dtype.assert_gradient_close(got, ref[key], key)


def test_softmax_columns_sum_to_one(backend, dtype):
    prob = sequence_problem(3, 5, 4, 6, 7, seed=3, dtype=dtype.dtype)
    _, y, _, _ = nblstm.lstm_forward(backend.put(prob["x"]), backend.put(prob["a0"]),
                                     put_parameters(backend, prob["parameters"]))
    y = backend.get(y)
    assert np.all(y > 0)
    np.testing.assert_allclose(y.sum(axis=0), 1.0, rtol=0, atol=10 * np.finfo(dtype.dtype).eps)


def non_contiguous(backend, array: np.ndarray, how: str):
    """The same values as ``array``, put on the backend as a non-C-contiguous array."""
    if how == "strided":  # every other element of a twice-as-long array along axis 1
        big = np.zeros(array.shape[:1] + (2 * array.shape[1],) + array.shape[2:], array.dtype)
        big[:, ::2] = array
        return backend.put(big)[:, ::2]
    if how == "transposed" and array.ndim == 2:  # a transposed view of the transposed copy
        return backend.put(np.ascontiguousarray(array.T)).T
    if how == "transposed":  # 3-D: a strided slice of a reversed-axes layout
        return non_contiguous(backend, array, "strided")
    if how == "fortran":
        return np.asfortranarray(array)
    raise ValueError(how)


@pytest.mark.parametrize("how", ["fortran", "strided", "transposed"])
def test_non_contiguous_inputs_give_the_same_results(backend, dtype, how):
    if how == "fortran" and backend.name != "cpu":
        pytest.skip("Fortran order is a host-array layout")
    prob = sequence_problem(3, 4, 5, 6, 2, seed=11, dtype=dtype.dtype)
    params = prob["parameters"]
    expected = nblstm.lstm_forward(prob["x"], prob["a0"], params)
    odd_params = {k: non_contiguous(backend, v, how) if v.shape[1] > 1 else backend.put(v)
                  for k, v in params.items()}
    x, a0 = non_contiguous(backend, prob["x"], how), non_contiguous(backend, prob["a0"], how)
    if backend.name == "cpu":
        assert not x.flags.c_contiguous and not a0.flags.c_contiguous
    got = nblstm.lstm_forward(x, a0, odd_params)
    for g, e in zip(got[:3], expected[:3]):
        dtype.assert_output_close(backend.get(g), e)
    da = non_contiguous(backend, prob["da"], how)
    dtype.assert_gradient_close(backend.get(nblstm.lstm_backward(da, got[3])["dWf"]),
                                nblstm.lstm_backward(prob["da"], expected[3])["dWf"])
    xt = non_contiguous(backend, prob["x"][:, :, 0].copy(), how)
    cell = nblstm.lstm_cell_forward(xt, a0, a0, odd_params)
    ref_cell = nblstm.lstm_cell_forward(prob["x"][:, :, 0].copy(), prob["a0"], prob["a0"], params)
    dtype.assert_output_close(backend.get(cell[0]), ref_cell[0])


@pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM
def test_nan_propagates(backend, dtype):
    prob = sequence_problem(3, 4, 5, 6, 2, seed=5, dtype=dtype.dtype)
    x = prob["x"].copy()
    x[1, 2, 1] = np.nan  # one input value of batch column 2 at step 1
    a, y, c, caches = nblstm.lstm_forward(backend.put(x), backend.put(prob["a0"]),
                                          put_parameters(backend, prob["parameters"]))
    a, y, c = backend.get(a), backend.get(y), backend.get(c)
    # batch column 2 is NaN from step 1 on, the other columns stay finite
    assert np.all(np.isfinite(a[:, :, 0]))
    assert np.all(np.isnan(a[:, 2, 1:])) and np.all(np.isnan(c[:, 2, 1:]))
    assert np.all(np.isnan(y[:, 2, 1:]))
    others = [0, 1, 3]
    assert np.all(np.isfinite(a[:, others])) and np.all(np.isfinite(y[:, others]))
    grads = nblstm.lstm_backward(backend.put(prob["da"]), caches)
    assert np.isnan(backend.get(grads["dWf"])).any()


@pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM
def test_saturated_inputs_stay_finite(backend, dtype):
    """Huge pre-activations saturate the gates instead of overflowing to NaN."""
    prob = sequence_problem(3, 4, 3, 5, 2, seed=9, dtype=dtype.dtype)
    x = (prob["x"] * 1e4).astype(dtype.dtype)
    x[0, 0, 0] = np.inf
    x[1, 1, 0] = -np.inf
    a, y, c, caches = nblstm.lstm_forward(backend.put(x), backend.put(prob["a0"]),
                                          put_parameters(backend, prob["parameters"]))
    ref = reference.lstm_forward(x, prob["a0"], prob["parameters"])
    for got, r in zip((a, y, c), ref[:3]):
        got = backend.get(got)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, r, rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk_steps", [1, 2, 3, 32])
@pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM
def test_chunked_inference_matches_the_training_forward(backend, dtype, chunk_steps):
    """The inference pass (time chunks, nothing kept per step) gives the training pass's
    hidden states and final state, for chunk sizes that do and do not divide T."""
    from nblstm import _dispatch, ops
    rng = np.random.default_rng(chunk_steps)
    T, B, X, H = 5, 3, 2, 4
    host = [rng.standard_normal(shape).astype(dtype.dtype)
            for shape in ((T, B, X), (B, H), (B, H), (X, 4 * H), (H, 4 * H), (4 * H,))]
    x, h0, c0, W_x, W_h, b = (backend.put(a) for a in host)
    run, _ = _dispatch.select_backend({"x": x})
    h_all, h_n, c_n = ops.sequence_inference(run, x, h0, c0, W_x, W_h, b, chunk_steps=chunk_steps)
    ref_h, ref_c, _ = ops.sequence_forward(_dispatch.select_backend({"x": host[0]})[0], *host)
    dtype.assert_output_close(backend.get(h_all), ref_h, "h_all")
    dtype.assert_output_close(backend.get(h_n), ref_h[-1], "h_n")
    dtype.assert_output_close(backend.get(c_n), ref_c[-1], "c_n")
