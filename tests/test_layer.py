"""``nblstm.LSTM`` behaviour on every backend: reference results, gradients by finite
differences, padded batches, parameter updates, files, devices, bad input."""
import zipfile

import numpy as np
import pytest

import nblstm
from nblstm import ops, reference
from nblstm._dispatch import CPU


def reference_lstm(lstm, x, state=None, lengths=None):
    """The plain NumPy oracle (``nblstm.reference.layer_forward``) for this model."""
    return reference.layer_forward({k: np.asarray(v) for k, v in lstm.parameters().items()},
                                   lstm.num_layers, lstm.bidirectional, x, state, lengths)


def model_on(backend, *args, **kwargs):
    lstm = nblstm.LSTM(*args, **kwargs)
    return lstm.to("cuda") if backend.name != "cpu" else lstm


def small_problem(T=4, B=3, X=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, B, X)).astype(dtype)


@pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM
def test_layer_matches_the_numpy_reference(backend, dtype):
    lstm = model_on(backend, 3, 2, num_layers=2, bidirectional=True, dtype=dtype.dtype, seed=5)
    x = small_problem(dtype=dtype.dtype)
    lengths = np.array([4, 2, 3])
    rng = np.random.default_rng(1)
    state = tuple(rng.standard_normal((4, 3, 2)).astype(dtype.dtype) for _ in range(2))
    out, (h_n, c_n) = lstm(backend.put(x), tuple(backend.put(s) for s in state), lengths)
    ref_out, ref_h, ref_c = reference_lstm(lstm.to("cpu"), x, state, lengths)
    dtype.assert_output_close(backend.get(out), ref_out, "out")
    dtype.assert_output_close(backend.get(h_n), ref_h, "h_n")
    dtype.assert_output_close(backend.get(c_n), ref_c, "c_n")
    assert np.all(backend.get(out)[2:, 1] == 0) and np.all(backend.get(out)[3:, 2] == 0)


def loss_and_gradients(lstm, x, state, lengths, weights):
    """A scalar loss (weighted sum of out, h_n, c_n) and nblstm's gradients of it."""
    out, (h_n, c_n), cache = lstm.forward(x, state, lengths, train=True)
    loss = float(np.sum(out * weights[0]) + np.sum(h_n * weights[1]) + np.sum(c_n * weights[2]))
    return loss, lstm.backward(cache, weights[0], (weights[1], weights[2]))


def test_gradients_match_finite_differences(cpu_gemm):
    """Central differences in float64 on a sample of coordinates of every input and
    parameter of a 2-layer bidirectional layer with padding (torch-free oracle)."""
    lstm = nblstm.LSTM(3, 2, num_layers=2, bidirectional=True, dtype=np.float64, seed=2)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 3, 3))
    state = tuple(rng.standard_normal((4, 3, 2)) for _ in range(2))
    lengths = np.array([3, 4, 1])
    weights = (rng.standard_normal((4, 3, 4)), rng.standard_normal((4, 3, 2)),
               rng.standard_normal((4, 3, 2)))
    _, (dx, (dh0, dc0), grads) = loss_and_gradients(lstm, x, state, lengths, weights)
    targets = [("x", x, dx), ("h0", state[0], dh0), ("c0", state[1], dc0)]
    targets += [(name, value, grads[name]) for name, value in lstm.parameters().items()]
    eps = 1e-6
    for name, array, gradient in targets:
        for flat in rng.choice(array.size, size=min(array.size, 6), replace=False):
            index = np.unravel_index(flat, array.shape)
            saved = array[index]
            array[index] = saved + eps
            plus, _ = loss_and_gradients(lstm, x, state, lengths, weights)
            array[index] = saved - eps
            minus, _ = loss_and_gradients(lstm, x, state, lengths, weights)
            array[index] = saved
            numeric = (plus - minus) / (2 * eps)
            assert abs(gradient[index] - numeric) <= 1e-7 * (1 + abs(numeric)), (name, index)
    # padding takes no gradient
    assert np.all(dx[1:, 2] == 0) and np.all(dx[3:, 0] == 0)


@pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM
def test_padding_values_never_reach_results_or_gradients(backend):
    lstm = model_on(backend, 2, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    x = small_problem(T=3, B=2, X=2)
    lengths = np.array([3, 1])
    poisoned = x.copy()
    poisoned[1:, 1] = np.nan
    out, (h_n, c_n), cache = lstm.forward(backend.put(poisoned), lengths=lengths, train=True)
    d_out = np.ones((3, 2, 6))
    d_out[1:, 1] = np.nan  # ignored past the end too
    dx, (dh0, dc0), grads = lstm.backward(cache, backend.put(d_out))
    clean_out, (clean_h, _) = lstm(backend.put(x), lengths=lengths)
    np.testing.assert_array_equal(backend.get(out), backend.get(clean_out))
    np.testing.assert_array_equal(backend.get(h_n), backend.get(clean_h))
    for name, value in list(grads.items()) + [("dx", dx), ("dh0", dh0)]:
        assert np.all(np.isfinite(backend.get(value))), name


def test_unbatched_input_is_batch_of_one(backend):
    lstm = model_on(backend, 3, 2, num_layers=2, bidirectional=True, dtype=np.float64, seed=1)
    x = small_problem(T=3, B=1)
    out_b, (h_b, c_b) = lstm(backend.put(x))
    out_u, (h_u, c_u) = lstm(backend.put(x[:, 0]))
    assert out_u.shape == (3, 4) and h_u.shape == (4, 2)
    np.testing.assert_array_equal(backend.get(out_u), backend.get(out_b)[:, 0])
    np.testing.assert_array_equal(backend.get(h_u), backend.get(h_b)[:, 0])


def test_inputs_are_never_modified(backend):
    lstm = model_on(backend, 3, 2, bidirectional=True, batch_first=True, dtype=np.float64)
    x = small_problem(T=3, B=4).transpose(1, 0, 2).copy()
    state = (np.ones((2, 4, 2)) * 0.5, np.ones((2, 4, 2)) * -0.5)
    d_out = np.ones((4, 3, 4))
    d_state = (np.ones((2, 4, 2)), np.ones((2, 4, 2)))
    before = [a.copy() for a in (x, *state, d_out, *d_state)]
    params_before = {k: backend.get(v).copy() for k, v in lstm.parameters().items()}
    on_backend = [backend.put(a) for a in (x, *state, d_out, *d_state)]
    _, _, cache = lstm.forward(on_backend[0], tuple(on_backend[1:3]), [3, 1, 2, 3],
                                 train=True)
    lstm.backward(cache, on_backend[3], tuple(on_backend[4:]))
    for old, new in zip(before, on_backend):
        np.testing.assert_array_equal(old, backend.get(new))
    for name, value in lstm.parameters().items():
        np.testing.assert_array_equal(params_before[name], backend.get(value))


def write_in_place(backend, array, values: np.ndarray) -> None:
    """``array[...] = values`` on the backend, keeping the same array object."""
    if isinstance(array, np.ndarray):
        array[...] = values
    elif hasattr(array, "copy_to_device"):  # numba device arrays: no item assignment
        array.copy_to_device(np.ascontiguousarray(values))
    else:  # CuPy (the "cuda" model's parameters when CuPy works)
        import cupy
        array[...] = cupy.asarray(values)


def test_in_place_parameter_updates_are_seen_by_the_next_call(backend):
    """What an optimizer step does: the next forward must use the new weights."""
    lstm = model_on(backend, 3, 2, dtype=np.float64, seed=4)
    x = small_problem()
    before, _ = lstm(backend.put(x))
    _, _, cache = lstm.forward(backend.put(x), train=True)
    _, _, grads = lstm.backward(cache, backend.put(np.ones((4, 3, 2))))
    stepped = {name: backend.get(value) - 0.5 * backend.get(grads[name])
               for name, value in lstm.parameters().items()}
    for name, value in lstm.parameters().items():  # an SGD step, in place
        write_in_place(backend, value, stepped[name])
    after, _ = lstm(backend.put(x))
    fresh = nblstm.LSTM(3, 2, dtype=np.float64)
    fresh.parameters().update(stepped)
    expected, _ = fresh(x)
    np.testing.assert_allclose(backend.get(after), expected, rtol=1e-12, atol=1e-12)
    assert not np.allclose(backend.get(before), expected)


def test_unused_outputs_take_none_as_their_gradient(backend):
    """``d_out=None`` and ``None`` inside ``d_state`` mean "the loss does not use it"."""
    lstm = model_on(backend, 3, 2, num_layers=2, bidirectional=True, dtype=np.float64, seed=6)
    x = backend.put(small_problem())
    dh_n = np.random.default_rng(0).standard_normal((4, 3, 2))
    _, _, cache = lstm.forward(x, train=True)
    expected = lstm.backward(cache, backend.put(np.zeros((4, 3, 4))),
                             (backend.put(dh_n), backend.put(np.zeros((4, 3, 2)))))
    _, _, cache = lstm.forward(x, train=True)
    got = lstm.backward(cache, None, (backend.put(dh_n), None))
    np.testing.assert_array_equal(backend.get(got[0]), backend.get(expected[0]))
    for name in expected[2]:
        np.testing.assert_array_equal(backend.get(got[2][name]), backend.get(expected[2][name]))
    _, _, cache = lstm.forward(x, train=True)
    nothing = lstm.backward(cache)
    assert not np.any(backend.get(nothing[0])) and not np.any(backend.get(nothing[2]["bias_ih_l0"]))


def test_weights_between_forward_and_backward_do_not_change_the_gradients():
    lstm = nblstm.LSTM(3, 2, dtype=np.float64, seed=4)
    x = small_problem()
    _, _, cache = lstm.forward(x, train=True)
    _, _, expected = lstm.backward(cache, np.ones((4, 3, 2)))
    _, _, cache = lstm.forward(x, train=True)
    for value in lstm.parameters().values():
        value *= 3.0
    _, _, grads = lstm.backward(cache, np.ones((4, 3, 2)))
    for name in expected:
        np.testing.assert_array_equal(grads[name], expected[name])


@pytest.mark.parametrize("chunk_steps", [1, 2, 3])
def test_chunked_inference_takes_final_states_at_each_length(chunk_steps):
    rng = np.random.default_rng(0)
    T, B, X, H = 5, 4, 2, 3
    run = CPU
    x = rng.standard_normal((T, B, X))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    W_x, W_h = rng.standard_normal((X, 4 * H)), rng.standard_normal((H, 4 * H))
    b = rng.standard_normal(4 * H)
    lengths = np.array([5, 1, 3, 2])
    h_all, c_all, _ = ops.sequence_forward(run, x, h0, c0, W_x, W_h, b)
    _, h_n, c_n = ops.sequence_inference(run, x, h0, c0, W_x, W_h, b, lengths, chunk_steps)
    for row, length in enumerate(lengths):
        np.testing.assert_array_equal(h_n[row], h_all[length - 1, row])
        np.testing.assert_array_equal(c_n[row], c_all[length - 1, row])


# ----------------------------------------------------------------------------- files

def test_save_load_round_trip(tmp_path, backend):
    lstm = model_on(backend, 3, 4, num_layers=2, bidirectional=True, batch_first=True,
                    bias=False, dtype=np.float64, seed=9)
    path = lstm.save(tmp_path / "model")
    assert path.endswith("model.npz")
    loaded = nblstm.LSTM.load(path, device=lstm.device)
    assert loaded.config() == lstm.config()
    assert list(loaded.parameters()) == list(lstm.parameters())
    for name, value in lstm.parameters().items():
        np.testing.assert_array_equal(backend.get(loaded.parameters()[name]), backend.get(value))
    x = backend.put(small_problem(T=3, B=2).transpose(1, 0, 2).copy())
    np.testing.assert_array_equal(backend.get(loaded(x)[0]), backend.get(lstm(x)[0]))
    with np.load(path, allow_pickle=False) as archive:  # loadable without pickle
        assert "__nblstm__" in archive.files


def test_damaged_or_mismatched_files_are_clear_errors(tmp_path):
    lstm = nblstm.LSTM(3, 4, num_layers=2)
    good = lstm.save(tmp_path / "good.npz")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(open(good, "rb").read()[:200])
    with pytest.raises(ValueError, match="damaged.npz"):
        nblstm.LSTM.load(damaged)
    plain = tmp_path / "plain.npz"
    np.savez(plain, weight_ih_l0=np.zeros((16, 3)))
    with pytest.raises(ValueError, match="not an nblstm LSTM file"):
        nblstm.LSTM.load(plain)
    arrays = dict(np.load(good))
    arrays["weight_hh_l1"] = np.zeros((16, 5), np.float32)
    wrong_shape = tmp_path / "wrong_shape.npz"
    np.savez(wrong_shape, **arrays)
    with pytest.raises(ValueError, match="weight_hh_l1"):
        nblstm.LSTM.load(wrong_shape)
    arrays = dict(np.load(good))
    del arrays["bias_ih_l1"]
    missing = tmp_path / "missing.npz"
    np.savez(missing, **arrays)
    with pytest.raises(ValueError, match="bias_ih_l1"):
        nblstm.LSTM.load(missing)
    arrays = dict(np.load(good))
    arrays["__nblstm__"] = np.array('{"format": "something else"}')
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, **arrays)
    with pytest.raises(ValueError, match="bad nblstm header"):
        nblstm.LSTM.load(foreign)
    not_zip = tmp_path / "text.npz"
    not_zip.write_text("hello")
    with pytest.raises(ValueError, match="text.npz"):
        nblstm.LSTM.load(not_zip)
    with pytest.raises(FileNotFoundError):
        nblstm.LSTM.load(tmp_path / "absent.npz")
    assert zipfile.is_zipfile(good)


