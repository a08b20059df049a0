"""``nblstm.LSTM.from_onnx``: an ONNX model's LSTM node(s) as one ``nblstm.LSTM``.

ONNX's LSTM operator (https://onnx.ai/onnx/operators/onnx__LSTM.html) per direction d:

- ``W (D, 4H, X)``, ``R (D, 4H, H)``: gate blocks in the order (i, o, f, c) along 4H;
- ``B (D, 8H)``: the input biases then the recurrent biases, same block order;
- ``P (D, 3H)``: peephole weights (i, o, f); ``sequence_lens (B,)``; ``initial_h``,
  ``initial_c`` ``(D, B, H)``; ``layout = 1`` puts the batch first in X, Y, Y_h, Y_c.

nblstm's order is (i, f, g, o) (torch's) and (i, f, o) for peepholes: the blocks are
permuted, nothing else changes, so the result computes what the graph computes.

A graph of several LSTM nodes (``torch.onnx.export(..., dynamo=False)`` writes one per
layer, with Transpose/Reshape between them and Shape/Gather/ConstantOfShape chains for zero
initial states) becomes one multi-layer model. Rather than pattern-matching each exporter's
spelling of that glue, the importer evaluates it on probe inputs (``_onnx_glue``) and checks
what reaches every LSTM node: the graph's input in one of the two layouts at the first node,
the previous node's output (directions concatenated on the features, nblstm's layer input)
at the others, zeros or slices of one state input as initial states, and one lengths input
as every node's ``sequence_lens``. Ops after the last LSTM node only format outputs; the model
returns nblstm's ``out, (h_n, c_n)``. Anything else is refused with a ``ValueError`` naming
the node and what it is.

Refused: the ``reverse`` direction (nblstm's layers run forward or both ways; a reverse-only
model is the backward half of a bidirectional one), ``clip``, ``input_forget = 1``,
activations other than (Sigmoid, Tanh, Tanh), initial states that are non-zero constants,
constant ``sequence_lens``, float16 weights, and ops other than the glue
(``_onnx_glue.GLUE_OPS``).
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._onnx_glue import GLUE_OPS, ONNX_DTYPES, Evaluator, attributes

#: nblstm's gate blocks (i, f, g, o) taken from ONNX's (i, o, f, c): block k <- ONNX block.
GATES_FROM_ONNX = (0, 2, 3, 1)
#: nblstm's peephole rows (i, f, o) taken from ONNX's P (i, o, f).
PEEPHOLES_FROM_ONNX = (0, 2, 1)
#: The attributes of the LSTM operator; values nblstm runs exactly are checked in ``_node``.
KNOWN_ATTRIBUTES = {"activation_alpha", "activation_beta", "activations", "clip", "direction",
                    "hidden_size", "input_forget", "layout"}
DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")


def require_onnx() -> Any:
    """The ``onnx`` package, or an ``ImportError`` saying how to install it."""
    try:
        import onnx
    except ImportError as error:
        raise ImportError("ONNX import and export need the onnx package: pip install "
                          "'nblstm[onnx]' (or pip install onnx)") from error
    return onnx


def load_model(source: Any) -> Any:
    """An ``onnx.ModelProto`` from a path, ``bytes`` or a ``ModelProto``."""
    onnx = require_onnx()
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(source))
        except Exception as error:
            raise ValueError(f"the bytes are not an ONNX model ({error})") from None
    if isinstance(source, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(source))
        if not os.path.exists(path):
            raise FileNotFoundError(f"no ONNX model at {path}")
        try:
            return onnx.load(path)
        except Exception as error:
            raise ValueError(f"{path} is not an ONNX model ({type(error).__name__}: "
                             f"{error})") from None
    raise TypeError(f"from_onnx takes a path, bytes or an onnx.ModelProto, got "
                    f"{type(source).__name__}")


@dataclass
class _Node:
    """One LSTM node, its attributes checked and its weights read."""
    proto: Any
    label: str
    hidden_size: int
    directions: int
    layout: int
    W: np.ndarray
    R: np.ndarray
    B: np.ndarray | None
    P: np.ndarray | None

    def input(self, position: int) -> str:
        names = self.proto.input
        return names[position] if len(names) > position else ""


def _label(node: Any, index: int) -> str:
    return f"LSTM node {node.name!r}" if node.name else f"LSTM node #{index}"


def _constant_input(graph_values: Evaluator, node: Any, label: str, position: int,
                    role: str) -> np.ndarray | None:
    names = node.input
    name = names[position] if len(names) > position else ""
    if not name:
        return None
    sources = graph_values.depends_on(name)
    if sources:
        raise ValueError(f"{label}: input {role} ({name!r}) must be a constant (an "
                         f"initializer), but it is computed from graph input(s) "
                         f"{sorted(sources)}")
    return np.asarray(graph_values(name))


def _node(proto: Any, index: int, constants: Evaluator) -> _Node:
    """Check one LSTM node's attributes and read its weights."""
    label = _label(proto, index)
    values = attributes(proto)
    unknown = sorted(set(values) - KNOWN_ATTRIBUTES)
    if unknown:
        raise ValueError(f"{label}: unknown attribute(s) {unknown}")
    direction = values.get("direction", "forward")
    if direction == "reverse":
        raise ValueError(f"{label}: direction='reverse' is not supported: nblstm's layers run "
                         f"forward or bidirectional (a reverse-only LSTM is the backward half "
                         f"of a bidirectional one)")
    if direction not in ("forward", "bidirectional"):
        raise ValueError(f"{label}: attribute direction={direction!r} is not an ONNX direction")
    D = 2 if direction == "bidirectional" else 1
    if "clip" in values:
        raise ValueError(f"{label}: attribute clip={values['clip']} is not supported (nblstm "
                         f"does not clip the cell's pre-activations)")
    if values.get("input_forget", 0) != 0:
        raise ValueError(f"{label}: attribute input_forget={values['input_forget']} is not "
                         f"supported (coupled input and forget gates)")
    activations = values.get("activations")
    if activations is not None and [a.lower() for a in activations] != list(
            DEFAULT_ACTIVATIONS) * D:
        raise ValueError(f"{label}: attribute activations={list(activations)} is not "
                         f"supported: nblstm runs {['Sigmoid', 'Tanh', 'Tanh'] * D}")
    layout = values.get("layout", 0)
    if layout not in (0, 1):
        raise ValueError(f"{label}: attribute layout={layout} must be 0 or 1")
    W = _constant_input(constants, proto, label, 1, "W")
    R = _constant_input(constants, proto, label, 2, "R")
    B = _constant_input(constants, proto, label, 3, "B")
    P = _constant_input(constants, proto, label, 7, "P")
    if W is None or R is None:
        raise ValueError(f"{label}: inputs W and R are required")
    if W.dtype not in (np.float32, np.float64):
        raise ValueError(f"{label}: weights of dtype {W.dtype} are not supported (float32 "
                         f"or float64)")
    H = values.get("hidden_size", R.shape[-1] if R.ndim == 3 else 0)
    expected = {"W": (D, 4 * H, W.shape[-1] if W.ndim == 3 else 0), "R": (D, 4 * H, H),
                "B": (D, 8 * H), "P": (D, 3 * H)}
    for role, array in (("W", W), ("R", R), ("B", B), ("P", P)):
        if array is None:
            continue
        if array.shape != expected[role]:
            raise ValueError(f"{label}: input {role} must have shape {expected[role]} "
                             f"(direction={direction}, hidden_size={H}), got {array.shape}")
        if array.dtype != W.dtype:
            raise ValueError(f"{label}: input {role} is {array.dtype}, W is {W.dtype}")
    return _Node(proto, label, int(H), D, int(layout), W, R, B, P)


