"""``nblstm.LSTM(..., proj_size=P)`` (LSTMP): against ``torch.nn.LSTM(proj_size=P)``, the NumPy
reference and finite differences, on every backend.

torch is the oracle of outputs and every gradient (``weight_hr`` included) where it is
installed; the NumPy reference (``nblstm.reference.layer_forward``) and float64 central
differences check the same things without it.
"""
from dataclasses import dataclass

import numpy as np
import pytest

import nblstm
from _problems import assert_layer_gradients_match_finite_differences
from nblstm import reference
from nblstm.kernels.cpu import plan

torch_or_none = None
try:
    import torch as torch_or_none
except ImportError:  # pragma: no cover - CI installs torch
    pass


@dataclass(frozen=True)
class Case:
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    lengths: tuple | None = None
    state: bool = False
    bias: bool = True

    @property
    def id(self) -> str:
        parts = [f"L{self.num_layers}", "bi" if self.bidirectional else "uni"]
        parts += ["bf"] if self.batch_first else []
        parts += ["len"] if self.lengths else []
        parts += ["state"] if self.state else []
        parts += [] if self.bias else ["nobias"]
        return "-".join(parts)


CASES = [Case(), Case(num_layers=2, bidirectional=True, lengths=(3, 1), state=True),
         Case(num_layers=3, batch_first=True, state=True),
         Case(num_layers=2, batch_first=True, bidirectional=True, lengths=(2, 3)),
         Case(bias=False, lengths=(3, 2))]
SIMULATED_CASES = {CASES[1].id, CASES[2].id}  # bidirectional + padded + state; 3 layers + bf
X, H, P, T, B = 3, 4, 2, 3, 2


def problem(case: Case, dtype, seed=0):
    """(model, x, state, lengths, d_out, d_state) as NumPy, in the model's layout."""
    rng = np.random.default_rng(seed)
    lstm = nblstm.LSTM(X, H, case.num_layers, bias=case.bias, batch_first=case.batch_first,
                       bidirectional=case.bidirectional, dtype=dtype, seed=seed, proj_size=P)
    D = 2 if case.bidirectional else 1
    x = rng.standard_normal((B, T, X) if case.batch_first else (T, B, X)).astype(dtype)
    state = None
    if case.state:
        state = (rng.standard_normal((case.num_layers * D, B, P)).astype(dtype),
                 rng.standard_normal((case.num_layers * D, B, H)).astype(dtype))
    lengths = None if case.lengths is None else np.array(case.lengths)
    out_shape = (B, T, D * P) if case.batch_first else (T, B, D * P)
    d_out = rng.standard_normal(out_shape).astype(dtype)
    d_state = (rng.standard_normal((case.num_layers * D, B, P)).astype(dtype),
               rng.standard_normal((case.num_layers * D, B, H)).astype(dtype))
    return lstm, x, state, lengths, d_out, d_state


def torch_reference(lstm, x, state, lengths, d_out, d_state):
    """torch's out, h_n, c_n and gradients (dx, dh0, dc0, {name: grad}) in float64."""
    torch = torch_or_none
    module = lstm.to_torch().double()
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    st = None if state is None else tuple(torch.tensor(s, dtype=torch.float64,
                                                       requires_grad=True) for s in state)
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=lstm.batch_first, enforce_sorted=False)
        out, (h_n, c_n) = module(packed, st)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=lstm.batch_first,
                                                        total_length=T)
    else:
        out, (h_n, c_n) = module(xt, st)
    d_out_t = torch.tensor(d_out, dtype=torch.float64)
    if lengths is not None:  # torch's padded outputs carry no gradient either
        mask = np.zeros(d_out.shape)
        for b, n in enumerate(lengths):
            if lstm.batch_first:
                mask[b, :n] = 1
            else:
                mask[:n, b] = 1
        d_out_t = d_out_t * torch.tensor(mask)
    loss = ((out * d_out_t).sum() + (h_n * torch.tensor(d_state[0], dtype=torch.float64)).sum()
            + (c_n * torch.tensor(d_state[1], dtype=torch.float64)).sum())
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return ((out.detach().numpy(), h_n.detach().numpy(), c_n.detach().numpy()),
            (xt.grad.numpy(), None if st is None else st[0].grad.numpy(),
             None if st is None else st[1].grad.numpy()), grads)


