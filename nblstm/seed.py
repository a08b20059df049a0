"""The seed-compatible API: the deeplearning.ai course's four LSTM functions, compiled.

Same signatures, shapes, layout (features, batch[, time]) and return structures as the
course (see ``nblstm.reference`` for the plain NumPy version). These functions are thin
adapters: they validate, transpose to nblstm's time-major layout, fuse the per-gate weights
and call ``nblstm.ops``, which runs the fused kernels of the backend the arrays live on.

The arrays' type picks the backend (NumPy -> CPU, GPU arrays -> CUDA) and results have the
inputs' array type; ``backend="cpu" | "cuda"`` forces a backend (inputs are moved there,
results moved back). Returned arrays are new C-contiguous arrays; the ``ft, it, cct, ot`` of
a cache are (read-only in spirit) views of the gates the forward pass saved. Inputs are
never modified.
"""
from dataclasses import dataclass
from typing import Any

from . import ops
from ._dispatch import (Backend, array_dtype, array_kind, convert_results,
                        dict_with_array_attributes, select_backend, transposed,
                        with_array_attributes)
from ._validate import (SEED_PARAMETER_KEYS, check_ndim, check_nonempty,
                        check_seed_parameter_shapes, check_seed_parameters, check_shape,
                        common_float_dtype)

#: Positions in the course's 10-tuple cache.
CACHE_FIELDS = ("a_next", "c_next", "a_prev", "c_prev", "ft", "it", "cct", "ot", "xt",
                "parameters")


class SequenceCaches(list):
    """The per-step caches of ``lstm_forward`` (a plain list of 10-tuples to course code).

    It also remembers the time-major arrays the tuples are views of, so ``lstm_backward``
    can run on them directly instead of stacking T tuples again. That shortcut is taken
    only while every tuple is still the one ``lstm_forward`` made (checked by identity);
    a list that was edited falls back to stacking its tuples.
    """

    def __init__(self, steps: list, sequence: dict):
        super().__init__(steps)
        self._original_steps = tuple(steps)
        self._sequence = sequence

    def sequence_arrays(self) -> dict | None:
        """The saved time-major arrays, or None if the list no longer holds the originals."""
        if len(self) == len(self._original_steps) and all(
                step is original for step, original in zip(self, self._original_steps)):
            return self._sequence
        return None


@dataclass
class _Call:
    """One public call: the backend it runs on, its array arguments and parameters as that
    backend's arrays, and the array kind its results must be returned in."""
    backend: Backend
    result_kind: str
    arrays: dict
    parameters: dict

    def results(self, value: Any) -> Any:
        return convert_results(value, self.result_kind)


def _prepare(named: dict[str, Any], parameters: Any, backend: str | None) -> _Call:
    """Check types and dtypes of the named arrays plus the seed's parameters, pick the
    backend, and adopt every array into it (zero-copy unless a backend was forced)."""
    check_seed_parameters(parameters)
    all_arrays = dict(named)
    all_arrays.update({f"parameters[{key!r}]": parameters[key] for key in SEED_PARAMETER_KEYS})
    chosen, origin = select_backend(all_arrays, backend)
    common_float_dtype(all_arrays)
    return _Call(chosen, origin, {name: chosen.adopt(value) for name, value in named.items()},
                 {key: chosen.adopt(parameters[key]) for key in SEED_PARAMETER_KEYS})


def _time_major(backend: Backend, array_2d: Any) -> Any:
    """(features, batch) -> contiguous (1, batch, features)."""
    state = _state(backend, array_2d)
    return state.reshape((1,) + tuple(state.shape))


def _state(backend: Backend, array_2d: Any) -> Any:
    """(features, batch) -> contiguous (batch, features)."""
    return backend.xp.ascontiguousarray(transposed(array_2d))


def _gate_views(gates_t: Any, H: int) -> tuple:
    """Activated gates of one step (B, 4H), order (i, f, g, o) -> the course's
    ``(ft, it, cct, ot)``, each ``(n_a, m)``."""
    return (transposed(gates_t[:, H:2 * H]), transposed(gates_t[:, 0:H]),
            transposed(gates_t[:, 2 * H:3 * H]), transposed(gates_t[:, 3 * H:]))


