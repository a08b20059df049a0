"""The kernels on their own: the vectorizable exp, the gate math, the softmax, and the
properties the design depends on (float32 stays float32, the gate loop vectorizes)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from nblstm import reference
from nblstm.kernels import cpu
from nblstm.kernels.config import JIT_OPTIONS
from nblstm.kernels.cpu import lstm as cpu_lstm
from nblstm.kernels.math import fastmath, gates


@njit(error_model="numpy")
def _apply_exp(values, out):
    for k in range(values.shape[0]):
        out[k] = fastmath.exp(values[k])


@njit(error_model="numpy")
def _apply_sigmoid_tanh(values, sig_out, tanh_out):
    for k in range(values.shape[0]):
        sig_out[k] = gates.sigmoid(values[k])
        tanh_out[k] = gates.tanh(values[k])


@pytest.mark.parametrize("dtype,low,high", [(np.float32, -87.3, 88.3), (np.float64, -708.0, 709.0)])
def test_exp_is_within_one_ulp_over_its_range(dtype, low, high):
    values = np.linspace(low, high, 200_001).astype(dtype)
    out = np.empty_like(values)
    _apply_exp(values, out)
    exact = np.exp(values.astype(np.longdouble))
    relative = np.abs((out - exact) / exact).max() / np.finfo(dtype).eps
    assert relative < 1.0, f"max error {relative:.2f} ulp"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_special_values(dtype):
    values = np.array([np.nan, np.inf, -np.inf, 0.0, 1e4, -1e4], dtype=dtype)
    out = np.empty_like(values)
    _apply_exp(values, out)
    assert np.isnan(out[0])
    assert np.isfinite(out[1]) and out[1] > np.finfo(dtype).max / 4   # saturates, never inf
    assert 0 < out[2] < 1e-37                                          # saturates, never 0
    assert out[3] == 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_match_numpy(dtype):
    values = np.concatenate([np.linspace(-50, 50, 10_001), [0.0, 1e-30, -1e-30, 1e30, -1e30,
                                                              np.inf, -np.inf]]).astype(dtype)
    sig, th = np.empty_like(values), np.empty_like(values)
    _apply_sigmoid_tanh(values, sig, th)
    exact = values.astype(np.float64)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(sig, reference.sigmoid(exact), rtol=4 * eps, atol=4 * eps)
    np.testing.assert_allclose(th, np.tanh(exact), rtol=0, atol=4 * eps)
    assert sig.dtype == dtype and th.dtype == dtype


@settings(deadline=None, max_examples=60)
@given(batch=st.integers(1, 5), hidden=st.integers(1, 40), seed=st.integers(0, 2**31 - 1),
       use_float32=st.booleans())
def test_gate_kernels_match_numpy(batch, hidden, seed, use_float32):
    dtype = np.float32 if use_float32 else np.float64
    rng = np.random.default_rng(seed)
    z_x = (rng.standard_normal((batch, 4 * hidden)) * 3).astype(dtype)
    z_h = (rng.standard_normal((batch, 4 * hidden)) * 3).astype(dtype)
    c_prev = rng.standard_normal((batch, hidden)).astype(dtype)
    gates_out = z_x.copy()  # in: input projection, out: activated gates
    c_out, h_out = np.empty_like(c_prev), np.empty_like(c_prev)
    cpu.lstm_gates_forward(gates_out, z_h, c_prev, c_out, h_out)

    z = (z_x + z_h).astype(np.float64)
    H = hidden
    i, f = reference.sigmoid(z[:, :H]), reference.sigmoid(z[:, H:2 * H])
    g, o = np.tanh(z[:, 2 * H:3 * H]), reference.sigmoid(z[:, 3 * H:])
    c = f * c_prev + i * g
    h = o * np.tanh(c)
    tol = 1e-6 if use_float32 else 1e-14
    np.testing.assert_allclose(gates_out, np.concatenate([i, f, g, o], axis=1), rtol=0, atol=tol)
    np.testing.assert_allclose(c_out, c, rtol=0, atol=tol * 4)
    np.testing.assert_allclose(h_out, h, rtol=0, atol=tol * 4)

    dh = rng.standard_normal((batch, hidden)).astype(dtype)
    dc = rng.standard_normal((batch, hidden)).astype(dtype)
    dz, dc_prev = np.empty_like(z_x), dc.copy()  # dc_prev: in dL/dc_t, out dL/dc_{t-1}
    cpu.lstm_gates_backward(gates_out, c_prev, c_out, dh, dc_prev, dz)
    gi, gf, gg, go = (gates_out[:, k * H:(k + 1) * H].astype(np.float64) for k in range(4))
    tanh_c = np.tanh(c_out.astype(np.float64))
    dc_total = dc + dh * go * (1 - tanh_c ** 2)
    expected = np.concatenate([dc_total * gg * gi * (1 - gi), dc_total * c_prev * gf * (1 - gf),
                               dc_total * gi * (1 - gg ** 2), dh * tanh_c * go * (1 - go)], axis=1)
    np.testing.assert_allclose(dz, expected, rtol=0, atol=tol * 20)
    np.testing.assert_allclose(dc_prev, dc_total * gf, rtol=0, atol=tol * 20)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_softmax_matches_reference(dtype):
    rng = np.random.default_rng(3)
    h = rng.standard_normal((7, 5)).astype(dtype)
    W = (rng.standard_normal((4, 5)) * 10).astype(dtype)
    b = rng.standard_normal((4, 1)).astype(dtype)
    out = np.empty((7, 4), dtype=dtype)
    cpu.linear_softmax(h, np.ascontiguousarray(W.T), np.ascontiguousarray(b[:, 0]), out)
    expected = reference.softmax(W.astype(np.float64) @ h.T.astype(np.float64) + b).T
    np.testing.assert_allclose(out, expected, rtol=0, atol=10 * np.finfo(dtype).eps)


def _gate_row_llvm_ir(dtype) -> str:
    """LLVM IR of the fused gate loop for one dtype. Compiled here from the kernel's Python
    source with the kernel's options but without the on-disk cache: numba cannot show the
    code of a function it loaded from its cache."""
    fresh = njit(**{**JIT_OPTIONS, "cache": False})(cpu_lstm._gates_forward_row.py_func)
    H = 16
    row = np.zeros(4 * H, dtype)
    state = np.zeros(H, dtype)
    fresh(row, row.copy(), state, state.copy(), state.copy(), None)
    llvm_ir = fresh.inspect_llvm(fresh.signatures[0])
    assert "define" in llvm_ir and len(llvm_ir) > 1000
    return llvm_ir


def test_float32_gate_math_does_not_promote_to_float64():
    """float32 kernels must do float32 math: no double-precision arithmetic in the fused loop
    (a Python float or int literal would silently promote it)."""
    llvm_ir = _gate_row_llvm_ir(np.float32)
    double_ops = [line for line in llvm_ir.splitlines()
                  if any(op in line for op in (" fadd double", " fmul double", " fdiv double",
                                               " fsub double", "fpext float"))]
    assert not double_ops, "float64 math in the float32 kernel:\n" + "\n".join(double_ops[:5])


def test_fused_gate_loop_is_vectorized():
    """The gate loop compiles to SIMD code (packed float ops), not a scalar loop with libm
    calls; this is what makes the fused gate update cheap."""
    llvm_ir = _gate_row_llvm_ir(np.float32)
    assert any(f"<{n} x float>" in llvm_ir for n in (4, 8, 16))
    assert "@expf" not in llvm_ir and "@llvm.exp.f32" not in llvm_ir and "tanhf" not in llvm_ir
