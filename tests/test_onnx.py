"""ONNX: ``LSTM.from_onnx``, ``LSTM.to_onnx`` and ``nblstm infer model.onnx``.

Oracles: ONNX Runtime (CPU, float32) for every attribute combination the importer accepts —
for ``layout=1``, which ONNX Runtime's CPU kernel refuses, the same weights at layout 0 on
transposed data; for float64, which ONNX Runtime's LSTM refuses, the ONNX project's own
reference evaluator (``onnx.reference``) and ``nblstm.reference``; torch where installed
(a multi-layer bidirectional model exported with ``torch.onnx.export(..., dynamo=False)``).
"""
import io
import itertools
import warnings

import numpy as np
import pytest

import nblstm
from nblstm import reference

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

F, H = 3, 4
ATOL32 = 2e-5


def session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the default-valued inputs of to_onnx are warned about
    data = model if isinstance(model, (bytes, str)) else model.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def lstm_node_model(*, D=1, layout=0, peephole=False, lengths=False, states=False, bias=True,
                    dtype=np.float32, attrs=None, seed=0, constants=None, extra_nodes=(),
                    outputs=("Y", "Y_h", "Y_c")):
    """A graph of one LSTM node (onnx.helper), inputs X [, sequence_lens, initial_h,
    initial_c] as graph inputs, weights as initializers (random, peepholes scaled up so a
    missing term shows). ``constants``: extra initializers by name (e.g. a constant
    ``initial_h``)."""
    rng = np.random.default_rng(seed)
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    weights = {"W": rng.uniform(-0.6, 0.6, (D, 4 * H, F)), "R": rng.uniform(-0.6, 0.6, (D, 4 * H, H))}
    if bias:
        weights["B"] = rng.uniform(-0.5, 0.5, (D, 8 * H))
    if peephole:
        weights["P"] = rng.uniform(-1.5, 1.5, (D, 3 * H))
    initializers = [numpy_helper.from_array(v.astype(dtype), k) for k, v in weights.items()]
    for name, value in (constants or {}).items():
        initializers.append(numpy_helper.from_array(value, name))
    batch_axes = ["T", "B"] if layout == 0 else ["B", "T"]
    state_dims = [D, "B", H] if layout == 0 else ["B", D, H]
    inputs = [helper.make_tensor_value_info("X", elem, batch_axes + [F])]
    if lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]))
    if states:
        inputs += [helper.make_tensor_value_info(n, elem, state_dims)
                   for n in ("initial_h", "initial_c")]
    node_inputs = ["X", "W", "R", "B" if bias else "", "sequence_lens" if lengths else "",
                   "initial_h" if states or "initial_h" in (constants or {}) else "",
                   "initial_c" if states else "", "P" if peephole else ""]
    if lengths is None:  # a constant sequence_lens
        node_inputs[4] = "const_lens"
    attributes = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward",
                  **({"layout": layout} if layout else {}), **(attrs or {})}
    node = helper.make_node("LSTM", node_inputs, ["Y", "Y_h", "Y_c"], name="lstm", **attributes)
    out_infos = [helper.make_tensor_value_info(name, elem, None) for name in outputs]
    graph = helper.make_graph([node, *extra_nodes], "g", inputs, out_infos, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def with_layout_0(model):
    """The same single-node model at layout 0 (the oracle of a layout-1 model)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    node = copy.graph.node[0]
    kept = [a for a in node.attribute if a.name != "layout"]
    del node.attribute[:]
    node.attribute.extend(kept)
    for value in copy.graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 3:
            first, second = dims[0].SerializeToString(), dims[1].SerializeToString()
            dims[0].ParseFromString(second)
            dims[1].ParseFromString(first)
    return copy


def run_onnx_node(model, layout, x, lengths, state):
    """ONNX Runtime's (Y, Y_h, Y_c) of a single-node model, in layout 0 (time-major)."""
    x0 = x if layout == 0 else np.swapaxes(x, 0, 1)
    feeds = {"X": np.ascontiguousarray(x0)}
    if lengths is not None:
        feeds["sequence_lens"] = lengths.astype(np.int32)
    if state is not None:
        feeds["initial_h"], feeds["initial_c"] = state  # (D, B, H): layout 0
    return session(with_layout_0(model) if layout else model).run(None, feeds)


COMBINATIONS = list(itertools.product((1, 2), (0, 1), (False, True), ("none", "lengths",
                                                                      "states", "both")))


@pytest.mark.parametrize("D, layout, peephole, extras", COMBINATIONS,
                         ids=[f"D{d}-layout{l}-{'P' if p else 'noP'}-{e}"
                              for d, l, p, e in COMBINATIONS])
def test_single_lstm_node_matches_onnx_runtime(D, layout, peephole, extras):
    lengths_on, states_on = extras in ("lengths", "both"), extras in ("states", "both")
    model = lstm_node_model(D=D, layout=layout, peephole=peephole, lengths=lengths_on,
                            states=states_on, seed=D + 2 * layout)
    lstm = nblstm.LSTM.from_onnx(model)
    assert lstm.batch_first == (layout == 1)
    assert lstm.bidirectional == (D == 2) and lstm.peephole == peephole
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (F, H, 1)
    rng = np.random.default_rng(7)
    T, B = 5, 3
    x = rng.standard_normal((B, T, F) if layout else (T, B, F)).astype(np.float32)
    lengths = np.array([5, 2, 4]) if lengths_on else None
    state = (tuple(rng.standard_normal((D, B, H)).astype(np.float32) for _ in range(2))
             if states_on else None)
    Y, Y_h, Y_c = run_onnx_node(model, layout, x, lengths, state)
    out, (h_n, c_n) = lstm(x, state, lengths)
    expected = np.transpose(Y, (0, 2, 1, 3)).reshape(T, B, D * H)
    if layout:
        expected = np.swapaxes(expected, 0, 1)
    np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL32)
    np.testing.assert_allclose(h_n, Y_h, rtol=0, atol=ATOL32)
    np.testing.assert_allclose(c_n, Y_c, rtol=0, atol=ATOL32)


