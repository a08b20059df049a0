"""``nblstm infer`` / ``nblstm.inference.infer_file``: equal to a direct call, block by block,
locally and on a 2-process Dask ``LocalCluster``; bad files -> a clear error and no output."""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from nblstm import LSTM
from nblstm.inference import infer_file

X, H = 4, 6


@pytest.fixture
def files(tmp_path):
    """A saved float32 model and a (T=7, B=23, X) input file; returns (model, x, paths)."""
    model = LSTM(X, H, num_layers=2, seed=0)
    x = np.random.default_rng(1).standard_normal((7, 23, X)).astype(np.float32)
    model_path = model.save(tmp_path / "model.npz")
    input_path = tmp_path / "inputs.npy"
    np.save(input_path, x)
    return model, x, str(model_path), str(input_path), str(tmp_path / "outputs.npy")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "nblstm.cli", *args], capture_output=True,
                          text=True, timeout=600)


def _leftovers(directory) -> list:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


@pytest.mark.parametrize("batch_size", [1, 5, 23, 100])
def test_infer_file_equals_a_direct_call(files, batch_size):
    model, x, model_path, input_path, output_path = files
    result = infer_file(model_path, input_path, output_path, batch_size=batch_size,
                        progress=False)
    expected, _ = model(x)
    written = np.load(output_path)
    assert written.shape == expected.shape == result.shape
    np.testing.assert_allclose(written, expected, rtol=0, atol=1e-6)
    assert result.sequences == 23 and result.blocks == -(-23 // batch_size)
    np.testing.assert_array_equal(np.load(input_path), x)  # input untouched
    assert _leftovers(os.path.dirname(output_path)) == []


def test_batch_first_and_bidirectional_models(tmp_path):
    model = LSTM(X, H, batch_first=True, bidirectional=True, dtype=np.float64, seed=2)
    x = np.random.default_rng(3).standard_normal((10, 5, X))  # (B, T, X)
    np.save(tmp_path / "x.npy", x)
    infer_file(model.save(tmp_path / "m.npz"), tmp_path / "x.npy", tmp_path / "y.npy",
               batch_size=3, progress=False)
    expected, _ = model(x)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-12, atol=1e-14)


def test_cli_writes_the_outputs_with_a_progress_bar(files):
    model, x, model_path, input_path, output_path = files
    result = run_cli("infer", model_path, input_path, "-o", output_path, "--batch-size", "8")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "23 sequences in 3 blocks" in result.stdout
    assert "23/23" in result.stderr  # the progress bar
    np.testing.assert_allclose(np.load(output_path), model(x)[0], rtol=0, atol=1e-6)


def _truncated(path, x):
    np.save(path, x)
    size = os.path.getsize(path)
    with open(path, "r+b") as file:
        file.truncate(size - 40)


def _text(path, x):
    with open(path, "w") as file:
        file.write("1,2,3\n")


def _npz(path, x):
    with open(path, "wb") as file:
        np.savez(file, x=x)


@pytest.mark.parametrize("write_bad_file, message", [
    (_truncated, "is not a readable .npy array file"),
    (_text, "is not a readable .npy array file"),
    (_npz, "is an .npz archive"),
    (lambda path, x: np.save(path, x[..., :3]),
     r"must have 4 features \(input_size\) .* got shape \(7, 23, 3\)"),
    (lambda path, x: np.save(path, x.astype(np.float64)),
     "has dtype float64; this LSTM is float32"),
    (lambda path, x: np.save(path, x[0]), r"must be a 3-D array \(T, B, X\)"),
])
def test_bad_input_file_is_refused_and_leaves_no_output(files, write_bad_file, message):
    model, x, model_path, input_path, output_path = files
    write_bad_file(input_path, x)
    with pytest.raises((ValueError, TypeError), match=message):
        infer_file(model_path, input_path, output_path, progress=False)
    assert not os.path.exists(output_path)
    assert _leftovers(os.path.dirname(output_path)) == []

    with open(output_path, "wb") as file:
        file.write(b"an earlier result")
    result = run_cli("infer", model_path, input_path, "-o", output_path)
    assert result.returncode == 2
    assert result.stderr.startswith("nblstm infer: error: ") and input_path in result.stderr
    with open(output_path, "rb") as file:
        assert file.read() == b"an earlier result"  # untouched


def test_bad_model_file_and_batch_size(files):
    model, x, model_path, input_path, output_path = files
    with pytest.raises(ValueError, match="is not a readable .npz file"):
        infer_file(input_path, input_path, output_path)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        infer_file(model_path, input_path, output_path, batch_size=0)
    result = run_cli("infer", model_path, os.path.join(os.path.dirname(input_path), "missing"),
                     "-o", output_path)
    assert result.returncode == 2 and "No such file" in result.stderr
    assert not os.path.exists(output_path)


def test_a_failure_midway_leaves_no_output(files, monkeypatch):
    model, x, model_path, input_path, output_path = files
    calls = []
    real_forward = LSTM.forward

    def failing_forward(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(LSTM, "forward", failing_forward)
    with pytest.raises(RuntimeError, match="disk on fire"):
        infer_file(model_path, input_path, output_path, batch_size=5, progress=False)
    assert len(calls) == 2  # it did write the first block
    assert not os.path.exists(output_path)
    assert _leftovers(os.path.dirname(output_path)) == []


def test_on_a_two_worker_cluster(files):
    distributed = pytest.importorskip("distributed")
    model, x, model_path, input_path, output_path = files
    expected, _ = model(x)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        result = infer_file(model_path, input_path, output_path, batch_size=4,
                            scheduler=cluster.scheduler_address, progress=False)
        assert result.blocks == 6
        np.testing.assert_allclose(np.load(output_path), expected, rtol=0, atol=1e-6)
        os.remove(output_path)
        cli = run_cli("infer", model_path, input_path, "-o", output_path, "--batch-size", "10",
                      "--scheduler", cluster.scheduler_address, "--quiet")
        assert cli.returncode == 0, cli.stderr
        np.testing.assert_allclose(np.load(output_path), expected, rtol=0, atol=1e-6)
    assert _leftovers(os.path.dirname(output_path)) == []
