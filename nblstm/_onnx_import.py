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
    # an initializer listed as a graph input (every weight of an IR < 4 model, torch's
    # keep_initializers_as_inputs) is still the weight: its value is the initializer's
    sources = graph_values.depends_on(name) - set(graph_values.constants)
    if sources:
        raise ValueError(f"{label}: input {role} ({name!r}) must be a constant (an "
                         f"initializer), but it is computed from graph input(s) "
                         f"{sorted(sources)}")
    try:
        return np.asarray(graph_values(name))
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"{label}: input {role} ({name!r}) could not be evaluated "
                         f"({error})") from None


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
    graph = _Graph.of(model)
    lstm_protos = [proto for proto in graph.proto.node if proto.op_type == "LSTM"]
    if not lstm_protos:
        raise ValueError("the ONNX graph has no LSTM node")
    weights = graph.evaluator({})
    if node is not None:
        return _read_one(graph, weights, lstm_protos, node)
    for index, proto in enumerate(graph.proto.node):
        if proto.op_type != "LSTM" and proto.op_type not in GLUE_OPS:
            name = f"{proto.name!r} " if proto.name else f"#{index} "
            raise ValueError(f"node {name}is a {proto.op_type} op, which nblstm cannot run: "
                             f"an importable graph holds LSTM nodes and layout glue only "
                             f"({', '.join(sorted(GLUE_OPS))}); use node= to import one "
                             f"LSTM node")
    nodes = [_node(proto, index, weights) for index, proto in enumerate(lstm_protos)]
    return _read_stack(graph, nodes)


@dataclass
class _Graph:
    """A graph with its initializers read and the inputs a caller may feed."""
    proto: Any
    constants: dict
    #: graph inputs that are data, not weights: every input without an initializer, and
    #: (IR >= 4) inputs whose initializer is an overridable default
    feedable: set
    inputs: dict

    @classmethod
    def of(cls, model: Any) -> "_Graph":
        graph = model.graph
        constants = {}
        for tensor in graph.initializer:
            try:
                constants[tensor.name] = _to_array(tensor)
            except Exception as error:  # e.g. external data that was not loaded
                raise ValueError(f"initializer {tensor.name!r} cannot be read "
                                 f"({type(error).__name__}: {error}); pass the model's path "
                                 f"(or onnx.load it) so that external data is loaded") from None
        inputs = {value.name: value for value in graph.input}
        if model.ir_version < 4:  # such models list every initializer as an input
            feedable = {name for name in inputs if name not in constants}
        else:
            feedable = set(inputs)
        return cls(graph, constants, feedable, inputs)

    def evaluator(self, feeds: dict, lstm_outputs: Any = None) -> Evaluator:
        return Evaluator(self.proto, self.constants, feeds,
                         lstm_outputs=_no_lstm if lstm_outputs is None else lstm_outputs)

    def element_type(self, name: str, default: Any) -> Any:
        return ONNX_DTYPES.get(self.inputs[name].type.tensor_type.elem_type, default)


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


EVALUATION_ERRORS = (KeyError, IndexError, TypeError, ValueError, _DependsOnLSTM)


def _read_one(graph: _Graph, weights: Evaluator, protos: list,
              node: str | int) -> tuple[dict, dict]:
    """One LSTM node as a one-layer model. The rest of the graph is not looked at, except
    what computes the node's weights and initial states: states and lengths computed from
    graph inputs are the model's ``state`` and ``lengths`` arguments (in nblstm's layout),
    anything else must be zeros (states) or absent (lengths)."""
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
    for position, role in ((5, "initial_h"), (6, "initial_c"), (4, "sequence_lens")):
        name = one.input(position)
        if not name or weights.depends_on(name) & graph.feedable:
            continue  # absent (zeros, full sequences), or from graph inputs: given per call
        try:
            value = weights(name)
        except EVALUATION_ERRORS:
            value = _evaluate_with_probe_inputs(graph, name)
        if role == "sequence_lens" or np.any(value != 0):
            kind = "lengths" if role == "sequence_lens" else "states"
            raise ValueError(f"{one.label}: input {role} ({name!r}) is a constant or computed "
                             f"value: nblstm takes {kind} per call (zeros when not given)")
    config, bias, peephole = _config([one], batch_first=one.layout == 1)
    return config, _parameters([one], bias, peephole)


