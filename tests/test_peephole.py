"""``nblstm.LSTM(..., peephole=True)``: peephole connections (ONNX's ``P``) on every backend.

torch has no peepholes, so the oracles are the NumPy reference (``nblstm.reference.
layer_forward`` with ``peephole_l{k}``), float64 central differences for every gradient, and
ONNX Runtime (``tests/test_onnx.py``).
"""
from dataclasses import dataclass

import numpy as np
import pytest

import nblstm
from _problems import assert_layer_gradients_match_finite_differences
from nblstm import reference


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
         Case(num_layers=2, batch_first=True, state=True, bias=False),
         Case(bidirectional=True, batch_first=True, lengths=(2, 3))]
SIMULATED_CASES = {CASES[1].id}
X, H, T, B = 3, 4, 3, 2


def problem(case: Case, dtype, seed=0):
    """(model, x, state, lengths, d_out, d_state) as NumPy, in the model's layout; the
    peephole weights are scaled up so that a missing peephole term shows."""
    rng = np.random.default_rng(seed)
    lstm = nblstm.LSTM(X, H, case.num_layers, bias=case.bias, batch_first=case.batch_first,
                       bidirectional=case.bidirectional, dtype=dtype, seed=seed, peephole=True)
    for name, value in lstm.parameters().items():
        if name.startswith("peephole"):
            value *= 3
    D = 2 if case.bidirectional else 1
    x = rng.standard_normal((B, T, X) if case.batch_first else (T, B, X)).astype(dtype)
    state = None
    if case.state:
        state = tuple(rng.standard_normal((case.num_layers * D, B, H)).astype(dtype)
                      for _ in range(2))
    lengths = None if case.lengths is None else np.array(case.lengths)
    d_out = rng.standard_normal((B, T, D * H) if case.batch_first else (T, B, D * H)
                                ).astype(dtype)
    d_state = tuple(rng.standard_normal((case.num_layers * D, B, H)).astype(dtype)
                    for _ in range(2))
    return lstm, x, state, lengths, d_out, d_state


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


def test_peephole_parameters_and_configuration():
    lstm = nblstm.LSTM(3, 5, num_layers=2, bidirectional=True, peephole=True, seed=0)
    shapes = lstm.parameter_shapes()
    assert shapes["peephole_l0"] == (3, 5) and shapes["peephole_l1_reverse"] == (3, 5)
    assert list(shapes)[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                "peephole_l0"]
    assert lstm.config()["peephole"] is True
    assert "peephole=True" in repr(lstm)
    bound = 1 / np.sqrt(5)
    assert np.abs(lstm.parameters()["peephole_l0"]).max() <= bound
    # the other weights are those of the same seed without peepholes (same stream order)
    plain = nblstm.LSTM(3, 5, num_layers=1, seed=0)
    np.testing.assert_array_equal(lstm.parameters()["weight_ih_l0"],
                                  plain.parameters()["weight_ih_l0"])


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_peephole_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="peephole"):
        nblstm.LSTM(3, 4, peephole=bad)


def test_peephole_with_proj_size_is_refused():
    with pytest.raises(ValueError, match="peephole.*proj_size"):
        nblstm.LSTM(3, 4, proj_size=2, peephole=True)


def test_peephole_changes_the_result_and_zero_peepholes_give_the_plain_lstm():
    lstm = nblstm.LSTM(X, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=1,
                       peephole=True)
    plain = nblstm.LSTM(X, H, num_layers=2, bidirectional=True, dtype=np.float64)
    for name in plain.parameters():
        plain.parameters()[name] = lstm.parameters()[name].copy()
    x = np.random.default_rng(0).standard_normal((T, B, X))
    assert np.abs(lstm(x)[0] - plain(x)[0]).max() > 1e-3
    for name, value in lstm.parameters().items():
        if name.startswith("peephole"):
            value[...] = 0
    np.testing.assert_array_equal(lstm(x)[0], plain(x)[0])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_peephole_matches_the_numpy_reference(backend, dtype, case):
    if backend.simulated and case.id not in SIMULATED_CASES:
        pytest.skip("one configuration in the CUDA simulator")
    lstm, x, state, lengths, d_out, d_state = problem(case, dtype.dtype)
    time_major = np.swapaxes(x, 0, 1) if case.batch_first else x
    ref_out, ref_h, ref_c = reference.layer_forward(lstm.parameters(), lstm.num_layers,
                                                    lstm.bidirectional, time_major, state,
                                                    lengths)
    outs, _, grads, inference = run_nblstm(lstm, backend, x, state, lengths, d_out, d_state)
    out = np.swapaxes(outs[0], 0, 1) if case.batch_first else outs[0]
    for name, got, ref in zip(("out", "h_n", "c_n"), (out, outs[1], outs[2]),
                              (ref_out, ref_h, ref_c)):
        dtype.assert_output_close(got, ref, name)
    assert list(grads) == list(lstm.parameter_shapes())
    for got, train in zip(inference, outs):  # inference gives the training forward's results
        np.testing.assert_array_equal(got, train)


