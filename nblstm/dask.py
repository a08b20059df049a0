"""``nblstm.dask``: run an ``nblstm.LSTM`` over a ``dask.array``, lazily, one task per chunk.

Needs the ``dask`` extra (``pip install ".[dask]"`` in the clone: ``dask[array]`` and
``distributed``); ``import nblstm`` never imports dask.

>>> import dask.array as da
>>> x = da.random.random((50, 4096, 32), chunks=(50, 256, 32)).astype("float32")  # (T, B, X)
>>> out, (h_n, c_n) = nblstm.dask.forward(lstm, x)   # lazy: nothing has run yet
>>> out.compute()                                     # or client.compute(out), .persist() ...

Layout: ``x`` is the layer's layout, ``(T, B, X)`` time-major or ``(B, T, X)`` with
``lstm.batch_first``. Its chunks decide the work:

- **batch blocks** run in parallel, one task each (sequences are independent);
- **time chunks** (more than one chunk along T) run in order within a batch block, each
  task starting from the state the previous one returned (streaming); batch blocks still
  run in parallel. Only unidirectional layers can be split along time, and only without
  ``lengths``;
- the feature axis must be one chunk.

Results: ``out`` with ``x``'s chunks along T and B (last axis ``D*H`` in one chunk) and the
final states ``h_n``, ``c_n`` ``(num_layers * D, B, H)`` chunked along B like ``x``; all
lazy ``dask.array`` s of the chunks' array type.

Weights: ``forward`` takes a host copy of the parameters when it is called (later updates of
``lstm`` do not change the graph) and puts it in the graph **once**, as a key that every
task depends on; a distributed scheduler ships it to each worker once and keeps it there.
NumPy chunks run on the CPU backend; CuPy chunks on the GPU backend, through the same
dispatcher as a direct call (each worker process moves its copy of the weights to its GPU
on first use).

Every check (array type, dtype, shape, chunking, bidirectional with time chunks) runs in
``forward``, before any task exists.
"""
from __future__ import annotations

import operator
import threading
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from . import _layer_inputs as inputs
from ._dispatch import array_kind, convert
from ._validate import describe_shape
from .layers import LSTM

__all__ = ["forward"]

#: Key prefixes of the tasks ``forward`` adds (visible on the dashboard and in tests).
MODEL_KEY_PREFIX = "nblstm-model-"
FORWARD_KEY_PREFIX = "nblstm-forward-"


class SharedModel:
    """The weights every task depends on: a host (NumPy) copy of the LSTM, plus, per worker
    process, a GPU copy made the first time a GPU chunk needs it. Only the host copy is
    pickled, so the weights travel once, as NumPy arrays."""

    def __init__(self, host: LSTM) -> None:
        self.host = host
        self._gpu: LSTM | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"host": self.host}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["host"])

    def for_chunk(self, chunk: Any) -> LSTM:
        """The copy that lives where ``chunk`` does (the dispatcher's backend for it)."""
        if array_kind(chunk) == "numpy":
            return self.host
        with self._lock:
            if self._gpu is None:
                self._gpu = host_copy(self.host).to("cuda")
            return self._gpu


def host_copy(lstm: LSTM) -> LSTM:
    """A new LSTM with ``lstm``'s configuration and NumPy copies of its parameters."""
    return LSTM._from_parameters(lstm.config(), {
        name: np.array(convert(value, "numpy"), copy=True)
        for name, value in lstm.parameters().items()})


def forward_block(model: SharedModel, x_block: Any, state: tuple | None,
                  lengths: np.ndarray | None) -> tuple:
    """One task: the layer on one chunk, ``(out, (h_n, c_n))`` (the layer's layouts)."""
    return model.for_chunk(x_block)(x_block, state, lengths)


