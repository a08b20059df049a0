"""Bad input gets a clear TypeError/ValueError naming the argument, the expected and the
actual value, on every backend; nothing is computed and nothing is modified."""
import numpy as np
import pytest

import nblstm
from _problems import cell_problem, sequence_problem


def put_all(backend, args):
    """Move every ndarray (also inside a parameter dict) to the backend; leave the rest."""
    out = []
    for arg in args:
        if isinstance(arg, dict):
            out.append({k: backend.put(v) if isinstance(v, np.ndarray) else v for k, v in arg.items()})
        elif isinstance(arg, np.ndarray):
            out.append(backend.put(arg))
        else:
            out.append(arg)
    return out


def with_param(params, **changes):
    p = dict(params)
    for key, value in changes.items():
        if value is None:
            del p[key]
        else:
            p[key] = value
    return p


P = sequence_problem(3, 4, 5, 6, 2, seed=1)
C = cell_problem(3, 4, 6, 2, seed=1)
x, a0, params = P["x"], P["a0"], P["parameters"]
xt, a_prev, c_prev = C["xt"], C["a_prev"], C["c_prev"]

FORWARD_CASES = {
    # name: (args of lstm_forward, exception, fragments of the message)
    "x is a list": ((x.tolist(), a0, params), TypeError, ["x must be an array", "list"]),
    "a0 is None": ((x, None, params), TypeError, ["a0 must be an array", "NoneType"]),
    "parameters is a list": ((x, a0, [1, 2]), TypeError, ["parameters must be a dict", "list"]),
    "x is int": ((x.astype(np.int64), a0, params), TypeError, ["x has dtype int64", "float32 or float64"]),
    "x is complex": ((x.astype(np.complex128), a0, params), TypeError, ["x has dtype complex128"]),
    "x is float16": ((x.astype(np.float16), a0, params), TypeError, ["x has dtype float16"]),
    "mixed dtypes": ((x.astype(np.float32), a0, params), TypeError,
                     ["one dtype", "x is float32", "a0 is float64"]),
    "mixed parameter dtype": ((x, a0, with_param(params, Wf=params["Wf"].astype(np.float32))),
                              TypeError, ["parameters['Wf'] is float32"]),
    "x is 2-D": ((x[:, :, 0], a0, params), ValueError,
                 ["x must be a 3-D array of shape (n_x, m, T_x)", "2-D", "(3, 4)"]),
    "a0 batch mismatch": ((x, a0[:, :3], params), ValueError,
                          ["a0 must have shape (n_a, m) = (6, 4)", "got (6, 3)"]),
    "a0 is 3-D": ((x, a0[None], params), ValueError, ["a0 must be a 2-D array", "(1, 6, 4)"]),
    "empty batch": ((x[:, :0], a0[:, :0], params), ValueError, ["x has shape (3, 0, 5)", "at least 1"]),
    "empty time": ((x[:, :, :0], a0, params), ValueError, ["x has shape (3, 4, 0)", "at least 1"]),
    "missing key": ((x, a0, with_param(params, Wy=None)), ValueError,
                    ["parameters has missing key(s) 'Wy'", "Wf, bf"]),
    "extra key": ((x, a0, with_param(params, Wz=params["Wf"])), ValueError,
                  ["unexpected key(s) 'Wz'"]),
    "Wf wrong shape": ((x, a0, with_param(params, Wf=params["Wf"][:, :-1])), ValueError,
                       ["parameters['Wf'] must have shape (n_a, n_a + n_x) = (6, 9)", "got (6, 8)"]),
    "bi flat": ((x, a0, with_param(params, bi=params["bi"][:, 0])), ValueError,
                ["parameters['bi'] must have shape (n_a, 1) = (6, 1)", "got (6,)"]),
    "Wy hidden mismatch": ((x, a0, with_param(params, Wy=params["Wy"][:, :5])), ValueError,
                           ["parameters['Wy'] must have shape (n_y, n_a) = (2, 6)", "got (2, 5)"]),
    "by mismatch": ((x, a0, with_param(params, by=params["by"][:1])), ValueError,
                    ["parameters['by'] must have shape (n_y, 1) = (2, 1)", "got (1, 1)"]),
    "parameter not array": ((x, a0, with_param(params, bo=[[0.0]] * 6)), TypeError,
                            ["parameters['bo'] must be an array", "list"]),
}


@pytest.mark.parametrize("case", sorted(FORWARD_CASES))
def test_lstm_forward_rejects(backend, case):
    args, error, fragments = FORWARD_CASES[case]
    with pytest.raises(error) as info:
        nblstm.lstm_forward(*put_all(backend, args))
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"


