"""The benchmark harness runs, records what it must, and reports every peer (no timings
are asserted: speed is measured in benchmarks/, never tested)."""
import json
import subprocess
import sys

import pytest

from nblstm import bench


def test_gemm_flops_counts_the_algorithms_gemms():
    T, B, X, H = 3, 2, 5, 4
    forward = 2 * T * B * (X + H) * 4 * H
    assert bench.gemm_flops(T, B, X, H, "inference") == forward
    assert bench.gemm_flops(T, B, X, H, "training") == 3 * forward


def test_harness_times_every_peer_and_writes_json_and_png(tmp_path):
    pytest.importorskip("matplotlib")
    document = bench.run_benchmark([(3, 2, 4, 5)], dtypes=("float64",), repeats=1,
                                   peak_size=128)
    rows = document["results"]
    assert [r["pass"] for r in rows] == ["inference", "training"]
    for row in rows:
        for peer in ("nblstm", "seed", "reference", "gemm"):
            assert row["median_s"][peer] > 0
        assert row["nblstm_gflops"] > 0 and row["reference_over_seed"] > 0
    env = document["environment"]
    assert env["blas"] and "numba_threading" in env and "cpu" in env
    assert document["peaks"]["float64"]["gflops"] > 0
    table = bench.format_table(document)
    assert "(3,2,4,5)" in table and "GEMM peak" in table
    bench.save_json(document, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["shape"] == [3, 2, 4, 5]
    bench.plot(document, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_torch_is_a_note_not_a_failure(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    peers, notes = bench.available_peers()
    assert "torch" not in peers
    assert any("pip install torch" in note for note in notes)


def test_bench_command_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nblstm.cli", "bench", "--grid", "tiny",
                             "--repeats", "1", "--dtypes", "float64", "--passes", "inference",
                             "--no-reference", "--json", str(tmp_path / "b.json")],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nblstm ms" in result.stdout and "GEMM peak" in result.stdout
    assert len(json.loads((tmp_path / "b.json").read_text())["results"]) == 2