def run_nblstm(lstm, backend, x, state, lengths, d_out, d_state):
    put, get = backend.put, backend.get
    if backend.name != "cpu":
        lstm.to("cuda")
    state_b = None if state is None else tuple(put(s) for s in state)
    out, (h_n, c_n), cache = lstm.forward(put(x), state_b, lengths, train=True)
    dx, (dh0, dc0), grads = lstm.backward(cache, put(d_out), tuple(put(g) for g in d_state))
    out_i, (h_i, c_i) = lstm(put(x), state_b, lengths)
    lstm.to("cpu")
    return ((get(out), get(h_n), get(c_n)), (get(dx), get(dh0), get(dc0)),
            {name: get(g) for name, g in grads.items()}, (get(out_i), get(h_i), get(c_i)))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_projection_matches_torch(backend, dtype, case):
    if torch_or_none is None:
        pytest.skip("needs torch (the NumPy reference and finite differences run without)")
    if backend.simulated and case.id not in SIMULATED_CASES:
        pytest.skip("two configurations in the CUDA simulator")
    lstm, x, state, lengths, d_out, d_state = problem(case, dtype.dtype)
    ref_out, ref_grads, ref_weight_grads = torch_reference(lstm, x, state, lengths, d_out,
                                                           d_state)
    outs, grads, weight_grads, inference = run_nblstm(lstm, backend, x, state, lengths, d_out,
                                                      d_state)
    for name, got, ref in zip(("out", "h_n", "c_n"), outs, ref_out):
        dtype.assert_output_close(got, ref, name)
    for name, got, ref in zip(("dx", "dh0", "dc0"), grads, ref_grads):
        if ref is not None:
            dtype.assert_gradient_close(got, ref, name)
    assert list(weight_grads) == list(ref_weight_grads)
    assert any(name.startswith("weight_hr") for name in weight_grads)
    for name, ref in ref_weight_grads.items():
        dtype.assert_gradient_close(weight_grads[name], ref, name)
    for got, train in zip(inference, outs):  # inference gives the training forward's results
        np.testing.assert_array_equal(got, train)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_projection_matches_the_numpy_reference(backend, case):
    if backend.simulated and case.id not in SIMULATED_CASES:
        pytest.skip("two configurations in the CUDA simulator")
    lstm, x, state, lengths, d_out, d_state = problem(case, np.float64)
    time_major = np.swapaxes(x, 0, 1) if case.batch_first else x
    ref_out, ref_h, ref_c = reference.layer_forward(lstm.parameters(), lstm.num_layers,
                                                    lstm.bidirectional, time_major, state,
                                                    lengths)
    (out, h_n, c_n), *_ = run_nblstm(lstm, backend, x, state, lengths, d_out, d_state)
    out = np.swapaxes(out, 0, 1) if case.batch_first else out
    assert out.shape == (T, B, lstm.num_directions * P)
    assert h_n.shape == (lstm.num_layers * lstm.num_directions, B, P)
    assert c_n.shape == (lstm.num_layers * lstm.num_directions, B, H)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_n, ref_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c_n, ref_c, rtol=0, atol=1e-12)


def test_projection_gradients_match_finite_differences(backend):
    """Central differences in float64 on every input, state and parameter (``weight_hr``
    included) of a 2-layer bidirectional projected layer with padding: coordinate by
    coordinate (a sample of each array) on the CPU; on a GPU backend along one random
    direction through all of them at once (two forwards: the simulator runs every thread
    as Python)."""
    case = CASES[1]
    lstm, x, state, lengths, d_out, d_state = problem(case, np.float64, seed=3)
    assert_layer_gradients_match_finite_differences(lstm, backend, x, state, lengths, d_out,
                                                    d_state)


def test_streaming_chunks_equal_one_call(backend):
    """The final states of one chunk start the next: two calls equal one (h is P wide)."""
    lstm = nblstm.LSTM(X, H, num_layers=2, proj_size=P, dtype=np.float64, seed=4)
    if backend.name != "cpu":
        lstm.to("cuda")
    x = np.random.default_rng(1).standard_normal((4, B, X))
    whole, (h_n, c_n) = lstm(backend.put(x))
    first, state = lstm(backend.put(x[:2]))
    second, (h_2, c_2) = lstm(backend.put(x[2:]), state)
    np.testing.assert_allclose(np.concatenate([backend.get(first), backend.get(second)]),
                               backend.get(whole), rtol=0, atol=1e-13)
    np.testing.assert_allclose(backend.get(h_2), backend.get(h_n), rtol=0, atol=1e-13)
    np.testing.assert_allclose(backend.get(c_2), backend.get(c_n), rtol=0, atol=1e-13)


