"""Packaging: the wheel carries the kernels, and importing nblstm stays light."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]

#: Python source: a small seed-API forward and backward on NumPy arrays.
SMALL_CPU_RUN = ("import numpy as np, nblstm; "
                 "x = np.ones((2, 3, 4)); a0 = np.zeros((5, 3)); "
                 "p = {k: np.full((5, 7) if k[0] == 'W' else (5, 1), 0.1) for k in "
                 "('Wf','bf','Wi','bi','Wc','bc','Wo','bo')}; "
                 "p.update(Wy=np.ones((2, 5)), by=np.zeros((2, 1))); "
                 "a, y, c, caches = nblstm.lstm_forward(x, a0, p); "
                 "g = nblstm.lstm_backward(np.ones((5, 3, 4)), caches); ")


def test_wheel_contains_the_kernels_as_nblstm_kernels(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    wheel = next(tmp_path.glob("nblstm-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    # every module of the source tree, wherever it lives, is in the wheel
    kernels = sorted(path.relative_to(ROOT / "kernels").as_posix()
                     for path in (ROOT / "kernels").rglob("*.py"))
    api = sorted(path.name for path in (ROOT / "nblstm").glob("*.py"))
    assert {"cpu/__init__.py", "cuda/__init__.py", "math/gates.py"} <= set(kernels)
    assert "layers.py" in api
    for name in kernels:
        assert f"nblstm/kernels/{name}" in names, name
    for name in api:
        assert f"nblstm/{name}" in names, name
    assert "nblstm/py.typed" in names  # PEP 561
    assert not any(name.startswith("kernels/") for name in names)
    # the wheel, unpacked and imported from elsewhere, uses its own kernels
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = "import nblstm, nblstm.kernels.cpu as c; print(c.__file__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(site / "nblstm" / "kernels")), result.stdout


def test_running_from_a_clone_root_uses_the_clones_own_kernels(tmp_path):
    """From a clone's root, ``nblstm/`` is imported from the checkout (it shadows any
    install) and has no ``kernels/`` inside: it attaches the checkout's ``kernels/``."""
    import shutil
    clone = tmp_path / "clone"
    for folder in ("nblstm", "kernels"):
        shutil.copytree(ROOT / folder, clone / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import numpy as np, nblstm, nblstm.kernels.cpu as c; print(c.__file__); "
            "out, _ = nblstm.LSTM(3, 4, seed=0)(np.ones((2, 1, 3), np.float32)); "
            "print(out.shape)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=clone, env={**env, "NBLSTM_NUMBA_CACHE": "0"})
    assert result.returncode == 0, result.stderr
    kernels_file, shape = result.stdout.split("\n")[:2]
    assert kernels_file.startswith(str(clone / "kernels")) and shape == "(2, 1, 4)"


def test_import_is_light_and_touches_no_gpu_library():
    """``import nblstm`` compiles nothing, imports neither numba nor CuPy nor a CUDA
    driver binding (nor onnx: only from_onnx/to_onnx import it): kernels load on first
    use."""
    code = ("import sys, nblstm; "
            "heavy = [m for m in ('numba', 'cupy', 'numba.cuda', 'cuda', 'torch', 'onnx', "
            "'onnxruntime') if m in sys.modules]; "
            "print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_cpu_path_works_without_cuda_and_never_loads_it():
    """A CPU call on a machine without CUDA: no simulator, no driver; neither numba's CUDA
    target nor CuPy is imported along the way."""
    code = ("import sys; " + SMALL_CPU_RUN +
            "print(sorted(m for m in ('cupy', 'numba.cuda', 'numba_cuda') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # as good as no GPU, even on a GPU machine
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_second_process_loads_the_kernels_from_numbas_cache(tmp_path):
    """numba's on-disk cache works for nblstm's kernels: a second process compiles nothing
    (cache hits, no misses), and NBLSTM_NUMBA_CACHE=0 turns the cache off."""
    code = ("from numba.core.registry import CPUDispatcher; "
            "from nblstm.kernels.cpu import lstm, packed_gemm, packed_lstm; " + SMALL_CPU_RUN +
            "f = [d for m in (lstm, packed_gemm, packed_lstm) for d in vars(m).values() "
            "     if isinstance(d, CPUDispatcher) and d.signatures]; "
            "print(sum(sum(d.stats.cache_hits.values()) for d in f), "
            "sum(sum(d.stats.cache_misses.values()) for d in f), len(f))")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    run = lambda extra: subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, timeout=300, env={**env, **extra})
    for variant in ("blas", "avx2-parallel"):  # each path has kernels of its own
        settings = {"NBLSTM_CPU_GEMM": variant, "NUMBA_CACHE_DIR": str(tmp_path / variant)}
        first, second = run(settings), run(settings)
        assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
        hits, misses, kernels = map(int, first.stdout.split())
        assert kernels >= 3 and hits == 0 and misses >= kernels  # compiled and stored
        # Loaded: the kernels called from Python hit the cache (the ones they call are part
        # of their cached code and never compiled); nothing is compiled.
        hits, misses, kernels = map(int, second.stdout.split())
        assert kernels >= 3 and hits == kernels and misses == 0, (variant, second.stdout)
    off = run({"NBLSTM_NUMBA_CACHE": "0", "NBLSTM_CPU_GEMM": "avx2-parallel"})
    hits, misses, kernels = map(int, off.stdout.split())
    assert hits == 0 and misses >= kernels >= 3