CELL_CASES = {
    "xt is 1-D": ((xt[:, 0], a_prev, c_prev, C["parameters"]), ValueError,
                  ["xt must be a 2-D array of shape (n_x, m)", "(3,)"]),
    "c_prev shape": ((xt, a_prev, c_prev[:5], C["parameters"]), ValueError,
                     ["c_prev must have shape (n_a, m) = (6, 4)", "got (5, 4)"]),
    "a_prev batch": ((xt, a_prev[:, :2], c_prev, C["parameters"]), ValueError,
                     ["a_prev must have shape (n_a, m) = (6, 4)", "got (6, 2)"]),
    "bool input": ((xt.astype(bool), a_prev, c_prev, C["parameters"]), TypeError,
                   ["xt has dtype bool"]),
    "a_prev is scalar": ((xt, 1.0, c_prev, C["parameters"]), TypeError,
                         ["a_prev must be an array", "float"]),
}


@pytest.mark.parametrize("case", sorted(CELL_CASES))
def test_lstm_cell_forward_rejects(backend, case):
    args, error, fragments = CELL_CASES[case]
    with pytest.raises(error) as info:
        nblstm.lstm_cell_forward(*put_all(backend, args))
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"


def test_backward_rejects_bad_gradients_and_caches(backend):
    bx, ba0, bparams = put_all(backend, (x, a0, params))
    _, _, _, caches = nblstm.lstm_forward(bx, ba0, bparams)
    da = P["da"]
    cases = [
        ((backend.put(da[:, :, :0]), caches), ValueError, ["da has shape (6, 4, 0)"]),
        ((backend.put(np.concatenate([da, da], axis=2)), caches), ValueError,
         ["da covers 10 time steps but caches hold only 5", "T' <= 5"]),
        ((backend.put(da[:5]), caches), ValueError,
         ["da must have shape (n_a, m, T') = (6, 4, 5)", "got (5, 4, 5)"]),
        ((backend.put(da[:, :3]), caches), ValueError, ["(n_a, m, T') = (6, 4, 5)", "got (6, 3, 5)"]),
        ((backend.put(da.astype(np.float32)), caches), TypeError, ["da is float32"]),
        ((backend.put(da.astype(np.int32)), caches), TypeError, ["da has dtype int32"]),
        ((da.tolist(), caches), TypeError, ["da must be an array"]),
        ((backend.put(da), caches[0]), TypeError, ["caches must be the pair (list_of_caches, x)"]),
        ((backend.put(da), ([], caches[1])), TypeError, ["non-empty list"]),
        ((backend.put(da), ([caches[0][0][:9]] * 5, caches[1])), TypeError,
         ["caches[0][0] must be the 10-tuple", "length 9"]),
    ]
    for args, error, fragments in cases:
        with pytest.raises(error) as info:
            nblstm.lstm_backward(*args)
        for fragment in fragments:
            assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"


def test_cell_backward_rejects_bad_gradients_and_cache(backend):
    args = put_all(backend, (xt, a_prev, c_prev, C["parameters"]))
    _, _, _, cache = nblstm.lstm_cell_forward(*args)
    da_next, dc_next = backend.put(C["da_next"]), backend.put(C["dc_next"])
    cases = [
        ((da_next, backend.put(C["dc_next"][:, :3]), cache), ValueError,
         ["dc_next must have shape (n_a, m) = (6, 4)", "got (6, 3)"]),
        ((backend.put(C["da_next"][:4]), dc_next, cache), ValueError,
         ["da_next must have shape (n_a, m) = (6, 4)", "got (4, 4)"]),
        ((da_next, dc_next, cache[:9]), TypeError, ["cache must be the 10-tuple"]),
        ((da_next, dc_next, cache[:9] + ({"Wf": 1},)), ValueError, ["parameters has missing key(s)"]),
        ((backend.put(C["da_next"].astype(np.float32)), dc_next, cache), TypeError,
         ["da_next is float32"]),
    ]
    for call_args, error, fragments in cases:
        with pytest.raises(error) as info:
            nblstm.lstm_cell_backward(*call_args)
        for fragment in fragments:
            assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"


class FakeGpuArray:
    """Looks like a GPU array to the dispatcher (only the interface attribute)."""
    def __init__(self, array):
        self.shape, self.dtype = array.shape, array.dtype
        self.__cuda_array_interface__ = {"shape": array.shape, "typestr": array.dtype.str,
                                         "data": (0, False), "version": 3}


def test_mixed_host_and_gpu_arguments_name_where_each_lives():
    with pytest.raises(TypeError) as info:
        nblstm.lstm_forward(x, FakeGpuArray(a0), params)
    message = str(info.value)
    assert "x" in message and "on the host" in message and "a0 on the GPU" in message
