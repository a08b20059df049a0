"""Start-up cost: cold first-call compile time per dtype, and time to first result in a
second process that loads the compiled kernels from numba's on-disk cache.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/startup.py [--json PATH]

Each measurement is a fresh Python process; the cache lives in a temporary
``NUMBA_CACHE_DIR`` so the first process really compiles. "First result" = import nblstm,
then ``lstm_forward`` and ``lstm_backward`` on a small seed-API problem.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import time
start = time.perf_counter()
import numpy as np
import nblstm
imported = time.perf_counter()
dtype = np.dtype(DTYPE)
rng = np.random.default_rng(0)
n_x, m, T, n_a, n_y = 8, 4, 10, 16, 3
p = {}
for g in "fico":
    p["W" + g] = rng.standard_normal((n_a, n_a + n_x)).astype(dtype)
    p["b" + g] = np.zeros((n_a, 1), dtype)
p["Wy"] = rng.standard_normal((n_y, n_a)).astype(dtype)
p["by"] = np.zeros((n_y, 1), dtype)
x = rng.standard_normal((n_x, m, T)).astype(dtype)
a0 = np.zeros((n_a, m), dtype)
a, y, c, caches = nblstm.lstm_forward(x, a0, p)
grads = nblstm.lstm_backward(np.ones_like(a), caches)
done = time.perf_counter()
print(f"{imported - start} {done - imported}")
"""


def run_child(dtype: str, cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD.replace("DTYPE", repr(dtype))], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    wall = time.perf_counter() - started
    return {"import_s": float(out[0]), "first_call_s": float(out[1]),
            "import_plus_first_call_s": float(out[0]) + float(out[1]), "process_wall_s": wall}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for dtype in ("float32", "float64"):
        cold, warm = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache_dir:
                cold.append(run_child(dtype, cache_dir))  # compiles, fills the cache
                warm.append(run_child(dtype, cache_dir))  # loads from the cache
        median = lambda rows, key: sorted(r[key] for r in rows)[len(rows) // 2]
        results[dtype] = {
            "cold_first_call_s": median(cold, "first_call_s"),
            "cached_import_plus_first_call_s": median(warm, "import_plus_first_call_s"),
            "cached_first_call_s": median(warm, "first_call_s"),
            "import_s": median(warm, "import_s"),
            "cached_process_wall_s": median(warm, "process_wall_s"),
            "cold": cold, "cached": warm,
        }
        r = results[dtype]
        print(f"{dtype}: cold compile+first call {r['cold_first_call_s']:.2f} s (target <= 5 s); "
              f"cached process: import {r['import_s']:.2f} s + first call "
              f"{r['cached_first_call_s']:.3f} s = {r['cached_import_plus_first_call_s']:.2f} s "
              f"(target < 0.5 s); whole process {r['cached_process_wall_s']:.2f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
