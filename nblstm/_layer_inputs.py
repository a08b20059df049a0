"""The checks of what goes into an ``nblstm.LSTM`` call, written once for every entry: the
layer itself (``layers.py``), ``nblstm.dask`` and ``nblstm infer`` (``inference.py``).

Each check reads only shapes and dtypes (no data), so the callers can run it on NumPy and
GPU arrays, dask arrays and memory-mapped files alike, before any work. Messages name the
argument (``name``: "x", "state h", a file path), the expected and the actual value, and
where the expectation comes from (the model's sizes).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._dispatch import array_kind, convert, dtype_name
from ._validate import FLOAT_DTYPES, describe_shape


def input_layout(model: Any) -> str:
    """``"(B, T, X)"`` for a batch_first model, else ``"(T, B, X)"``."""
    return "(B, T, X)" if model.batch_first else "(T, B, X)"


def dtype_remedy(model: Any, name: str, dtype: np.dtype, kind: str | None = None) -> str:
    """What a user with ``dtype`` data of array ``kind`` can do (only advice that works)."""
    variable = name.split()[0]
    convert_to = (f"{variable}.to(torch.{model.dtype.name})" if kind == "torch"
                  else f"{variable}.astype(np.{model.dtype.name})")
    if dtype in FLOAT_DTYPES:
        return f"convert the input ({convert_to}) or build LSTM(..., dtype=np.{dtype.name})"
    if dtype.kind == "f" and dtype.newbyteorder("=") in FLOAT_DTYPES:
        return (f"its byte order is not this machine's (nblstm computes in native byte "
                f"order): convert it with {convert_to}")
    return f"nblstm computes in float32 or float64 only: convert it with {convert_to}"


def check_dtype(model: Any, name: str, dtype: Any, remedy: str | None = None,
                kind: str | None = None) -> None:
    """``TypeError`` unless ``dtype`` is the model's (``kind``: the array's kind, for the hint)."""
    dtype = np.dtype(dtype)
    if dtype != model.dtype:
        raise TypeError(f"{name} has dtype {dtype_name(dtype)}; this LSTM is "
                        f"{model.dtype.name}: {remedy or dtype_remedy(model, name, dtype, kind)}")


def check_input_shape(model: Any, name: str, shape: tuple,
                      allow_unbatched: bool = True) -> tuple[bool, int, int]:
    """``(unbatched, T, B)`` of an input of ``shape``: 3-D in the model's layout (or 2-D
    ``(T, X)`` unbatched), ``input_size`` features, at least one step and one sequence."""
    layout = input_layout(model)
    shape = tuple(int(n) for n in shape)
    if len(shape) == 2 and allow_unbatched:
        unbatched, (T, features), B = True, shape, 1
    elif len(shape) == 3:
        unbatched = False
        T, B, features = shape if not model.batch_first else (shape[1], shape[0], shape[2])
    else:
        unbatched_too = " or 2-D (T, X) unbatched" if allow_unbatched else ""
        raise ValueError(f"{name} must be a 3-D array {layout}{unbatched_too}, got shape "
                         f"{describe_shape(shape)}")
    if features != model.input_size:
        raise ValueError(f"{name} must have {model.input_size} features (input_size) in its "
                         f"last axis {layout}, got shape {describe_shape(shape)}")
    if T < 1 or B < 1:
        raise ValueError(f"{name} must have at least one time step and one sequence, got "
                         f"shape {describe_shape(shape)}")
    return unbatched, T, B


def state_shapes(model: Any, B: int, unbatched: bool = False) -> tuple[tuple, tuple]:
    """``(h shape, c shape)``: ``(num_layers * D, B, P)`` and ``(num_layers * D, B, H)``, with
    ``P = proj_size`` or ``H`` (without B for an unbatched input)."""
    rows = model.num_layers * model.num_directions
    batch = () if unbatched else (B,)
    return (rows, *batch, model.real_hidden_size), (rows, *batch, model.hidden_size)


def check_state_part(model: Any, name: str, shape: tuple, dtype: Any, expected: tuple) -> None:
    """One of ``(h0, c0)`` (or of their gradients): the model's dtype and ``expected`` shape."""
    check_dtype(model, name, dtype)
    if tuple(shape) != tuple(expected):
        layers = model.num_layers * model.num_directions
        batch = "" if len(expected) == 2 else f", B = {expected[1]} from x"
        features = (f"proj_size = {model.proj_size}" if expected[-1] != model.hidden_size
                    else f"hidden_size = {model.hidden_size}")
        raise ValueError(f"{name} must have shape {describe_shape(expected)} "
                         f"(num_layers * num_directions = {layers} and {features} "
                         f"from the LSTM{batch}), got {describe_shape(shape)}")


def host_lengths(lengths: Any, T: int, B: int, unbatched: bool = False) -> np.ndarray | None:
    """``lengths`` as int64 NumPy, checked (``B`` of them, integers in ``1..T``); None when
    ``lengths`` is None or every sequence is full. GPU arrays and torch CPU tensors are read
    on the host (a few integers)."""
    if lengths is None:
        return None
    if unbatched:
        raise ValueError("lengths needs a batched input (x of 3 dimensions)")
    if array_kind(lengths) not in (None, "numpy"):
        lengths = convert(lengths, "numpy")
    elif hasattr(lengths, "numpy") and not isinstance(lengths, np.ndarray):
        lengths = lengths.numpy()  # another framework's tensor (torch's are converted above)
    host = np.asarray(lengths)
    if host.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},) (one length per sequence), got "
                         f"{describe_shape(host.shape)}")
    if host.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {host.dtype}")
    if host.min() < 1 or host.max() > T:
        bad = host[(host < 1) | (host > T)]
        raise ValueError(f"lengths must lie in 1..{T} (the number of time steps), got "
                         f"{bad.tolist()[:5]}")
    host = host.astype(np.int64)
    return None if (host == T).all() else host
