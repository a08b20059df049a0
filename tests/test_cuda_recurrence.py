"""The CUDA recurrence tiers (``kernels/cuda/recurrence.py``, ``NBLSTM_CUDA_RECURRENCE``).

``auto`` runs the whole parity suite (it is the default). Here each forced tier runs a
subset that covers every feature once (lengths, states, both dtypes, layers, directions)
and the edge shapes (H = 1, B = 1, T = 1, H not a multiple of a block's slice, a partial
block of rows), against the CPU backend; plus the selection rules (a forced tier that cannot
run raises, ``auto`` routes around what a tier declines and falls back with a warning) and
determinism (bit-identical across tiers and block sizes). In the simulator blocks run one
after another, so the ``units`` tier's grid is one block there
(``max_cooperative_grid_blocks`` says 1); the GPU-only tests run it at several grid sizes.
"""
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import nblstm
from _backends import BACKENDS, SIMULATED, skip_unless_cuda
from nblstm import _environment
from nblstm.kernels import cuda_plan

TIERS = ("rows", "units", "steps")


@dataclass(frozen=True)
class Shape:
    T: int = 3
    B: int = 2
    X: int = 3
    H: int = 4
    num_layers: int = 1
    bidirectional: bool = False
    lengths: tuple | None = None
    state: bool = False
    dtype: str = "float64"
    peephole: bool = False

    @property
    def id(self) -> str:
        parts = [f"T{self.T}B{self.B}H{self.H}", self.dtype[-2:]]
        parts += [f"L{self.num_layers}"] if self.num_layers > 1 else []
        parts += ["bi"] if self.bidirectional else []
        parts += ["len"] if self.lengths else []
        parts += ["state"] if self.state else []
        parts += ["peephole"] if self.peephole else []
        return "-".join(parts)


SHAPES = [
    Shape(num_layers=2, bidirectional=True, lengths=(3, 1), state=True),  # every feature
    Shape(dtype="float32", state=True),
    Shape(B=3, bidirectional=True, lengths=(3, 1, 2), peephole=True),
    Shape(H=1), Shape(B=1, lengths=(2,)), Shape(T=1),
    Shape(B=3, H=13, T=2),   # units: slices of 10 (32 threads / 3 rows): 13 = 10 + 3
    Shape(B=7, H=5, T=2),    # rows: 6 rows per block (32 // 5): a full and a partial block
]


def _problem(shape: Shape, seed: int = 0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(shape.dtype)
    lstm = nblstm.LSTM(shape.X, shape.H, shape.num_layers, bidirectional=shape.bidirectional,
                       dtype=dtype, seed=seed, peephole=shape.peephole)
    D = 2 if shape.bidirectional else 1
    x = rng.standard_normal((shape.T, shape.B, shape.X)).astype(dtype)
    state = None
    if shape.state:
        state = tuple(rng.standard_normal((shape.num_layers * D, shape.B, shape.H)).astype(dtype)
                      for _ in range(2))
    lengths = None if shape.lengths is None else np.array(shape.lengths)
    d_out = rng.standard_normal((shape.T, shape.B, D * shape.H)).astype(dtype)
    return lstm, x, state, lengths, d_out


def _run(lstm, backend, x, state, lengths, d_out):
    put, get = backend.put, backend.get
    state_b = None if state is None else tuple(put(s) for s in state)
    out, (h_n, c_n) = lstm(put(x), state_b, lengths)
    out_t, _, cache = lstm.forward(put(x), state_b, lengths, train=True)
    dx, (dh0, dc0), grads = lstm.backward(cache, put(d_out))
    return ([get(a) for a in (out, h_n, c_n, out_t, dx, dh0, dc0)],
            {name: get(g) for name, g in grads.items()})


@pytest.fixture
def spy(monkeypatch):
    """The tiers that actually launched, in order: forward passes in the list, BPTT in its
    ``backward`` attribute."""
    from nblstm.kernels.cuda import recurrence

    class Launches(list):
        backward: list

    launched = Launches()
    launched.backward = []
    for name, record in (("launch_forward", launched), ("launch_backward", launched.backward)):
        def recording(tier, *args, real=getattr(recurrence, name), record=record, **kwargs):
            record.append(tier)
            return real(tier, *args, **kwargs)
        monkeypatch.setattr(recurrence, name, recording)
    return launched


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.id)
def test_each_tier_matches_the_cpu(monkeypatch, spy, tier, shape):
    skip_unless_cuda()
    lstm, x, state, lengths, d_out = _problem(shape)
    expected, expected_grads = _run(lstm, BACKENDS["cpu"], x, state, lengths, d_out)
    monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", tier)
    lstm.to("cuda")
    got, grads = _run(lstm, BACKENDS["cuda"], x, state, lengths, d_out)
    tolerance = 1e-12 if shape.dtype == "float64" else 2e-5
    for name, a, b in zip(("out", "h_n", "c_n", "train out", "dx", "dh0", "dc0"), got,
                          expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=tolerance, err_msg=name)
    for name, value in expected_grads.items():
        np.testing.assert_allclose(grads[name], value, rtol=0, atol=tolerance, err_msg=name)
    # a forced tier ran: once per direction and layer, for inference and training forwards
    # and for BPTT
    D = 2 if shape.bidirectional else 1
    runs = shape.num_layers * D
    assert spy == ([] if tier == "steps" else [tier] * 2 * runs)
    assert spy.backward == ([] if tier == "steps" else [tier] * runs)