def test_layout_1_oracle_is_onnx_runtime_on_transposed_data():
    """The oracle of layout 1: ONNX Runtime refuses it on the CPU (if a later release runs
    it, it must agree with the transposed run)."""
    model = lstm_node_model(D=2, layout=1, peephole=True, states=True)
    x = np.random.default_rng(0).standard_normal((3, 5, F)).astype(np.float32)
    state = tuple(np.random.default_rng(1).standard_normal((3, 2, H)).astype(np.float32)
                  for _ in range(2))
    try:
        direct = session(model).run(None, {"X": x, "initial_h": state[0],
                                           "initial_c": state[1]})
    except Exception:  # ONNX Runtime's CPU LSTM: layout 1 is not implemented
        return
    oracle = run_onnx_node(model, 1, x, None, tuple(np.swapaxes(s, 0, 1) for s in state))
    np.testing.assert_allclose(direct[0], np.transpose(oracle[0], (2, 0, 1, 3)), atol=1e-6)


@pytest.mark.parametrize("D", [1, 2])
@pytest.mark.parametrize("peephole", [False, True])
def test_float64_models_match_the_onnx_reference_evaluator(D, peephole):
    """ONNX Runtime has no double LSTM: the ONNX project's reference evaluator is the
    oracle of float64 models (without sequence_lens, which it does not implement), and
    nblstm.reference with them."""
    from onnx.reference import ReferenceEvaluator
    model = lstm_node_model(D=D, peephole=peephole, states=True, dtype=np.float64, seed=4)
    lstm = nblstm.LSTM.from_onnx(model)
    assert lstm.dtype == np.float64
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 2, F))
    state = tuple(rng.standard_normal((D, 2, H)) for _ in range(2))
    Y, Y_h, Y_c = ReferenceEvaluator(model).run(None, {"X": x, "initial_h": state[0],
                                                       "initial_c": state[1]})
    out, (h_n, c_n) = lstm(x, state)
    np.testing.assert_allclose(out, np.transpose(Y, (0, 2, 1, 3)).reshape(6, 2, D * H),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_n, Y_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c_n, Y_c, rtol=0, atol=1e-12)
    lengths = np.array([6, 3])
    ref = reference.layer_forward(lstm.parameters(), 1, D == 2, x, state, lengths)
    for got, want in zip((lstm(x, state, lengths)[0], *lstm(x, state, lengths)[1]), ref):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_a_model_without_bias_imports_as_bias_false():
    model = lstm_node_model(bias=False)
    lstm = nblstm.LSTM.from_onnx(model)
    assert not lstm.bias
    x = np.random.default_rng(0).standard_normal((4, 2, F)).astype(np.float32)
    Y, Y_h, _ = run_onnx_node(model, 0, x, None, None)
    np.testing.assert_allclose(lstm(x)[0], Y[:, 0], atol=ATOL32, rtol=0)