def _evaluate_with_probe_inputs(graph: _Graph, name: str) -> np.ndarray:
    """``name`` computed with every graph input fed random values of its declared shape
    (symbolic dims 3): how a zero-state chain of ``Shape(x)`` ops is recognised."""
    rng = np.random.default_rng(0)
    feeds = {}
    for value in graph.proto.input:
        if value.name not in graph.feedable:
            continue
        dims = [d or 3 for d in _declared_shape(value)]
        feeds[value.name] = rng.standard_normal(dims).astype(
            graph.element_type(value.name, np.float32))
    try:
        return graph.evaluator(feeds)(name)
    except EVALUATION_ERRORS as error:
        raise ValueError(f"the value {name!r} could not be evaluated ({error})") from None


#: Integer constants above this are not sizes a probe must exceed (INT64_MAX "to the end",
#: large reshape targets): probes stay small.
LARGEST_PROBED_CONSTANT = 4096


def _integer_constants(graph: _Graph) -> list[int]:
    """The integer values of the graph's initializers and Constant nodes (a truncating
    ``Slice(x, 0, 8)`` or ``Min(lengths, 8)`` is the identity on probes of at most 8 steps:
    the probes must be longer than every such constant)."""
    values = [a for a in graph.constants.values() if a.dtype.kind in "iu"]
    for proto in graph.proto.node:
        if proto.op_type == "Constant":
            value = np.asarray(GLUE_OPS["Constant"](attributes(proto), [])[0])
            if value.dtype.kind in "iu":
                values.append(value)
    return [int(v) for a in values for v in np.abs(a.reshape(-1).astype(np.int64))
            if v <= LARGEST_PROBED_CONSTANT]


def _read_stack(graph: _Graph, nodes: list[_Node]) -> tuple[dict, dict]:
    """All LSTM nodes as the layers of one model, checked on probe inputs of several sizes:
    a small one, one longer and one wider than every integer constant of the graph."""
    first = nodes[0]
    D, H, dtype = first.directions, first.hidden_size, first.W.dtype
    for node in nodes[1:]:
        if (node.directions, node.hidden_size) != (D, H):
            raise ValueError(f"{node.label}: every LSTM node of a stack must have the first's "
                             f"direction and hidden_size ({_direction(D)}, {H}), got "
                             f"({_direction(node.directions)}, {node.hidden_size})")
        if node.W.shape[2] != D * H:
            raise ValueError(f"{node.label}: its input size {node.W.shape[2]} is not the "
                             f"previous node's output size {D * H}: not a stack of layers")
        if node.W.dtype != dtype:
            raise ValueError(f"{node.label}: weights of {node.W.dtype}, the first node's are "
                             f"{dtype}")
    L = len(nodes)
    structure = graph.evaluator({})
    sources = structure.depends_on(first.input(0)) - set(graph.constants)
    if len(sources) != 1:
        raise ValueError(f"{first.label}: its input X must come from one graph input, it "
                         f"comes from {sorted(sources) or 'no graph input'}")
    x_name = sources.pop()
    declared = _declared_shape(graph.inputs[x_name])
    if declared and len(declared) != 3:
        raise ValueError(f"graph input {x_name!r} has {len(declared)} dimensions: nblstm "
                         f"imports LSTMs over 3-D inputs (time, batch, features)")
    roles = {}
    for position, role in ((5, "initial_h"), (6, "initial_c"), (4, "sequence_lens")):
        found = set()
        for node in nodes:
            if node.input(position):
                found |= structure.depends_on(node.input(position)) & graph.feedable
        found -= {x_name}
        if len(found) > 1:
            raise ValueError(f"the LSTM nodes' {role} come from several graph inputs "
                             f"{sorted(found)}: nblstm takes one array for all layers")
        roles[role] = found.pop() if found else None
    F = int(first.W.shape[2])
    free = _probe_sizes({F, H, D, L * D, 2 * L * D}, 2)
    large = max(_integer_constants(graph) + [max(free)]) + 1 + int(np.random.default_rng(
        3).integers(1, 4))
    shapes = [(free[0], free[1]), (large, free[1]), (free[0], large)]
    if declared and declared[0] and declared[1]:
        shapes = [(declared[0], declared[1])]  # the only size the graph is defined for
    elif declared and (declared[0] or declared[1]):
        shapes = [(declared[0] or a, declared[1] or b) for a, b in shapes]
    batch_first, state_layouts = None, None
    for probe, (d0, d1) in enumerate(shapes):
        rng = np.random.default_rng(10 + probe)
        # large values: a clamp (Min, Max) on the data is not the identity on them
        x_probe = (rng.standard_normal((d0, d1, F)) * 1e3).astype(dtype)
        found = _layout_of_input(graph, first, x_name, x_probe)
        if batch_first is not None and found != batch_first:
            raise ValueError(f"{first.label}: the graph's input reaches it in different "
                             f"layouts at different sizes")
        batch_first = found
        T, B = (d1, d0) if batch_first else (d0, d1)
        state_layouts = _check_probe(graph, nodes, x_name, x_probe, roles, T, B, dtype, rng,
                                     state_layouts)
    config, bias, peephole = _config(nodes, batch_first)
    return config, _parameters(nodes, bias, peephole)