def _rows(H: int) -> np.ndarray:
    return np.concatenate([np.arange(k * H, (k + 1) * H) for k in GATES_FROM_ONNX])


def _parameters(nodes: list[_Node], bias: bool, peephole: bool) -> dict[str, np.ndarray]:
    """nblstm's (torch's) parameters of the stacked nodes, gate blocks permuted."""
    parameters = {}
    for layer, node in enumerate(nodes):
        H, dtype = node.hidden_size, node.W.dtype
        rows = _rows(H)
        for d, suffix in enumerate([f"_l{layer}", f"_l{layer}_reverse"][:node.directions]):
            parameters["weight_ih" + suffix] = np.ascontiguousarray(node.W[d][rows])
            parameters["weight_hh" + suffix] = np.ascontiguousarray(node.R[d][rows])
            if bias:
                B = node.B[d] if node.B is not None else np.zeros(8 * H, dtype)
                parameters["bias_ih" + suffix] = np.ascontiguousarray(B[:4 * H][rows])
                parameters["bias_hh" + suffix] = np.ascontiguousarray(B[4 * H:][rows])
            if peephole:
                P = (node.P[d].reshape(3, H) if node.P is not None else np.zeros((3, H), dtype))
                parameters["peephole" + suffix] = np.ascontiguousarray(P[list(PEEPHOLES_FROM_ONNX)])
    return parameters


