"""The seed-compatible functions against ``torch.nn.LSTM`` / ``torch.nn.LSTMCell``.

The seed's per-gate weights map onto torch's: torch's gate order is (i, f, g, o) = the
seed's (Wi, Wf, Wc, Wo); ``weight_hh = W[:, :n_a]``, ``weight_ih = W[:, n_a:]`` per gate,
``bias_ih`` the seed's biases and ``bias_hh`` zero (``tests/_torch_fixtures.py``).

With torch installed the references are torch's float64 runs, now; without it, the same
runs recorded from torch 2.13 (``tests/torch_fixtures/``), and
``test_recorded_references_match_live_torch`` (torch only) checks the recordings.
"""
import numpy as np
import pytest

import _torch_fixtures as fx
import nblstm
from _torch_fixtures import (CELL_SHAPES, SEED_GATES, SEQUENCE_SHAPES,  # noqa: F401
                             T_PRIME_FRACTIONS, load_seed_weights, torch_grads_as_seed)


@pytest.mark.parametrize("shape", SEQUENCE_SHAPES)
@pytest.mark.parametrize("T_prime_fraction", T_PRIME_FRACTIONS)
def test_lstm_forward_and_backward_match_torch(cpu_gemm, dtype, shape, T_prime_fraction):
    ref = fx.sequence_reference(shape, T_prime_fraction)
    x, a0, da, params = ref["input/x"], ref["input/a0"], ref["input/da"], ref.group("weight")

    cast = lambda v: v.astype(dtype.dtype)
    a, y, c, caches = nblstm.lstm_forward(cast(x), cast(a0), {k: cast(v) for k, v in params.items()})
    dtype.assert_output_close(a, ref["output/a"], "a")
    dtype.assert_output_close(y, ref["output/y"], "y")
    dtype.assert_output_close(c[:, :, -1], ref["output/c_n"], "c[:, :, -1]")
    grads = nblstm.lstm_backward(cast(da), caches)
    for key, reference in ref.group("grad").items():
        dtype.assert_gradient_close(grads[key], reference, key)


@pytest.mark.parametrize("shape", CELL_SHAPES)
def test_lstm_cell_forward_and_backward_match_torch(cpu_gemm, dtype, shape):
    ref = fx.cell_reference(shape)
    inputs, params = ref.group("input"), ref.group("weight")

    cast = lambda v: v.astype(dtype.dtype)
    a_next, c_next, _, cache = nblstm.lstm_cell_forward(
        cast(inputs["xt"]), cast(inputs["a_prev"]), cast(inputs["c_prev"]),
        {k: cast(v) for k, v in params.items()})
    dtype.assert_output_close(a_next, ref["output/a_next"], "a_next")
    dtype.assert_output_close(c_next, ref["output/c_next"], "c_next")
    grads = nblstm.lstm_cell_backward(cast(inputs["da_next"]), cast(inputs["dc_next"]), cache)
    for key, r in ref.group("grad").items():
        dtype.assert_gradient_close(grads[key], r, key)


@pytest.mark.parametrize("dtype", ["float64"], indirect=True)  # float64 runs, as recorded
@pytest.mark.parametrize("case", [("lstm", shape, fraction) for shape in SEQUENCE_SHAPES
                                  for fraction in T_PRIME_FRACTIONS]
                         + [("cell", shape, None) for shape in CELL_SHAPES],
                         ids=lambda case: "-".join(map(str, (case[0],) + case[1]))
                         + ("" if case[2] is None else f"-frac{case[2]}"))
def test_recorded_references_match_live_torch(dtype, case):
    """The recordings the tests use without torch are live torch's runs (inputs too),
    within the float64 tolerances (never bitwise: torch's last bits depend on the CPU)."""
    pytest.importorskip("torch")
    kind, shape, fraction = case
    if kind == "lstm":
        recorded = fx.recorded(fx.sequence_prefix(shape, fraction))
        live = fx.live_sequence(shape, fraction)
    else:
        recorded, live = fx.recorded(fx.cell_prefix(shape)), fx.live_cell(shape)
    fx.assert_recorded_matches(recorded, live, dtype)
