"""Plain NumPy LSTM, written to be obviously correct: the oracle of the tests and the
"numpy" baseline of the benchmarks.

These are the seed's four functions (the deeplearning.ai course's ``lstm_cell_forward``,
``lstm_forward``, ``lstm_cell_backward``, ``lstm_backward``) with the same signatures, layout
(features, batch[, time]) and return structures, without the seed's two bugs: ``n_a`` is
taken from the arrays, and the prediction is ``softmax(Wy @ a_next + by)``.

Parameter dict: ``Wf, Wi, Wc, Wo`` of shape ``(n_a, n_a + n_x)`` acting on
``concat = [a_prev; xt]``, biases ``bf, bi, bc, bo`` of shape ``(n_a, 1)``, output layer
``Wy (n_y, n_a)``, ``by (n_y, 1)``. Computation happens in the dtype of the inputs.
"""
import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, evaluated so that ``exp`` never overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 (each column is one distribution), max-subtracted per column."""
    e = np.exp(x - np.max(x, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    """One LSTM step. xt (n_x, m), a_prev and c_prev (n_a, m).

    Returns ``a_next (n_a, m), c_next (n_a, m), yt_pred (n_y, m), cache`` with
    ``cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)``.
    """
    p = parameters
    concat = np.concatenate([a_prev, xt], axis=0)
    ft = sigmoid(p["Wf"] @ concat + p["bf"])
    it = sigmoid(p["Wi"] @ concat + p["bi"])
    cct = np.tanh(p["Wc"] @ concat + p["bc"])
    ot = sigmoid(p["Wo"] @ concat + p["bo"])
    c_next = ft * c_prev + it * cct
    a_next = ot * np.tanh(c_next)
    yt_pred = softmax(p["Wy"] @ a_next + p["by"])
    cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)
    return a_next, c_next, yt_pred, cache


def lstm_forward(x, a0, parameters):
    """LSTM over a sequence. x (n_x, m, T_x), a0 (n_a, m); the cell state starts at 0.

    Returns ``a (n_a, m, T_x), y (n_y, m, T_x), c (n_a, m, T_x), caches`` with
    ``caches = (list_of_T_x_caches, x)``.
    """
    n_x, m, T_x = x.shape
    n_y, n_a = parameters["Wy"].shape
    a = np.zeros((n_a, m, T_x), dtype=x.dtype)
    c = np.zeros((n_a, m, T_x), dtype=x.dtype)
    y = np.zeros((n_y, m, T_x), dtype=x.dtype)
    a_next = a0
    c_next = np.zeros_like(a0)
    caches = []
    for t in range(T_x):
        a_next, c_next, yt, cache = lstm_cell_forward(x[:, :, t], a_next, c_next, parameters)
        a[:, :, t] = a_next
        c[:, :, t] = c_next
        y[:, :, t] = yt
        caches.append(cache)
    return a, y, c, (caches, x)


def lstm_cell_backward(da_next, dc_next, cache):
    """Backward of one step. da_next, dc_next (n_a, m): gradients w.r.t. a_next, c_next.

    Returns a dict with ``dxt (n_x, m), da_prev, dc_prev (n_a, m), dWf, dWi, dWc, dWo
    (n_a, n_a + n_x), dbf, dbi, dbc, dbo (n_a, 1)``.
    """
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters = cache
    n_a = a_next.shape[0]
    tanh_c = np.tanh(c_next)
    dc = dc_next + da_next * ot * (1 - tanh_c ** 2)
    dot = da_next * tanh_c * ot * (1 - ot)
    dcct = dc * it * (1 - cct ** 2)
    dit = dc * cct * it * (1 - it)
    dft = dc * c_prev * ft * (1 - ft)
    concat = np.concatenate([a_prev, xt], axis=0)
    grads = {}
    dconcat = 0
    for name, dz in (("f", dft), ("i", dit), ("c", dcct), ("o", dot)):
        grads["dW" + name] = dz @ concat.T
        grads["db" + name] = np.sum(dz, axis=1, keepdims=True)
        dconcat = dconcat + parameters["W" + name].T @ dz
    return {
        "dxt": dconcat[n_a:], "da_prev": dconcat[:n_a], "dc_prev": dc * ft,
        "dWf": grads["dWf"], "dWi": grads["dWi"], "dWc": grads["dWc"], "dWo": grads["dWo"],
        "dbf": grads["dbf"], "dbi": grads["dbi"], "dbc": grads["dbc"], "dbo": grads["dbo"],
    }


def lstm_backward(da, caches):
    """Backward over a sequence. da (n_a, m, T'): gradients w.r.t. a of the first T' steps.

    As in the course, ``T' = da.shape[2]`` may be smaller than the forward's ``T_x``: the
    backward pass then starts at step ``T' - 1`` (later steps cannot influence the loss).
    Returns a dict with ``dx (n_x, m, T'), da0 (n_a, m)`` and ``dW*``, ``db*`` as above.
    """
    cache_list, x = caches
    n_a, m, T = da.shape
    n_x = cache_list[0][8].shape[0]
    dx = np.zeros((n_x, m, T), dtype=da.dtype)
    totals = None
    da_prev = np.zeros((n_a, m), dtype=da.dtype)
    dc_prev = np.zeros((n_a, m), dtype=da.dtype)
    for t in reversed(range(T)):
        step = lstm_cell_backward(da[:, :, t] + da_prev, dc_prev, cache_list[t])
        dx[:, :, t] = step["dxt"]
        da_prev, dc_prev = step["da_prev"], step["dc_prev"]
        weight_grads = {k: v for k, v in step.items() if k.startswith(("dW", "db"))}
        if totals is None:
            totals = weight_grads
        else:
            totals = {k: totals[k] + v for k, v in weight_grads.items()}
    return {"dx": dx, "da0": da_prev, **{k: totals[k] for k in
            ("dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo")}}


def layer_forward(parameters: dict, num_layers: int, bidirectional: bool, x: np.ndarray,
                  state: tuple | None = None, lengths=None, dropout_masks=None) -> tuple:
    """``nblstm.LSTM`` / ``torch.nn.LSTM`` semantics, one sequence and one step at a time.

    parameters  torch's names: ``weight_ih_l{k}[_reverse]`` (4H, X_k), ``weight_hh_l{k}``
                (4H, P), optional ``bias_ih_l{k}``, ``bias_hh_l{k}`` (4H,), and with a
                projection ``weight_hr_l{k}`` (P, H) (``h = weight_hr @ (o * tanh(c))``);
                P = H without one; gates (i, f, g, o); with peephole connections
                ``peephole_l{k}`` (3, H), rows (i, f, o): ``i`` and ``f`` see ``c_{t-1}``,
                ``o`` sees ``c_t`` (ONNX's ``P``)
    x           (T, B, X) time-major; state None or ``(h0, c0)``: (num_layers * D, B, P) and
                (num_layers * D, B, H)
    lengths     None or (B,): sequence b is ``x[:lengths[b], b]``; the backward direction
                starts at its last valid step; outputs past the end are zero
    dropout_masks  None, or one (T, B, D*P) multiplier array per layer but the last: layer
                k's output is multiplied by ``dropout_masks[k]`` before layer k+1 reads it
                (a training forward's masks, ``LSTMCache.dropout_masks()``)
    Returns ``out (T, B, D*P), h_n, c_n``, computed in float64.
    """
    D = 2 if bidirectional else 1
    p = {name: np.asarray(value, dtype=np.float64) for name, value in parameters.items()}
    H = p["weight_ih_l0"].shape[0] // 4
    P = p["weight_hh_l0"].shape[1]
    T, B, _ = x.shape
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    if state is None:
        state = (np.zeros((num_layers * D, B, P)), np.zeros((num_layers * D, B, H)))
    layer_input = np.asarray(x, dtype=np.float64)
    h_n, c_n = [], []
    for layer in range(num_layers):
        outputs = []
        for direction, suffix in enumerate([f"_l{layer}", f"_l{layer}_reverse"][:D]):
            out = np.zeros((T, B, P))
            h_last, c_last = np.zeros((B, P)), np.zeros((B, H))
            for b in range(B):
                h = np.asarray(state[0][layer * D + direction, b], dtype=np.float64)
                c = np.asarray(state[1][layer * D + direction, b], dtype=np.float64)
                steps = range(lengths[b]) if direction == 0 else reversed(range(lengths[b]))
                for t in steps:
                    z = p["weight_ih" + suffix] @ layer_input[t, b] + p["weight_hh" + suffix] @ h
                    if "bias_ih" + suffix in p:
                        z = z + p["bias_ih" + suffix] + p["bias_hh" + suffix]
                    i, f, g, o = np.split(z, 4)
                    if "peephole" + suffix in p:
                        p_i, p_f, p_o = p["peephole" + suffix]
                        i, f = i + p_i * c, f + p_f * c
                    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                    if "peephole" + suffix in p:
                        o = o + p_o * c
                    h = sigmoid(o) * np.tanh(c)
                    if "weight_hr" + suffix in p:
                        h = p["weight_hr" + suffix] @ h
                    out[t, b] = h
                h_last[b], c_last[b] = h, c
            outputs.append(out)
            h_n.append(h_last)
            c_n.append(c_last)
        layer_input = np.concatenate(outputs, axis=2)
        if dropout_masks is not None and layer < num_layers - 1:
            layer_input = layer_input * np.asarray(dropout_masks[layer], dtype=np.float64)
    return layer_input, np.stack(h_n), np.stack(c_n)
