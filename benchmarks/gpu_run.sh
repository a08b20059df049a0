#!/usr/bin/env bash
# The device checks on a machine with an NVIDIA GPU, as one script:
#   bash benchmarks/gpu_run.sh [tests] [check] [bench] [bench-full]
# Installs this checkout (no network needed: --no-build-isolation, --no-deps), then runs the
# whole test suite with the simulator off, `nblstm check`, and the GPU benchmark grid.
# Logs and JSON go to $OUT (the device tool's folder) or benchmarks/results/gpu/.
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
steps=${*:-tests check bench}

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