def _direction(D: int) -> str:
    return "bidirectional" if D == 2 else "forward"


def _layout_of_input(graph: _Graph, first: _Node, x_name: str, x_probe: np.ndarray) -> bool:
    """``batch_first``: how the graph input reaches the first LSTM node (time-major or
    batch-first); anything but a change of layout is a ``ValueError``."""
    try:
        X0 = _time_major(np.asarray(graph.evaluator({x_name: x_probe})(first.input(0))),
                         first.layout)
    except _DependsOnLSTM:
        raise ValueError(f"{first.label}: its input depends on another LSTM node's output: "
                         f"not a stack of layers (use node= to import one node)") from None
    except EVALUATION_ERRORS as error:
        raise ValueError(f"{first.label}: the ops between graph input {x_name!r} and its input "
                         f"X could not be evaluated on a probe of shape {x_probe.shape} "
                         f"({error})") from None
    d0, d1, F = x_probe.shape
    if X0.shape == x_probe.shape and np.array_equal(X0, x_probe):
        return False
    if X0.shape == (d1, d0, F) and np.array_equal(X0, np.swapaxes(x_probe, 0, 1)):
        return True
    raise ValueError(f"{first.label}: the ops between graph input {x_name!r} and its input X "
                     f"are not a change of layout (time-major or batch-first) at a probe of "
                     f"shape {x_probe.shape}")


def _check_probe(graph: _Graph, nodes: list[_Node], x_name: str, x_probe: np.ndarray,
                 roles: dict, T: int, B: int, dtype: Any, rng: np.random.Generator,
                 state_layouts: tuple | None) -> tuple:
    """One probe: what reaches every LSTM node is what one nblstm.LSTM passes it (with each
    state input as nblstm's (L*D, B, H) rows or the same batch-first; ``state_layouts``:
    the layouts found by an earlier probe), defaults of optional inputs are zeros or full
    lengths, and the graph's outputs are made of the LSTM nodes' output values only."""
    L, D, H = len(nodes), nodes[0].directions, nodes[0].hidden_size
    state_roles = [role for role in ("initial_h", "initial_c") if roles[role]]
    lengths = rng.integers(1, T + 1, size=B).astype(np.int64)
    lengths[0] = T
    problem = None
    candidates = ([state_layouts] if state_layouts is not None
                  else itertools.product((0, 1), repeat=len(state_roles)))
    for layouts in candidates:
        states = {role: (rng.standard_normal((L * D, B, H)) * 1e3).astype(dtype)
                  for role in state_roles}
        feeds = {x_name: x_probe}
        for role, layout in zip(state_roles, layouts):
            feeds[roles[role]] = states[role] if layout == 0 else np.swapaxes(states[role], 0, 1)
        if roles["sequence_lens"]:
            feeds[roles["sequence_lens"]] = lengths.astype(
                graph.element_type(roles["sequence_lens"], np.int32))
        probe = _Probe(nodes, T, B, dtype, seed=int(rng.integers(1 << 30)))
        problem = _check_on_probe(graph, nodes, feeds, states, roles, lengths, probe, T, B,
                                  dtype)
        if problem is None:
            _check_defaults(graph, nodes, x_name, x_probe, roles, T, B, dtype)
            _check_outputs(graph, feeds, probe)
            return tuple(layouts)
    raise ValueError(problem)