def test_from_onnx_reads_paths_bytes_and_models(tmp_path):
    model = lstm_node_model(D=2)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(0).standard_normal((3, 2, F)).astype(np.float32)
    results = [nblstm.LSTM.from_onnx(source)(x)[0] for source in
               (model, str(path), path, model.SerializeToString())]
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


def test_from_onnx_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError):
        nblstm.LSTM.from_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all \x00\xff")
    with pytest.raises(ValueError, match="bad.onnx"):
        nblstm.LSTM.from_onnx(bad)
    with pytest.raises(TypeError, match="path, bytes or an onnx.ModelProto"):
        nblstm.LSTM.from_onnx(42)
    relu = helper.make_node("Relu", ["X"], ["Y"])
    graph = helper.make_graph([relu], "g", [helper.make_tensor_value_info("X", 1, [2])],
                              [helper.make_tensor_value_info("Y", 1, [2])])
    with pytest.raises(ValueError, match="no LSTM node"):
        nblstm.LSTM.from_onnx(helper.make_model(graph))


@pytest.mark.parametrize("attrs, match", [
    ({"direction": "reverse"}, "direction='reverse'"),
    ({"clip": 3.0}, "clip=3.0"),
    ({"input_forget": 1}, "input_forget=1"),
    ({"activations": ["Sigmoid", "Relu", "Tanh"]}, "activations=.*Relu"),
    ({"activations": ["HardSigmoid", "Tanh", "Tanh"]}, "activations=.*HardSigmoid"),
])
def test_refused_attributes_name_the_node_and_the_value(attrs, match):
    model = lstm_node_model(attrs=attrs)
    with pytest.raises(ValueError, match=f"LSTM node 'lstm'.*{match}"):
        nblstm.LSTM.from_onnx(model)
    with pytest.raises(ValueError, match=match):
        nblstm.LSTM.from_onnx(model, node="lstm")


def test_default_activations_spelled_out_are_accepted():
    model = lstm_node_model(D=2, attrs={"activations": ["Sigmoid", "Tanh", "Tanh"] * 2})
    assert nblstm.LSTM.from_onnx(model).bidirectional


def test_non_zero_constant_initial_state_is_refused_and_zero_is_accepted():
    nonzero = {"initial_h": np.full((1, 2, H), 0.5, np.float32)}
    with pytest.raises(ValueError, match="initial_h.*non-zero constant"):
        nblstm.LSTM.from_onnx(lstm_node_model(constants=nonzero))
    with pytest.raises(ValueError, match="initial_h"):
        nblstm.LSTM.from_onnx(lstm_node_model(constants=nonzero), node=0)
    zero = {"initial_h": np.zeros((1, 2, H), np.float32)}
    model = lstm_node_model(constants=zero)
    x = np.random.default_rng(0).standard_normal((4, 2, F)).astype(np.float32)
    np.testing.assert_allclose(nblstm.LSTM.from_onnx(model)(x)[0],
                               session(model).run(None, {"X": x})[0][:, 0], atol=ATOL32, rtol=0)


def test_constant_sequence_lens_is_refused():
    model = lstm_node_model(lengths=None, constants={"const_lens": np.array([2, 2], np.int32)})
    with pytest.raises(ValueError, match="sequence_lens"):
        nblstm.LSTM.from_onnx(model)


def test_other_ops_are_refused_by_name_and_node_imports_one_node():
    relu = helper.make_node("Relu", ["Y"], ["Z"], name="activation")
    model = lstm_node_model(extra_nodes=[relu], outputs=("Z",))
    with pytest.raises(ValueError, match="'activation' is a Relu op"):
        nblstm.LSTM.from_onnx(model)
    lstm = nblstm.LSTM.from_onnx(model, node="lstm")
    assert lstm.num_layers == 1
    same = nblstm.LSTM.from_onnx(model, node=0)
    for name, value in lstm.parameters().items():
        np.testing.assert_array_equal(same.parameters()[name], value)
    with pytest.raises(ValueError, match="no LSTM node of that name"):
        nblstm.LSTM.from_onnx(model, node="other")
    with pytest.raises(ValueError, match="1 LSTM node"):
        nblstm.LSTM.from_onnx(model, node=3)


