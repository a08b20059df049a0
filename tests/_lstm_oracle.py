"""The float64 NumPy oracle of the CPU sequence kernels (forward and BPTT with lengths) and
random problems for them: shared by the kernel tests of the packed and blocked loops."""
import numpy as np


def tolerance(dtype) -> float:
    """Absolute tolerance of a kernel's result against the float64 oracle."""
    return 2e-5 if dtype == np.float32 else 1e-12


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numpy_forward(x, h0, c0, W_x, W_h, b):
    """float64 oracle of ``lstm_sequence_forward``: (h_all, c_all, gates_all)."""
    T = x.shape[0]
    H = h0.shape[1]
    h, c = h0.astype(np.float64), c0.astype(np.float64)
    hs, cs, gs = [], [], []
    for t in range(T):
        z = x[t].astype(np.float64) @ W_x + h @ W_h + b
        i, f = _sigmoid(z[:, :H]), _sigmoid(z[:, H:2 * H])
        g, o = np.tanh(z[:, 2 * H:3 * H]), _sigmoid(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
        gs.append(np.concatenate([i, f, g, o], axis=1))
    return np.stack(hs), np.stack(cs), np.stack(gs)


def numpy_backward(x, h0, c0, W_x, W_h, h_all, c_all, gates_all, dh_all, dh_n, dc_n, lengths):
    """float64 oracle of BPTT with per-row lengths: (dx, dh0, dc0, dW_x, dW_h, db).

    Row b runs ``lengths[b]`` steps; the final state's gradients enter at its last step."""
    T, B, _ = x.shape
    H = h0.shape[1]
    f64 = lambda a: np.asarray(a, np.float64)
    x, h_all, c_all, gates_all, dh_all = map(f64, (x, h_all, c_all, gates_all, dh_all))
    dh_rec, dc = np.zeros((B, H)), np.zeros((B, H))
    dz_all = np.zeros((T, B, 4 * H))
    for t in range(T - 1, -1, -1):
        last = lengths - 1 == t
        dh_rec[last], dc[last] = dh_n[last], dc_n[last]
        active = (t < lengths)[:, None]
        i, f, g, o = (gates_all[t][:, k * H:(k + 1) * H] for k in range(4))
        c_prev = c_all[t - 1] if t > 0 else f64(c0)
        tanh_c = np.tanh(c_all[t])
        dh = dh_all[t] + dh_rec
        dc_total = dc + dh * o * (1 - tanh_c ** 2)
        dz = np.concatenate([dc_total * g * i * (1 - i), dc_total * c_prev * f * (1 - f),
                             dc_total * i * (1 - g ** 2), dh * tanh_c * o * (1 - o)], axis=1)
        dz_all[t] = np.where(active, dz, 0)
        dc = np.where(active, dc_total * f, dc)
        dh_rec = np.where(active, dz_all[t] @ W_h.T, dh_rec)
    empty = lengths == 0  # no step at all: the final state is the initial one
    dh_rec[empty], dc[empty] = dh_n[empty], dc_n[empty]
    h_prev = np.concatenate([f64(h0)[None], h_all[:-1]])
    dz_2d = dz_all.reshape(T * B, 4 * H)
    dx = (dz_2d @ W_x.T).reshape(x.shape)
    return (dx, dh_rec, dc, x.reshape(T * B, -1).T @ dz_2d,
            h_prev.reshape(T * B, H).T @ dz_2d, dz_2d.sum(axis=0))


def random_problem(T, B, X, H, dtype, seed=0):
    """``[x, h0, c0, W_x, W_h, b]`` of one LSTM pass, weights scaled as torch's init."""
    rng = np.random.default_rng(seed)
    scale = 1.5 / np.sqrt(X + H)
    shapes = [(T, B, X), (B, H), (B, H), (X, 4 * H), (H, 4 * H), (4 * H,)]
    scales = [1, 1, 1, scale, scale, 0.5]
    return [(rng.standard_normal(s) * k).astype(dtype) for s, k in zip(shapes, scales)]