def forward(lstm: LSTM, x: da.Array, state: tuple | None = None,
            lengths: Any = None) -> tuple[da.Array, tuple[da.Array, da.Array]]:
    """Lazy ``out, (h_n, c_n)`` of ``lstm`` over the dask array ``x`` (module docstring).

    lstm     an ``nblstm.LSTM`` (its parameters are copied to the host now)
    x        dask array (T, B, X), or (B, T, X) with ``lstm.batch_first``, of NumPy or CuPy
             chunks of ``lstm.dtype``; one chunk along X
    state    None (zeros) or ``(h0, c0)``, each (num_layers * D, B, H): NumPy/CuPy arrays
             (the chunks' type) or dask arrays; split along B like ``x``
    lengths  None, or (B,) integers in 1..T (padded sequences; NumPy or dask array); only
             when ``x`` is one chunk along T
    out      dask array (T, B, D*H) (or (B, T, D*H)), chunked like ``x`` along T and B
    h_n, c_n dask arrays (num_layers * D, B, H), chunked like ``x`` along B
    """
    if not isinstance(lstm, LSTM):
        raise TypeError(f"lstm must be an nblstm.LSTM, got {type(lstm).__name__}")
    chunk_kind = _check_input(lstm, x)
    batch_axis, time_axis = (0, 1) if lstm.batch_first else (1, 0)
    batch_chunks, time_chunks = x.chunks[batch_axis], x.chunks[time_axis]
    if len(time_chunks) > 1:
        if lstm.bidirectional:
            raise ValueError(
                f"x is split into {len(time_chunks)} chunks along time (axis {time_axis}), "
                "but a bidirectional LSTM cannot be streamed: its backward direction needs "
                f"the whole sequence. Rechunk with x.rechunk({{{time_axis}: -1}})")
        if lengths is not None:
            raise ValueError(
                f"lengths needs x in one chunk along time (axis {time_axis}), got "
                f"{len(time_chunks)} chunks: rechunk with x.rechunk({{{time_axis}: -1}})")
    B = x.shape[batch_axis]
    collections = [x]  # the dask collections the tasks read from
    state_keys = _state_keys(lstm, state, B, batch_chunks, chunk_kind, collections)
    length_blocks = _length_blocks(lengths, B, x.shape[time_axis], batch_chunks, collections)

    host = host_copy(lstm)
    model_key = MODEL_KEY_PREFIX + tokenize(lstm.config(), host.parameters())
    token = tokenize(model_key, x.name, state_keys, length_blocks)
    run_name, state_name = FORWARD_KEY_PREFIX + token, "nblstm-state-" + token
    out_name, h_name, c_name = ("nblstm-out-" + token, "nblstm-h_n-" + token,
                                "nblstm-c_n-" + token)

    # The graph in dask's tuple task format: (function, *arguments), where an argument that
    # is a key (or a tuple task) stands for its value. The model is one key, read by all.
    # Per chunk: the forward task, its outputs and its final state (what the next time
    # chunk reads: only the small state travels between workers, not the outputs).
    tasks = {model_key: SharedModel(host)}
    outputs, final_h, final_c = {}, {}, {}
    for j in range(len(batch_chunks)):
        carry = state_keys[j]  # None, or a task giving the (h0, c0) of batch block j
        for i in range(len(time_chunks)):
            block = (i, j) if time_axis == 0 else (j, i)
            tasks[(run_name, *block)] = (forward_block, model_key, (x.name, *block, 0), carry,
                                         length_blocks[j])
            tasks[(state_name, *block)] = (operator.getitem, (run_name, *block), 1)
            outputs[(out_name, *block, 0)] = (operator.getitem, (run_name, *block), 0)
            carry = (state_name, *block)
        final_h[(h_name, 0, j, 0)] = (operator.getitem, carry, 0)
        final_c[(c_name, 0, j, 0)] = (operator.getitem, carry, 1)

    graph = HighLevelGraph.from_collections(run_name, tasks, dependencies=collections)
    layers, dependencies = dict(graph.layers), dict(graph.dependencies)
    for name, layer in ((out_name, outputs), (h_name, final_h), (c_name, final_c)):
        layers[name], dependencies[name] = layer, {run_name}
    graph = HighLevelGraph(layers, dependencies)
    meta = da.utils.meta_from_array(x, ndim=3)
    D, H, P = lstm.num_directions, lstm.hidden_size, lstm.real_hidden_size
    out_chunks = list(x.chunks)
    out_chunks[2] = (D * P,)
    rows = (lstm.num_layers * D,)
    out = da.Array(graph, out_name, tuple(out_chunks), meta=meta)
    return out, (da.Array(graph, h_name, (rows, batch_chunks, (P,)), meta=meta),
                 da.Array(graph, c_name, (rows, batch_chunks, (H,)), meta=meta))


