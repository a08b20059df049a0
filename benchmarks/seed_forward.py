"""Quick in-process comparison of the seed API against the NumPy reference.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/seed_forward.py

Times ``lstm_forward`` and ``lstm_forward + lstm_backward`` of nblstm and of
``nblstm.reference`` on the same problem in steady state (``nblstm._timing``: interleaved
samples of back-to-back calls, median), and prints the ratios plus the BLAS in use. (The
full harness with torch and GEMM floors is ``nblstm bench``.) ``--json PATH`` also writes
the numbers.
"""
import argparse
import json
import os
import platform

import numpy as np

import nblstm
from nblstm import _timing, reference


def problem(n_x, m, T, n_a, n_y, dtype, seed=0):
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(n_a + n_x)
    params = {}
    for gate in "fico":
        params["W" + gate] = (rng.standard_normal((n_a, n_a + n_x)) * scale).astype(dtype)
        params["b" + gate] = (rng.standard_normal((n_a, 1)) * 0.1).astype(dtype)
    params["Wy"] = (rng.standard_normal((n_y, n_a)) * scale).astype(dtype)
    params["by"] = np.zeros((n_y, 1), dtype)
    return (rng.standard_normal((n_x, m, T)).astype(dtype),
            rng.standard_normal((n_a, m)).astype(dtype), params,
            rng.standard_normal((n_a, m, T)).astype(dtype))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", type=int, nargs=5, default=[256, 64, 100, 256, 16],
                        metavar=("N_X", "M", "T", "N_A", "N_Y"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = []
    for dtype in (np.float32, np.float64):
        x, a0, params, da = problem(*args.shape, dtype)
        impls = {"nblstm": nblstm, "reference": reference}
        for impl in impls.values():  # warm-up (compilation)
            impl.lstm_backward(da, impl.lstm_forward(x, a0, params)[3])
        runs = {}
        for name, impl in impls.items():
            runs[(name, "forward")] = lambda impl=impl: impl.lstm_forward(x, a0, params)
            runs[(name, "forward+backward")] = lambda impl=impl: impl.lstm_backward(
                da, impl.lstm_forward(x, a0, params)[3])
        times = _timing.time_steady(runs, samples=args.repeats)
        for kind in ("forward", "forward+backward"):
            ours = _timing.median(times[("nblstm", kind)])
            ref = _timing.median(times[("reference", kind)])
            results.append({"dtype": np.dtype(dtype).name, "pass": kind, "nblstm_s": ours,
                            "reference_s": ref, "reference_over_nblstm": ref / ours})
    try:
        from threadpoolctl import threadpool_info
        blas = [f"{p['internal_api']} {p.get('version')} {p.get('architecture')} "
                f"{p['num_threads']} threads ({os.path.basename(p['filepath'])})"
                for p in threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        blas = ["threadpoolctl not installed"]
    print(f"shape (n_x, m, T, n_a, n_y) = {tuple(args.shape)}, median of {args.repeats}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus; BLAS: {'; '.join(blas)}")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')} "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE')}")
    print(f"{'dtype':<8} {'pass':<17} {'nblstm ms':>10} {'reference ms':>13} {'ratio':>7}")
    for r in results:
        print(f"{r['dtype']:<8} {r['pass']:<17} {r['nblstm_s'] * 1e3:>10.2f} "
              f"{r['reference_s'] * 1e3:>13.2f} {r['reference_over_nblstm']:>6.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": args.shape, "blas": blas, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
