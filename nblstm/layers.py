"""``nblstm.LSTM``: a multi-layer, optionally bidirectional LSTM layer with PyTorch's conventions.

Parameters, shapes, gate order and initialisation are those of ``torch.nn.LSTM``:

- ``weight_ih_l{k}`` ``(4H, X_k)``, ``weight_hh_l{k}`` ``(4H, H)``, ``bias_ih_l{k}`` and
  ``bias_hh_l{k}`` ``(4H,)``, with the suffix ``_reverse`` for the backward direction of a
  bidirectional layer; ``X_0`` is ``input_size``, ``X_k = H * num_directions`` above.
- The 4H axis holds the gate blocks (i, f, g, o): input, forget, candidate, output.
- Initialisation: uniform in ``[-1/sqrt(H), 1/sqrt(H)]``.
- Input ``x``: ``(T, B, X)`` time-major (``(B, T, X)`` with ``batch_first``), or ``(T, X)``
  unbatched. Output ``(T, B, D*H)`` (``D`` = 2 when bidirectional: forward then backward
  direction along the last axis). States ``h``, ``c``: ``(num_layers * D, B, H)``, index
  ``layer * D + direction``, as torch stacks them (``(num_layers * D, H)`` unbatched).
- ``proj_size = P > 0`` (LSTMP, Sak et al. 2014), as torch: each step's hidden state is
  projected, ``h_t = W_hr (o_t * tanh(c_t))``, with ``weight_hr_l{k}[_reverse]`` ``(P, H)``;
  then ``weight_hh`` is ``(4H, P)``, ``h`` states ``(num_layers * D, B, P)`` (``c`` keeps H),
  outputs are ``D*P`` wide and ``X_k = P * D`` above the first layer.
- ``peephole=True`` (not in torch; ONNX's ``P``, Gers & Schmidhuber 2000): the input and
  forget gates also see ``c_{t-1}`` and the output gate sees ``c_t``, through per-unit
  weights ``peephole_l{k}[_reverse]`` ``(3, H)``, rows (i, f, o):
  ``i = sigmoid(... + p_i * c_{t-1})``, ``f = sigmoid(... + p_f * c_{t-1})``,
  ``o = sigmoid(... + p_o * c_t)``. Not combinable with ``proj_size``; ``to_torch`` refuses
  it. On the CPU it runs on the BLAS loops (``NBLSTM_CPU_GEMM=auto``; a forced packed tile
  is a ``ValueError``).
- ``dropout = p``, as torch: in training forwards (``forward(train=True)``) each layer's
  output except the last layer's is multiplied by a mask of independent keep-with-
  probability ``1 - p`` elements, scaled by ``1 / (1 - p)``; ``backward`` applies the same
  mask. The masks come from the model's ``generator`` (seeded by ``seed``; settable).
- ``lengths`` (B,): the valid length of each sequence of a padded batch, in any order. This
  matches torch's packed sequences (``pack_padded_sequence(..., enforce_sorted=False)``):
  outputs past a sequence's end are zero, its final states are those of its last valid step,
  and the backward direction starts at that last valid step.

Everything runs on the fused kernels of the model's backend (``nblstm.ops``): NumPy arrays on
the CPU, CuPy or numba device arrays on the GPU (``lstm.to("cuda")``). The parameters are
read on every call: in-place updates (an optimizer step) are seen by the next call.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _layer_inputs as inputs, _model_file, _torch_interop, ops
from ._dispatch import (Backend, array_dtype, array_kind, backend_named, check_on_backend,
                        check_one_framework, convert, convert_results, may_share_memory,
                        select_backend, transposed, with_array_attributes)
from ._validate import FLOAT_DTYPES, describe_shape, key_mismatch

#: Marks an ``LSTM.save`` file; the version changes if the file layout ever does.
FILE_FORMAT = _model_file.FORMAT
FILE_VERSION = _model_file.VERSION

_DEVICES = ("cpu", "cuda")


@dataclass
class _DirectionCache:
    """What one direction of one layer saved for the backward pass (time-major, in the
    direction's own time order)."""
    x: Any
    h0: Any
    c0: Any
    W_x: Any
    W_h: Any
    h_all: Any
    c_all: Any
    gates_all: Any
    W_r: Any = None    # (H, P) projection, with proj_size
    m_all: Any = None  # (T, B, H) unprojected hidden states, with proj_size
    peephole: Any = None  # (3, H) peephole weights (i, f, o), with peephole=True


@dataclass
class LSTMCache:
    """Everything ``LSTM.backward`` needs from a training forward (``forward(train=True)``).

    Opaque to users; holds the weights as they were at forward time, so an optimizer step
    between forward and backward does not change the gradients.
    """
    model_token: object  # the LSTM's ``_cache_token``
    backend: Backend
    result_kind: str
    dtype: np.dtype
    T: int
    B: int
    unbatched: bool
    lengths: Any  # int64 (B,) on the backend, or None for full sequences
    output_shape: tuple = ()  # of ``out``, in the caller's layout
    directions: list = field(default_factory=list)  # [layer][direction] -> _DirectionCache
    #: ``dropout_keys[k]``: the mask key applied to layer k's output (k < num_layers - 1),
    #: empty without dropout; ``dropout_p``: the probability the masks were drawn with
    dropout_keys: list = field(default_factory=list)
    dropout_p: float = 0.0
    layer_output_shape: tuple = ()  # (T, B, D*P) of every layer

    def dropout_masks(self) -> list:
        """The dropout multipliers this forward applied: ``[k]`` is an array of layer k's
        output shape ``(T, B, D*P)`` (time-major) holding 0 where an element was dropped and
        ``1 / (1 - p)`` where it was kept, on the forward's backend (empty without dropout).
        Recomputed from the keys: the forward itself keeps no masks."""
        masks = []
        for key in self.dropout_keys:
            ones = self.backend.xp.ones(self.layer_output_shape, dtype=self.dtype)
            masks.append(ops.dropout(self.backend, ones, key, self.dropout_p))
        return masks


class LSTM:
    """Multi-layer LSTM with ``torch.nn.LSTM``'s parameters and conventions (module docstring).

    >>> lstm = LSTM(8, 32, num_layers=2, batch_first=True, seed=0)
    >>> out, (h_n, c_n) = lstm(np.zeros((4, 10, 8), np.float32))
    >>> out.shape, h_n.shape
    ((4, 10, 32), (2, 4, 32))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, bidirectional: bool = False,
                 dtype: Any = np.float32, seed: int | None = None, *, dropout: float = 0.0,
                 proj_size: int = 0, peephole: bool = False) -> None:
        self._configure(input_size, hidden_size, num_layers, bias, batch_first, bidirectional,
                        dtype, dropout, proj_size, peephole)
        if self.dropout > 0 and self.num_layers == 1:  # at construction only, as torch
            warnings.warn(f"dropout={self.dropout} acts between layers (on every layer's output "
                          f"but the last), so with num_layers=1 it does nothing (as in torch)",
                          UserWarning, stacklevel=2)
        self._parameters = self._initial_parameters(np.random.default_rng(seed))
        # the dropout masks' stream: from the same seed, independent of the weights' stream
        # (a spawned child of the seed's SeedSequence), which stays what it always was
        self.generator = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])

    def _configure(self, input_size: int, hidden_size: int, num_layers: int, bias: bool,
                   batch_first: bool, bidirectional: bool, dtype: Any, dropout: float = 0.0,
                   proj_size: int = 0, peephole: bool = False) -> None:
        """Check and store the configuration (no parameters yet)."""
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if (isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer))
                or proj_size < 0):
            raise ValueError(f"proj_size must be a non-negative integer, got {proj_size!r}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({hidden_size}), got "
                             f"{proj_size}")
        if not isinstance(peephole, (bool, np.bool_)):
            raise TypeError(f"peephole must be True or False, got {peephole!r}")
        if peephole and proj_size:
            raise ValueError(f"peephole=True cannot be combined with proj_size ({proj_size}): "
                             f"no LSTM convention has both (torch has no peepholes, ONNX no "
                             f"projection)")
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.proj_size = int(proj_size)
        self.peephole = bool(peephole)
        self.dtype = dtype
        self.dropout = dropout  # checked by the property
        self.device = "cpu"
        self._generator = np.random.default_rng()  # __init__ seeds it
        # Identifies this model's training caches (``id(self)`` can be reused by a new
        # model once this one is freed; a fresh object cannot).
        self._cache_token = object()

    # ------------------------------------------------------------------ configuration

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def real_hidden_size(self) -> int:
        """Features of the hidden state ``h`` (and of each direction's output): ``proj_size``
        when there is a projection, else ``hidden_size`` (torch's name for it)."""
        return self.proj_size or self.hidden_size

    @property
    def dropout(self) -> float:
        """The dropout probability between layers (training forwards only); settable."""
        return self._dropout

    @dropout.setter
    def dropout(self, p: float) -> None:
        if (isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating))
                or not 0 <= p <= 1):
            raise ValueError(f"dropout must be a number in [0, 1] (the probability of "
                             f"dropping an element), got {p!r}")
        self._dropout = float(p)

    @property
    def generator(self) -> np.random.Generator:
        """The ``numpy.random.Generator`` the dropout masks are drawn from: each training
        forward draws one 64-bit key per masked layer from it (the masks themselves are made
        from the keys where the data lives, ``ops.dropout``). Seeded by ``seed``; assign a
        new generator (``lstm.generator = np.random.default_rng(0)``) or an integer seed to
        reproduce a run."""
        return self._generator

    @generator.setter
    def generator(self, value: Any) -> None:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = np.random.default_rng(int(value))
        if not isinstance(value, np.random.Generator):
            raise TypeError(f"generator must be a numpy.random.Generator or an integer seed, "
                            f"got {type(value).__name__}")
        self._generator = value

    def manual_seed(self, seed: int) -> "LSTM":
        """Reseed the dropout generator (``generator = np.random.default_rng(seed)``): the
        training forwards that follow draw the same masks as after any other reseed with
        ``seed``. Returns ``self``."""
        self.generator = seed
        return self

    def config(self) -> dict:
        """The constructor arguments (without ``seed``), as saved by ``save``."""
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias,
                "batch_first": self.batch_first, "bidirectional": self.bidirectional,
                "dtype": self.dtype.name, "dropout": self.dropout, "proj_size": self.proj_size,
                "peephole": self.peephole}

    def parameter_shapes(self) -> dict[str, tuple]:
        """``{name: shape}`` in torch's order (layer, direction, w_ih, w_hh, b_ih, b_hh, and
        w_hr with proj_size; the peephole weights after the biases with peephole=True)."""
        H, P = self.hidden_size, self.real_hidden_size
        shapes = {}
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else P * self.num_directions
            for suffix in self._suffixes(layer):
                shapes["weight_ih" + suffix] = (4 * H, layer_input)
                shapes["weight_hh" + suffix] = (4 * H, P)
                if self.bias:
                    shapes["bias_ih" + suffix] = (4 * H,)
                    shapes["bias_hh" + suffix] = (4 * H,)
                if self.proj_size:
                    shapes["weight_hr" + suffix] = (P, H)
                if self.peephole:
                    shapes["peephole" + suffix] = (3, H)
        return shapes

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][:self.num_directions]

    def _initial_parameters(self, rng: np.random.Generator) -> dict:
        bound = 1.0 / math.sqrt(self.hidden_size)
        return {name: rng.uniform(-bound, bound, size=shape).astype(self.dtype)
                for name, shape in self.parameter_shapes().items()}

    def parameters(self) -> dict[str, Any]:
        """The live parameter arrays, ``{name: array}`` in torch's names and order.

        Updating an array in place (or assigning a new array of the same shape, dtype and
        device to a key) changes the model: every call reads the parameters afresh.
        """
        return self._parameters

    def __repr__(self) -> str:
        extras = "".join(f", {key}={value}" for key, value, default in (
            ("num_layers", self.num_layers, 1), ("bias", self.bias, True),
            ("batch_first", self.batch_first, False), ("dropout", self.dropout, 0.0),
            ("bidirectional", self.bidirectional, False), ("proj_size", self.proj_size, 0),
            ("peephole", self.peephole, False))
            if value != default)
        return (f"LSTM({self.input_size}, {self.hidden_size}{extras}, dtype={self.dtype.name}, "
                f"device={self.device!r})")

    # ------------------------------------------------------------------ devices

    def to(self, device: str) -> "LSTM":
        """Move the parameters to ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy when it works, else
        numba device arrays); returns ``self``. The parameter dict is updated in place, so
        move the model before creating an optimizer over its parameters."""
        if device not in _DEVICES:
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        target = backend_named(device, why="cannot move the LSTM to 'cuda'")
        for name, value in self._parameters.items():
            self._parameters[name] = target.adopt(value)
        self.device = device
        return self

    def check_parameters(self) -> Backend:
        """Check the parameter dict (exactly the keys of ``parameter_shapes()``, those shapes,
        the model's dtype, all on one device) and return the backend the parameters live on.

        Every call runs it first; ``nblstm.dask`` and ``nblstm infer`` call it to refuse a
        broken model before any work (the one internal entry they use)."""
        expected = self.parameter_shapes()
        if set(self._parameters) != set(expected):
            raise ValueError(f"the parameter dict was changed: it has "
                             f"{key_mismatch(self._parameters, expected)}")
        for name, shape in expected.items():
            value = self._parameters[name]
            if array_kind(value) is None:
                raise TypeError(f"parameter {name} must be an array, got {type(value).__name__}")
            if tuple(value.shape) != shape:
                raise ValueError(f"parameter {name} must have shape {describe_shape(shape)}, "
                                 f"got {describe_shape(value.shape)}")
            if array_dtype(value) != self.dtype:
                raise TypeError(f"parameter {name} has dtype {array_dtype(value)}; this LSTM is "
                                f"{self.dtype.name}")
        backend, _ = select_backend({f"parameter {name}": self._parameters[name]
                                     for name in expected},
                                    remedy="use lstm.to('cpu') or lstm.to('cuda')")
        return backend

    # ------------------------------------------------------------------ checks

    def _check_array(self, name: str, value: Any, backend: Backend) -> str:
        """Type, device and dtype of one array argument; returns its array kind."""
        kind = check_on_backend(name, value, backend,
                                where=f"the LSTM's parameters are on {self.device!r}",
                                remedy="move one of them (lstm.to('cuda'/'cpu'))")
        inputs.check_dtype(self, name, array_dtype(value), kind=kind)
        return kind

    def _check_pair(self, name: str, pair: Any, shapes: tuple, backend: Backend,
                    none_allowed: bool = False) -> None:
        parts = ("h", "c") if name == "state" else ("dh_n", "dc_n")
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            sizes = (describe_shape(shapes[0]) if shapes[0] == shapes[1] else
                     f"{describe_shape(shapes[0])} and {describe_shape(shapes[1])}")
            raise TypeError(f"{name} must be a pair ({parts[0]}, {parts[1]}) of arrays of shape "
                            f"{sizes}, got {type(pair).__name__}")
        for part, value, shape in zip(parts, pair, shapes):
            if value is None and none_allowed:
                continue
            self._check_array(f"{name} {part}", value, backend)
            inputs.check_state_part(self, f"{name} {part}", value.shape, array_dtype(value),
                                    shape)

    # ------------------------------------------------------------------ forward

    def __call__(self, x: Any, state: tuple | None = None, lengths: Any = None) -> tuple:
        """Inference: ``out, (h_n, c_n)``; see ``forward``."""
        return self.forward(x, state, lengths)

    def forward(self, x: Any, state: tuple | None = None, lengths: Any = None,
                train: bool = False) -> tuple:
        """Run the LSTM over ``x``.

        x        (T, B, X), or (B, T, X) with ``batch_first``, or (T, X) unbatched
        state    None (zeros) or ``(h0, c0)``: h0 (num_layers * D, B, P), c0
                 (num_layers * D, B, H) (or without B); P = proj_size, or H without one
        lengths  None, or (B,) integers in 1..T: the valid length of each padded sequence
        train    False: returns ``out, (h_n, c_n)`` and keeps nothing per step;
                 True: returns ``out, (h_n, c_n), cache`` for ``backward``, and applies
                 dropout between layers (``dropout > 0``: masks drawn from ``generator``)
        out      (T, B, D*P) (or (B, T, D*P), or (T, D*P)); zeros past each sequence's end

        Results are arrays of the input's kind, on the input's device.
        """
        backend = self.check_parameters()
        x = with_array_attributes(x)
        if isinstance(state, (tuple, list)):
            state = tuple(with_array_attributes(s) for s in state)
        result_kind = self._check_array("x", x, backend)
        unbatched, T, B = inputs.check_input_shape(self, "x", x.shape)
        state_shapes = inputs.state_shapes(self, B, unbatched)
        if state is not None:
            self._check_pair("state", state, state_shapes, backend)
            check_one_framework({"x": x, "state h": state[0], "state c": state[1]})
        host_lengths = inputs.host_lengths(lengths, T, B, unbatched)
        xp = backend.xp
        x = backend.adopt(x)
        if unbatched:
            layer_input = xp.ascontiguousarray(x).reshape(T, 1, self.input_size)
        elif self.batch_first:
            layer_input = xp.ascontiguousarray(transposed(x, (1, 0, 2)))
        else:
            layer_input = xp.ascontiguousarray(x)
        D, H, P = self.num_directions, self.hidden_size, self.real_hidden_size
        rows = self.num_layers * D
        if state is None:
            c0_all = xp.zeros((rows, B, H), dtype=self.dtype)
            h0_all = c0_all if P == H else xp.zeros((rows, B, P), dtype=self.dtype)
        else:
            h0_all, c0_all = (xp.ascontiguousarray(backend.adopt(s)).reshape(rows, B, features)
                              for s, features in zip(state, (P, H)))
            if train:  # the cache must not see later in-place writes into the caller's state
                h0_all, c0_all = (ops.contiguous_copy(backend, s) for s in (h0_all, c0_all))
        lengths_dev = None if host_lengths is None else backend.adopt(host_lengths)
        # the reverse direction's copy kernel needs lengths: all T for full sequences (made
        # only when there is a reverse direction: on a GPU it is a host-to-device transfer)
        kernel_lengths = lengths_dev
        if kernel_lengths is None and D == 2:
            kernel_lengths = ops.full_lengths(backend, T, B)
        if train and lengths_dev is not None:
            # padding values (NaN, say) must not reach the weight gradients (0 * NaN)
            layer_input = ops.time_steps_copy(backend, layer_input, lengths_dev, reverse=False)
        elif train and may_share_memory(layer_input, x):
            # the cache keeps its own input: later writes into x change nothing (a layout
            # change above may already have copied it)
            layer_input = ops.contiguous_copy(backend, layer_input)

        dropout = self.dropout if train else 0.0
        cache = LSTMCache(self._cache_token, backend, result_kind, self.dtype, T, B, unbatched,
                          lengths_dev, dropout_p=dropout,
                          layer_output_shape=(T, B, D * P)) if train else None
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outputs, saved = [], []
            for direction, suffix in enumerate(self._suffixes(layer)):
                index = layer * D + direction
                W_x, W_h, b, W_r, peephole = self._fused_weights(backend, suffix)
                x_dir = layer_input if direction == 0 else ops.time_steps_copy(
                    backend, layer_input, kernel_lengths, reverse=True)
                h0, c0 = h0_all[index], c0_all[index]
                if train:
                    m_all = None
                    if W_r is None:
                        h_all, c_all, gates_all = ops.sequence_forward(backend, x_dir, h0, c0,
                                                                       W_x, W_h, b, peephole)
                    else:
                        h_all, c_all, m_all, gates_all = ops.projected_sequence_forward(
                            backend, x_dir, h0, c0, W_x, W_h, b, W_r)
                    if lengths_dev is None:
                        h_last, c_last = xp.copy(h_all[T - 1]), xp.copy(c_all[T - 1])
                    else:
                        h_last, c_last = ops.final_states(backend, h_all, c_all, lengths_dev)
                    saved.append(_DirectionCache(x_dir, h0, c0, W_x, W_h, h_all, c_all,
                                                 gates_all, W_r, m_all, peephole))
                else:
                    h_all, h_last, c_last = ops.sequence_inference(backend, x_dir, h0, c0,
                                                                   W_x, W_h, b, lengths_dev,
                                                                   W_r=W_r, peephole=peephole)
                h_n.append(h_last)
                c_n.append(c_last)
                if direction == 0:
                    if lengths_dev is not None:
                        ops.zero_padding(backend, h_all, lengths_dev)  # backward-safe: see
                        # lstm_sequence_backward (padding steps take no gradient)
                    outputs.append(h_all)
                else:  # back into the input's time order
                    outputs.append(ops.time_steps_copy(backend, h_all, kernel_lengths,
                                                       reverse=True))
            layer_input = outputs[0] if D == 1 else xp.concatenate(outputs, axis=2)
            if train:
                cache.directions.append(saved)
                if dropout > 0 and layer < self.num_layers - 1:
                    # a new array: the cache keeps this layer's undropped outputs (h_all)
                    key = tuple(int(k) for k in self.generator.integers(
                        0, ops.DROPOUT_RESOLUTION, size=2, dtype=np.int64))
                    layer_input = ops.dropout(backend, layer_input, key, dropout)
                    cache.dropout_keys.append(key)

        out = self._output_layout(backend, layer_input, unbatched)
        if train and D == 1 and may_share_memory(out, layer_input):
            # ``out`` is a view of the last layer's h_all, which the cache holds: the caller
            # may write into ``out`` without changing the gradients
            out = ops.contiguous_copy(backend, out)
        h_n = xp.stack(h_n).reshape(state_shapes[0])
        c_n = xp.stack(c_n).reshape(state_shapes[1])
        results = convert_results((out, (h_n, c_n)), result_kind)
        if not train:
            return results
        cache.output_shape = tuple(out.shape)
        return results[0], results[1], cache

    def _fused_weights(self, backend: Backend, suffix: str) -> tuple:
        """This direction's ``(W_x (X, 4H), W_h (P, 4H), b (4H,), W_r (H, P) or None,
        peephole (3, H) or None)`` for the kernels: fresh copies made from the live
        parameters on every call, so they are never stale (``W_r``: the projection,
        ``weight_hr`` transposed, with proj_size; ``peephole``: with peephole=True)."""
        xp = backend.xp

        def live(name: str) -> Any:
            return backend.adopt(self._parameters[name + suffix])

        # copies, not views (a transposed one-column weight can be a contiguous view): the
        # training cache must keep the weights of the forward pass
        W_x = ops.contiguous_copy(backend, transposed(live("weight_ih")))
        W_h = ops.contiguous_copy(backend, transposed(live("weight_hh")))
        if self.bias:
            b = ops.add(backend, live("bias_ih"), live("bias_hh"))
        else:
            b = xp.zeros((4 * self.hidden_size,), dtype=self.dtype)
        W_r = (ops.contiguous_copy(backend, transposed(live("weight_hr"))) if self.proj_size
               else None)
        peephole = ops.contiguous_copy(backend, live("peephole")) if self.peephole else None
        return W_x, W_h, b, W_r, peephole

    def _output_layout(self, backend: Backend, time_major: Any, unbatched: bool) -> Any:
        """(T, B, F) time-major -> the caller's layout."""
        T, B, F = time_major.shape
        if unbatched:
            return time_major.reshape(T, F)
        if self.batch_first:
            return backend.xp.ascontiguousarray(transposed(time_major, (1, 0, 2)))
        return time_major

    # ------------------------------------------------------------------ backward

    def backward(self, cache: LSTMCache, d_out: Any = None,
                 d_state: tuple | None = None) -> tuple:
        """Gradients of a loss through a training forward: ``dx, (dh0, dc0), grads``.

        cache    what ``forward(..., train=True)`` returned
        d_out    dLoss/d(out), the shape of ``out`` (ignored past each sequence's end), or
                 None when the loss does not use ``out``
        d_state  None, or ``(dh_n, dc_n)``: dLoss/d(h_n), dLoss/d(c_n), the states' shapes;
                 either may be None (the loss does not use it)
        The dropout masks of the forward (``cache``) are applied again, to the gradients.
        dx       dLoss/dx (zero past each sequence's end); ``dh0``, ``dc0``: dLoss/d(state)
        grads    ``{name: dLoss/d(parameter)}`` with the keys and shapes of ``parameters()``
        """
        if not isinstance(cache, LSTMCache):
            raise TypeError(f"cache must be the third result of lstm.forward(..., train=True), "
                            f"got {type(cache).__name__}")
        if cache.model_token is not self._cache_token:
            raise ValueError("cache was made by a different LSTM (it belongs to the model "
                             "whose forward(..., train=True) returned it)")
        backend = cache.backend
        if d_out is not None:
            d_out = with_array_attributes(d_out)
            self._check_array("d_out", d_out, backend)
            if tuple(d_out.shape) != cache.output_shape:
                raise ValueError(f"d_out must have the shape of out, "
                                 f"{describe_shape(cache.output_shape)}, got "
                                 f"{describe_shape(d_out.shape)}")
        state_shapes = inputs.state_shapes(self, cache.B, cache.unbatched)
        if d_state is not None:
            if isinstance(d_state, (tuple, list)):
                d_state = tuple(None if s is None else with_array_attributes(s)
                                for s in d_state)
            self._check_pair("d_state", d_state, state_shapes, backend, none_allowed=True)
        xp = backend.xp
        T, B, D, H = cache.T, cache.B, self.num_directions, self.hidden_size
        P = self.real_hidden_size
        if d_out is None:
            d_layer = xp.zeros((T, B, D * P), dtype=self.dtype)
        elif cache.unbatched:
            d_layer = xp.ascontiguousarray(backend.adopt(d_out)).reshape(T, 1, D * P)
        elif self.batch_first:
            d_layer = xp.ascontiguousarray(transposed(backend.adopt(d_out), (1, 0, 2)))
        else:
            d_layer = xp.ascontiguousarray(backend.adopt(d_out))
        zeros = {}
        d_final = []
        for part, features in zip(d_state if d_state is not None else (None, None), (P, H)):
            if part is None:
                if features not in zeros:
                    zeros[features] = xp.zeros((self.num_layers * D, B, features),
                                               dtype=self.dtype)
                d_final.append(zeros[features])
            else:
                d_final.append(xp.ascontiguousarray(backend.adopt(part)).reshape(
                    self.num_layers * D, B, features))
        dh_n_all, dc_n_all = d_final
        # made once for every layer and direction (ops.sequence_backward would make it anew)
        kernel_lengths = cache.lengths if cache.lengths is not None else ops.full_lengths(
            backend, T, B)

        grads, dh0, dc0 = {}, [None] * (self.num_layers * D), [None] * (self.num_layers * D)
        for layer in reversed(range(self.num_layers)):
            d_input = None
            for direction, suffix in enumerate(self._suffixes(layer)):
                index = layer * D + direction
                saved = cache.directions[layer][direction]
                d_h = d_layer if D == 1 else xp.ascontiguousarray(
                    d_layer[:, :, direction * P:(direction + 1) * P])
                if direction == 1:  # into the reversed direction's own time order
                    d_h = ops.time_steps_copy(backend, d_h, kernel_lengths, reverse=True)
                if saved.peephole is not None:
                    dx, dh0[index], dc0[index], dW_x, dW_h, dpeephole, db = (
                        ops.peephole_sequence_backward(
                            backend, saved.x, saved.h0, saved.c0, saved.W_x, saved.W_h,
                            saved.peephole, saved.h_all, saved.c_all, saved.gates_all, d_h,
                            dh_n_all[index], dc_n_all[index], kernel_lengths))
                    grads["peephole" + suffix] = dpeephole
                elif saved.W_r is None:
                    dx, dh0[index], dc0[index], dW_x, dW_h, db = ops.sequence_backward(
                        backend, saved.x, saved.h0, saved.c0, saved.W_x, saved.W_h,
                        saved.h_all, saved.c_all, saved.gates_all, d_h, dh_n_all[index],
                        dc_n_all[index], kernel_lengths)
                else:
                    dx, dh0[index], dc0[index], dW_x, dW_h, dW_r, db = (
                        ops.projected_sequence_backward(
                            backend, saved.x, saved.h0, saved.c0, saved.W_x, saved.W_h,
                            saved.W_r, saved.h_all, saved.c_all, saved.m_all, saved.gates_all,
                            d_h, dh_n_all[index], dc_n_all[index], kernel_lengths))
                    grads["weight_hr" + suffix] = xp.ascontiguousarray(transposed(dW_r))
                if direction == 1:
                    dx = ops.time_steps_copy(backend, dx, kernel_lengths, reverse=True)
                d_input = dx if d_input is None else ops.add(backend, d_input, dx)
                grads["weight_ih" + suffix] = xp.ascontiguousarray(transposed(dW_x))
                grads["weight_hh" + suffix] = xp.ascontiguousarray(transposed(dW_h))
                if self.bias:
                    grads["bias_ih" + suffix] = db
                    grads["bias_hh" + suffix] = xp.copy(db)
            d_layer = d_input
            if layer > 0 and cache.dropout_keys:  # through the mask on the layer below's output
                d_layer = ops.dropout(backend, d_layer, cache.dropout_keys[layer - 1],
                                      cache.dropout_p)
        dx = self._output_layout(backend, d_layer, cache.unbatched)
        dh0 = xp.stack(dh0).reshape(state_shapes[0])
        dc0 = xp.stack(dc0).reshape(state_shapes[1])
        grads = {name: grads[name] for name in self.parameter_shapes()}
        return convert_results((dx, (dh0, dc0), grads), cache.result_kind)

    # ------------------------------------------------------------------ torch interop

    @classmethod
    def from_torch(cls, module: Any) -> "LSTM":
        """An ``LSTM`` with ``module``'s configuration and a copy of its weights (a
        ``torch.nn.LSTM`` of float32 or float64; on the GPU if the module is). Anything
        else, a ``GRU`` or an object that only looks like an LSTM, is a ``TypeError``."""
        config, weights, on_gpu = _torch_interop.read_module(module)
        lstm = cls._from_parameters(config, weights)
        return lstm.to("cuda") if on_gpu else lstm

    def to_torch(self) -> Any:
        """A ``torch.nn.LSTM`` with this configuration and a copy of these weights (on the
        GPU when this model is); needs torch."""
        host = {name: convert(value, "numpy") for name, value in self._parameters.items()}
        return _torch_interop.build_module(self.config(), host, on_gpu=self.device == "cuda")

    # ------------------------------------------------------------------ ONNX

    @classmethod
    def from_onnx(cls, source: Any, *, node: str | int | None = None) -> "LSTM":
        """An ``LSTM`` computing what an ONNX model's LSTM node(s) compute (needs ``onnx``).

        source  a path to a ``.onnx`` file, its bytes, or an ``onnx.ModelProto``
        node    None: every LSTM node of the graph, stacked as layers (a graph of LSTM nodes
                and the layout glue exporters write between them, e.g.
                ``torch.onnx.export(..., dynamo=False)`` of a multi-layer bidirectional
                ``torch.nn.LSTM``); or one LSTM node's name (or index among the LSTM nodes)
                to import that node alone
        The model follows nblstm's conventions: ONNX ``layout=1`` becomes ``batch_first``,
        ``out`` is ``(T, B, D*H)``, states ``(L*D, B, H)``, ``sequence_lens`` is the
        ``lengths`` argument, ``P`` makes ``peephole=True``. Refused with a ``ValueError``
        naming the node and the attribute or op: ``direction='reverse'``, ``clip``,
        ``input_forget=1``, activations other than (Sigmoid, Tanh, Tanh), non-zero constant
        initial states, constant ``sequence_lens`` and ops nblstm cannot run
        (``nblstm._onnx_import``).
        """
        from . import _onnx_import
        config, parameters = _onnx_import.read(source, node)
        return cls._from_parameters(config, parameters)

    def to_onnx(self, path: str | os.PathLike, *, opset: int = 17) -> str:
        """Write the model as an ONNX graph that ONNX Runtime runs (needs ``onnx``); returns
        the path written (atomically).

        Inputs: ``x`` in this model's layout (dynamic time and batch axes), the only
        required one, and ``h0``, ``c0`` ``(L*D, B, H)`` and ``lengths`` ``(B,)`` int32,
        optional (defaults: zeros, full sequences). Outputs: ``out`` exactly as ``forward``
        returns it, then ``h_n``, ``c_n``. ``proj_size`` has no ONNX form (``ValueError``);
        dropout acts only in training and is not exported. float64 models are valid ONNX,
        but ONNX Runtime's CPU LSTM runs float32 only (``nblstm._onnx_export``).
        """
        from . import _onnx_export
        self.check_parameters()
        host = {name: convert(value, "numpy") for name, value in self._parameters.items()}
        return _onnx_export.write(path, _onnx_export.build_model(self.config(), host, opset))

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> str:
        """Write the configuration and parameters to an ``.npz`` file (".npz" is appended
        when missing, as ``numpy.savez`` does); returns the path written.

        Atomic (``nblstm._files``): the file is written under an unpredictable temporary name
        beside ``path`` (created exclusively: no planted file or link is followed), flushed
        to disk, then renamed; a crash leaves ``path`` as it was, and concurrent saves to one
        path each complete (the last rename wins). Loads with ``allow_pickle=False``."""
        path = os.fsdecode(os.fspath(path))
        if not path.endswith(".npz"):
            path += ".npz"
        arrays = {name: convert(value, "numpy") for name, value in self._parameters.items()}
        _model_file.write(path, self.config(), arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "LSTM":
        """Read a model written by ``save``, trusting nothing in the file: the header is
        parsed with bounded depth against a strict schema, and member names, shapes, dtypes
        and sizes are checked from the zip directory and the ``.npy`` headers before any
        parameter is decompressed or allocated (``nblstm._model_file``). A damaged file, a
        file of something else, or parameters that do not match the configuration raise
        ``ValueError`` naming the file and the problem; a missing file ``FileNotFoundError``."""
        path = os.fsdecode(os.fspath(path))
        config, arrays = _model_file.read(path, cls._shapes_of_config)
        lstm = cls._from_parameters(config, arrays)
        return lstm.to(device) if device != "cpu" else lstm

    @classmethod
    def _shapes_of_config(cls, config: dict) -> dict[str, tuple]:
        """``parameter_shapes()`` of a model with this configuration, built without weights."""
        lstm = cls.__new__(cls)
        lstm._configure(**config)
        return lstm.parameter_shapes()

    @classmethod
    def _from_parameters(cls, config: dict, parameters: dict) -> "LSTM":
        """A model of ``config`` (``config()``'s keys) holding the arrays of ``parameters``
        under ``parameter_shapes()``'s names (taken as they are, not copied; checked on every
        call), without drawing initial weights: how ``load``, ``from_torch`` and
        ``nblstm.dask`` build a model from existing weights. The dropout generator gets
        fresh entropy."""
        lstm = cls.__new__(cls)
        lstm._configure(**config)
        lstm._parameters = {name: parameters[name] for name in lstm.parameter_shapes()}
        return lstm