@pytest.mark.parametrize("case", [CASES[1], CASES[2]], ids=lambda c: c.id)
def test_peephole_gradients_match_finite_differences(backend, case):
    """float64 central differences of every input, state and parameter (the peepholes
    included): coordinate by coordinate (a sample of each array) on the CPU; on a GPU
    backend along one random direction through all of them (two forwards)."""
    if backend.simulated and case.id not in SIMULATED_CASES:
        pytest.skip("one configuration in the CUDA simulator")
    lstm, x, state, lengths, d_out, d_state = problem(case, np.float64, seed=3)
    if state is None:
        state = tuple(np.zeros_like(d) for d in d_state)
    assert_layer_gradients_match_finite_differences(lstm, backend, x, state, lengths, d_out,
                                                    d_state, every_coordinate=("peephole",))


def test_peephole_streams_in_chunks_like_one_call():
    lstm, _, state, _, _, _ = problem(Case(num_layers=2, state=True), np.float64)
    x = np.random.default_rng(5).standard_normal((5, B, X))
    out, (h_n, c_n) = lstm(x, state)
    first, carried = lstm(x[:2], state)
    second, (h2, c2) = lstm(x[2:], carried)
    np.testing.assert_allclose(np.concatenate([first, second]), out, rtol=0, atol=1e-14)
    np.testing.assert_allclose(h2, h_n, rtol=0, atol=1e-14)
    np.testing.assert_allclose(c2, c_n, rtol=0, atol=1e-14)


def test_peephole_save_load_round_trip(tmp_path):
    lstm, x, state, lengths, _, _ = problem(CASES[1], np.float32)
    loaded = nblstm.LSTM.load(lstm.save(tmp_path / "peephole"))
    assert loaded.peephole and loaded.config() == lstm.config()
    for name, value in lstm.parameters().items():
        np.testing.assert_array_equal(loaded.parameters()[name], value)
    np.testing.assert_array_equal(loaded(x, state, lengths)[0], lstm(x, state, lengths)[0])


def test_to_torch_refuses_peepholes():
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="peephole"):
        nblstm.LSTM(3, 4, peephole=True).to_torch()


@pytest.mark.parametrize("variant", ["avx2", "sse-serial"])
def test_a_forced_packed_tile_refuses_peepholes(monkeypatch, variant):
    lstm, x, *_ = problem(CASES[0], np.float32)
    monkeypatch.setenv("NBLSTM_CPU_GEMM", variant)
    with pytest.raises(ValueError, match="NBLSTM_CPU_GEMM.*peephole"):
        lstm(x)
    monkeypatch.setenv("NBLSTM_CPU_GEMM", "blas")
    blas = lstm(x)[0]
    monkeypatch.setenv("NBLSTM_CPU_GEMM", "auto")
    np.testing.assert_array_equal(lstm(x)[0], blas)


def test_peephole_inputs_are_not_modified():
    lstm, x, state, lengths, d_out, d_state = problem(CASES[1], np.float64)
    copies = [a.copy() for a in (x, *state, d_out, *d_state)]
    params = {k: v.copy() for k, v in lstm.parameters().items()}
    _, _, cache = lstm.forward(x, state, lengths, train=True)
    lstm.backward(cache, d_out, d_state)
    for got, before in zip((x, *state, d_out, *d_state), copies):
        np.testing.assert_array_equal(got, before)
    for name, value in params.items():
        np.testing.assert_array_equal(lstm.parameters()[name], value)
