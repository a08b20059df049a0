"""Random seed-API problems, input snapshots and central finite differences, used by many tests."""
import numpy as np

SEED_KEYS = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo", "Wy", "by")


def seed_parameters(n_a: int, n_x: int, n_y: int, rng, dtype=np.float64) -> dict:
    """Weights scaled so the gates are neither saturated nor linear."""
    scale = 1.5 / np.sqrt(n_a + n_x)
    p = {}
    for g in "fico":
        p["W" + g] = (rng.standard_normal((n_a, n_a + n_x)) * scale).astype(dtype)
        p["b" + g] = (rng.standard_normal((n_a, 1)) * 0.5).astype(dtype)
    p["Wy"] = rng.standard_normal((n_y, n_a)).astype(dtype)
    p["by"] = rng.standard_normal((n_y, 1)).astype(dtype)
    return p


def sequence_problem(n_x=3, m=4, T=5, n_a=6, n_y=2, seed=0, dtype=np.float64) -> dict:
    """Inputs of ``lstm_forward`` plus a gradient ``da`` for all T steps."""
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((n_x, m, T)).astype(dtype),
        "a0": rng.standard_normal((n_a, m)).astype(dtype),
        "parameters": seed_parameters(n_a, n_x, n_y, rng, dtype),
        "da": rng.standard_normal((n_a, m, T)).astype(dtype),
    }


def cell_problem(n_x=3, m=4, n_a=6, n_y=2, seed=0, dtype=np.float64) -> dict:
    """Inputs of ``lstm_cell_forward`` plus gradients ``da_next``, ``dc_next``."""
    rng = np.random.default_rng(seed)
    return {
        "xt": rng.standard_normal((n_x, m)).astype(dtype),
        "a_prev": rng.standard_normal((n_a, m)).astype(dtype),
        "c_prev": rng.standard_normal((n_a, m)).astype(dtype),
        "parameters": seed_parameters(n_a, n_x, n_y, rng, dtype),
        "da_next": rng.standard_normal((n_a, m)).astype(dtype),
        "dc_next": rng.standard_normal((n_a, m)).astype(dtype),
    }


def as_dtype(parameters: dict, dtype) -> dict:
    return {k: v.astype(dtype) for k, v in parameters.items()}


def snapshot(*objects):
    """Deep copies of arrays (and dicts of arrays), to prove inputs were not modified."""
    out = []
    for obj in objects:
        if isinstance(obj, dict):
            out.append({k: np.array(v, copy=True) for k, v in obj.items()})
        else:
            out.append(np.array(obj, copy=True))
    return out


def assert_unchanged(before, *objects):
    for old, new in zip(before, objects):
        if isinstance(old, dict):
            assert old.keys() == new.keys()
            for k in old:
                np.testing.assert_array_equal(old[k], new[k], err_msg=f"parameters[{k!r}] changed")
        else:
            np.testing.assert_array_equal(old, new, err_msg="an input array changed")


#: Step of the central differences (float64).
EPS = 1e-6
# Central differences have truncation error O(EPS^2) and rounding error O(1e-16/EPS).
ATOL = 1e-7


def numerical_gradient(loss, array):
    """d loss / d array by central differences, perturbing ``array`` in place."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + EPS
        up = loss()
        array[index] = saved - EPS
        down = loss()
        array[index] = saved
        grad[index] = (up - down) / (2 * EPS)
    return grad


def assert_layer_gradients_match_finite_differences(lstm, backend, x, state, lengths, d_out,
                                                    d_state, every_coordinate=()):
    """float64 central differences of ``sum(out * d_out) + sum(h_n * dh_n) + sum(c_n * dc_n)``
    with respect to x, the state and every parameter of an ``nblstm.LSTM``, against
    ``lstm.backward``. On the CPU coordinate by coordinate: 5 sampled coordinates of each
    array (all of them for parameters whose name starts with one of ``every_coordinate``);
    on a GPU backend along one random direction through all arrays at once (two forwards:
    the simulator runs every thread as Python). ``state`` is ``(h0, c0)`` on the host; the
    model is moved to the backend's device."""
    if backend.name != "cpu":
        lstm.to("cuda")
    put, get = backend.put, backend.get
    names = list(lstm.parameters())
    host = {"x": x, "h0": state[0], "c0": state[1],
            **{name: get(value) for name, value in lstm.parameters().items()}}

    def loss(values):
        for name in names:
            lstm.parameters()[name] = put(values[name])
        out, (h_n, c_n), cache = lstm.forward(put(values["x"]), (put(values["h0"]),
                                              put(values["c0"])), lengths, train=True)
        value = (np.sum(get(out) * d_out) + np.sum(get(h_n) * d_state[0])
                 + np.sum(get(c_n) * d_state[1]))
        return value, cache

    _, cache = loss(host)
    dx, (dh0, dc0), grads = lstm.backward(cache, put(d_out), tuple(put(g) for g in d_state))
    analytic = {"x": get(dx), "h0": get(dh0), "c0": get(dc0),
                **{name: get(grads[name]) for name in names}}
    rng = np.random.default_rng(0)
    eps = 1e-6
    if backend.name != "cpu":
        direction = {name: rng.standard_normal(value.shape) for name, value in host.items()}
        shifted = [loss({name: value + sign * eps * direction[name]
                         for name, value in host.items()})[0] for sign in (1, -1)]
        numeric = (shifted[0] - shifted[1]) / (2 * eps)
        expected = sum(np.sum(analytic[name] * direction[name]) for name in host)
        assert abs(expected - numeric) <= 1e-7 * (1 + abs(numeric))
        return
    for name, array in host.items():
        every = any(name.startswith(prefix) for prefix in every_coordinate)
        count = array.size if every else min(array.size, 5)
        for flat in rng.choice(array.size, size=count, replace=False):
            index = np.unravel_index(flat, array.shape)
            values = []
            for sign in (1, -1):
                moved = dict(host, **{name: array.copy()})
                moved[name][index] += sign * eps
                values.append(loss(moved)[0])
            numeric = (values[0] - values[1]) / (2 * eps)
            assert abs(analytic[name][index] - numeric) <= 1e-7 * (1 + abs(numeric)), (
                name, index)