# ----------------------------------------------------------------------------- bad input

def bad_input_cases(backend):
    put = backend.put
    x = small_problem(T=3, B=2, X=3, dtype=np.float32)
    state_shape = (2, 2, 4)
    zeros = np.zeros(state_shape, np.float32)
    return {
        "feature size": (dict(x=put(x[:, :, :2])), ValueError, ["x", "3 features", "(3, 2, 2)"]),
        "1-D x": (dict(x=put(x[0, 0])), ValueError, ["x must be a 3-D array"]),
        "float64 x": (dict(x=put(x.astype(np.float64))), TypeError, ["x", "float64", "float32"]),
        "empty x": (dict(x=put(x[:0])), ValueError, ["at least one time step"]),
        "state shape": (dict(x=put(x), state=(put(zeros[:, :1]), put(zeros))), ValueError,
                        ["state h", "(2, 2, 4)", "(2, 1, 4)"]),
        "state not a pair": (dict(x=put(x), state=put(zeros)), TypeError, ["state", "pair"]),
        "state dtype": (dict(x=put(x), state=(put(zeros), put(zeros.astype(np.float64)))),
                        TypeError, ["state c", "float64"]),
        "length zero": (dict(x=put(x), lengths=[0, 3]), ValueError, ["lengths", "1..3", "[0]"]),
        "length too long": (dict(x=put(x), lengths=[4, 3]), ValueError, ["1..3", "[4]"]),
        "lengths shape": (dict(x=put(x), lengths=[3, 3, 3]), ValueError, ["lengths", "(2,)"]),
        "float lengths": (dict(x=put(x), lengths=np.array([3.0, 2.0])), TypeError,
                          ["lengths", "integers"]),
    }


