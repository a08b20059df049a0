"""``nblstm.LSTM`` against ``torch.nn.LSTM`` (torch autograd as the gradient oracle).

Every configuration runs on every backend of the parity fixture (cpu; cuda: numba device
arrays, simulated on machines without a GPU; cupy on a real GPU) in float32 and float64:
outputs, final states, and the gradients of a random linear loss with respect to the input,
the initial state and every parameter. Padded batches (``lengths``) are compared with torch's
packed sequences (``pack_padded_sequence(..., enforce_sorted=False)``).

With torch installed the model is ``LSTM.from_torch(module)`` and the references are torch's
runs, now. Without it, the module's weights, the inputs and torch's answers come from the
recordings of torch 2.13 (``tests/torch_fixtures/``; float32 problems against torch's
float64 run on their float32 values, see ``tests/_torch_fixtures.py``), and the weights are
assigned into ``nblstm.LSTM(...).parameters()``. ``test_recorded_references_match_live_torch``
(torch only) checks the recordings; the interop tests need torch and skip without it.
"""
import numpy as np
import pytest

import _torch_fixtures as fx
import nblstm
from _torch_fixtures import (ACCEPTANCE, ACCEPTANCE_BOUND_CASE, CONFIGS, LAYER_CASES,  # noqa: F401
                             Config, make_problem, torch_run)

# The simulated GPU runs every thread as Python: a subset of the cases, the acceptance one
# included (each costs seconds there).
SIMULATED_CONFIGS = {ACCEPTANCE.id, Config(num_layers=3).id,
                     Config(batch_first=True, lengths=(2, 4, 3)).id}


def nblstm_model(config: Config, reference: fx.Reference, dtype) -> nblstm.LSTM:
    """The model of ``reference``: ``from_torch`` of the live module, or the recorded
    weights assigned into a new ``nblstm.LSTM``."""
    if reference.module is not None:
        return nblstm.LSTM.from_torch(reference.module)
    lstm = nblstm.LSTM(config.X, config.H, config.num_layers, bias=config.bias,
                       batch_first=config.batch_first, bidirectional=config.bidirectional,
                       dtype=dtype)
    parameters = lstm.parameters()
    weights = reference.group("weight")
    assert list(weights) == list(parameters), "recorded weights != the model's parameters"
    for name, value in weights.items():
        assert value.shape == parameters[name].shape, name
        parameters[name] = np.array(value, dtype=dtype)
    return lstm


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.id)
@pytest.mark.usefixtures("cpu_gemm")  # reaches the LSTM kernels: every CPU GEMM
def test_layer_matches_torch(backend, dtype, config):
    if backend.simulated and config.id not in SIMULATED_CONFIGS:
        pytest.skip("a smaller set of configurations in the CUDA simulator")
    ref = fx.layer_reference(config, dtype.dtype)
    x, state, d_out, d_state, lengths = (ref["input/x"], ref.state, ref["input/d_out"],
                                         ref.d_state, ref.lengths)

    lstm = nblstm_model(config, ref, dtype.dtype)
    if backend.name != "cpu":
        lstm.to("cuda")
    put = backend.put
    state_b = tuple(put(s) for s in state) if state else None
    out, (h_n, c_n), cache = lstm.forward(put(x), state_b, lengths, train=True)
    dx, (dh0, dc0), grads = lstm.backward(cache, put(d_out), tuple(put(g) for g in d_state))

    dtype.assert_output_close(backend.get(out), ref["output/out"], "out")
    dtype.assert_output_close(backend.get(h_n), ref["output/h_n"], "h_n")
    dtype.assert_output_close(backend.get(c_n), ref["output/c_n"], "c_n")
    dtype.assert_gradient_close(backend.get(dx), ref["grad/dx"], "dx")
    if state is not None:
        dtype.assert_gradient_close(backend.get(dh0), ref["grad/dh0"], "dh0")
        dtype.assert_gradient_close(backend.get(dc0), ref["grad/dc0"], "dc0")
    ref_grads = ref.group("weight_grad")
    assert list(grads) == list(ref_grads)
    for name, reference in ref_grads.items():
        dtype.assert_gradient_close(backend.get(grads[name]), reference, name)

    # inference gives the training forward's results
    out_i, (h_i, c_i) = lstm(put(x), state_b, lengths)
    np.testing.assert_array_equal(backend.get(out_i), backend.get(out))
    np.testing.assert_array_equal(backend.get(h_i), backend.get(h_n))
    np.testing.assert_array_equal(backend.get(c_i), backend.get(c_n))


