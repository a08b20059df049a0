"""Property-based parity: random shapes and values, nblstm against the NumPy reference."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import nblstm
from nblstm import reference
from _problems import sequence_problem

sizes = st.integers(1, 6)


@settings(deadline=None, max_examples=40)
@given(n_x=sizes, m=sizes, T=sizes, n_a=sizes, n_y=sizes, T_cut=st.integers(0, 5),
       seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.1, 1.0, 10.0]))
def test_random_problems_match_reference_float64(n_x, m, T, n_a, n_y, T_cut, seed, scale):
    prob = sequence_problem(n_x, m, T, n_a, n_y, seed=seed)
    x = prob["x"] * scale
    params = prob["parameters"]
    T_prime = max(1, T - T_cut)
    da = prob["da"][:, :, :T_prime]
    got = nblstm.lstm_forward(x, prob["a0"], params)
    ref = reference.lstm_forward(x, prob["a0"], params)
    for g, r in zip(got[:3], ref[:3]):
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-9 * (1 + np.abs(r).max()))
    grads = nblstm.lstm_backward(da, got[3])
    ref_grads = reference.lstm_backward(da, ref[3])
    for key, r in ref_grads.items():
        np.testing.assert_allclose(grads[key], r, rtol=0, atol=1e-9 * (1 + np.abs(r).max()),
                                   err_msg=key)