CASE_NAMES = sorted(bad_input_cases(type("B", (), {"put": staticmethod(lambda a: a)})))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_is_a_clear_error(backend, case):
    lstm = model_on(backend, 3, 4, num_layers=2)
    arguments, error, fragments = bad_input_cases(backend)[case]
    with pytest.raises(error) as info:
        lstm(**arguments)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_mixed_devices_are_a_type_error(backend):
    if backend.name == "cpu":
        pytest.skip("needs a GPU backend")
    x = small_problem(dtype=np.float32)
    gpu_model = nblstm.LSTM(3, 2).to("cuda")
    with pytest.raises(TypeError, match="NumPy .host. array.*'cuda'"):
        gpu_model(x)
    with pytest.raises(TypeError, match="GPU array.*'cpu'"):
        nblstm.LSTM(3, 2)(backend.put(x))
    with pytest.raises(TypeError, match="state h is a NumPy"):
        gpu_model(backend.put(x), (np.zeros((1, 3, 2), np.float32),) * 2)


def test_backward_checks_its_arguments():
    lstm = nblstm.LSTM(3, 2, dtype=np.float64)
    x = small_problem()
    _, _, cache = lstm.forward(x, train=True)
    with pytest.raises(ValueError, match=r"d_out must have the shape of out, \(4, 3, 2\)"):
        lstm.backward(cache, np.zeros((4, 3, 3)))
    with pytest.raises(TypeError, match="d_out has dtype float32"):
        lstm.backward(cache, np.zeros((4, 3, 2), np.float32))
    with pytest.raises(ValueError, match="d_state dh_n must have shape"):
        lstm.backward(cache, np.zeros((4, 3, 2)), (np.zeros((1, 3, 3)), np.zeros((1, 3, 2))))
    with pytest.raises(TypeError, match="cache must be"):
        lstm.backward(lstm(x), np.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match="different LSTM"):
        nblstm.LSTM(3, 2, dtype=np.float64).backward(cache, np.zeros((4, 3, 2)))