def test_float16_weights_are_refused():
    model = lstm_node_model()
    for tensor in model.graph.initializer:
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16),
                                                tensor.name))
    with pytest.raises(ValueError, match="float16"):
        nblstm.LSTM.from_onnx(model)


def _torch_export(module, batch_first, with_states, dynamic=True):
    torch = pytest.importorskip("torch")
    B, T = 2, 5
    x = torch.randn(B, T, module.input_size) if batch_first else torch.randn(T, B,
                                                                             module.input_size)
    args, names = (x,), ["x"]
    if with_states:
        rows = module.num_layers * (2 if module.bidirectional else 1)
        args = (x, (torch.randn(rows, B, module.hidden_size),
                    torch.randn(rows, B, module.hidden_size)))
        names = ["x", "h0", "c0"]
    axes = {"x": {0: "B", 1: "T"} if batch_first else {0: "T", 1: "B"}}
    if with_states:
        axes.update({"h0": {1: "B"}, "c0": {1: "B"}})
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, dynamo=False, input_names=names,
                          output_names=["out", "h_n", "c_n"],
                          dynamic_axes=axes if dynamic else None)
    return buffer.getvalue()


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_states", [False, True])
def test_torch_exported_multilayer_bidirectional_lstm(batch_first, with_states):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.LSTM(F, H, num_layers=3, bidirectional=True, batch_first=batch_first)
    data = _torch_export(module, batch_first, with_states)
    lstm = nblstm.LSTM.from_onnx(data)
    assert (lstm.num_layers, lstm.bidirectional, lstm.batch_first) == (3, True, batch_first)
    # the weights are torch's, exactly
    for name, value in module.named_parameters():
        np.testing.assert_array_equal(lstm.parameters()[name], value.detach().numpy())
    rng = np.random.default_rng(0)
    B, T = 3, 7  # other sizes than the export's
    x = rng.standard_normal((B, T, F) if batch_first else (T, B, F)).astype(np.float32)
    state = tuple(rng.standard_normal((6, B, H)).astype(np.float32) for _ in range(2))
    with torch.no_grad():
        ref, (ref_h, ref_c) = module(torch.from_numpy(x),
                                     tuple(map(torch.from_numpy, state)) if with_states else None)
    out, (h_n, c_n) = lstm(x, state if with_states else None)
    np.testing.assert_allclose(out, ref.numpy(), rtol=0, atol=ATOL32)
    np.testing.assert_allclose(h_n, ref_h.numpy(), rtol=0, atol=ATOL32)
    np.testing.assert_allclose(c_n, ref_c.numpy(), rtol=0, atol=ATOL32)
    feeds = {"x": x, **({"h0": state[0], "c0": state[1]} if with_states else {})}
    ort_out = session(data).run(None, feeds)
    np.testing.assert_allclose(out, ort_out[0], rtol=0, atol=ATOL32)


def test_torch_export_with_static_shapes():
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(F, H, num_layers=2)
    lstm = nblstm.LSTM.from_onnx(_torch_export(module, False, False, dynamic=False))
    x = np.random.default_rng(0).standard_normal((5, 2, F)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(lstm(x)[0], ref, rtol=0, atol=ATOL32)


def test_two_lstms_side_by_side_are_not_a_stack():
    first = lstm_node_model()
    graph = first.graph
    second = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y2", "", ""], name="second",
                              hidden_size=H)
    graph.node.append(second)
    with pytest.raises(ValueError, match="not one stack|not the output|not a stack"):
        nblstm.LSTM.from_onnx(first)
    assert nblstm.LSTM.from_onnx(first, node="second").num_layers == 1


EXPORT_CASES = list(itertools.product((False, True), (False, True), (False, True),
                                      (True, False)))


@pytest.mark.parametrize("bidirectional, batch_first, peephole, bias", EXPORT_CASES,
                         ids=[f"{'bi' if a else 'uni'}-{'bf' if b else 'tm'}-"
                              f"{'P' if c else 'noP'}-{'bias' if d else 'nobias'}"
                              for a, b, c, d in EXPORT_CASES])
