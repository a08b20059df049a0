"""A small NumPy evaluator for the ops exporters write around ONNX LSTM nodes.

``nblstm.LSTM.from_onnx`` does not pattern-match the Transpose/Reshape/Squeeze/Concat chains
and the Shape/Gather/ConstantOfShape chains of zero initial states that exporters put between
LSTM nodes (each exporter, and each version, writes them differently). It evaluates them on
probe inputs instead (``_onnx_import``) and checks that the values reaching each LSTM node are
what one ``nblstm.LSTM`` would pass: a graph is accepted for what it computes, not for how it
is spelled. This module is that evaluator: the glue ops in NumPy, with an LSTM node's
outputs supplied by the caller (``Evaluator.lstm_outputs``).

Only ``GLUE_OPS`` are evaluated; any other op is refused by the importer before evaluation.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

#: ONNX TensorProto element types -> NumPy dtypes (the ones these ops meet).
ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64,
               9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


def attributes(node: Any) -> dict[str, Any]:
    """``{name: value}`` of a node's attributes (tensors as NumPy arrays, strings decoded)."""
    import onnx
    from onnx import numpy_helper
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        if isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        values[attribute.name] = value
    return values


def _axes(node_attributes: dict, inputs: list, position: int) -> list | None:
    """``axes`` of Squeeze/Unsqueeze/Slice: an attribute before opset 13, an input since."""
    if len(inputs) > position and inputs[position] is not None:
        return [int(a) for a in np.asarray(inputs[position]).reshape(-1)]
    axes = node_attributes.get("axes")
    return None if axes is None else [int(a) for a in axes]


def _constant(a: dict, _: list) -> list:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            value = a[key]
            if key.startswith("value_float"):
                return [np.asarray(value, dtype=np.float32)]
            if key.startswith("value_int"):
                return [np.asarray(value, dtype=np.int64)]
            return [np.asarray(value)]
    raise ValueError(f"a Constant node without a tensor value ({sorted(a)})")


def _shape(a: dict, i: list) -> list:
    shape = np.asarray(i[0].shape, dtype=np.int64)
    return [shape[a.get("start", 0):a.get("end", len(shape))]]


def _squeeze(a: dict, i: list) -> list:
    axes = _axes(a, i, 1)
    return [np.squeeze(i[0], axis=None if axes is None else tuple(axes))]


def _unsqueeze(a: dict, i: list) -> list:
    out = i[0]
    rank = out.ndim + len(_axes(a, i, 1))
    for axis in sorted(x % rank for x in _axes(a, i, 1)):
        out = np.expand_dims(out, axis)
    return [out]


def _slice(a: dict, i: list) -> list:
    data = i[0]
    if len(i) > 1:  # opset >= 10: starts, ends, axes, steps are inputs
        starts = [int(v) for v in i[1]]
        ends = [int(v) for v in i[2]]
        axes = _axes({}, i, 3) or list(range(len(starts)))
        steps = [int(v) for v in i[4]] if len(i) > 4 and i[4] is not None else [1] * len(starts)
    else:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        size = data.shape[axis]
        # ONNX clamps out-of-range bounds (INT64_MAX means "to the end")
        start, end = max(-size - 1, min(size, start)), max(-size - 1, min(size, end))
        index[axis] = slice(start, end, step)
    return [data[tuple(index)]]


def _reshape(a: dict, i: list) -> list:
    shape = [int(s) for s in i[1]]
    if not a.get("allowzero", 0):
        shape = [i[0].shape[k] if s == 0 else s for k, s in enumerate(shape)]
    return [i[0].reshape(shape)]


def _constant_of_shape(a: dict, i: list) -> list:
    value = np.asarray(a.get("value", np.zeros(1, np.float32))).reshape(-1)[0]
    return [np.full([int(s) for s in i[0]], value)]


def _cast(a: dict, i: list) -> list:
    if a["to"] not in ONNX_DTYPES:
        raise ValueError(f"a Cast to ONNX element type {a['to']}, which nblstm does not "
                         f"evaluate")
    return [i[0].astype(ONNX_DTYPES[a["to"]])]


def _expand(_: dict, i: list) -> list:
    shape = np.broadcast_shapes(i[0].shape, tuple(int(s) for s in i[1]))
    return [np.broadcast_to(i[0], shape).copy()]


