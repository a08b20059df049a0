"""The seed-compatible functions against ``torch.nn.LSTM`` / ``torch.nn.LSTMCell``.

The seed's per-gate weights map onto torch's: torch's gate order is (i, f, g, o) = the
seed's (Wi, Wf, Wc, Wo); ``weight_hh = W[:, :n_a]``, ``weight_ih = W[:, n_a:]`` per gate,
``bias_ih`` the seed's biases and ``bias_hh`` zero. Skipped when torch is not installed.
"""
import numpy as np
import pytest

import nblstm
from _problems import cell_problem, sequence_problem

torch = pytest.importorskip("torch")

SEED_GATES = ("i", "f", "c", "o")  # torch's (i, f, g, o)


def load_seed_weights(module, parameters, n_a):
    """Copy the seed's weights into a torch LSTM (layer 0) or LSTMCell."""
    suffix = "" if isinstance(module, torch.nn.LSTMCell) else "_l0"
    fused = {
        "weight_hh": np.concatenate([parameters["W" + g][:, :n_a] for g in SEED_GATES]),
        "weight_ih": np.concatenate([parameters["W" + g][:, n_a:] for g in SEED_GATES]),
        "bias_ih": np.concatenate([parameters["b" + g][:, 0] for g in SEED_GATES]),
    }
    with torch.no_grad():
        for name, value in fused.items():
            getattr(module, name + suffix).copy_(torch.from_numpy(value))
        getattr(module, "bias_hh" + suffix).zero_()


def torch_grads_as_seed(weight_ih_grad, weight_hh_grad, bias_grad, n_a):
    """torch's fused gradients -> the seed's dW*, db* (n_a, n_a + n_x), (n_a, 1)."""
    out = {}
    for k, g in enumerate(SEED_GATES):
        rows = slice(k * n_a, (k + 1) * n_a)
        out["dW" + g] = np.concatenate([weight_hh_grad[rows], weight_ih_grad[rows]], axis=1)
        out["db" + g] = bias_grad[rows].reshape(n_a, 1)
    return out


@pytest.mark.parametrize("shape", [(3, 10, 7, 5, 2), (1, 1, 1, 1, 1), (8, 6, 12, 16, 4)])
@pytest.mark.parametrize("T_prime_fraction", [1.0, 0.5])
def test_lstm_forward_and_backward_match_torch(cpu_gemm, dtype, shape, T_prime_fraction):
    n_x, m, T, n_a, n_y = shape
    T_prime = max(1, int(T * T_prime_fraction))
    prob = sequence_problem(n_x, m, T, n_a, n_y, seed=T + n_a, dtype=np.float64)
    x, a0, params = prob["x"], prob["a0"], prob["parameters"]
    da = prob["da"][:, :, :T_prime]

    lstm = torch.nn.LSTM(n_x, n_a, dtype=torch.float64)
    load_seed_weights(lstm, params, n_a)
    tx = torch.from_numpy(x.transpose(2, 1, 0).copy()).requires_grad_()
    th0 = torch.from_numpy(a0.T.copy()[None]).requires_grad_()
    out, _ = lstm(tx, (th0, torch.zeros_like(th0)))
    logits = out @ torch.from_numpy(params["Wy"]).T + torch.from_numpy(params["by"][:, 0])
    ty = torch.softmax(logits, dim=-1)
    loss = (out[:T_prime] * torch.from_numpy(da.transpose(2, 1, 0).copy())).sum()
    loss.backward()
    ref_grads = torch_grads_as_seed(lstm.weight_ih_l0.grad.numpy(), lstm.weight_hh_l0.grad.numpy(),
                                    lstm.bias_ih_l0.grad.numpy(), n_a)
    ref_grads["dx"] = tx.grad.numpy().transpose(2, 1, 0)[:, :, :T_prime]
    ref_grads["da0"] = th0.grad.numpy()[0].T

    cast = lambda v: v.astype(dtype.dtype)
    a, y, c, caches = nblstm.lstm_forward(cast(x), cast(a0), {k: cast(v) for k, v in params.items()})
    dtype.assert_output_close(a, out.detach().numpy().transpose(2, 1, 0), "a")
    dtype.assert_output_close(y, ty.detach().numpy().transpose(2, 1, 0), "y")
    grads = nblstm.lstm_backward(cast(da), caches)
    for key, ref in ref_grads.items():
        dtype.assert_gradient_close(grads[key], ref, key)


@pytest.mark.parametrize("shape", [(3, 10, 5, 2), (2, 1, 1, 3)])
def test_lstm_cell_forward_and_backward_match_torch(cpu_gemm, dtype, shape):
    n_x, m, n_a, n_y = shape
    prob = cell_problem(n_x, m, n_a, n_y, seed=n_x * m, dtype=np.float64)
    params = prob["parameters"]
    cell = torch.nn.LSTMCell(n_x, n_a, dtype=torch.float64)
    load_seed_weights(cell, params, n_a)
    tx = torch.from_numpy(prob["xt"].T.copy()).requires_grad_()
    th = torch.from_numpy(prob["a_prev"].T.copy()).requires_grad_()
    tc = torch.from_numpy(prob["c_prev"].T.copy()).requires_grad_()
    h1, c1 = cell(tx, (th, tc))
    loss = (h1 * torch.from_numpy(prob["da_next"].T.copy())).sum() + \
           (c1 * torch.from_numpy(prob["dc_next"].T.copy())).sum()
    loss.backward()
    ref = torch_grads_as_seed(cell.weight_ih.grad.numpy(), cell.weight_hh.grad.numpy(),
                              cell.bias_ih.grad.numpy(), n_a)
    ref.update(dxt=tx.grad.numpy().T, da_prev=th.grad.numpy().T, dc_prev=tc.grad.numpy().T)

    cast = lambda v: v.astype(dtype.dtype)
    a_next, c_next, _, cache = nblstm.lstm_cell_forward(
        cast(prob["xt"]), cast(prob["a_prev"]), cast(prob["c_prev"]),
        {k: cast(v) for k, v in params.items()})
    dtype.assert_output_close(a_next, h1.detach().numpy().T, "a_next")
    dtype.assert_output_close(c_next, c1.detach().numpy().T, "c_next")
    grads = nblstm.lstm_cell_backward(cast(prob["da_next"]), cast(prob["dc_next"]), cache)
    for key, r in ref.items():
        dtype.assert_gradient_close(grads[key], r, key)
