"""Attacks on nblstm's guarantees, as a hostile user would make them: read-only and foreign
arrays, forged model files (fuzzed headers and members, decompression bombs), planted
symlinks, concurrent writers, an output that is the input, in-place writes into what a
training cache saved, a recycled model, ``fork()`` and ``kill`` during work, and error
hints that must be followable. Both backends where the guarantee applies."""
import gc
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nblstm
from nblstm import LSTM
from nblstm.cli import main as cli_main
from nblstm.training import SGD, Adam, Batcher, clip_grad_norm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model_arrays(model: LSTM) -> dict:
    return {name: np.array(value) for name, value in model.parameters().items()}


def _header(config: dict, **changes) -> str:
    return json.dumps({"format": "nblstm.LSTM", "version": 1, "config": {**config, **changes}})


def _write_npz(path, header: str, arrays: dict, compression=zipfile.ZIP_STORED) -> str:
    """An .npz written member by member (as numpy.savez does), with any header."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, value in {"__nblstm__": np.array(header), **arrays}.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(value), allow_pickle=False)
            archive.writestr(name + ".npy", buffer.getvalue())
    return str(path)


@pytest.fixture
def model_file(tmp_path):
    model = LSTM(3, 4, num_layers=2, seed=0)
    return model, model.save(tmp_path / "model.npz")


# ------------------------------------------------------------- 1. read-only arrays

@pytest.mark.parametrize("optimizer", [lambda p: SGD(p, lr=0.1, momentum=0.9),
                                       lambda p: Adam(p, lr=0.1)], ids=["SGD", "Adam"])
def test_a_read_only_parameter_is_refused_before_anything_changes(optimizer):
    params = {"a": np.ones(3), "b": np.ones(2), "c": np.ones(4)}
    grads = {key: np.full_like(value, 0.5) for key, value in params.items()}
    opt = optimizer(params)
    params["b"].flags.writeable = False
    before = {key: value.copy() for key, value in params.items()}
    with pytest.raises(ValueError, match=r"params\['b'\] is read-only"):
        opt.step(grads)
    assert opt.step_count == 0
    for key in params:
        np.testing.assert_array_equal(params[key], before[key])
    with pytest.raises(ValueError, match=r"params\['b'\] is read-only"):
        optimizer(params)  # refused at construction too


def test_tensors_the_training_helpers_cannot_update_in_place_are_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"params\['w'\] must be C-contiguous"):
        Adam({"w": torch.ones(3, 4).t()})
    with pytest.raises(ValueError, match=r"grads\['w'\] must be C-contiguous"):
        clip_grad_norm({"w": torch.full((3, 4), 10.0).t()}, 1.0)
    with torch.inference_mode():
        frozen = torch.ones(3)
    with pytest.raises(ValueError, match="inference tensor"):
        SGD({"w": frozen}, lr=0.1)


def test_lazy_negated_torch_views_are_refused_not_misread():
    torch = pytest.importorskip("torch")
    view = torch.randn(5, 2, 3, dtype=torch.complex64).conj().imag
    assert view.is_neg()
    with pytest.raises(TypeError, match="resolve_neg"):
        LSTM(3, 4, seed=0)(view)
    out, _ = LSTM(3, 4, seed=0)(view.resolve_neg())
    assert isinstance(out, torch.Tensor)


def test_read_only_gradients_are_only_read():
    params = {"a": np.ones(3)}
    grads = {"a": np.full(3, 0.5)}
    grads["a"].flags.writeable = False
    SGD(params, lr=1.0).step(grads)
    np.testing.assert_array_equal(params["a"], np.full(3, 0.5))


def test_clip_grad_norm_refuses_a_read_only_gradient_before_scaling_any():
    grads = {"a": np.full(3, 10.0), "b": np.full(2, 10.0)}
    grads["b"].flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\['b'\] is read-only"):
        clip_grad_norm(grads, 1.0)
    np.testing.assert_array_equal(grads["a"], np.full(3, 10.0))


# ------------------------------------------------------------- 2. any dtype in Batcher

@pytest.mark.parametrize("dtype", ["f2", ">f4", "<f8", "O", "U3", "?", "c8", "i1", ">i8"])
def test_batcher_gathers_every_dtype_numpy_can_index(backend, dtype):
    if backend.name != "cpu" and (np.dtype(dtype).kind in "OU" or not np.dtype(dtype).isnative):
        pytest.skip("device arrays hold native numeric dtypes only")
    x = np.arange(21).reshape(7, 3).astype(dtype)
    y = np.arange(7)
    batcher = Batcher(backend.put(x), backend.put(y), batch_size=3, seed=4)
    order = np.random.default_rng(4).permutation(7)
    seen = []
    for (x_batch, y_batch), start in zip(batcher, range(0, 7, 3)):
        rows = order[start:start + 3]
        got = backend.get(x_batch)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, x[rows])
        seen.extend(backend.get(y_batch).tolist())
    assert sorted(seen) == list(range(7))


# ------------------------------------------------------------- 3. from_torch type

def test_from_torch_refuses_other_recurrent_modules():
    torch = pytest.importorskip("torch")
    for module in (torch.nn.GRU(3, 4), torch.nn.RNN(3, 4)):
        with pytest.raises(TypeError, match=type(module).__name__):
            LSTM.from_torch(module)


def test_from_torch_refuses_a_look_alike():
    class LooksLikeAnLSTM:
        input_size, hidden_size, num_layers = 3, 4, 1
        bias, batch_first, bidirectional = True, False, False
    with pytest.raises(TypeError, match="LooksLikeAnLSTM"):
        LSTM.from_torch(LooksLikeAnLSTM())


# ------------------------------------------------------------- 4, 5. forged model files

def test_a_deeply_nested_header_is_a_value_error(tmp_path, model_file):
    model, _ = model_file
    path = _write_npz(tmp_path / "deep.npz", "[" * 50_000 + "]" * 50_000, _model_arrays(model))
    with pytest.raises(ValueError, match="nested"):
        LSTM.load(path)


@pytest.mark.parametrize("changes,fragment", [
    ({"hidden_size": 10 ** 7}, "hidden_size"),
    ({"hidden_size": 4000}, r"weight_ih_l0 is float32 \(16, 3\), expected float32 \(16000, 3\)"),
    ({"batch_first": "false"}, "batch_first must be true or false"),
    ({"bias": 1}, "bias must be true or false"),
    ({"num_layers": 2.0}, "num_layers"),
    ({"input_size": True}, "input_size"),
    ({"dtype": "float16"}, "dtype"),
    ({"extra": 1}, "must have the keys"),
    ({"dropout": 1.5}, r"dropout must be a number in \[0, 1\]"),
    ({"dropout": "0.1"}, "dropout"),
    ({"proj_size": -1}, "proj_size must be an integer"),
    ({"proj_size": 4000}, "proj_size must be smaller than hidden_size"),
])
def test_forged_headers_are_refused_before_any_allocation(tmp_path, model_file, changes,
                                                         fragment):
    model, _ = model_file
    path = _write_npz(tmp_path / "forged.npz", _header(model.config(), **changes),
                      _model_arrays(model))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=fragment):
            LSTM.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes allocated to refuse a forged header"


def test_a_file_from_before_dropout_and_proj_size_loads(tmp_path, model_file):
    """Files written before the dropout and proj_size keys existed mean 0 for both."""
    model, _ = model_file
    config = {k: v for k, v in model.config().items() if k not in ("dropout", "proj_size")}
    path = _write_npz(tmp_path / "old.npz", _header(config), _model_arrays(model))
    loaded = LSTM.load(path)
    assert (loaded.dropout, loaded.proj_size) == (0.0, 0)
    x = np.random.default_rng(0).standard_normal((2, 1, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x)[0], model(x)[0])


def test_infer_exits_2_for_every_unreadable_model(tmp_path, model_file, capsys):
    model, _ = model_file
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.zeros((2, 1, 3), np.float32))
    bad = [_write_npz(tmp_path / "huge.npz", _header(model.config(), hidden_size=10 ** 7),
                      _model_arrays(model)),
           _write_npz(tmp_path / "deep.npz", "{" * 10_000, {}),
           str(inputs)]  # a .npy given as the model
    for path in bad:
        assert cli_main(["infer", path, str(inputs), "-o", str(tmp_path / "out.npy"), "-q"]) == 2
        assert "nblstm infer: error:" in capsys.readouterr().err
    assert not (tmp_path / "out.npy").exists()


def test_a_decompression_bomb_is_refused_without_decompressing_it(tmp_path, model_file):
    model, _ = model_file
    arrays = _model_arrays(model)
    arrays["payload"] = np.zeros(1 << 26, np.uint8)  # 64 MiB, a few KiB compressed
    path = _write_npz(tmp_path / "bomb.npz", _header(model.config()), arrays,
                      compression=zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 1 << 20
    del arrays
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ValueError, match="unexpected.*payload"):
            LSTM.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20 and time.perf_counter() - started < 2.0


def test_a_member_larger_than_its_header_declares_is_refused(tmp_path, model_file):
    model, good = model_file
    with zipfile.ZipFile(good) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["bias_hh_l1.npy"] += b"\0" * (1 << 20)
    path = tmp_path / "inflated.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match="bias_hh_l1"):
        LSTM.load(path)


def test_a_bomb_inside_a_declared_parameter_is_refused(tmp_path):
    """Names, shapes and sizes all agree with the header, but the members are compressed
    zeros (ratio ~1000): a decompression bomb, refused before inflating it."""
    model = LSTM(3, 600, seed=0)
    arrays = {name: np.zeros(value.shape, value.dtype)
              for name, value in model.parameters().items()}
    path = _write_npz(tmp_path / "zeros.npz", _header(model.config()), arrays,
                      compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match="decompression bomb"):
        LSTM.load(path)
    model.save(tmp_path / "plain.npz")  # a real model, stored or compressed, still loads
    LSTM.load(tmp_path / "plain.npz")
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, **{"__nblstm__": np.array(_header(model.config()))},
                        **_model_arrays(model))
    LSTM.load(compressed)


def test_duplicate_members_and_header_keys_are_refused(tmp_path, model_file):
    model, good = model_file
    with zipfile.ZipFile(good) as archive:
        members = [(name, archive.read(name)) for name in archive.namelist()]
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.full((16, 3), 7.0, np.float32))
    path = tmp_path / "twice.npz"
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning, match="Duplicate"):
        for name, data in members + [("weight_ih_l0.npy", buffer.getvalue())]:
            archive.writestr(name, data)
    with pytest.raises(ValueError, match="duplicate members"):
        LSTM.load(path)
    header = '{"format": "nblstm.LSTM", "format": "x", "version": 1, "config": %s}' % (
        json.dumps(model.config()))
    with pytest.raises(ValueError, match="duplicate keys"):
        LSTM.load(_write_npz(tmp_path / "keys.npz", header, _model_arrays(model)))


def test_a_non_npz_file_says_what_it_is(tmp_path):
    path = tmp_path / "inputs.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match=r"\.npy array file"):
        LSTM.load(path)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3), max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["input_size", "hidden_size", "num_layers", "bias", "batch_first",
                            "bidirectional", "dtype", "format", "version", "config"]),
       value=_json_values)
def test_fuzzed_headers_load_exactly_or_raise_value_error(tmp_path_factory, key, value):
    model = LSTM(2, 3, seed=1)
    document = {"format": "nblstm.LSTM", "version": 1, "config": model.config()}
    if key in document:
        document[key] = value
    else:
        document["config"][key] = value
    path = _write_npz(tmp_path_factory.mktemp("fuzz") / "m.npz", json.dumps(document),
                      _model_arrays(model))
    try:
        loaded = LSTM.load(path)
    except ValueError:
        return
    assert loaded.config() == model.config()  # only a header equal to the truth loads
    for name, array in model.parameters().items():
        np.testing.assert_array_equal(loaded.parameters()[name], array)


@pytest.fixture(scope="module")
def saved_model_bytes(tmp_path_factory) -> bytes:
    path = LSTM(2, 3, seed=2).save(tmp_path_factory.mktemp("fuzz") / "m.npz")
    with open(path, "rb") as file:
        return file.read()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_member_bytes_never_crash_the_reader(tmp_path_factory, saved_model_bytes, data):
    raw = bytearray(saved_model_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    target = tmp_path_factory.mktemp("mutated") / "m.npz"
    target.write_bytes(bytes(raw))
    try:
        loaded = LSTM.load(target)
    except ValueError:
        return
    assert loaded.config() == LSTM(2, 3).config()  # loaded: only what the header says


# ------------------------------------------------------------- 6, 7. atomic writes

def test_save_never_follows_a_planted_symlink(tmp_path, model_file):
    model, _ = model_file
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "shared.npz"
    for pid in range(os.getpid() - 2, os.getpid() + 3):  # the names the old code used
        os.symlink(victim, f"{target}.{pid}.tmp")
    model.save(target)
    assert victim.read_text() == "precious"
    assert LSTM.load(target).config() == model.config()
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp") and not
                 os.path.islink(tmp_path / n)]
    assert leftovers == []


def test_saving_over_a_symlink_replaces_the_link_not_its_target(tmp_path, model_file):
    model, _ = model_file
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "model_link.npz"
    os.symlink(victim, link)
    model.save(link)
    assert victim.read_text() == "precious" and not link.is_symlink()
    assert LSTM.load(link).config() == model.config()


def test_saved_files_get_the_permissions_of_a_plain_open(tmp_path, model_file):
    model, _ = model_file
    old = os.umask(0o027)
    try:
        path = model.save(tmp_path / "perm.npz")
        plain = tmp_path / "plain"
        open(plain, "w").close()
    finally:
        os.umask(old)
    assert (os.stat(path).st_mode & 0o777) == (os.stat(plain).st_mode & 0o777) == 0o640


def test_concurrent_saves_to_one_path_all_succeed(tmp_path):
    models = [LSTM(3, 4, seed=k) for k in range(4)]
    path = tmp_path / "shared.npz"
    errors = []

    def save_many(model):
        for _ in range(30):
            try:
                model.save(path)
            except Exception as error:  # collected: the assertion below shows them
                errors.append(error)

    threads = [threading.Thread(target=save_many, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    loaded = LSTM.load(path)
    assert any(all(np.array_equal(loaded.parameters()[n], m.parameters()[n])
                   for n in m.parameters()) for m in models)
    assert sorted(os.listdir(tmp_path)) == ["shared.npz"]


# ------------------------------------------------------------- 8. infer's output

def test_infer_refuses_an_output_that_is_an_input(tmp_path, model_file, capsys):
    _, model_path = model_file
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.ones((2, 3, 3), np.float32))
    original = inputs.read_bytes()
    link = tmp_path / "link.npy"
    os.symlink(inputs, link)
    hard = tmp_path / "hard.npy"
    os.link(inputs, hard)
    for output in (inputs, link, hard, tmp_path / "." / "x.npy", model_path):
        code = cli_main(["infer", str(model_path), str(inputs), "-o", str(output), "-q"])
        assert code == 2, output
        assert "choose another output" in capsys.readouterr().err
    assert inputs.read_bytes() == original
    assert LSTM.load(model_path).hidden_size == 4


def test_killing_infer_midway_leaves_the_old_output_untouched(tmp_path):
    model = LSTM(8, 64, num_layers=2, seed=0)
    model_path = model.save(tmp_path / "m.npz")
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.zeros((200, 4000, 8), np.float32))
    output = tmp_path / "out.npy"
    output.write_bytes(b"the previous result")
    process = subprocess.Popen([sys.executable, "-m", "nblstm.cli", "infer", model_path,
                                str(inputs), "-o", str(output), "--batch-size", "50", "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={k: v for k, v in os.environ.items()
                                    if k != "NUMBA_ENABLE_CUDASIM"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
            n.endswith(".tmp") for n in os.listdir(tmp_path)):
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(60)
    assert output.read_bytes() == b"the previous result"


# ------------------------------------------------------------- 9, 10. training caches

def test_the_training_cache_does_not_see_writes_into_the_callers_arrays(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2, 3))
    state = tuple(rng.standard_normal((1, 2, 5)) for _ in range(2))
    d_out = rng.standard_normal((4, 2, 5))
    model = LSTM(3, 5, dtype=np.float64, seed=2).to("cpu" if backend.name == "cpu" else "cuda")

    def gradients(tamper: bool):
        x_b, h_b, c_b = (backend.put(a) for a in (x, *state))
        out, _, cache = model.forward(x_b, (h_b, c_b), train=True)
        if tamper:
            for array in (x_b, h_b, c_b, out):
                if backend.name == "cpu":
                    array[...] = 1e3
                else:
                    array.copy_to_device(np.full(array.shape, 1e3))
        dx, (dh0, dc0), grads = model.backward(cache, backend.put(d_out))
        return [backend.get(dx), backend.get(dh0), backend.get(dc0),
                *(backend.get(g) for g in grads.values())]

    for clean, tampered in zip(gradients(False), gradients(True)):
        np.testing.assert_array_equal(tampered, clean)


def test_a_cache_is_refused_by_a_model_at_a_recycled_address(monkeypatch):
    """A new model can get a freed model's ``id()``; simulated by making every ``id()`` that
    nblstm.layers asks for equal, then also tried for real."""
    from nblstm import layers
    x = np.zeros((2, 1, 3))
    monkeypatch.setattr(layers, "id", lambda obj: 12345, raising=False)
    first, second = LSTM(3, 4, dtype=np.float64), LSTM(3, 4, dtype=np.float64)
    _, _, cache = first.forward(x, train=True)
    with pytest.raises(ValueError, match="different LSTM"):
        second.backward(cache, np.zeros((2, 1, 4)))
    monkeypatch.undo()
    address = id(first)
    del first
    gc.collect()
    for _ in range(2000):  # CPython often hands the freed address to a new object
        second = LSTM(3, 4, dtype=np.float64)
        if id(second) == address:
            break
    with pytest.raises(ValueError, match="different LSTM"):
        second.backward(cache, np.zeros((2, 1, 4)))


# ------------------------------------------------------------- 11. fork

FORK_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, sys
    import numpy as np
    import nblstm
    os.environ["NBLSTM_CPU_GEMM"] = sys.argv[1]
    model = nblstm.LSTM(8, 32, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 5, 8)).astype(np.float32)
    parent, _ = model(x)

    def child(queue):
        out, _ = model(x)
        queue.put(out)

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    out = queue.get(timeout=120)
    process.join(60)
    print(process.exitcode, float(np.max(np.abs(out - parent))))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("variant", ["avx512-parallel", "auto"])
def test_a_forked_child_runs_the_model_after_a_threaded_forward(variant):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", FORK_SCRIPT, variant], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    exitcode, difference = result.stdout.split()
    assert exitcode == "0" and float(difference) == 0.0, result.stdout + result.stderr


# ------------------------------------------------------------- 12. hints that work

def test_dtype_hints_only_suggest_what_works(backend):
    model = LSTM(3, 4, seed=0).to("cpu" if backend.name == "cpu" else "cuda")
    with pytest.raises(TypeError) as info:
        model(backend.put(np.zeros((2, 1, 3), np.float16)))
    assert "dtype=np.float16" not in str(info.value) and "astype(np.float32)" in str(info.value)
    if backend.name == "cpu":
        with pytest.raises(TypeError) as info:
            model(np.zeros((2, 1, 3), ">f4"))
        assert "byte order" in str(info.value) and "dtype=np.float32" not in str(info.value)
    with pytest.raises(TypeError) as info:
        model(backend.put(np.zeros((2, 1, 3), np.float64)))
    assert "LSTM(..., dtype=np.float64)" in str(info.value)


def test_a_state_that_disagrees_with_the_model_names_both(backend):
    model = LSTM(3, 4, num_layers=2, seed=0).to("cpu" if backend.name == "cpu" else "cuda")
    x = backend.put(np.zeros((2, 3, 3), np.float32))
    wrong = backend.put(np.zeros((2, 3, 5), np.float32))
    with pytest.raises(ValueError) as info:
        model(x, (wrong, wrong))
    message = str(info.value)
    assert "(2, 3, 4)" in message and "hidden_size = 4" in message and "(2, 3, 5)" in message


@pytest.mark.usefixtures("cpu_gemm")
def test_read_only_inputs_work_through_every_public_function():
    """Inputs are only read: read-only NumPy arrays are fine everywhere (and unchanged)."""
    from _problems import sequence_problem

    def frozen(array):
        array = np.array(array)
        array.flags.writeable = False
        return array

    problem = sequence_problem(3, 4, 5, 6, 2, seed=3)
    x, a0, da = frozen(problem["x"]), frozen(problem["a0"]), frozen(problem["da"])
    parameters = {key: frozen(value) for key, value in problem["parameters"].items()}
    a, y, c, caches = nblstm.lstm_forward(x, a0, parameters)
    nblstm.lstm_backward(da, caches)
    model = LSTM(3, 6, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    for name, value in list(model.parameters().items()):
        model.parameters()[name] = frozen(value)
    x_layer = frozen(np.ascontiguousarray(problem["x"].transpose(2, 1, 0)))
    lengths = frozen(np.array([5, 3, 1, 4]))
    out, _, cache = model.forward(x_layer, lengths=lengths, train=True)
    model.backward(cache, frozen(np.ones(out.shape)))
    model(x_layer, lengths=lengths)
    np.testing.assert_array_equal(x, problem["x"])