def test_auto_runs_a_persistent_tier(monkeypatch, spy):
    skip_unless_cuda()
    monkeypatch.delenv("NBLSTM_CUDA_RECURRENCE", raising=False)
    lstm, x, *_ = _problem(Shape())
    lstm.to("cuda")
    lstm(BACKENDS["cuda"].put(x))
    assert spy == ["units"]  # B = 2 <= CUDA_UNITS_MAX_BATCH, cooperative launch works


def test_the_persistent_tiers_agree_bit_for_bit(monkeypatch):
    """Each (row, unit) sums in one fixed order whatever the tier and the block shape."""
    skip_unless_cuda()
    from nblstm.kernels.cuda import recurrence
    shape = Shape(T=3, B=5, H=6, dtype="float32")
    lstm, x, state, lengths, d_out = _problem(shape)
    lstm.to("cuda")
    put, get = BACKENDS["cuda"].put, BACKENDS["cuda"].get
    results = []
    for tier, rows in (("rows", None), ("rows", 1), ("units", None)):
        monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", tier)
        if rows is not None:
            monkeypatch.setattr(recurrence, "rows_per_block", lambda B, H: rows)
        results.append(get(lstm(put(x), tuple(map(put, state)) if state else None)[0]))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.parametrize("tier", ["rows", "units"])
def test_a_forced_persistent_tier_refuses_a_projection(monkeypatch, tier):
    skip_unless_cuda()
    lstm = nblstm.LSTM(3, 4, dtype=np.float64, seed=0, proj_size=2)
    x = np.random.default_rng(0).standard_normal((2, 2, 3))
    expected = lstm(x)[0]
    lstm.to("cuda")
    put, get = BACKENDS["cuda"].put, BACKENDS["cuda"].get
    monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", tier)
    with pytest.raises(RuntimeError, match=f"NBLSTM_CUDA_RECURRENCE={tier}.*projection"):
        lstm(put(x))
    monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", "auto")  # routes such models to steps
    np.testing.assert_allclose(get(lstm(put(x))[0]), expected, rtol=0, atol=1e-12)


