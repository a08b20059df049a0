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
