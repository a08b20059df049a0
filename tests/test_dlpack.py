"""torch and JAX tensors as inputs (issue: DLPack): taken zero-copy by their device, results
returned as that framework's tensors, equal to the NumPy path; a tensor that requires grad,
mixed kinds and unsupported dtypes are clear ``TypeError``s."""
import numpy as np
import pytest

import nblstm
from _problems import sequence_problem
from nblstm.training import Adam, Batcher, softmax_cross_entropy

torch = pytest.importorskip("torch")


def _layer_problem(dtype=np.float64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 4)).astype(dtype)
    state = tuple(rng.standard_normal((2, 3, 3)).astype(dtype) for _ in range(2))
    return x, state, np.array([5, 2, 4])


def test_the_layer_takes_torch_cpu_tensors_and_returns_torch_tensors():
    model = nblstm.LSTM(4, 3, bidirectional=True, dtype=np.float64, seed=1)
    x, state, lengths = _layer_problem()
    expected = model(x, state, lengths)
    out, (h_n, c_n) = model(torch.from_numpy(x), tuple(map(torch.from_numpy, state)),
                            torch.from_numpy(lengths))
    for got, want in zip((out, h_n, c_n), (expected[0], *expected[1])):
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
        np.testing.assert_array_equal(got.numpy(), want)
    out, _, cache = model.forward(torch.from_numpy(x), train=True)
    dx, (dh0, dc0), grads = model.backward(cache, torch.ones(out.shape, dtype=torch.float64))
    _, _, ref_cache = model.forward(x, train=True)
    ref_dx, _, ref_grads = model.backward(ref_cache, np.ones(out.shape))
    assert isinstance(dx, torch.Tensor) and isinstance(grads["weight_ih_l0"], torch.Tensor)
    np.testing.assert_array_equal(dx.numpy(), ref_dx)
    for name, value in ref_grads.items():
        np.testing.assert_array_equal(grads[name].numpy(), value)


def test_the_course_api_takes_torch_tensors():
    problem = sequence_problem(3, 4, 5, 6, 2, seed=2)
    as_torch = {key: torch.from_numpy(value) for key, value in problem["parameters"].items()}
    a, y, c, caches = nblstm.lstm_forward(torch.from_numpy(problem["x"]),
                                          torch.from_numpy(problem["a0"]), as_torch)
    ref = nblstm.lstm_forward(problem["x"], problem["a0"], problem["parameters"])
    for got, want in zip((a, y, c), ref[:3]):
        assert isinstance(got, torch.Tensor)
        np.testing.assert_array_equal(got.numpy(), want)
    grads = nblstm.lstm_backward(torch.from_numpy(problem["da"]), caches)
    ref_grads = nblstm.lstm_backward(problem["da"], ref[3])
    for key, value in ref_grads.items():
        assert isinstance(grads[key], torch.Tensor), key
        np.testing.assert_array_equal(grads[key].numpy(), value)


def test_training_helpers_update_torch_tensors_in_place():
    params = {"w": torch.ones(3, dtype=torch.float64)}
    Adam(params, lr=0.1).step({"w": torch.ones(3, dtype=torch.float64)})
    np.testing.assert_allclose(params["w"].numpy(), 0.9)
    loss, dlogits = softmax_cross_entropy(torch.zeros(2, 3, dtype=torch.float64),
                                          torch.tensor([0, 2]))
    assert isinstance(dlogits, torch.Tensor) and loss == pytest.approx(np.log(3))
    batches = list(Batcher(torch.arange(6.0).reshape(3, 2), batch_size=2, shuffle=False))
    assert all(isinstance(batch[0], torch.Tensor) for batch in batches)
    np.testing.assert_array_equal(batches[0][0].numpy(), [[0, 1], [2, 3]])


def test_a_tensor_that_requires_grad_is_refused_with_the_fix():
    model = nblstm.LSTM(4, 3, dtype=np.float64)
    x = torch.zeros(2, 1, 4, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match=r"requires grad.*x\.detach\(\)"):
        model(x)
    out, _ = model(x.detach())
    assert isinstance(out, torch.Tensor)


def test_mixed_kinds_and_foreign_dtypes_are_type_errors():
    model = nblstm.LSTM(4, 3, dtype=np.float64)
    x, state, _ = _layer_problem()
    state = (np.zeros((1, 3, 3)), np.zeros((1, 3, 3)))
    with pytest.raises(TypeError, match="x is a torch tensor, state h is a NumPy array"):
        model(torch.from_numpy(x), state)
    problem = sequence_problem(3, 4, 5, 6, 2)
    with pytest.raises(TypeError, match="x is a torch tensor, a0 is a NumPy array"):
        nblstm.lstm_forward(torch.from_numpy(problem["x"]), problem["a0"],
                            problem["parameters"])
    with pytest.raises(TypeError) as info:
        model(torch.zeros(2, 1, 4, dtype=torch.bfloat16))
    assert "bfloat16" in str(info.value) and "x.to(torch.float64)" in str(info.value)


def test_results_share_no_memory_with_the_inputs():
    model = nblstm.LSTM(4, 3, dtype=np.float64)
    x = torch.zeros(2, 1, 4, dtype=torch.float64)
    out, (h_n, c_n) = model(x)
    out += 1  # results are the caller's: writing them changes nothing of nblstm's
    np.testing.assert_array_equal(x.numpy(), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU with torch CUDA")
def test_torch_cuda_tensors_in_torch_cuda_tensors_out():
    model = nblstm.LSTM(4, 3, dtype=np.float64, seed=1)
    x, state, lengths = _layer_problem()
    expected = model(x, state, lengths)
    model.to("cuda")
    out, (h_n, c_n) = model(torch.from_numpy(x).cuda(),
                            tuple(torch.from_numpy(s).cuda() for s in state), lengths)
    assert out.is_cuda and h_n.is_cuda
    np.testing.assert_allclose(out.cpu().numpy(), expected[0], rtol=0, atol=1e-12)


def test_jax_arrays_where_jax_is_installed():
    jnp = pytest.importorskip("jax.numpy")
    model = nblstm.LSTM(4, 3, dtype=np.float32, seed=1)
    x = np.random.default_rng(3).standard_normal((5, 2, 4)).astype(np.float32)
    out, _ = model(jnp.asarray(x))
    assert type(out).__module__.startswith("jax")
    np.testing.assert_array_equal(np.asarray(out), model(x)[0])