def test_to_onnx_runs_in_onnx_runtime_like_nblstm(tmp_path, bidirectional, batch_first,
                                                  peephole, bias):
    lstm = nblstm.LSTM(F, H, num_layers=2, bidirectional=bidirectional,
                       batch_first=batch_first, bias=bias, peephole=peephole, seed=1)
    path = lstm.to_onnx(tmp_path / "model.onnx")
    run = session(str(path))
    assert [i.name for i in run.get_inputs()] == ["x"]  # states and lengths are optional
    assert [o.name for o in run.get_outputs()] == ["out", "h_n", "c_n"]
    rng = np.random.default_rng(2)
    D = 2 if bidirectional else 1
    for T, B in ((5, 3), (1, 1), (8, 2)):
        x = rng.standard_normal((B, T, F) if batch_first else (T, B, F)).astype(np.float32)
        got = run.run(None, {"x": x})
        out, (h_n, c_n) = lstm(x)
        for a, b in zip(got, (out, h_n, c_n)):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=0, atol=ATOL32)
        lengths = rng.integers(1, T + 1, size=B)
        state = tuple(rng.standard_normal((2 * D, B, H)).astype(np.float32) for _ in range(2))
        got = run.run(None, {"x": x, "h0": state[0], "c0": state[1],
                             "lengths": lengths.astype(np.int32)})
        for a, b in zip(got, (lambda o, s: (o, *s))(*lstm(x, state, lengths))):
            np.testing.assert_allclose(a, b, rtol=0, atol=ATOL32)
    again = nblstm.LSTM.from_onnx(path)  # the round trip is exact
    assert again.config() == {**lstm.config(), "dropout": 0.0}
    for name, value in lstm.parameters().items():
        np.testing.assert_array_equal(again.parameters()[name], value)


def test_to_onnx_float64_round_trip_and_reference(tmp_path):
    from onnx.reference import ReferenceEvaluator
    lstm = nblstm.LSTM(F, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=3,
                       peephole=True)
    path = lstm.to_onnx(tmp_path / "double.onnx")
    again = nblstm.LSTM.from_onnx(path)
    assert again.dtype == np.float64
    x = np.random.default_rng(0).standard_normal((4, 2, F))
    np.testing.assert_array_equal(again(x)[0], lstm(x)[0])
    ref = reference.layer_forward(lstm.parameters(), 2, True, x)
    np.testing.assert_allclose(lstm(x)[0], ref[0], rtol=0, atol=1e-12)
    try:
        evaluated = ReferenceEvaluator(str(path)).run(None, {"x": x})
    except Exception as error:  # the reference evaluator lacks sequence_lens in some releases
        pytest.skip(f"onnx.reference cannot run the graph: {error}")
    np.testing.assert_allclose(evaluated[0], ref[0], rtol=0, atol=1e-12)


def test_to_onnx_refusals(tmp_path):
    with pytest.raises(ValueError, match="proj_size"):
        nblstm.LSTM(F, H, proj_size=2).to_onnx(tmp_path / "p.onnx")
    assert not (tmp_path / "p.onnx").exists()
    for opset in (11, 10 ** 6, "17", True):
        with pytest.raises(ValueError, match="opset"):
            nblstm.LSTM(F, H).to_onnx(tmp_path / "o.onnx", opset=opset)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("opset", [12, 13, 14, 17, 20])
def test_to_onnx_opsets(tmp_path, opset):
    lstm = nblstm.LSTM(F, H, num_layers=2, bidirectional=True, batch_first=True, seed=2)
    path = lstm.to_onnx(tmp_path / "o.onnx", opset=opset)
    assert onnx.load(path).opset_import[0].version == opset
    x = np.random.default_rng(0).standard_normal((2, 5, F)).astype(np.float32)
    np.testing.assert_allclose(session(path).run(None, {"x": x})[0], lstm(x)[0], rtol=0,
                               atol=ATOL32)


def test_to_onnx_dropout_is_not_exported(tmp_path):
    lstm = nblstm.LSTM(F, H, num_layers=2, dropout=0.5, seed=0)
    x = np.random.default_rng(0).standard_normal((3, 2, F)).astype(np.float32)
    got = session(str(lstm.to_onnx(tmp_path / "d.onnx"))).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, lstm(x)[0], rtol=0, atol=ATOL32)


def test_to_onnx_of_a_gpu_model(tmp_path):
    from _backends import skip_unless_cuda
    skip_unless_cuda()
    lstm = nblstm.LSTM(F, H, seed=0)
    x = np.random.default_rng(0).standard_normal((3, 2, F)).astype(np.float32)
    expected = lstm(x)[0]
    lstm.to("cuda")
    got = session(str(lstm.to_onnx(tmp_path / "g.onnx"))).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL32)