#: op type -> ``f(attributes, inputs) -> outputs``; the ops an LSTM graph's glue may use.
GLUE_OPS: dict[str, Callable[[dict, list], list]] = {
    "Constant": _constant,
    "Identity": lambda a, i: [i[0]],
    "Shape": _shape,
    "Size": lambda a, i: [np.asarray(i[0].size, dtype=np.int64)],
    "Gather": lambda a, i: [np.take(i[0], i[1].astype(np.int64), axis=a.get("axis", 0))],
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": lambda a, i: [np.concatenate([np.atleast_1d(v) if v.ndim == 0 else v
                                            for v in i if v is not None], axis=a["axis"])],
    "ConstantOfShape": _constant_of_shape,
    "Slice": _slice,
    "Transpose": lambda a, i: [np.transpose(i[0], a.get("perm"))],
    "Reshape": _reshape,
    "Flatten": lambda a, i: [i[0].reshape(int(np.prod(i[0].shape[:a.get("axis", 1)])), -1)],
    "Cast": _cast,
    "Expand": _expand,
    "Min": lambda a, i: [np.minimum.reduce(np.broadcast_arrays(*i))],
    "Max": lambda a, i: [np.maximum.reduce(np.broadcast_arrays(*i))],
}


class Evaluator:
    """Evaluates the tensors of one ONNX graph on demand, each once (memoised).

    ``constants``: initializers (and any other known values) by name; ``feeds``: graph
    inputs by name; ``lstm_outputs(node)``: the outputs to use for an LSTM node (the importer
    supplies probe values). Asking for a tensor that needs a graph input not in ``feeds``
    raises ``KeyError`` with the input's name; ``depends_on(name)`` lists the graph inputs a
    tensor is computed from.
    """

    def __init__(self, graph: Any, constants: dict[str, np.ndarray], feeds: dict[str, Any],
                 lstm_outputs: Callable[[Any], list]) -> None:
        self.producers = {out: node for node in graph.node for out in node.output if out}
        self.inputs = {value.name for value in graph.input}
        self.constants = constants
        self.feeds = feeds
        self.lstm_outputs = lstm_outputs
        self.values: dict[str, Any] = {}

    def __call__(self, name: str) -> Any:
        if name == "":
            return None
        if name in self.values:
            return self.values[name]
        if name in self.feeds:
            value = self.feeds[name]
        elif name in self.constants:
            value = self.constants[name]
        elif name in self.producers:
            node = self.producers[name]
            if node.op_type == "LSTM":
                outputs = self.lstm_outputs(node)
            elif node.op_type in GLUE_OPS:
                outputs = GLUE_OPS[node.op_type](attributes(node),
                                                 [self(source) for source in node.input])
            else:
                label = f"{node.name!r}" if node.name else f"producing {name!r}"
                raise ValueError(f"node {label} is a {node.op_type} op, which nblstm cannot "
                                 f"run or evaluate (the ops it evaluates around LSTM nodes: "
                                 f"{', '.join(sorted(GLUE_OPS))})")
            for out, value in zip(node.output, outputs):
                if out:
                    self.values[out] = value
            value = self.values[name]
        elif name in self.inputs:
            raise KeyError(name)  # a graph input the caller did not feed
        else:
            raise ValueError(f"tensor {name!r} is neither a graph input, an initializer nor "
                             f"a node's output: not a valid ONNX graph")
        self.values[name] = value
        return value

    def reaches_op(self, name: str, op_type: str, seen: set | None = None) -> bool:
        """Whether tensor ``name`` is computed from an output of an ``op_type`` node."""
        seen = set() if seen is None else seen
        node = self.producers.get(name)
        if node is None or id(node) in seen:
            return False
        seen.add(id(node))
        return node.op_type == op_type or any(self.reaches_op(source, op_type, seen)
                                              for source in node.input if source)

    def depends_on(self, name: str, seen: set | None = None) -> set[str]:
        """The graph inputs that tensor ``name`` is computed from (an input with an
        initializer of its name, a default value, counts: a caller may feed it)."""
        seen = set() if seen is None else seen
        if name in seen or name == "":
            return set()
        seen.add(name)
        if name in self.inputs:
            return {name}
        node = self.producers.get(name)
        if node is None:
            return set()
        found: set[str] = set()
        for source in node.input:
            found |= self.depends_on(source, seen)
        return found