def lstm_cell_forward(xt: Any, a_prev: Any, c_prev: Any, parameters: dict,
                      backend: str | None = None) -> tuple:
    """One LSTM step (the course's ``lstm_cell_forward``).

    xt (n_x, m), a_prev (n_a, m), c_prev (n_a, m); parameters ``Wf, Wi, Wc, Wo``
    (n_a, n_a + n_x) acting on ``[a_prev; xt]``, ``bf, bi, bc, bo`` (n_a, 1), ``Wy``
    (n_y, n_a), ``by`` (n_y, 1).

    Returns ``a_next (n_a, m), c_next (n_a, m), yt_pred (n_y, m), cache`` where
    ``yt_pred = softmax(Wy @ a_next + by)`` per column and
    ``cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)``.
    """
    xt, a_prev, c_prev = map(with_array_attributes, (xt, a_prev, c_prev))
    parameters = dict_with_array_attributes(parameters)
    call = _prepare({"xt": xt, "a_prev": a_prev, "c_prev": c_prev}, parameters, backend)
    check_ndim("xt", xt, 2, "(n_x, m)")
    check_nonempty("xt", xt, "(n_x, m)")
    n_x, m = xt.shape
    check_ndim("a_prev", a_prev, 2, "(n_a, m)")
    check_nonempty("a_prev", a_prev, "(n_a, m)")
    n_a = a_prev.shape[0]
    check_shape("a_prev", a_prev, (n_a, m), "(n_a, m)")
    check_shape("c_prev", c_prev, (n_a, m), "(n_a, m)")
    check_seed_parameter_shapes(parameters, n_a, n_x)

    run, arrays, params = call.backend, call.arrays, call.parameters
    W_x, W_h, b = ops.fuse_seed_weights(params, n_a, run)
    h_all, c_all, gates_all = ops.sequence_forward(
        run, _time_major(run, arrays["xt"]), _state(run, arrays["a_prev"]),
        _state(run, arrays["c_prev"]), W_x, W_h, b)
    probabilities = ops.output_softmax(run, h_all, params["Wy"], params["by"])
    xp = run.xp
    a_next = xp.ascontiguousarray(transposed(h_all[0]))
    c_next = xp.ascontiguousarray(transposed(c_all[0]))
    yt_pred = xp.ascontiguousarray(transposed(probabilities[0]))
    ft, it, cct, ot = _gate_views(gates_all[0], n_a)
    a_next, c_next, yt_pred, ft, it, cct, ot = call.results((a_next, c_next, yt_pred, ft, it, cct, ot))
    return a_next, c_next, yt_pred, (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)


def lstm_forward(x: Any, a0: Any, parameters: dict, backend: str | None = None) -> tuple:
    """LSTM over a whole sequence (the course's ``lstm_forward``); the cell state starts at 0.

    x (n_x, m, T_x), a0 (n_a, m), parameters as in ``lstm_cell_forward``.
    Returns ``a (n_a, m, T_x), y (n_y, m, T_x), c (n_a, m, T_x), caches`` with
    ``caches = (list_of_T_x_caches, x)``, one 10-tuple cache per step.
    """
    x, a0 = map(with_array_attributes, (x, a0))
    parameters = dict_with_array_attributes(parameters)
    call = _prepare({"x": x, "a0": a0}, parameters, backend)
    check_ndim("x", x, 3, "(n_x, m, T_x)")
    check_nonempty("x", x, "(n_x, m, T_x)")
    n_x, m, T = x.shape
    check_ndim("a0", a0, 2, "(n_a, m)")
    check_nonempty("a0", a0, "(n_a, m)")
    n_a = a0.shape[0]
    check_shape("a0", a0, (n_a, m), "(n_a, m)")
    check_seed_parameter_shapes(parameters, n_a, n_x)

    run, params = call.backend, call.parameters
    x_tbx = ops.reverse_axes(run, call.arrays["x"])
    h0 = _state(run, call.arrays["a0"])
    c0 = run.xp.zeros(h0.shape, h0.dtype)
    W_x, W_h, b = ops.fuse_seed_weights(params, n_a, run)
    h_all, c_all, gates_all = ops.sequence_forward(run, x_tbx, h0, c0, W_x, W_h, b)
    probabilities = ops.output_softmax(run, h_all, params["Wy"], params["by"])

    steps = []
    for t in range(T):
        a_prev = call.arrays["a0"] if t == 0 else transposed(h_all[t - 1])
        c_prev = transposed(c0) if t == 0 else transposed(c_all[t - 1])
        steps.append((transposed(h_all[t]), transposed(c_all[t]), a_prev, c_prev,
                      *_gate_views(gates_all[t], n_a), transposed(x_tbx[t]), parameters))
    sequence = {"x": x_tbx, "h0": h0, "c0": c0, "h_all": h_all, "c_all": c_all,
                "gates_all": gates_all}
    a, y, c = (ops.reverse_axes(run, h_all), ops.reverse_axes(run, probabilities),
               ops.reverse_axes(run, c_all))
    if call.result_kind == run.array_kind:
        return a, y, c, (SequenceCaches(steps, sequence), x)
    # results moved back to the caller's array type: the caches become a plain list (their
    # arrays no longer match the time-major buffers kept for the fast backward path)
    steps = [tuple(call.results(list(step[:9]))) + (parameters,) for step in steps]
    return call.results(a), call.results(y), call.results(c), (steps, x)