def _check_input(lstm: LSTM, x: Any) -> str:
    """Checks ``x`` without computing anything; returns its chunks' array kind."""
    layout = inputs.input_layout(lstm)
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask.array.Array {layout}, got "
                        f"{type(x).__module__}.{type(x).__qualname__} (call the LSTM directly "
                        f"on in-memory arrays, or wrap with dask.array.from_array)")
    kind = array_kind(x._meta)
    if kind not in ("numpy", "cupy"):
        raise TypeError(f"x's chunks must be NumPy or CuPy arrays, got "
                        f"{type(x._meta).__module__}.{type(x._meta).__qualname__}")
    inputs.check_dtype(lstm, "x", x.dtype)
    if x.ndim == 3 and any(np.isnan(size) for size in x.shape):
        raise ValueError(f"x has unknown chunk sizes (shape {x.shape}): call "
                         f"x.compute_chunk_sizes() first")
    inputs.check_input_shape(lstm, "x", x.shape, allow_unbatched=False)
    if len(x.chunks[2]) > 1:
        raise ValueError(f"x is chunked along the feature axis (axis 2, chunks "
                         f"{x.chunks[2]}): every chunk needs all {lstm.input_size} features; "
                         f"rechunk with x.rechunk({{2: -1}})")
    lstm.check_parameters()  # complete, right shapes and dtype, one device
    return kind


def _state_keys(lstm: LSTM, state: tuple | None, B: int, batch_chunks: tuple, chunk_kind: str,
                collections: list) -> list:
    """Per batch block, ``None`` or a task giving its ``(h0, c0)``; the dask arrays the
    tasks read are appended to ``collections``."""
    if state is None:
        return [None] * len(batch_chunks)
    shapes = inputs.state_shapes(lstm, B)
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise TypeError(f"state must be a pair (h0, c0) of arrays of shapes "
                        f"{describe_shape(shapes[0])} and {describe_shape(shapes[1])}, got "
                        f"{type(state).__name__}")
    names = []
    for name, value, shape in zip(("h0", "c0"), state, shapes):
        kind = array_kind(value._meta if isinstance(value, da.Array) else value)
        if kind != chunk_kind:
            raise TypeError(f"state {name} must hold {chunk_kind} arrays like x's chunks, got "
                            f"{type(value).__module__}.{type(value).__qualname__}"
                            + (f" of {kind} chunks" if isinstance(value, da.Array) else ""))
        inputs.check_state_part(lstm, f"state {name}", value.shape, value.dtype, shape)
        value = da.asarray(value) if not isinstance(value, da.Array) else value
        value = value.rechunk((-1, batch_chunks, -1))
        collections.append(value)
        names.append(value.name)
    h_name, c_name = names
    return [(tuple, [(h_name, 0, j, 0), (c_name, 0, j, 0)]) for j in range(len(batch_chunks))]


def _length_blocks(lengths: Any, B: int, T: int, batch_chunks: tuple,
                   collections: list) -> list:
    """Per batch block, ``None`` or its lengths: NumPy, or the key of a dask array's block
    (that array is appended to ``collections``)."""
    if lengths is None:
        return [None] * len(batch_chunks)
    if isinstance(lengths, da.Array):
        if lengths.shape != (B,):
            raise ValueError(f"lengths must have shape ({B},) (one length per sequence), got "
                             f"{describe_shape(lengths.shape)}")
        if lengths.dtype.kind not in "iu":
            raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
        lengths = lengths.rechunk((batch_chunks,))
        collections.append(lengths)
        return [(lengths.name, j) for j in range(len(batch_chunks))]
    host = inputs.host_lengths(lengths, T, B)  # checks shape, dtype, range
    if host is None:  # every sequence is full
        return [None] * len(batch_chunks)
    edges = np.cumsum((0,) + batch_chunks)
    return [host[start:stop] for start, stop in zip(edges[:-1], edges[1:])]
