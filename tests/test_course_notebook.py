"""The course notebook's own test cells print the same numbers with nblstm.

Inputs are drawn exactly as the notebook's cells draw them (``np.random.seed(1)``, then
``randn`` calls in the notebook's order); the expected values are the notebook's printed
"Expected Output" (v3a / 2021 version, 12 significant digits). Both nblstm and its NumPy
reference must reproduce them.
"""
import functools
from types import SimpleNamespace

import numpy as np
import pytest

import nblstm
from _backends import skip_unless_cuda
from nblstm import reference

SEED_FUNCTIONS = ("lstm_cell_forward", "lstm_forward", "lstm_cell_backward", "lstm_backward")


def on_backend(name):
    """nblstm's seed API with ``backend=name`` forced: the notebook passes NumPy arrays."""
    return SimpleNamespace(**{f: functools.partial(getattr(nblstm, f), backend=name)
                              for f in SEED_FUNCTIONS})


IMPLEMENTATIONS = {"nblstm-cpu": on_backend("cpu"), "nblstm-cuda": on_backend("cuda"),
                   "reference": reference}
RTOL = 1e-10  # scalars are printed with 12 significant digits
# arrays are printed with 8 decimals: agree within half a unit of the last one
ARRAY_TOL = dict(rtol=0, atol=5.01e-9)


def course_parameters(with_output_layer=True):
    p = {}
    for key in ("Wf", "bf", "Wi", "bi", "Wo", "bo", "Wc", "bc"):
        p[key] = np.random.randn(5, 5 + 3) if key[0] == "W" else np.random.randn(5, 1)
    if with_output_layer:
        p["Wy"] = np.random.randn(2, 5)
        p["by"] = np.random.randn(2, 1)
    else:  # the backward cell: "unused, but needed for lstm_forward"
        p["Wy"] = np.zeros((2, 5))
        p["by"] = np.zeros((2, 1))
    return p


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def impl(request):
    if request.param == "nblstm-cuda":
        skip_unless_cuda()
    return IMPLEMENTATIONS[request.param]


def test_lstm_cell_forward_cell(impl):
    np.random.seed(1)
    xt, a_prev, c_prev = np.random.randn(3, 10), np.random.randn(5, 10), np.random.randn(5, 10)
    a_next, c_next, yt, cache = impl.lstm_cell_forward(xt, a_prev, c_prev, course_parameters())
    np.testing.assert_allclose(a_next[4], [-0.66408471, 0.0036921, 0.02088357, 0.22834167,
                               -0.85575339, 0.00138482, 0.76566531, 0.34631421, -0.00215674,
                               0.43827275], **ARRAY_TOL)
    assert a_next.shape == (5, 10) and c_next.shape == (5, 10) and yt.shape == (2, 10)
    np.testing.assert_allclose(c_next[2], [0.63267805, 1.00570849, 0.35504474, 0.20690913,
                               -1.64566718, 0.11832942, 0.76449811, -0.0981561, -0.74348425,
                               -0.26810932], **ARRAY_TOL)
    np.testing.assert_allclose(yt[1], [0.79913913, 0.15986619, 0.22412122, 0.15606108, 0.97057211,
                               0.31146381, 0.00943007, 0.12666353, 0.39380172, 0.07828381],
                               **ARRAY_TOL)
    np.testing.assert_allclose(cache[1][3], [-0.16263996, 1.03729328, 0.72938082, -0.54101719,
                               0.02752074, -0.30821874, 0.07651101, -1.03752894, 1.41219977,
                               -0.37647422], **ARRAY_TOL)
    assert len(cache) == 10


def test_lstm_forward_cell(impl):
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 7), np.random.randn(5, 10)
    a, y, c, caches = impl.lstm_forward(x, a0, course_parameters())
    np.testing.assert_allclose(a[4][3][6], 0.172117767533, rtol=RTOL)
    assert a.shape == (5, 10, 7) and y.shape == (2, 10, 7)
    np.testing.assert_allclose(y[1][4][3], 0.95087346185, rtol=RTOL)
    np.testing.assert_allclose(caches[1][1][1], [0.82797464, 0.23009474, 0.76201118, -0.22232814,
                               -0.20075807, 0.18656139, 0.41005165], **ARRAY_TOL)
    np.testing.assert_allclose(c[1][2][1], -0.855544916718, rtol=RTOL)
    assert len(caches) == 2


def test_lstm_cell_backward_cell(impl):
    np.random.seed(1)
    xt, a_prev, c_prev = np.random.randn(3, 10), np.random.randn(5, 10), np.random.randn(5, 10)
    _, _, _, cache = impl.lstm_cell_forward(xt, a_prev, c_prev, course_parameters())
    da_next, dc_next = np.random.randn(5, 10), np.random.randn(5, 10)
    g = impl.lstm_cell_backward(da_next, dc_next, cache)
    expected = {("dxt", 1, 2): 3.23055911511, ("da_prev", 2, 3): -0.0639621419711,
                ("dc_prev", 2, 3): 0.797522038797, ("dWf", 3, 1): -0.147954838164,
                ("dWi", 1, 2): 1.05749805523, ("dWc", 3, 1): 2.30456216369,
                ("dWo", 1, 2): 0.331311595289}
    for (key, i, j), value in expected.items():
        np.testing.assert_allclose(g[key][i][j], value, rtol=RTOL, err_msg=key)
    for key, value in (("dbf", 0.18864637), ("dbi", -0.40142491), ("dbc", 0.25587763),
                       ("dbo", 0.13893342)):
        np.testing.assert_allclose(g[key][4], [value], **ARRAY_TOL, err_msg=key)
        assert g[key].shape == (5, 1)
    assert g["dxt"].shape == (3, 10) and g["da_prev"].shape == (5, 10)
    assert g["dWf"].shape == (5, 8)


def test_lstm_backward_cell(impl):
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 7), np.random.randn(5, 10)
    _, _, _, caches = impl.lstm_forward(x, a0, course_parameters(with_output_layer=False))
    da = np.random.randn(5, 10, 4)  # fewer steps than x, as in the notebook
    g = impl.lstm_backward(da, caches)
    np.testing.assert_allclose(g["dx"][1][2], [0.00218254, 0.28205375, -0.48292508, -0.43281115],
                               **ARRAY_TOL)
    assert g["dx"].shape == (3, 10, 4) and g["da0"].shape == (5, 10)
    expected = {("da0", 2, 3): 0.312770310257, ("dWf", 3, 1): -0.0809802310938,
                ("dWi", 1, 2): 0.40512433093, ("dWc", 3, 1): -0.0793746735512,
                ("dWo", 1, 2): 0.038948775763}
    for (key, i, j), value in expected.items():
        np.testing.assert_allclose(g[key][i][j], value, rtol=RTOL, err_msg=key)
    for key, value in (("dbf", -0.15745657), ("dbi", -0.50848333), ("dbc", -0.42510818),
                       ("dbo", -0.17958196)):
        np.testing.assert_allclose(g[key][4], [value], **ARRAY_TOL, err_msg=key)
    assert g["dWf"].shape == (5, 8) and g["dbo"].shape == (5, 1)
