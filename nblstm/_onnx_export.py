"""``nblstm.LSTM.to_onnx``: the model as an ONNX graph of LSTM nodes, one per layer.

The graph (``build_model``), for a model of L layers and D directions:

- inputs: ``x`` (``(T, B, X)``, or ``(B, T, X)`` with ``batch_first``; T and B dynamic) is
  the only one a caller must feed. ``h0`` ``(L*D, B, H)``, ``c0`` (the same) and ``lengths``
  ``(B,)`` int32 are inputs with default values (initializers of the same name, which ONNX
  Runtime lets a caller override): zeros of shape ``(L*D, 1, H)`` broadcast to the batch
  (``Expand``), and a length larger than any sequence clipped to T (``Min``, ``Expand``), so
  a graph fed only ``x`` runs full sequences from zero states.
- one LSTM node per layer, in ONNX's layout 0 (ONNX Runtime's CPU kernel refuses layout 1),
  with a Transpose in front for ``batch_first``; between layers ``Y (T, D, B, H)`` becomes the
  next layer's ``(T, B, D*H)`` (Transpose, Reshape); each layer's states are rows of ``h0``
  and ``c0`` (Slice).
- outputs: ``out`` exactly as ``LSTM.forward`` returns it (same layout and shape, zeros past
  each sequence's end), then ``h_n`` and ``c_n`` ``(L*D, B, H)``.

Weights are the model's, gate blocks permuted to ONNX's order (i, o, f, c), peepholes to
(i, o, f); ``B`` holds ``bias_ih`` then ``bias_hh``. ``proj_size`` has no ONNX form: a
``ValueError``. The file is written atomically (``nblstm._files``).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._files import atomic_open
from ._onnx_import import GATES_FROM_ONNX, PEEPHOLES_FROM_ONNX, require_onnx

#: ONNX opsets ``to_onnx`` writes: 12 on (Min of int32 lengths; the graph uses no op whose
#: signature changed since: layout 0 needs no LSTM-14 attribute).
MIN_OPSET = 12
DEFAULT_OPSET = 17
#: The default of the ``lengths`` input: longer than any sequence (then clipped to T).
LONGEST = np.iinfo(np.int32).max


def _onnx_order(H: int, order: tuple) -> np.ndarray:
    """Row indices that put nblstm's blocks into ONNX's order (the inverse of ``order``)."""
    inverse = np.argsort(order)
    return np.concatenate([np.arange(k * H, (k + 1) * H) for k in inverse])


def _layer_weights(parameters: dict, layer: int, D: int, H: int, bias: bool,
                   peephole: bool) -> dict[str, np.ndarray]:
    rows = _onnx_order(H, GATES_FROM_ONNX)
    suffixes = [f"_l{layer}", f"_l{layer}_reverse"][:D]
    weights = {"W": np.stack([parameters["weight_ih" + s][rows] for s in suffixes]),
               "R": np.stack([parameters["weight_hh" + s][rows] for s in suffixes])}
    if bias:
        weights["B"] = np.stack([np.concatenate([parameters["bias_ih" + s][rows],
                                                 parameters["bias_hh" + s][rows]])
                                 for s in suffixes])
    if peephole:
        order = list(np.argsort(PEEPHOLES_FROM_ONNX))
        weights["P"] = np.stack([parameters["peephole" + s][order].reshape(-1)
                                 for s in suffixes])
    return weights


def build_model(config: dict, parameters: dict[str, np.ndarray], opset: int) -> Any:
    """The ``onnx.ModelProto`` of a model of ``config`` (``LSTM.config()``) holding
    ``parameters`` (NumPy, torch's names)."""
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper
    if config.get("proj_size"):
        raise ValueError(f"proj_size={config['proj_size']}: the ONNX LSTM operator has no "
                         f"projection, so this model cannot be exported")
    if (isinstance(opset, bool) or not isinstance(opset, (int, np.integer))
            or not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version()):
        raise ValueError(f"opset must be an integer in {MIN_OPSET}.."
                         f"{onnx.defs.onnx_opset_version()} (the newest the installed onnx knows), "
                         f"got {opset!r}")
    L, H, X = config["num_layers"], config["hidden_size"], config["input_size"]
    D = 2 if config["bidirectional"] else 1
    dtype = np.dtype(config["dtype"])
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    batch_first = config["batch_first"]
    nodes, initializers = [], []

    def constant(name: str, value: Any) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list, outputs: list, **attrs: Any) -> None:
        nodes.append(helper.make_node(op, inputs, outputs, name=f"{op}_{len(nodes)}", **attrs))

    # defaults of the optional inputs, broadcast to the batch
    constant("h0", np.zeros((L * D, 1, H), dtype))
    constant("c0", np.zeros((L * D, 1, H), dtype))
    constant("lengths", np.full((1,), LONGEST, np.int32))
    node("Transpose", ["x"], ["x_time_major"], perm=[1, 0, 2]) if batch_first else node(
        "Identity", ["x"], ["x_time_major"])
    node("Shape", ["x_time_major"], ["x_shape"])
    node("Slice", ["x_shape", constant("zero", np.array([0], np.int64)),
                   constant("one", np.array([1], np.int64))], ["steps"])
    node("Slice", ["x_shape", "one", constant("two", np.array([2], np.int64))], ["batch"])
    node("Concat", [constant("state_rows", np.array([L * D], np.int64)), "batch",
                    constant("hidden", np.array([H], np.int64))], ["state_shape"], axis=0)
    node("Expand", ["h0", "state_shape"], ["h0_all"])
    node("Expand", ["c0", "state_shape"], ["c0_all"])
    node("Cast", ["steps"], ["steps_int32"], to=TensorProto.INT32)
    node("Min", ["lengths", "steps_int32"], ["lengths_clipped"])
    node("Expand", ["lengths_clipped", "batch"], ["sequence_lens"])
    layer_input = "x_time_major"
    h_parts, c_parts = [], []
    for layer in range(L):
        weights = _layer_weights(parameters, layer, D, H, config["bias"],
                                 config.get("peephole", False))
        names = {key: constant(f"{key}_l{layer}", value.astype(dtype))
                 for key, value in weights.items()}
        rows = [constant(f"rows_l{layer}_start", np.array([layer * D], np.int64)),
                constant(f"rows_l{layer}_end", np.array([(layer + 1) * D], np.int64))]
        node("Slice", ["h0_all", *rows, "zero"], [f"h0_l{layer}"])
        node("Slice", ["c0_all", *rows, "zero"], [f"c0_l{layer}"])
        node("LSTM", [layer_input, names["W"], names["R"], names.get("B", ""), "sequence_lens",
                      f"h0_l{layer}", f"c0_l{layer}", names.get("P", "")],
             [f"Y_l{layer}", f"Y_h_l{layer}", f"Y_c_l{layer}"], hidden_size=H,
             direction="bidirectional" if D == 2 else "forward")
        node("Transpose", [f"Y_l{layer}"], [f"Y_l{layer}_rows"], perm=[0, 2, 1, 3])
        node("Reshape", [f"Y_l{layer}_rows", constant(f"layer_shape_l{layer}",
                                                      np.array([0, 0, D * H], np.int64))],
             [f"out_l{layer}"])
        layer_input = f"out_l{layer}"
        h_parts.append(f"Y_h_l{layer}")
        c_parts.append(f"Y_c_l{layer}")
    node("Transpose", [layer_input], ["out"], perm=[1, 0, 2]) if batch_first else node(
        "Identity", [layer_input], ["out"])
    node("Concat", h_parts, ["h_n"], axis=0)
    node("Concat", c_parts, ["c_n"], axis=0)

    x_dims = ["batch", "time", X] if batch_first else ["time", "batch", X]
    out_dims = ["batch", "time", D * H] if batch_first else ["time", "batch", D * H]
    state_dims = [L * D, "batch", H]
    graph = helper.make_graph(
        nodes, "nblstm_LSTM",
        inputs=[helper.make_tensor_value_info("x", elem, x_dims),
                helper.make_tensor_value_info("h0", elem, state_dims),
                helper.make_tensor_value_info("c0", elem, state_dims),
                helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"])],
        outputs=[helper.make_tensor_value_info("out", elem, out_dims),
                 helper.make_tensor_value_info("h_n", elem, state_dims),
                 helper.make_tensor_value_info("c_n", elem, state_dims)],
        initializer=initializers)
    model = helper.make_model(graph, producer_name="nblstm",
                              opset_imports=[helper.make_opsetid("", int(opset))])
    # the oldest IR version the opset allows: readable by the most ONNX Runtime releases
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model)
    return model


def write(path: str | os.PathLike, model: Any) -> str:
    """Write ``model`` to ``path`` atomically; returns the path."""
    path = os.fsdecode(os.fspath(path))
    data = model.SerializeToString()
    with atomic_open(path) as handle:
        handle.write(data)
    return path
