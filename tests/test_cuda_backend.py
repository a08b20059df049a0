"""The CUDA backend beyond the shared parity suite: GEMM, device-array helpers, array types
in and out, forced backends, and CUDA-vs-CPU gradients (the twin contract of the two
targets is ``test_kernel_contract.py``)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nblstm
from nblstm import _dispatch
from nblstm.kernels import cpu
from _backends import skip_on_cudasim, skip_unless_cuda
from _problems import sequence_problem


@pytest.fixture
def gpu(backend):
    if backend.name == "cpu":
        pytest.skip("GPU-only test")
    return backend


@pytest.fixture
def cuda_kernels():
    skip_unless_cuda()
    from nblstm.kernels import cuda
    return cuda


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_kernels_match_the_cpu(gpu, cuda_kernels, dtype):
    rng = np.random.default_rng(4)
    B, H = 3, 5
    z = (rng.standard_normal((B, 4 * H)) * 2).astype(dtype)
    z_h = rng.standard_normal((B, 4 * H)).astype(dtype)
    c_prev = rng.standard_normal((B, H)).astype(dtype)
    host = [z.copy(), np.empty_like(c_prev), np.empty_like(c_prev)]
    cpu.lstm_gates_forward(host[0], z_h, c_prev, host[1], host[2])
    device = [gpu.put(z), gpu.put(np.zeros_like(c_prev)), gpu.put(np.zeros_like(c_prev))]
    cuda_kernels.lstm_gates_forward(device[0], gpu.put(z_h), gpu.put(c_prev), device[1], device[2])
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for h, d in zip(host, device):
        np.testing.assert_allclose(gpu.get(d), h, rtol=0, atol=tol)

    dh = rng.standard_normal((B, H)).astype(dtype)
    dc = rng.standard_normal((B, H)).astype(dtype)
    host_dz, host_dc = np.empty_like(z), dc.copy()
    cpu.lstm_gates_backward(host[0], c_prev, host[1], dh, host_dc, host_dz)
    device_dz, device_dc = gpu.put(np.zeros_like(z)), gpu.put(dc)
    cuda_kernels.lstm_gates_backward(gpu.put(host[0]), gpu.put(c_prev), gpu.put(host[1]),
                                     gpu.put(dh), device_dc, device_dz)
    np.testing.assert_allclose(gpu.get(device_dz), host_dz, rtol=0, atol=10 * tol)
    np.testing.assert_allclose(gpu.get(device_dc), host_dc, rtol=0, atol=10 * tol)


@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (5, 3, 7), (9, 6, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_gemm_on_strided_views(cuda_kernels, M, K, N, dtype):
    """The numba GEMM (what runs without CuPy and in the simulator), with edge tiles, a
    transposed operand and accumulation."""
    from numba import cuda
    rng = np.random.default_rng(M * K * N)
    A = rng.standard_normal((K, M)).astype(dtype)  # used transposed
    B = rng.standard_normal((K, N)).astype(dtype)
    C0 = rng.standard_normal((M, N)).astype(dtype)
    from nblstm.kernels.cuda.launch import Launch
    run = Launch(cuda.to_device(A))
    with run:
        C = cuda.to_device(C0)
        run.gemm(cuda.to_device(A).T, cuda.to_device(B), C)
        np.testing.assert_allclose(C.copy_to_host(), A.T @ B, rtol=1e-5, atol=1e-5)
        run.gemm(cuda.to_device(A).T, cuda.to_device(B), C, accumulate=True)
        np.testing.assert_allclose(C.copy_to_host(), 2 * (A.T @ B), rtol=1e-5, atol=1e-5)


def test_device_array_module(cuda_kernels):
    from numba import cuda

    from nblstm.kernels.cuda.launch import DeviceArrayModule as xp
    a = np.arange(24.0).reshape(2, 3, 4)
    b = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(xp.zeros((2, 3), np.float32).copy_to_host(), np.zeros((2, 3)))
    np.testing.assert_array_equal(xp.ascontiguousarray(cuda.to_device(b).T).copy_to_host(), b.T)
    np.testing.assert_array_equal(
        xp.concatenate([cuda.to_device(b), cuda.to_device(2 * b)], axis=1).copy_to_host(),
        np.concatenate([b, 2 * b], axis=1))
    np.testing.assert_array_equal(
        xp.concatenate([cuda.to_device(a), cuda.to_device(a)[:, :, :1]], axis=2).copy_to_host(),
        np.concatenate([a, a[:, :, :1]], axis=2))
    np.testing.assert_array_equal(xp.stack([cuda.to_device(b), cuda.to_device(b)]).copy_to_host(),
                                  np.stack([b, b]))
    np.testing.assert_array_equal(
        xp.ascontiguousarray(cuda.to_device(a)[:, 1:, ::2]).copy_to_host(), a[:, 1:, ::2])


def test_results_have_the_inputs_array_type(gpu):
    prob = sequence_problem(2, 3, 2, 3, 2, seed=1)
    params = {k: gpu.put(v) for k, v in prob["parameters"].items()}
    a, y, c, caches = nblstm.lstm_forward(gpu.put(prob["x"]), gpu.put(prob["a0"]), params)
    grads = nblstm.lstm_backward(gpu.put(prob["da"]), caches)
    expected_type = type(gpu.put(prob["x"]))
    for value in (a, y, c, *caches[0][0][:9], *grads.values()):
        assert type(value) is expected_type


def test_forced_backend_moves_inputs_and_returns_the_inputs_type(gpu):
    prob = sequence_problem(2, 3, 3, 4, 2, seed=2)
    x, a0, params, da = prob["x"], prob["a0"], prob["parameters"], prob["da"]
    a, y, c, caches = nblstm.lstm_forward(x, a0, params, backend="cuda")
    assert all(isinstance(v, np.ndarray) for v in (a, y, c, *caches[0][1][:9]))
    grads = nblstm.lstm_backward(da, caches, backend="cuda")
    ref_a, _, _, ref_caches = nblstm.lstm_forward(x, a0, params)
    ref_grads = nblstm.lstm_backward(da, ref_caches)
    np.testing.assert_allclose(a, ref_a, rtol=0, atol=1e-12)
    for key, value in ref_grads.items():
        assert isinstance(grads[key], np.ndarray)
        np.testing.assert_allclose(grads[key], value, rtol=0, atol=1e-12)
    # device inputs forced onto the CPU come back as device arrays
    device_params = {k: gpu.put(v) for k, v in params.items()}
    a_dev, _, _, caches_dev = nblstm.lstm_forward(gpu.put(x), gpu.put(a0), device_params, backend="cpu")
    assert type(a_dev) is type(gpu.put(x))
    np.testing.assert_allclose(gpu.get(a_dev), ref_a, rtol=0, atol=1e-12)
    grads_dev = nblstm.lstm_backward(gpu.put(da), caches_dev, backend="cpu")
    np.testing.assert_allclose(gpu.get(grads_dev["dWo"]), ref_grads["dWo"], rtol=0, atol=1e-12)


def test_unknown_backend_name_is_a_value_error():
    prob = sequence_problem(2, 2, 2, 2, 2)
    with pytest.raises(ValueError, match="backend must be one of 'cpu', 'cuda'"):
        nblstm.lstm_forward(prob["x"], prob["a0"], prob["parameters"], backend="gpu")


def test_cuda_unavailable_is_a_clear_runtime_error(monkeypatch):
    monkeypatch.setattr(_dispatch, "cuda_unavailable_reason", lambda: "no GPU in this test")
    prob = sequence_problem(2, 2, 2, 2, 2)
    with pytest.raises(RuntimeError, match="backend='cuda' was requested.*no GPU in this test"):
        nblstm.lstm_forward(prob["x"], prob["a0"], prob["parameters"], backend="cuda")


class OnlyArrayInterface:
    """Exposes nothing but ``__cuda_array_interface__`` (like many GPU libraries' arrays)."""
    def __init__(self, device_array):
        self._keep_alive = device_array
        self.__cuda_array_interface__ = device_array.__cuda_array_interface__


@skip_on_cudasim("the simulator's arrays do not export __cuda_array_interface__")
def test_object_with_only_the_cuda_array_interface(gpu):
    prob = sequence_problem(2, 3, 2, 3, 2, seed=3)
    wrap = lambda v: OnlyArrayInterface(gpu.put(v))
    a, y, c, caches = nblstm.lstm_forward(wrap(prob["x"]), wrap(prob["a0"]),
                                          {k: wrap(v) for k, v in prob["parameters"].items()})
    ref = nblstm.lstm_forward(prob["x"], prob["a0"], prob["parameters"])
    np.testing.assert_allclose(a.copy_to_host(), ref[0], rtol=0, atol=1e-12)


@settings(deadline=None, max_examples=6)
@given(n_x=st.integers(1, 3), m=st.integers(1, 3), T=st.integers(1, 3), n_a=st.integers(1, 4),
       seed=st.integers(0, 2**31 - 1), use_float32=st.booleans())
def test_cuda_gradients_match_the_cpu(n_x, m, T, n_a, seed, use_float32):
    """CUDA forward and gradients against the CPU backend (itself checked against finite
    differences), on random tiny problems."""
    skip_unless_cuda()
    dtype = np.float32 if use_float32 else np.float64
    prob = sequence_problem(n_x, m, T, n_a, 2, seed=seed, dtype=dtype)
    args = (prob["x"], prob["a0"], prob["parameters"])
    on_cpu = nblstm.lstm_forward(*args)
    on_gpu = nblstm.lstm_forward(*args, backend="cuda")
    tol = 1e-5 if use_float32 else 1e-12
    for g, c in zip(on_gpu[:3], on_cpu[:3]):
        np.testing.assert_allclose(g, c, rtol=0, atol=tol)
    grads_cpu = nblstm.lstm_backward(prob["da"], on_cpu[3])
    grads_gpu = nblstm.lstm_backward(prob["da"], on_gpu[3], backend="cuda")
    for key, value in grads_cpu.items():
        np.testing.assert_allclose(grads_gpu[key], value, rtol=0, atol=10 * tol, err_msg=key)


def assert_relative(got, expected, rel, what):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape, what
    bound = rel * max(np.max(np.abs(expected)), np.finfo(np.float64).tiny)
    assert np.max(np.abs(got - expected)) <= bound, f"{what}: {np.max(np.abs(got - expected)):.3e} > {bound:.3e}"


@pytest.mark.parametrize("dtype,rel", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_every_seed_function_on_device_arrays_equals_numpy(gpu, dtype, rel):
    """Acceptance bound of the CUDA backend: the four seed-compatible functions give the
    same results on GPU arrays as on NumPy arrays (float64 within 1e-12 relative, float32
    within 1e-5 relative), caches included, and return GPU arrays."""
    prob = sequence_problem(3, 4, 4, 5, 3, seed=21, dtype=dtype)
    x, a0, params, da = prob["x"], prob["a0"], prob["parameters"], prob["da"]
    device_params = {k: gpu.put(v) for k, v in params.items()}
    device_type = type(gpu.put(x))

    host = nblstm.lstm_forward(x, a0, params)
    device = nblstm.lstm_forward(gpu.put(x), gpu.put(a0), device_params)
    for name, h, d in zip("ayc", host[:3], device[:3]):
        assert type(d) is device_type
        assert_relative(gpu.get(d), h, rel, name)
    for t in range(x.shape[2]):
        for k in range(9):
            assert_relative(gpu.get(device[3][0][t][k]), host[3][0][t][k], rel, f"cache {t} {k}")
    host_grads = nblstm.lstm_backward(da, host[3])
    device_grads = nblstm.lstm_backward(gpu.put(da), device[3])
    for key, value in host_grads.items():
        assert type(device_grads[key]) is device_type
        assert_relative(gpu.get(device_grads[key]), value, rel, key)

    xt, c_prev = np.ascontiguousarray(x[:, :, 0]), np.ascontiguousarray(prob["a0"][::-1])
    host_cell = nblstm.lstm_cell_forward(xt, a0, c_prev, params)
    device_cell = nblstm.lstm_cell_forward(gpu.put(xt), gpu.put(a0), gpu.put(c_prev), device_params)
    for k, (h, d) in enumerate(zip(host_cell[:3], device_cell[:3])):
        assert type(d) is device_type
        assert_relative(gpu.get(d), h, rel, f"cell output {k}")
    da_next, dc_next = np.ascontiguousarray(da[:, :, 0]), np.ascontiguousarray(da[:, :, 1])
    host_cell_grads = nblstm.lstm_cell_backward(da_next, dc_next, host_cell[3])
    device_cell_grads = nblstm.lstm_cell_backward(gpu.put(da_next), gpu.put(dc_next), device_cell[3])
    for key, value in host_cell_grads.items():
        assert type(device_cell_grads[key]) is device_type
        assert_relative(gpu.get(device_cell_grads[key]), value, rel, key)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_column_sums_handle_infinite_first_entries(gpu, cuda_kernels, dtype):
    """A -inf logit in the first class is a probability of ~0 (``exp`` saturates at the
    smallest normal float, by design), not a NaN row; an infinite
    first row gives an infinite column sum (the accumulators start at a typed zero)."""
    h = np.ones((2, 1), dtype)
    W_T = np.array([[-np.inf, 0.0, 1.0]], dtype)
    b = np.zeros(3, dtype)
    expected = np.empty((2, 3), dtype)
    cpu.linear_softmax(h, W_T, b, expected)
    assert np.all(np.isfinite(expected)) and 0 <= expected[0, 0] < 1e-37
    out = gpu.put(np.zeros((2, 3), dtype))
    cuda_kernels.linear_softmax(gpu.put(h), gpu.put(W_T), gpu.put(b), out)
    np.testing.assert_allclose(gpu.get(out), expected, rtol=1e-6)

    dz = np.array([[np.inf, 1.0], [1.0, 2.0]], dtype)
    sums = gpu.put(np.zeros(2, dtype))
    from nblstm.kernels.cuda import launch, lstm
    with launch.Launch(gpu.put(dz)) as run:
        run.launch_1d(lstm._column_sums_kernel, 2)(run.kernel_arg(gpu.put(dz)),
                                                    run.kernel_arg(sums))
    np.testing.assert_array_equal(gpu.get(sums), dz.sum(axis=0))
