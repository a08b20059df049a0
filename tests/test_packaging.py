"""Packaging: the wheel carries the kernels, and importing nblstm stays light."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_the_kernels_as_nblstm_kernels(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    wheel = next(tmp_path.glob("nblstm-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("__init__", "fastmath", "gates", "cpu"):
        assert f"nblstm/kernels/{module}.py" in names
    for module in ("__init__", "seed", "ops", "reference", "cli", "_dispatch", "_validate"):
        assert f"nblstm/{module}.py" in names
    assert not any(name.startswith("kernels/") for name in names)


def test_import_is_light_and_touches_no_gpu_library():
    """``import nblstm`` compiles nothing, imports neither numba nor CuPy nor a CUDA
    driver binding: kernels load on first use."""
    code = ("import sys, nblstm; "
            "heavy = [m for m in ('numba', 'cupy', 'numba.cuda', 'cuda', 'torch') if m in sys.modules]; "
            "print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
