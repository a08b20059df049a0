"""The ``nblstm`` command."""
import subprocess
import sys

import numpy as np

from nblstm import cli, seed


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "nblstm.cli", *args], capture_output=True,
                          text=True, timeout=600)


def test_info_reports_versions_blas_threading_and_backends():
    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    for fragment in ("nblstm", "numpy", "numba", "scipy", "threading layer", "BLAS",
                     "backend cpu", "available", "backend cuda"):
        assert fragment in result.stdout, fragment
    cuda_line = next(line for line in result.stdout.splitlines() if line.startswith("backend cuda"))
    # the GPU's name, "simulator", or why CUDA is unavailable
    assert "simulator" in cuda_line or "compute capability" in cuda_line or "not available:" in cuda_line


def test_check_passes_and_prints_a_table():
    result = run_cli("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    for backend in ("cpu", "cuda"):
        rows = [line for line in result.stdout.splitlines() if line.startswith(backend + " ")]
        if backend == "cuda" and len(rows) == 1:
            assert "skipped (not available" in rows[0]  # no GPU and no simulator
            continue
        # two dtypes x (a, y, c + 10 gradients of the seed API; out, h_n, c_n of the layer)
        assert len(rows) == 2 * 13 + 2 * 3, backend
        assert sum("LSTM" in row for row in rows) == 6
        assert all(row.endswith("ok") for row in rows)


class _WrongForward:
    """The seed API with a forward pass that is off by a little: check must notice."""
    lstm_backward = staticmethod(seed.lstm_backward)

    @staticmethod
    def lstm_forward(x, a0, parameters, backend=None):
        a, y, c, caches = seed.lstm_forward(x, a0, parameters, backend=backend)
        return a + np.asarray(1e-4, dtype=a.dtype), y, c, caches


def test_check_fails_on_a_mismatch(capsys, monkeypatch):
    # the comparison logic is the same for every backend: the CPU alone keeps this test
    # short (the whole check, simulator included, runs in the test above)
    monkeypatch.setattr(cli, "available_backends", lambda: {"cpu": "available"})
    assert cli.check(implementation=_WrongForward) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "FAILED" in out


def test_unknown_command_is_an_error():
    assert run_cli("frobnicate").returncode == 2


def test_version_and_info_json():
    import json

    import nblstm
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"nblstm {nblstm.__version__}"
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["versions"]["nblstm"] == nblstm.__version__
    assert set(document["backends"]) == {"cpu", "cuda"} and document["cpu_gemm"]


def test_help_texts_describe_every_command_without_markup():
    for args in ((), ("info",), ("check",), ("bench",), ("demo",), ("infer",)):
        result = run_cli(*args, "--help")
        assert result.returncode == 0, (args, result.stderr)
        assert "``" not in result.stdout, args
        assert len(result.stdout.splitlines()) > 4, args
    bench_help = run_cli("bench", "--help").stdout
    assert "(default: quick)" in bench_help and "(default: 3)" in bench_help


def test_output_paths_are_checked_before_any_work(tmp_path):
    missing = str(tmp_path / "no" / "such" / "folder" / "out")
    for args in (("demo", "adding", "--plot", missing + ".png"),
                 ("bench", "--json", missing + ".json"),
                 ("infer", "model.npz", "x.npy", "-o", missing + ".npy"),
                 ("bench", "--plot", str(tmp_path))):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "does not exist" in result.stderr or "is a directory" in result.stderr, args
        assert "Traceback" not in result.stderr, args
