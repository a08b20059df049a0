#!/usr/bin/env bash
# The device checks on a machine with an NVIDIA GPU, as one script, in stages with their own
# timeouts (a hang cannot eat the GPU time):
#   bash benchmarks/gpu_run.sh [probe] [gpu-tests] [recurrence] [cuda-suite] [tests] [check]
#                              [bench] [bench-full]
# Default (at most 6 minutes on an H200 by the stage timeouts: 90 + 120 + 200 + 150 s; check
# is skipped when the budget is short): probe gpu-tests recurrence cuda-suite.
#   probe       cooperative launch (cudadevrt linking) and max_cooperative_grid_blocks
#   gpu-tests   tests/test_cuda_recurrence.py with the simulator off (race and T=10,000 tests)
#   recurrence  benchmarks/gpu_recurrence.py: each CUDA recurrence tier vs torch (TF32 off/on):
#               inference, training forward, training (forward + backward)
#   cuda-suite  the CUDA part of the suite (-k "cuda or cupy"); tests: the whole suite
# Installs this checkout (no network needed: --no-build-isolation, --no-deps). Logs and JSON
# go to $OUT (the device tool's folder) or benchmarks/results/gpu/.
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM
PY=${PYTHON:-python3}
# Wheels carried in .whl/ (e.g. numpy<2.5: numba-cuda 0.30.4 cannot compile with numpy 2.5)
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
steps=${*:-probe gpu-tests recurrence cuda-suite}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/device.txt"
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -3
$PY - <<'PY' 2>&1 | tee -a "$OUT/device.txt"
import numba, numpy, importlib
print("numba", numba.__version__, "numpy", numpy.__version__)
for name in ("numba_cuda", "cupy", "torch"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as error:  # report, don't stop
        print(name, "unavailable:", error)
PY
nblstm info 2>&1 | tee -a "$OUT/device.txt"

for step in $steps; do
  case $step in
    probe)
      timeout "${PROBE_TIMEOUT_S:-90}" $PY - <<'PY' 2>&1 | tee "$OUT/probe.txt" ;;
import numpy as np
from numba import cuda
from nblstm.kernels.cuda import recurrence
T, B, H = 4, 2, 8
z = cuda.to_device(np.random.default_rng(0).standard_normal((T, B, 4 * H)).astype(np.float32))
W = cuda.to_device(np.zeros((H, 4 * H), np.float32))
h0 = cuda.to_device(np.zeros((B, H), np.float32)); c0 = cuda.to_device(np.zeros((B, H), np.float32))
h = cuda.device_array((T, B, H), np.float32); c = cuda.device_array((T, B, H), np.float32)
args = (z, W, h0, c0, h, c, True, c0, False)
print("max_cooperative_grid_blocks:", recurrence.cooperative_blocks(args, B, H))
recurrence.launch_forward("units", 0, args, B, H)
cuda.synchronize()
print("cooperative launch (cudadevrt linked): ok")
PY
    gpu-tests)
      timeout "${GPU_TESTS_TIMEOUT_S:-120}" $PY -P -m pytest -q -rfEs -p no:cacheprovider \
        tests/test_cuda_recurrence.py 2>&1 | tee "$OUT/pytest_recurrence.txt" | tail -30 ;;
    recurrence)
      timeout "${RECURRENCE_TIMEOUT_S:-200}" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        $PY benchmarks/gpu_recurrence.py --out "$OUT" 2>&1 | tee "$OUT/recurrence_log.txt" ;;
    cuda-suite)
      timeout "${CUDA_SUITE_TIMEOUT_S:-150}" $PY -P -m pytest -q -rfEs -p no:cacheprovider \
        -n "${PYTEST_WORKERS:-8}" -k "cuda or cupy" 2>&1 | tee "$OUT/pytest_cuda.txt" | tail -40 ;;
    tests)
      timeout "${PYTEST_TIMEOUT_S:-300}" $PY -P -m pytest -q -rfEs -p no:cacheprovider \
        -n "${PYTEST_WORKERS:-8}" 2>&1 | tee "$OUT/pytest_gpu.txt" | tail -60 ;;
    check)
      timeout 120 nblstm check 2>&1 | tee "$OUT/check_gpu.txt" | tail -40 ;;
    bench)
      timeout "${BENCH_TIMEOUT_S:-200}" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        nblstm bench --grid quick --no-reference --json "$OUT/grid_gpu_quick.json" 2>&1 \
        | tee "$OUT/bench_gpu_quick.txt" ;;
    bench-full)
      timeout "${BENCH_TIMEOUT_S:-300}" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        nblstm bench --grid full --no-reference --json "$OUT/grid_gpu.json" 2>&1 \
        | tee "$OUT/bench_gpu.txt" ;;
  esac
done