def test_units_without_a_cooperative_launch(monkeypatch, spy):
    skip_unless_cuda()
    from nblstm.kernels.cuda import recurrence
    monkeypatch.setattr(recurrence, "cooperative_blocks",
                        lambda *args: (0, "cudaErrorCooperativeLaunchTooLarge (a test)"))
    lstm, x, *_ = _problem(Shape())
    expected = lstm(x)[0]
    lstm.to("cuda")
    put, get = BACKENDS["cuda"].put, BACKENDS["cuda"].get
    monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", "units")
    with pytest.raises(RuntimeError, match="units needs a cooperative launch.*a test"):
        lstm(put(x))
    monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", "auto")
    np.testing.assert_allclose(get(lstm(put(x))[0]), expected, rtol=0, atol=1e-12)
    assert spy == ["rows"]


def test_auto_falls_back_to_steps_with_a_warning(monkeypatch):
    skip_unless_cuda()
    from nblstm.kernels.cuda import recurrence

    def failing(*args, **kwargs):
        raise RuntimeError("launch failed (a test)")
    monkeypatch.setattr(recurrence, "launch_forward", failing)
    lstm, x, *_ = _problem(Shape())
    expected = lstm(x)[0]
    lstm.to("cuda")
    put, get = BACKENDS["cuda"].put, BACKENDS["cuda"].get
    monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", "auto")
    with pytest.warns(RuntimeWarning, match="could not launch.*per-step path"):
        out = lstm(put(x))[0]
    np.testing.assert_allclose(get(out), expected, rtol=0, atol=1e-12)
    monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", "rows")  # forced: the failure propagates
    with pytest.raises(RuntimeError, match="a test"):
        lstm(put(x))


@pytest.mark.parametrize("value", ["bogus", "row", "1"])
def test_an_unknown_value_is_a_value_error(monkeypatch, value):
    monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", value)
    with pytest.raises(ValueError, match="NBLSTM_CUDA_RECURRENCE.*auto, rows, units, steps"):
        cuda_plan.choice()
    assert "invalid" in _environment.cuda_recurrence()


def test_values_are_read_per_call_and_case_insensitive(monkeypatch):
    for value, expected in (("ROWS", "rows"), (" units ", "units"), ("", "auto")):
        monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", value)
        assert cuda_plan.choice() == expected
    monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", "steps")
    assert "NBLSTM_CUDA_RECURRENCE=steps" in _environment.cuda_recurrence()


# ------------------------------------------------------------------ a real GPU only

GPU_ONLY = pytest.mark.skipif(SIMULATED, reason="grid barriers need a real GPU (the simulator "
                                                "runs blocks one after another)")


def _random_problem(rng, trial, T):
    """One race-test case: random sizes (B up to 39, H up to 299), dtypes alternating."""
    return T, int(rng.integers(1, 40)), int(rng.integers(1, 300)), (
        np.float32 if trial % 2 else np.float64)


def _assert_all_equal(outputs):
    for other in outputs[1:]:
        for a, b in zip(other, outputs[0]):
            np.testing.assert_array_equal(a, b)