def _declared_shape(value_info: Any) -> list:
    """A graph input's declared dims: ints where static, None where symbolic or unknown."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return []
    return [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]


def _probe_sizes(forbidden: set[int], count: int) -> list[int]:
    """Distinct small sizes not in ``forbidden``: probe T and B must not be confused with
    each other or with any other axis."""
    sizes, n = [], 3
    while len(sizes) < count:
        if n not in forbidden:
            sizes.append(n)
        n += 1
    return sizes


def _time_major(array: np.ndarray, layout: int) -> np.ndarray:
    """A node's X (or a state) in layout 0: layout 1 swaps the first two axes."""
    return array if layout == 0 else np.swapaxes(array, 0, 1)


def _layer_input_of(Y: np.ndarray, layout: int) -> np.ndarray:
    """nblstm's layer input ``(T, B, D*H)`` from an LSTM node's ``Y``: ``(T, D, B, H)``
    (layout 0) or ``(B, T, D, H)`` (layout 1)."""
    Y = Y if layout == 0 else np.transpose(Y, (1, 2, 0, 3))
    T, D, B, H = Y.shape
    return np.transpose(Y, (0, 2, 1, 3)).reshape(T, B, D * H)


class _Probe:
    """Random stand-ins for the LSTM nodes' outputs, of the shapes their attributes imply."""

    def __init__(self, nodes: list[_Node], T: int, B: int, dtype: Any, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes = {id(node.proto): node for node in nodes}
        self.outputs: dict[int, list] = {}
        self.T, self.B, self.dtype = T, B, dtype

    def __call__(self, proto: Any) -> list:
        if id(proto) not in self.outputs:
            node = self.nodes[id(proto)]
            D, H, T, B = node.directions, node.hidden_size, self.T, self.B
            shapes = [(T, D, B, H), (D, B, H), (D, B, H)] if node.layout == 0 else [
                (B, T, D, H), (B, D, H), (B, D, H)]
            self.outputs[id(proto)] = [self.rng.standard_normal(s).astype(self.dtype)
                                       for s in shapes]
        return self.outputs[id(proto)]


def read(source: Any, node: str | int | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """``(config, parameters)`` of the ``nblstm.LSTM`` the ONNX model's LSTM node(s) make:
    all of them stacked (``node=None``), or the one named ``node`` (its name, or its index
    among the graph's LSTM nodes)."""
    model = load_model(source)
    graph = model.graph
    constants = {tensor.name: _to_array(tensor) for tensor in graph.initializer}
    weights = Evaluator(graph, constants, {}, lstm_outputs=_no_lstm)
    lstm_protos = [proto for proto in graph.node if proto.op_type == "LSTM"]
    if not lstm_protos:
        raise ValueError("the ONNX graph has no LSTM node")
    if node is not None:
        return _read_one(graph, constants, weights, lstm_protos, node)
    for index, proto in enumerate(graph.node):
        if proto.op_type != "LSTM" and proto.op_type not in GLUE_OPS:
            name = f"{proto.name!r} " if proto.name else f"#{index} "
            raise ValueError(f"node {name}is a {proto.op_type} op, which nblstm cannot run: "
                             f"an importable graph holds LSTM nodes and layout glue only "
                             f"({', '.join(sorted(GLUE_OPS))}); use node= to import one "
                             f"LSTM node")
    nodes = [_node(proto, index, weights) for index, proto in enumerate(lstm_protos)]
    return _read_stack(graph, constants, nodes)


def _to_array(tensor: Any) -> np.ndarray:
    from onnx import numpy_helper
    return numpy_helper.to_array(tensor)


def _no_lstm(proto: Any) -> list:
    raise _DependsOnLSTM(proto)


class _DependsOnLSTM(Exception):
    pass


def _config(nodes: list[_Node], batch_first: bool) -> tuple[dict, bool, bool]:
    first = nodes[0]
    bias = any(n.B is not None for n in nodes)
    peephole = any(n.P is not None for n in nodes)
    config = {"input_size": int(first.W.shape[2]), "hidden_size": first.hidden_size,
              "num_layers": len(nodes), "bias": bias, "batch_first": batch_first,
              "bidirectional": first.directions == 2, "dtype": first.W.dtype.name,
              "dropout": 0.0, "proj_size": 0, "peephole": peephole}
    return config, bias, peephole


def _read_one(graph: Any, constants: dict, weights: Evaluator, protos: list,
              node: str | int) -> tuple[dict, dict]:
    """One LSTM node as a one-layer model (the rest of the graph is not looked at, except
    what computes the node's initial states)."""
    if isinstance(node, (int, np.integer)) and not isinstance(node, bool):
        if not 0 <= node < len(protos):
            raise ValueError(f"node={node}: the graph has {len(protos)} LSTM node(s)")
        index = int(node)
    elif isinstance(node, str):
        names = [p.name for p in protos]
        if node not in names:
            raise ValueError(f"node={node!r}: no LSTM node of that name; the LSTM nodes are "
                             f"{names}")
        index = names.index(node)
    else:
        raise TypeError(f"node must be an LSTM node's name or index, got {type(node).__name__}")
    one = _node(protos[index], index, weights)
    inputs = {value.name: value for value in graph.input}
    for position, role in ((5, "initial_h"), (6, "initial_c"), (4, "sequence_lens")):
        name = one.input(position)
        if not name or name in inputs:
            continue  # absent (zeros, full sequences), or a graph input the caller feeds
        try:
            value = weights(name)
        except (KeyError, _DependsOnLSTM):
            value = _evaluate_with_probe_inputs(graph, constants, name)
        if role == "sequence_lens" or np.any(value != 0):
            raise ValueError(f"{one.label}: input {role} ({name!r}) is a constant or computed "
                             f"value: nblstm takes {'lengths' if role == 'sequence_lens' else 'states'} "
                             f"per call (zeros when not given)")
    config, bias, peephole = _config([one], batch_first=one.layout == 1)
    return config, _parameters([one], bias, peephole)


def _evaluate_with_probe_inputs(graph: Any, constants: dict, name: str) -> np.ndarray:
    """``name`` computed with every graph input fed random values of its declared shape
    (symbolic dims 3): how a zero-state chain of ``Shape(x)`` ops is recognised."""
    rng = np.random.default_rng(0)
    feeds = {}
    for value in graph.input:
        dims = [d or 3 for d in _declared_shape(value)]
        dtype = ONNX_DTYPES.get(value.type.tensor_type.elem_type, np.float32)
        feeds[value.name] = rng.standard_normal(dims).astype(dtype)
    try:
        return Evaluator(graph, constants, feeds, lstm_outputs=_no_lstm)(name)
    except (KeyError, _DependsOnLSTM, ValueError, IndexError) as error:
        raise ValueError(f"the value {name!r} could not be evaluated ({error})") from None


def _read_stack(graph: Any, constants: dict, nodes: list[_Node]) -> tuple[dict, dict]:
    """All LSTM nodes as the layers of one model, checked on probe inputs."""
    first = nodes[0]
    D, H, dtype = first.directions, first.hidden_size, first.W.dtype
    for node in nodes[1:]:
        if (node.directions, node.hidden_size) != (D, H):
            raise ValueError(f"{node.label}: every LSTM node of a stack must have the first's "
                             f"direction and hidden_size ({'bidirectional' if D == 2 else 'forward'}, "
                             f"{H}), got ({'bidirectional' if node.directions == 2 else 'forward'}, "
                             f"{node.hidden_size})")
        if node.W.shape[2] != D * H:
            raise ValueError(f"{node.label}: its input size {node.W.shape[2]} is not the "
                             f"previous node's output size {D * H}: not a stack of layers")
        if node.W.dtype != dtype:
            raise ValueError(f"{node.label}: weights of {node.W.dtype}, the first node's are "
                             f"{dtype}")
    L = len(nodes)
    plain = Evaluator(graph, constants, {}, lstm_outputs=_no_lstm)
    sources = plain.depends_on(first.input(0))
    if len(sources) != 1:
        raise ValueError(f"{first.label}: its input X must come from one graph input, it "
                         f"comes from {sorted(sources) or 'no graph input'}")
    x_name = sources.pop()
    inputs = {value.name: value for value in graph.input}
    declared = _declared_shape(inputs[x_name])
    if declared and len(declared) != 3:
        raise ValueError(f"graph input {x_name!r} has {len(declared)} dimensions: nblstm "
                         f"imports LSTMs over 3-D inputs (time, batch, features)")
    F = int(first.W.shape[2])
    free = _probe_sizes({F, H, D, L * D, 2 * L * D}, 2)
    d0 = declared[0] if declared and declared[0] else free[0]
    d1 = declared[1] if declared and declared[1] else free[1]
    rng = np.random.default_rng(1)
    x_probe = rng.standard_normal((d0, d1, F)).astype(dtype)
    try:
        X0 = _time_major(np.asarray(Evaluator(graph, constants, {x_name: x_probe},
                                              lstm_outputs=_no_lstm)(first.input(0))),
                         first.layout)
    except _DependsOnLSTM:
        raise ValueError(f"{first.label}: its input depends on another LSTM node's output: "
                         f"not a stack of layers (use node= to import one node)") from None
    if X0.shape == x_probe.shape and np.array_equal(X0, x_probe):
        batch_first, T, B = False, d0, d1
    elif X0.shape == (d1, d0, F) and np.array_equal(X0, np.swapaxes(x_probe, 0, 1)):
        batch_first, T, B = True, d1, d0
    else:
        raise ValueError(f"{first.label}: the ops between graph input {x_name!r} and its input "
                         f"X are not a change of layout (time-major or batch-first)")
    config, bias, peephole = _config(nodes, batch_first)
    _check_states_and_lengths(graph, constants, nodes, x_name, x_probe, T, B, dtype)
    return config, _parameters(nodes, bias, peephole)


def _inputs_of(evaluator: Evaluator, nodes: list[_Node], position: int,
               x_name: str) -> tuple[set, list]:
    names = [node.input(position) for node in nodes]
    sources = set()
    for name in names:
        if name:
            sources |= evaluator.depends_on(name) - {x_name}
    return sources, names


def _check_states_and_lengths(graph: Any, constants: dict, nodes: list[_Node], x_name: str,
                              x_probe: np.ndarray, T: int, B: int, dtype: Any) -> None:
    """Evaluate the graph on probe inputs and check what reaches every LSTM node: the
    previous node's output, one state input's rows (or zeros), one lengths input."""
    L, D, H = len(nodes), nodes[0].directions, nodes[0].hidden_size
    structure = Evaluator(graph, constants, {}, lstm_outputs=_no_lstm)
    state_inputs, lengths_input = {}, None
    for position, role in ((5, "initial_h"), (6, "initial_c")):
        sources, _ = _inputs_of(structure, nodes, position, x_name)
        if len(sources) > 1:
            raise ValueError(f"the LSTM nodes' {role} come from several graph inputs "
                             f"{sorted(sources)}: nblstm takes one state array for all layers")
        if sources:
            state_inputs[role] = sources.pop()
    sources, names = _inputs_of(structure, nodes, 4, x_name)
    if len(sources) > 1:
        raise ValueError(f"the LSTM nodes' sequence_lens come from several graph inputs "
                         f"{sorted(sources)}")
    if any(names) and not sources:
        raise ValueError(f"{nodes[[bool(n) for n in names].index(True)].label}: sequence_lens "
                         f"is a constant: nblstm takes lengths per call")
    if sources:
        lengths_input = sources.pop()
        if not all(names):
            raise ValueError("sequence_lens is given to some LSTM nodes only")
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, T + 1, size=B).astype(np.int32)
    lengths[0] = T
    # a state input holds nblstm's (L*D, B, H) rows, or the same batch-first (B, L*D, H)
    problem = None
    for layouts in itertools.product((0, 1), repeat=len(state_inputs)):
        states = {role: rng.standard_normal((L * D, B, H)).astype(dtype)
                  for role in state_inputs}
        feeds = {x_name: x_probe}
        for (role, name), layout in zip(state_inputs.items(), layouts):
            feeds[name] = states[role] if layout == 0 else np.swapaxes(states[role], 0, 1)
        if lengths_input is not None:
            elem_type = {v.name: v for v in graph.input}[lengths_input].type.tensor_type.elem_type
            feeds[lengths_input] = lengths.astype(ONNX_DTYPES.get(elem_type, np.int32))
        problem = _check_on_probe(graph, constants, nodes, feeds, states, lengths_input,
                                  lengths, T, B, dtype)
        if problem is None:
            return
    raise ValueError(problem)


def _check_on_probe(graph: Any, constants: dict, nodes: list[_Node], feeds: dict,
                    states: dict, lengths_input: str | None, lengths: np.ndarray, T: int,
                    B: int, dtype: Any) -> str | None:
    """The first thing that does not reach an LSTM node as one nblstm.LSTM would pass it,
    or None."""
    probe = _Probe(nodes, T, B, dtype)
    values = Evaluator(graph, constants, feeds, lstm_outputs=probe)
    D, H = nodes[0].directions, nodes[0].hidden_size
    for k, node in enumerate(nodes):
        try:
            if k > 0:
                X = _time_major(np.asarray(values(node.input(0))), node.layout)
                expected = _layer_input_of(probe(nodes[k - 1].proto)[0], nodes[k - 1].layout)
                if X.shape != expected.shape or not np.array_equal(X, expected):
                    return (f"{node.label}: its input X is not the output of "
                            f"{nodes[k - 1].label} in nblstm's layer layout (T, B, D*H): the "
                            f"LSTM nodes are not one stack of layers (use node= to import "
                            f"one)")
            for position, role in ((5, "initial_h"), (6, "initial_c")):
                name = node.input(position)
                expected = (states[role][k * D:(k + 1) * D] if role in states
                            else np.zeros((D, B, H), dtype))
                if not name:
                    if role in states:
                        return f"{node.label}: has no {role} while other layers do"
                    continue
                value = _time_major(np.asarray(values(name)), node.layout)
                if role not in states:
                    if np.any(value != 0):  # zeros of a fixed batch size are zeros at any
                        return (f"{node.label}: input {role} ({name!r}) is a non-zero "
                                f"constant: nblstm's initial states are zeros or given per "
                                f"call")
                    continue
                if value.shape != expected.shape or not np.array_equal(value, expected):
                    return (f"{node.label}: input {role} ({name!r}) is not rows "
                            f"{k * D}..{(k + 1) * D - 1} of one state input")
            name = node.input(4)
            if lengths_input is not None and not np.array_equal(
                    np.asarray(values(name)).astype(np.int64), lengths.astype(np.int64)):
                return f"{node.label}: sequence_lens is not the graph's lengths input"
        except (ValueError, IndexError, KeyError, TypeError) as error:
            return f"{node.label}: the graph around it could not be evaluated ({error})"
    return None