def test_torch_round_trip_is_exact():
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True, batch_first=True,
                           proj_size=3, dropout=0.25, dtype=torch.float64)
    lstm = nblstm.LSTM.from_torch(module)
    assert (lstm.proj_size, lstm.dropout, lstm.real_hidden_size) == (3, 0.25, 3)
    assert list(lstm.parameters()) == [name for name, _ in module.named_parameters()]
    assert lstm.parameters()["weight_hr_l1_reverse"].shape == (3, 6)
    assert lstm.parameters()["weight_ih_l1"].shape == (24, 6)  # D * P inputs above layer 0
    back = lstm.to_torch()
    assert (back.proj_size, back.dropout) == (3, 0.25)
    for (name, p), (name_back, q) in zip(module.named_parameters(), back.named_parameters()):
        assert name == name_back and torch.equal(p, q), name
    module.eval()
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        expected, (h, c) = module(x)
    out, (h_n, c_n) = lstm(x.numpy())
    np.testing.assert_allclose(out, expected.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_n, h.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(c_n, c.numpy(), rtol=0, atol=1e-12)


def test_save_and_load_keep_the_projection(tmp_path):
    lstm = nblstm.LSTM(X, H, num_layers=2, proj_size=P, bidirectional=True, seed=0)
    path = lstm.save(tmp_path / "lstmp")
    loaded = nblstm.LSTM.load(path)
    assert loaded.config() == lstm.config() and loaded.proj_size == P
    for name, value in lstm.parameters().items():
        np.testing.assert_array_equal(loaded.parameters()[name], value)
    x = np.random.default_rng(0).standard_normal((3, 2, X)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x)[0], lstm(x)[0])


def test_forced_packed_kernel_refuses_a_projection(monkeypatch):
    """The packed micro-kernel does not implement the projection: ``auto`` runs BLAS, a
    forced tile is a clear error (never a silent fallback)."""
    lstm = nblstm.LSTM(X, H, proj_size=P, seed=0)
    x = np.zeros((2, 1, X), np.float32)
    for value in ("auto", "blas"):
        monkeypatch.setenv(plan.ENVIRONMENT_VARIABLE, value)
        lstm(x)
    monkeypatch.setenv(plan.ENVIRONMENT_VARIABLE, "avx2-serial")
    with pytest.raises(ValueError, match="NBLSTM_CPU_GEMM=avx2-serial.*proj_size"):
        lstm(x)
    with pytest.raises(ValueError, match="proj_size"):
        lstm.forward(x, train=True)


@pytest.mark.parametrize("bad", [-1, 4, 5, 1.5, True, "2"])
def test_bad_proj_size_is_a_value_error(bad):
    with pytest.raises(ValueError, match="proj_size"):
        nblstm.LSTM(X, 4, proj_size=bad)


def test_state_shapes_are_checked_with_the_projection():
    lstm = nblstm.LSTM(X, H, proj_size=P)
    x = np.zeros((2, 3, X), np.float32)
    good_h, good_c = np.zeros((1, 3, P), np.float32), np.zeros((1, 3, H), np.float32)
    lstm(x, (good_h, good_c))
    with pytest.raises(ValueError, match=r"state h must have shape \(1, 3, 2\).*proj_size = 2"):
        lstm(x, (good_c, good_c))
    with pytest.raises(ValueError, match=r"state c must have shape \(1, 3, 4\).*hidden_size"):
        lstm(x, (good_h, good_h))
    out, (h_n, c_n), cache = lstm.forward(x, train=True)
    with pytest.raises(ValueError, match=r"d_state dh_n must have shape \(1, 3, 2\)"):
        lstm.backward(cache, None, (good_c, None))
    with pytest.raises(ValueError, match=r"d_out must have the shape of out, \(2, 3, 2\)"):
        lstm.backward(cache, np.zeros((2, 3, H), np.float32))


def test_inputs_are_never_modified():
    lstm = nblstm.LSTM(X, H, num_layers=2, proj_size=P, bidirectional=True, dtype=np.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, X))
    state = (rng.standard_normal((4, 2, P)), rng.standard_normal((4, 2, H)))
    d_out = rng.standard_normal((3, 2, 2 * P))
    copies = [a.copy() for a in (x, *state, d_out)]
    _, _, cache = lstm.forward(x, state, np.array([3, 2]), train=True)
    lstm.backward(cache, d_out, state)
    for before, after in zip(copies, (x, *state, d_out)):
        np.testing.assert_array_equal(before, after)


def test_dask_and_infer_run_projected_models(tmp_path):
    pytest.importorskip("dask")
    import dask.array as da

    from nblstm.cli import main as cli_main
    from nblstm.dask import forward as dask_forward
    lstm = nblstm.LSTM(X, H, num_layers=2, proj_size=P, batch_first=True, seed=1)
    x = np.random.default_rng(2).standard_normal((5, 4, X)).astype(np.float32)
    expected, (h_n, c_n) = lstm(x)
    out, (h_d, c_d) = dask_forward(lstm, da.from_array(x, chunks=(2, 2, X)))
    np.testing.assert_allclose(out.compute(), expected, rtol=1e-6, atol=1e-6)
    assert h_d.shape == (2, 5, P) and c_d.shape == (2, 5, H)
    np.testing.assert_allclose(h_d.compute(), h_n, rtol=1e-6, atol=1e-6)
    model, inputs, output = (str(tmp_path / name) for name in ("m.npz", "x.npy", "out.npy"))
    lstm.save(model)
    np.save(inputs, x)
    assert cli_main(["infer", model, inputs, "-o", output, "-q"]) == 0
    np.testing.assert_allclose(np.load(output), expected, rtol=1e-6, atol=1e-6)