def _check_cache(cache: Any, name: str) -> tuple:
    """A course cache: a 10-tuple of arrays plus the parameter dict."""
    if not isinstance(cache, (tuple, list)) or len(cache) != len(CACHE_FIELDS):
        length = f" of length {len(cache)}" if isinstance(cache, (tuple, list)) else ""
        raise TypeError(f"{name} must be the 10-tuple ({', '.join(CACHE_FIELDS)}) made by the "
                        f"forward pass; got {type(cache).__name__}{length}")
    return tuple(cache)


def _check_cache_arrays(cache: tuple, name: str, n_a: int, m: int, n_x: int) -> None:
    """Shapes of one cache's arrays for the given sizes."""
    for field, value in zip(CACHE_FIELDS[:9], cache[:9]):
        expected = (n_x, m) if field == "xt" else (n_a, m)
        check_ndim(f"{name}[{CACHE_FIELDS.index(field)}] ({field})", value, 2,
                   "(n_x, m)" if field == "xt" else "(n_a, m)")
        check_shape(f"{name}[{CACHE_FIELDS.index(field)}] ({field})", value, expected,
                    "(n_x, m)" if field == "xt" else "(n_a, m)")


def _cache_sizes(cache: tuple, name: str) -> tuple[int, int, int]:
    """``(n_a, m, n_x)`` of a course cache, read from its ``a_next`` and ``xt``."""
    check_ndim(f"{name}[0] (a_next)", cache[0], 2, "(n_a, m)")
    check_nonempty(f"{name}[0] (a_next)", cache[0], "(n_a, m)")
    check_ndim(f"{name}[8] (xt)", cache[8], 2, "(n_x, m)")
    check_nonempty(f"{name}[8] (xt)", cache[8], "(n_x, m)")
    n_a, m = cache[0].shape
    return n_a, m, cache[8].shape[0]


def _cache_arrays(cache: tuple, name: str) -> dict:
    return {f"{name}[{k}] ({field})": cache[k] for k, field in enumerate(CACHE_FIELDS[:9])}


def lstm_cell_backward(da_next: Any, dc_next: Any, cache: tuple,
                       backend: str | None = None) -> dict:
    """Backward of one step (the course's ``lstm_cell_backward``).

    da_next, dc_next (n_a, m): loss gradients with respect to ``a_next`` and ``c_next``;
    ``cache`` as returned by ``lstm_cell_forward``.
    Returns a dict with ``dxt (n_x, m)``, ``da_prev``, ``dc_prev`` (n_a, m), ``dWf, dWi,
    dWc, dWo`` (n_a, n_a + n_x) and ``dbf, dbi, dbc, dbo`` (n_a, 1).
    """
    cache = _check_cache(cache, "cache")
    parameters = cache[9]
    da_next, dc_next = map(with_array_attributes, (da_next, dc_next))
    call = _prepare({"da_next": da_next, "dc_next": dc_next, **_cache_arrays(cache, "cache")},
                    parameters, backend)
    n_a, m, n_x = _cache_sizes(cache, "cache")
    check_shape("da_next", da_next, (n_a, m), "(n_a, m)")
    check_shape("dc_next", dc_next, (n_a, m), "(n_a, m)")
    _check_cache_arrays(cache, "cache", n_a, m, n_x)
    check_seed_parameter_shapes(parameters, n_a, n_x)

    run = call.backend
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt = (
        call.arrays[name] for name in _cache_arrays(cache, "cache"))
    xp = run.xp
    W_x, W_h, _ = ops.fuse_seed_weights(call.parameters, n_a, run)
    gates = xp.concatenate([transposed(it), transposed(ft), transposed(cct), transposed(ot)],
                           axis=1).reshape(1, m, 4 * n_a)
    dx, dh0, dc0, dW_x, dW_h, db = ops.sequence_backward(
        run, _time_major(run, xt), _state(run, a_prev), _state(run, c_prev),
        W_x, W_h, _time_major(run, a_next), _time_major(run, c_next), gates,
        _time_major(run, call.arrays["da_next"]), xp.zeros((m, n_a), dtype=array_dtype(da_next)),
        _state(run, call.arrays["dc_next"]))
    return call.results({"dxt": xp.ascontiguousarray(transposed(dx[0])),
                         "da_prev": xp.ascontiguousarray(transposed(dh0)),
                         "dc_prev": xp.ascontiguousarray(transposed(dc0)),
                         **ops.unfuse_seed_gradients(dW_x, dW_h, db, run)})