def test_infer_runs_onnx_models(tmp_path):
    from nblstm.cli import main
    lstm = nblstm.LSTM(F, H, num_layers=2, bidirectional=True, batch_first=True, seed=0,
                       peephole=True)
    model = lstm.to_onnx(tmp_path / "model.onnx")
    x = np.random.default_rng(0).standard_normal((7, 4, F)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["infer", str(model), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--batch-size", "3", "-q"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), lstm(x)[0], rtol=0, atol=1e-6)


# ------------------------------------------------- graphs a hostile review brought up

def _graph_model(nodes, inputs, outputs, initializers, opset=17, ir_version=None):
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              initializer=[numpy_helper.from_array(v, k)
                                           for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if ir_version is not None:
        model.ir_version = ir_version
    return model


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return {"W": rng.uniform(-0.6, 0.6, (1, 4 * H, F)).astype(np.float32),
            "R": rng.uniform(-0.6, 0.6, (1, 4 * H, H)).astype(np.float32),
            "B": rng.uniform(-0.5, 0.5, (1, 8 * H)).astype(np.float32)}


def _info(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def test_glue_that_is_the_identity_only_on_short_sequences_is_refused():
    """x[:8] and Min(lengths, 8) look like no-ops on a short probe: probes are longer than
    every integer constant of the graph."""
    constants = {**_weights(), "starts": np.array([0], np.int64),
                 "ends": np.array([8], np.int64), "axes": np.array([0], np.int64),
                 "limit": np.array([8], np.int32)}
    truncating = _graph_model(
        [helper.make_node("Slice", ["X", "starts", "ends", "axes"], ["Xt"]),
         helper.make_node("LSTM", ["Xt", "W", "R", "B"], ["Y", "Y_h", ""], hidden_size=H)],
        [_info("X", ["T", "B", F])], [_info("Y_h", None)], constants)
    with pytest.raises(ValueError, match="not a change of layout"):
        nblstm.LSTM.from_onnx(truncating)
    clipped = _graph_model(
        [helper.make_node("Min", ["L", "limit"], ["Lc"]),
         helper.make_node("LSTM", ["X", "W", "R", "B", "Lc"], ["Y", "Y_h", ""], hidden_size=H)],
        [_info("X", ["T", "B", F]), _info("L", ["B"], TensorProto.INT32)], [_info("Y_h", None)],
        constants)
    with pytest.raises(ValueError, match="sequence_lens"):
        nblstm.LSTM.from_onnx(clipped)


def test_a_clamp_on_the_data_is_refused():
    model = _graph_model(
        [helper.make_node("Min", ["X", "cap"], ["Xc"]),
         helper.make_node("LSTM", ["Xc", "W", "R", "B"], ["Y", "", ""], hidden_size=H)],
        [_info("X", ["T", "B", F])], [_info("Y", None)],
        {**_weights(), "cap": np.array(5.0, np.float32)})
    with pytest.raises(ValueError, match="not a change of layout"):
        nblstm.LSTM.from_onnx(model)


def test_arithmetic_after_the_last_lstm_is_refused():
    """Max(Y, 0) is a ReLU: the graph's output is not the LSTM's."""
    model = _graph_model(
        [helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "", ""], hidden_size=H),
         helper.make_node("Max", ["Y", "zero"], ["Z"])],
        [_info("X", ["T", "B", F])], [_info("Z", None)],
        {**_weights(), "zero": np.array(0.0, np.float32)})
    with pytest.raises(ValueError, match="graph output 'Z'.*more than a change of layout"):
        nblstm.LSTM.from_onnx(model)


@pytest.mark.parametrize("role", ["initial_h", "sequence_lens"])
def test_an_optional_input_with_another_default_is_refused(role):
    """A graph input with an initializer of its name is optional, its initializer the
    default: it must be what nblstm does without it (zero states, full sequences)."""
    weights = _weights()
    if role == "initial_h":
        inputs = [_info("X", ["T", "B", F]), _info("h0", [1, 2, H])]
        node_inputs = ["X", "W", "R", "B", "", "h0"]
        defaults = {"h0": np.full((1, 2, H), 0.8, np.float32)}
    else:
        inputs = [_info("X", ["T", "B", F]), _info("L", [2], TensorProto.INT32)]
        node_inputs = ["X", "W", "R", "B", "L"]
        defaults = {"L": np.array([1, 1], np.int32)}
    model = _graph_model([helper.make_node("LSTM", node_inputs, ["Y", "Y_h", ""],
                                           hidden_size=H)],
                         inputs, [_info("Y_h", None)], {**weights, **defaults})
    with pytest.raises(ValueError, match="default value that is not"):
        nblstm.LSTM.from_onnx(model)


def test_initializers_listed_as_graph_inputs_are_weights():
    """IR < 4 models list every initializer among the graph inputs."""
    weights = _weights()
    inputs = [_info("X", ["T", "B", F])] + [_info(k, list(v.shape)) for k, v in weights.items()]
    model = _graph_model([helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "", ""],
                                           hidden_size=H)],
                         inputs, [_info("Y", None)], weights, opset=7, ir_version=3)
    x = np.random.default_rng(0).standard_normal((5, 2, F)).astype(np.float32)
    expected = session(model).run(None, {"X": x})[0][:, 0]
    for node in (None, 0):
        np.testing.assert_allclose(nblstm.LSTM.from_onnx(model, node=node)(x)[0], expected,
                                   rtol=0, atol=ATOL32)