def _check_on_probe(graph: _Graph, nodes: list[_Node], feeds: dict, states: dict,
                    roles: dict, lengths: np.ndarray, probe: "_Probe", T: int, B: int,
                    dtype: Any) -> str | None:
    """The first thing that does not reach an LSTM node as one nblstm.LSTM would pass it,
    or None."""
    values = graph.evaluator(feeds, lstm_outputs=probe)
    D = nodes[0].directions
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
                expected = states[role][k * D:(k + 1) * D]
                if value.shape != expected.shape or not np.array_equal(value, expected):
                    return (f"{node.label}: input {role} ({name!r}) is not rows "
                            f"{k * D}..{(k + 1) * D - 1} of one state input")
            name = node.input(4)
            if roles["sequence_lens"] is not None and not name:
                return "sequence_lens is given to some LSTM nodes only"
            if name:
                got = np.asarray(values(name)).astype(np.int64)
                want = lengths if roles["sequence_lens"] else np.full(B, T)
                if got.shape != want.shape or not np.array_equal(got, want):
                    return (f"{node.label}: sequence_lens ({name!r}) is not the graph's "
                            f"lengths input" if roles["sequence_lens"] else
                            f"{node.label}: sequence_lens ({name!r}) is a constant or "
                            f"computed value other than full sequences: nblstm takes "
                            f"lengths per call")
        except EVALUATION_ERRORS as error:
            return f"{node.label}: the graph around it could not be evaluated ({error})"
    return None


def _check_defaults(graph: _Graph, nodes: list[_Node], x_name: str, x_probe: np.ndarray,
                    roles: dict, T: int, B: int, dtype: Any) -> None:
    """An optional input (an initializer of its name: a default) must default to what
    nblstm does without it: zero states, full sequences."""
    for role, position in (("initial_h", 5), ("initial_c", 6), ("sequence_lens", 4)):
        name = roles[role]
        if name is None or name not in graph.constants:
            continue
        values = graph.evaluator({x_name: x_probe})  # ``name`` not fed: its default
        for node in nodes:
            if not node.input(position):
                continue
            try:
                value = np.asarray(values(node.input(position)))
            except EVALUATION_ERRORS:
                continue  # needs another input fed: nothing to check for this default
            ok = (np.all(value == T) if role == "sequence_lens" else not np.any(value != 0))
            if not ok:
                default = "full sequences" if role == "sequence_lens" else "zeros"
                what = "lengths" if role == "sequence_lens" else "states"
                raise ValueError(f"graph input {name!r} (the {role} of {node.label}) has a "
                                 f"default value that is not {default}: nblstm's {what} "
                                 f"default to {default}, so the model would compute "
                                 f"something else when it is not given")


def _check_outputs(graph: _Graph, feeds: dict, probe: "_Probe") -> None:
    """Each graph output computed from an LSTM node must be made of the LSTM nodes' output
    values only (layout ops move values, any arithmetic makes new ones): the model returns
    nblstm's outputs, not a function of them."""
    values = graph.evaluator(feeds, lstm_outputs=probe)
    results = {}
    for output in graph.proto.output:
        if not values.reaches_op(output.name, "LSTM"):
            continue
        try:
            results[output.name] = np.asarray(values(output.name))
        except EVALUATION_ERRORS as error:
            raise ValueError(f"graph output {output.name!r} could not be evaluated "
                             f"({error})") from None
    if not results:
        return
    produced = np.unique(np.concatenate([a.reshape(-1) for outputs in probe.outputs.values()
                                         for a in outputs]))
    for name, value in results.items():
        if value.dtype.kind == "f" and not np.isin(value, produced).all():
            raise ValueError(f"graph output {name!r} is computed from the LSTM nodes' "
                             f"outputs by more than a change of layout: nblstm.LSTM returns "
                             f"the LSTM's own outputs (import the LSTM with node= and apply "
                             f"the rest yourself)")