def test_float64_acceptance_bound_on_cpu(cpu_gemm):
    """The issue's bound, stated literally: max error <= 1e-9 * (1 + max|ref|), float64."""
    config, dtype, seed = ACCEPTANCE_BOUND_CASE
    ref = fx.layer_reference(config, dtype, seed=seed)
    x, state, d_out, d_state, lengths = (ref["input/x"], ref.state, ref["input/d_out"],
                                         ref.d_state, ref.lengths)
    reference = tuple(ref[name] for name in ("output/out", "output/h_n", "output/c_n",
                                             "grad/dx", "grad/dh0", "grad/dc0"))
    lstm = nblstm_model(config, ref, np.float64)
    out, (h_n, c_n), cache = lstm.forward(x, state, lengths, train=True)
    dx, (dh0, dc0), grads = lstm.backward(cache, d_out, d_state)
    actual = (out, h_n, c_n, dx, dh0, dc0)
    for name, got, r in zip(("out", "h_n", "c_n", "dx", "dh0", "dc0"), actual, reference):
        assert np.max(np.abs(got - r)) <= 1e-9 * (1 + np.max(np.abs(r))), name
    for name, r in ref.group("weight_grad").items():
        assert np.max(np.abs(grads[name] - r)) <= 1e-9 * (1 + np.max(np.abs(r))), name


@pytest.mark.parametrize(("config", "dtype", "seed"), LAYER_CASES, indirect=["dtype"],
                         ids=[fx.case_id(*case) for case in LAYER_CASES])
def test_recorded_references_match_live_torch(config, dtype, seed):
    """The recordings the tests use without torch (inputs, weights, torch's answers) are
    what the live test computes, within the dtype's tolerances (never bitwise: torch's last
    bits depend on the CPU). float32: the recorded float64 reference of the float32 problem
    against torch's float32 run, the live test's reference."""
    pytest.importorskip("torch")
    fx.assert_recorded_matches(fx.recorded_layer(config, dtype.dtype, seed),
                               fx.live_layer(config, dtype.dtype, seed), dtype)


def test_torch_round_trip_is_exact():
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(5, 4, num_layers=2, bidirectional=True, batch_first=True,
                           dtype=torch.float64)
    lstm = nblstm.LSTM.from_torch(module)
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bidirectional,
            lstm.batch_first, lstm.dtype) == (5, 4, 2, True, True, np.float64)
    back = lstm.to_torch()
    for (name, p), (name_back, q) in zip(module.named_parameters(), back.named_parameters()):
        assert name == name_back
        assert torch.equal(p, q), name
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    np.testing.assert_array_equal(back(x)[0].detach().numpy(), module(x)[0].detach().numpy())


def test_default_initialisation_is_torchs():
    torch = pytest.importorskip("torch")
    lstm = nblstm.LSTM(7, 16, num_layers=2, bidirectional=True, seed=1)
    module = torch.nn.LSTM(7, 16, num_layers=2, bidirectional=True)
    torch_params = dict(module.named_parameters())
    assert list(lstm.parameters()) == list(torch_params)
    bound = 1 / np.sqrt(16)
    for name, value in lstm.parameters().items():
        assert value.shape == tuple(torch_params[name].shape), name
        assert value.dtype == np.float32
        assert np.abs(value).max() <= bound
        # uniform in +-bound: the spread fills the interval
        assert np.abs(value).max() > 0.9 * bound
        assert abs(value.std() - bound / np.sqrt(3)) < 0.15 * bound / np.sqrt(3)


def test_dtypes_other_than_float32_float64_are_refused():
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(3, 2).to(torch.float16)
    with pytest.raises(TypeError, match="float16"):
        nblstm.LSTM.from_torch(module)
    with pytest.raises(TypeError, match="torch.nn.LSTM"):
        nblstm.LSTM.from_torch(torch.nn.Linear(3, 4))