def _stack_caches(run: Backend, steps: list) -> dict:
    """Time-major arrays from a list of course caches (already this backend's arrays)."""
    xp = run.xp
    stack = lambda k: xp.ascontiguousarray(xp.stack([transposed(cache[k]) for cache in steps]))
    gates = xp.concatenate([stack(5), stack(4), stack(6), stack(7)], axis=2)  # i, f, g, o
    return {"x": stack(8), "h0": _state(run, steps[0][2]), "c0": _state(run, steps[0][3]),
            "h_all": stack(0), "c_all": stack(1), "gates_all": gates}


def lstm_backward(da: Any, caches: tuple, backend: str | None = None) -> dict:
    """Backward over a sequence (the course's ``lstm_backward``).

    da (n_a, m, T'): loss gradients with respect to ``a`` of the first ``T' <= T_x`` steps
    (as in the course, a shorter ``da`` backpropagates from step ``T' - 1``: later steps
    cannot influence the loss); ``caches = (list_of_caches, x)`` from ``lstm_forward``.
    Returns a dict with ``dx (n_x, m, T')``, ``da0 (n_a, m)``, ``dWf, dWi, dWc, dWo``
    (n_a, n_a + n_x) and ``dbf, dbi, dbc, dbo`` (n_a, 1).
    """
    if not isinstance(caches, (tuple, list)) or len(caches) != 2:
        raise TypeError("caches must be the pair (list_of_caches, x) returned by lstm_forward; "
                        f"got {type(caches).__name__}")
    steps = caches[0]
    if not isinstance(steps, (list, tuple)) or len(steps) == 0:
        raise TypeError("caches[0] must be a non-empty list of per-step caches; got "
                        f"{type(steps).__name__}" + (" of length 0" if hasattr(steps, "__len__") else ""))
    first = _check_cache(steps[0], "caches[0][0]")
    parameters = first[9]
    n_a, m, n_x = _cache_sizes(first, "caches[0][0]")
    da = with_array_attributes(da)
    select_backend({"da": da}, backend)  # da must be an array before its shape is read
    check_ndim("da", da, 3, "(n_a, m, T')")
    check_nonempty("da", da, "(n_a, m, T')")
    T = da.shape[2]
    if T > len(steps):
        raise ValueError(f"da covers {T} time steps but caches hold only {len(steps)}; "
                         f"expected da of shape (n_a, m, T') with T' <= {len(steps)}")
    checked = [_check_cache(cache, f"caches[0][{t}]") for t, cache in enumerate(steps[:T])]
    named = {"da": da}
    for t, cache in enumerate(checked):
        named.update(_cache_arrays(cache, f"caches[0][{t}]"))
    call = _prepare(named, parameters, backend)
    check_shape("da", da, (n_a, m, T), "(n_a, m, T')")
    for t, cache in enumerate(checked):
        _check_cache_arrays(cache, f"caches[0][{t}]", n_a, m, n_x)
    check_seed_parameter_shapes(parameters, n_a, n_x)

    run = call.backend
    sequence = steps.sequence_arrays() if isinstance(steps, SequenceCaches) else None
    if sequence is None or array_kind(sequence["x"]) != run.array_kind:
        sequence = _stack_caches(run, [[call.arrays[name] for name in _cache_arrays(c, f"caches[0][{t}]")]
                                       for t, c in enumerate(checked)])
    xp = run.xp
    W_x, W_h, _ = ops.fuse_seed_weights(call.parameters, n_a, run)
    zeros = xp.zeros((m, n_a), dtype=array_dtype(da))
    dx, dh0, _, dW_x, dW_h, db = ops.sequence_backward(
        run, sequence["x"][:T], sequence["h0"], sequence["c0"], W_x, W_h,
        sequence["h_all"][:T], sequence["c_all"][:T], sequence["gates_all"][:T],
        ops.reverse_axes(run, call.arrays["da"]), zeros, zeros)
    return call.results({"dx": ops.reverse_axes(run, dx),
                         "da0": xp.ascontiguousarray(transposed(dh0)),
                         **ops.unfuse_seed_gradients(dW_x, dW_h, db, run)})
