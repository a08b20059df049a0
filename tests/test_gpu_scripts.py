"""The GPU machine's scripts are checked here, where no GPU is: device time is too scarce to
find a syntax error or a broken import there."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_run_script_parses_and_names_its_stages():
    script = ROOT / "benchmarks" / "gpu_run.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    for stage in ("probe)", "gpu-tests)", "recurrence)", "cuda-suite)"):
        assert stage in text
    assert "timeout" in text  # every stage runs under its own limit


def test_gpu_recurrence_benchmark_imports_and_lists_its_configurations():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_recurrence.py"),
                             "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_recurrence
    finally:
        sys.path.pop(0)
    names = set(gpu_recurrence.CONFIGS)
    assert {"digits", "adding", "bi2", "mid"} <= names
    assert {f"T1000-B{B}-H{H}" for B in (1, 16, 64) for H in (64, 256, 512)} <= names
    assert gpu_recurrence.STEPS_CONFIG in names
    assert gpu_recurrence.PASSES == ("inference", "training-forward", "training")