def test_full_lengths_computed_from_the_input_shape_are_no_lengths():
    constants = {**_weights(), "i0": np.array(0, np.int64), "one": np.array([1], np.int64),
                 "two": np.array([2], np.int64)}
    nodes = [helper.make_node("Shape", ["X"], ["shape"]),
             helper.make_node("Gather", ["shape", "i0"], ["steps"], axis=0),
             helper.make_node("Slice", ["shape", "one", "two"], ["batch"]),
             helper.make_node("Cast", ["steps"], ["steps32"], to=TensorProto.INT32),
             helper.make_node("Expand", ["steps32", "batch"], ["lens"]),
             helper.make_node("LSTM", ["X", "W", "R", "B", "lens"], ["Y", "", ""],
                              hidden_size=H)]
    model = _graph_model(nodes, [_info("X", ["T", "B", F])], [_info("Y", None)], constants)
    x = np.random.default_rng(0).standard_normal((5, 2, F)).astype(np.float32)
    np.testing.assert_allclose(nblstm.LSTM.from_onnx(model)(x)[0],
                               session(model).run(None, {"X": x})[0][:, 0], rtol=0,
                               atol=ATOL32)


def test_node_imports_a_layer_whose_states_are_slices_of_graph_inputs(tmp_path):
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(F, H, num_layers=2)
    data = _torch_export(module, batch_first=False, with_states=True)
    second = nblstm.LSTM.from_onnx(data, node=1)
    np.testing.assert_array_equal(second.parameters()["weight_ih_l0"],
                                  module.weight_ih_l1.detach().numpy())
    exported = nblstm.LSTM(F, H, num_layers=2, seed=0).to_onnx(tmp_path / "two.onnx")
    assert nblstm.LSTM.from_onnx(exported, node=1).input_size == H


def test_bad_graphs_are_value_errors_naming_the_problem():
    weights = _weights()
    dequantized = _graph_model(
        [helper.make_node("DequantizeLinear", ["Wq", "scale"], ["W"]),
         helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "", ""], hidden_size=H)],
        [_info("X", ["T", "B", F])], [_info("Y", None)],
        {"Wq": np.zeros((1, 4 * H, F), np.int8), "scale": np.array(0.1, np.float32),
         "R": weights["R"], "B": weights["B"]})
    with pytest.raises(ValueError, match="DequantizeLinear"):
        nblstm.LSTM.from_onnx(dequantized, node=0)
    missing = _graph_model([helper.make_node("LSTM", ["X", "nowhere", "R", "B"], ["Y", "", ""],
                                             hidden_size=H)],
                           [_info("X", ["T", "B", F])], [_info("Y", None)], weights)
    with pytest.raises(ValueError, match="'nowhere' is neither"):
        nblstm.LSTM.from_onnx(missing)
    bfloat16 = _graph_model(
        [helper.make_node("Cast", ["X"], ["X16"], to=TensorProto.BFLOAT16),
         helper.make_node("Cast", ["X16"], ["X32"], to=TensorProto.FLOAT),
         helper.make_node("LSTM", ["X32", "W", "R", "B"], ["Y", "", ""], hidden_size=H)],
        [_info("X", ["T", "B", F])], [_info("Y", None)], weights)
    with pytest.raises(ValueError, match="element type 16"):
        nblstm.LSTM.from_onnx(bfloat16)
