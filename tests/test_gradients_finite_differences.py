"""Every gradient of the seed API against central finite differences, in float64.

Finite differences run on the CPU (the GPU backend is checked against the CPU elsewhere).
Each coordinate of every input and parameter is perturbed: the problems are tiny.
"""
import numpy as np
import pytest

import nblstm
from _problems import ATOL, cell_problem, numerical_gradient, sequence_problem



@pytest.mark.parametrize("shape,T_prime", [((3, 2, 4, 3), 4), ((2, 3, 5, 2), 3), ((1, 1, 1, 1), 1)])
def test_lstm_backward_matches_finite_differences(cpu_gemm, shape, T_prime):
    n_x, m, T, n_a = shape
    prob = sequence_problem(n_x, m, T, n_a, 2, seed=T * 3 + n_a)
    x, a0, params = prob["x"], prob["a0"], prob["parameters"]
    da = prob["da"][:, :, :T_prime].copy()

    def loss():
        a, _, _, _ = nblstm.lstm_forward(x, a0, params)
        return float(np.sum(a[:, :, :T_prime] * da))

    _, _, _, caches = nblstm.lstm_forward(x, a0, params)
    grads = nblstm.lstm_backward(da, caches)
    np.testing.assert_allclose(grads["dx"], numerical_gradient(loss, x)[:, :, :T_prime],
                               rtol=1e-6, atol=ATOL, err_msg="dx")
    np.testing.assert_allclose(grads["da0"], numerical_gradient(loss, a0), rtol=1e-6, atol=ATOL,
                               err_msg="da0")
    for gate in "fico":
        for kind in "Wb":
            key = kind + gate
            np.testing.assert_allclose(grads["d" + key], numerical_gradient(loss, params[key]),
                                       rtol=1e-6, atol=ATOL, err_msg="d" + key)


@pytest.mark.parametrize("shape", [(3, 2, 4), (1, 1, 1)])
def test_lstm_cell_backward_matches_finite_differences(cpu_gemm, shape):
    n_x, m, n_a = shape
    prob = cell_problem(n_x, m, n_a, 3, seed=n_x + n_a)
    xt, a_prev, c_prev, params = prob["xt"], prob["a_prev"], prob["c_prev"], prob["parameters"]
    da_next, dc_next = prob["da_next"], prob["dc_next"]

    def loss():
        a_next, c_next, _, _ = nblstm.lstm_cell_forward(xt, a_prev, c_prev, params)
        return float(np.sum(a_next * da_next) + np.sum(c_next * dc_next))

    cache = nblstm.lstm_cell_forward(xt, a_prev, c_prev, params)[3]
    grads = nblstm.lstm_cell_backward(da_next, dc_next, cache)
    for key, array in (("dxt", xt), ("da_prev", a_prev), ("dc_prev", c_prev)):
        np.testing.assert_allclose(grads[key], numerical_gradient(loss, array), rtol=1e-6,
                                   atol=ATOL, err_msg=key)
    for gate in "fico":
        for kind in "Wb":
            key = kind + gate
            np.testing.assert_allclose(grads["d" + key], numerical_gradient(loss, params[key]),
                                       rtol=1e-6, atol=ATOL, err_msg="d" + key)
