"""The benchmark harness runs, records what it must, and reports every peer (no timings
are asserted: speed is measured in benchmarks/, never tested)."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from nblstm import _timing, bench


def test_gemm_flops_counts_the_algorithms_gemms():
    T, B, X, H = 3, 2, 5, 4
    forward = 2 * T * B * (X + H) * 4 * H
    assert bench.gemm_flops(T, B, X, H, "inference") == forward
    assert bench.gemm_flops(T, B, X, H, "training") == 3 * forward
    assert bench.gemm_flops(T, B, X, H, "step") == 3 * forward


def test_harness_times_every_peer_and_writes_json_and_png(tmp_path):
    pytest.importorskip("matplotlib")
    document = bench.run_benchmark([(3, 2, 4, 5)], dtypes=("float64",), repeats=2,
                                   peak_size=128, min_sample_s=0.005, cold_repeats=1)
    rows = document["results"]
    assert [r["pass"] for r in rows] == ["inference", "training", "step"]
    for row in rows:
        peers = ("nblstm", "gemm") + (() if row["pass"] == "step" else ("seed", "reference"))
        for peer in peers:
            assert row["median_s"][peer] > 0 and len(row["all_s"][peer]) == 2
        assert row["cold_s"]["nblstm"] > 0 and "gemm" not in row["cold_s"]
        assert row["nblstm_gflops"] > 0
        assert isinstance(row["peak_suspect"], bool)
    assert "seed" not in rows[2]["median_s"]  # the seed API has no optimizer step
    assert rows[0]["reference_over_seed"] > 0
    env = document["environment"]
    assert env["blas"] and "numba_threading" in env and "cpu" in env
    peak = document["peaks"]["float64"]
    assert peak["gflops"] == max(peak["measurements"]) > 0
    table = bench.format_table(document)
    assert "(3,2,4,5)" in table and "GEMM peak" in table and "cold nb" in table
    bench.save_json(document, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["shape"] == [3, 2, 4, 5]
    bench.plot(document, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_steady_state_samples_are_back_to_back_calls_auto_ranged():
    calls = []

    def run():
        calls.append(time.perf_counter())
        time.sleep(0.002)

    assert _timing.autorange(run, 0.02) in (10, 20)  # 1, 2, 5: too short; 10 x 2 ms = 20 ms
    calls.clear()
    per_call = _timing.time_steady({"a": run}, samples=3, min_sample_s=0.02, handover_s=0.0)
    assert len(per_call["a"]) == 3 and all(0.002 <= t < 0.02 for t in per_call["a"])
    assert np.diff(calls).max() < 0.05  # no pause anywhere: every call follows the last
    order = []
    _timing.time_steady({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                        samples=2, min_sample_s=0.001, handover_s=0.0)
    runs = [name for k, name in enumerate(order) if k == 0 or order[k - 1] != name]
    # autorange a, autorange b, then round 1: a, b, and round 2 rotated: b, a
    assert runs == ["a", "b", "a", "b", "a"]


def test_a_row_above_the_peak_is_flagged():
    case = bench.Case(3, 2, 4, 5, np.dtype(np.float64)).build()
    times = {"nblstm": [1e-9], "gemm": [1e-9]}
    row = bench._summarise(case, "inference", times, {}, peak_gflops=1.0)
    assert row["peak_suspect"]


def test_missing_torch_is_a_note_not_a_failure(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    peers, notes = bench.available_peers()
    assert "torch" not in peers
    assert any("pip install torch" in note for note in notes)


def test_bench_command_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nblstm.cli", "bench", "--grid", "tiny",
                             "--repeats", "1", "--dtypes", "float64", "--passes", "inference",
                             "--min-sample", "0.01", "--cold", "1",
                             "--no-reference", "--json", str(tmp_path / "b.json")],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nblstm ms" in result.stdout and "GEMM peak" in result.stdout
    assert len(json.loads((tmp_path / "b.json").read_text())["results"]) == 2


def test_onnxruntime_is_a_peer_for_float32_inference():
    pytest.importorskip("onnxruntime")
    peers, _ = bench.available_peers(include_reference=False)
    assert "onnxruntime" in peers
    case32 = bench.Case(3, 2, 4, 5, np.dtype(np.float32)).build()
    run = peers["onnxruntime"](case32, "inference")
    run()
    assert peers["onnxruntime"](case32, "training") is None
    assert peers["onnxruntime"](bench.Case(3, 2, 4, 5, np.dtype(np.float64)).build(),
                                "inference") is None
    times = {"nblstm": [2e-3], "gemm": [1e-3], "onnxruntime": [3e-3]}
    row = bench._summarise(case32, "inference", times, {}, peak_gflops=100.0)
    assert row["onnxruntime_over_nblstm"] == pytest.approx(1.5)


def test_missing_onnxruntime_is_a_note_not_a_failure(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    peers, notes = bench.available_peers()
    assert "onnxruntime" not in peers
    assert any("onnxruntime" in note for note in notes)