def test_constructor_and_parameter_dict_checks():
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        nblstm.LSTM(3, 0)
    with pytest.raises(ValueError, match="num_layers"):
        nblstm.LSTM(3, 2, num_layers=1.5)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        nblstm.LSTM(3, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        nblstm.LSTM(3, 2).to("tpu")
    lstm = nblstm.LSTM(3, 2)
    lstm.parameters()["weight_ih_l0"] = np.zeros((8, 4), np.float32)
    with pytest.raises(ValueError, match=r"weight_ih_l0 must have shape \(8, 3\)"):
        lstm(small_problem(dtype=np.float32))
    lstm = nblstm.LSTM(3, 2)
    del lstm.parameters()["bias_hh_l0"]
    with pytest.raises(ValueError, match="missing.*bias_hh_l0"):
        lstm(small_problem(dtype=np.float32))
    assert repr(nblstm.LSTM(3, 2, num_layers=2, bidirectional=True)) == (
        "LSTM(3, 2, num_layers=2, bidirectional=True, dtype=float32, device='cpu')")


def test_device_round_trip_keeps_the_weights(backend):
    if backend.name == "cpu":
        pytest.skip("needs a GPU backend")
    lstm = nblstm.LSTM(3, 2, num_layers=2, seed=3)
    host = {k: v.copy() for k, v in lstm.parameters().items()}
    lstm.to("cuda")
    assert lstm.device == "cuda"
    assert all(not isinstance(v, np.ndarray) for v in lstm.parameters().values())
    lstm.to("cpu")
    for name, value in lstm.parameters().items():
        np.testing.assert_array_equal(value, host[name])


def test_inference_chunks_fit_the_budget_with_enough_rows():
    """Chunks hold about INFERENCE_CHUNK_BYTES of work buffers, but at least
    INFERENCE_CHUNK_MIN_ROWS batch rows, and never more than T steps."""
    for T, B, H, itemsize in [(50, 4096, 128, 4), (100, 64, 256, 4), (20, 256, 1024, 4),
                              (7, 1, 8, 8), (2000, 64, 256, 8), (3, 100000, 64, 4)]:
        steps = ops.inference_chunk_steps(T, B, H, itemsize)
        assert 1 <= steps <= T
        fits = steps * B * 5 * H * itemsize <= ops.INFERENCE_CHUNK_BYTES
        assert fits or steps * B < ops.INFERENCE_CHUNK_MIN_ROWS + B or steps == 1, (T, B, H)
        if steps < T:
            assert (steps + 1) * B * 5 * H * itemsize > ops.INFERENCE_CHUNK_BYTES or (
                steps * B >= ops.INFERENCE_CHUNK_MIN_ROWS)