def _real_gpu_arrays(rng, T, B, H, dtype):
    from numba import cuda
    z = rng.standard_normal((T, B, 4 * H)).astype(dtype)
    W_h = (rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype(dtype)
    h0, c0 = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    return [cuda.to_device(a) for a in (z, W_h, h0, c0)], cuda


@GPU_ONLY
@pytest.mark.parametrize("tier", ["units", "rows"])
def test_grid_size_does_not_change_a_bit(tier):
    """A race test: 20 random inputs, the units tier at grid sizes 1, 7 and the device's
    maximum (the rows tier at its own grid), outputs bit-identical."""
    skip_unless_cuda()
    from nblstm.kernels.cuda import recurrence
    rng = np.random.default_rng(0)
    for trial in range(20):
        T, B, H, dtype = _random_problem(rng, trial, 30)
        (z, W_h, h0, c0), cuda = _real_gpu_arrays(rng, T, B, H, dtype)
        outputs = []
        for max_blocks in ((1, 7, None) if tier == "units" else (None, None)):
            z_run = cuda.to_device(z.copy_to_host())
            h_all = cuda.device_array((T, B, H), dtype)
            c_all = cuda.device_array((T, B, H), dtype)
            recurrence.launch_forward(tier, 0, (z_run, W_h, h0, c0, h_all, c_all, True, c0,
                                                False), B, H, max_blocks=max_blocks)
            outputs.append([a.copy_to_host() for a in (h_all, c_all, z_run)])
        _assert_all_equal(outputs)


@GPU_ONLY
@pytest.mark.parametrize("tier", ["units", "rows"])
def test_backward_grid_size_does_not_change_a_bit(tier):
    """The race test of BPTT: 20 random padded batches, outputs bit-identical at grid sizes
    1, 7 and the maximum (units), and run to run (rows)."""
    skip_unless_cuda()
    from nblstm.kernels.cuda import recurrence
    rng = np.random.default_rng(1)
    for trial in range(20):
        T, B, H, dtype = _random_problem(rng, trial, 20)
        (z, W_h, h0, c0), cuda = _real_gpu_arrays(rng, T, B, H, dtype)
        h_all = cuda.device_array((T, B, H), dtype)
        c_all = cuda.device_array((T, B, H), dtype)
        recurrence.launch_forward("rows", 0, (z, W_h, h0, c0, h_all, c_all, True, c0, False),
                                  B, H)
        W_h_T = cuda.to_device(np.ascontiguousarray(W_h.copy_to_host().T))
        dh_all = cuda.to_device(rng.standard_normal((T, B, H)).astype(dtype))
        dh_n, dc_n = (cuda.to_device(rng.standard_normal((B, H)).astype(dtype)) for _ in "hc")
        lengths = cuda.to_device(rng.integers(1, T + 1, size=B).astype(np.int64))
        outputs = []
        for max_blocks in ((1, 7, None) if tier == "units" else (None, None)):
            dz = cuda.device_array((T, B, 4 * H), dtype)
            dc, dh0 = cuda.device_array((B, H), dtype), cuda.device_array((B, H), dtype)
            recurrence.launch_backward(tier, 0, (z, c0, c_all, dh_all, dh_n, dc_n, lengths,
                                                 W_h_T, dz, dc, dh0, c0, False), B, H,
                                       max_blocks=max_blocks)
            outputs.append([a.copy_to_host() for a in (dz, dc, dh0)])
        _assert_all_equal(outputs)


@pytest.mark.skipif(SIMULATED, reason="10,000 simulated steps would take hours")
@pytest.mark.parametrize("tier", ["rows", "units"])
def test_ten_thousand_steps_against_the_cpu(monkeypatch, tier):
    skip_unless_cuda()
    lstm = nblstm.LSTM(8, 32, dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10_000, 4, 8))
    d_out = rng.standard_normal((10_000, 4, 32))
    expected, (h_n, c_n) = lstm(x)
    _, _, cache = lstm.forward(x, train=True)
    expected_grads = lstm.backward(cache, d_out)
    monkeypatch.setenv("NBLSTM_CUDA_RECURRENCE", tier)
    lstm.to("cuda")
    put, get = BACKENDS["cuda"].put, BACKENDS["cuda"].get
    out, (h, c) = lstm(put(x))
    np.testing.assert_allclose(get(out), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(get(c), c_n, rtol=0, atol=1e-10)
    _, _, cache = lstm.forward(put(x), train=True)
    dx, _, grads = lstm.backward(cache, put(d_out))
    np.testing.assert_allclose(get(dx), expected_grads[0], rtol=0, atol=1e-9)
    for name, value in expected_grads[2].items():
        np.testing.assert_allclose(get(grads[name]), value, rtol=1e-9, atol=1e-9)


def test_no_warning_from_auto_on_the_default_path(monkeypatch):
    skip_unless_cuda()
    lstm, x, *_ = _problem(Shape())
    lstm.to("cuda")
    monkeypatch.delenv("NBLSTM_CUDA_RECURRENCE", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lstm(BACKENDS["cuda"].put(x))
