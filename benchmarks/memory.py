"""Working memory of inference and training, measured as peak resident memory.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/memory.py [--json PATH]

For each T, a fresh process allocates the inputs, compiles on a tiny problem, then runs one
pass while a thread samples the resident set size every 0.2 ms (the kernels release the
GIL). Working memory = peak RSS during the pass - RSS before it - the output arrays the
pass returns. Inference should not grow with T (time-chunked input projection); training
keeps h, c (T, B, H) and the gates (T, B, 4H) (returned), and its backward needs the
pre-activation gradients dz (T, B, 4H) for the weight-gradient GEMMs after the loop.
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import os, threading, time
import numpy as np
from nblstm import ops
from nblstm._dispatch import CPU as cpu
T, B, X, H, PASS = ARGS
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
def problem(T):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((T, B, X)).astype(np.float32), np.zeros((B, H), np.float32),
            np.zeros((B, H), np.float32), (rng.standard_normal((X, 4 * H)) * 0.05).astype(np.float32),
            (rng.standard_normal((H, 4 * H)) * 0.05).astype(np.float32), np.zeros(4 * H, np.float32))
def run(args, d_out):
    if PASS == "inference":
        return ops.sequence_inference(cpu, *args)
    h_all, c_all, gates = ops.sequence_forward(cpu, *args)
    z = np.zeros((B, H), np.float32)
    grads = ops.sequence_backward(cpu, *args[:5], h_all, c_all, gates, d_out, z, z)
    return (h_all, c_all, gates) + grads
run(problem(3), np.ones((3, B, H), np.float32))  # compile
args = problem(T)
d_out = np.ones((T, B, H), np.float32)  # an input of the backward pass, allocated up front
peak, stop = [0], [False]
def sample():
    while not stop[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.0002)
before = rss()
sampler = threading.Thread(target=sample)
sampler.start()
outputs = run(args, d_out)
stop[0] = True
sampler.join()
peak[0] = max(peak[0], rss())
returned = sum(o.nbytes for o in outputs)
print(before, peak[0], returned)
"""


def measure(T: int, B: int, X: int, H: int, pass_name: str) -> dict:
    code = CHILD.replace("ARGS", repr((T, B, X, H, pass_name)))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    before, peak, returned = map(int, subprocess.run([sys.executable, "-c", code], env=env,
                                                     capture_output=True, text=True,
                                                     check=True).stdout.split())
    mib = 2 ** 20
    return {"T": T, "B": B, "X": X, "H": H, "pass": pass_name, "input_mib": T * B * X * 4 / mib,
            "returned_mib": returned / mib, "peak_increase_mib": (peak - before) / mib,
            "working_mib": (peak - before - returned) / mib}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    args = parser.parse_args()
    B, X, H = 64, 256, 256
    rows = [measure(T, B, X, H, p) for p in ("inference", "training") for T in (10, 2000)]
    print(f"float32, B={B}, X={X}, H={H}; MiB")
    print(f"{'pass':<10} {'T':>5} {'input':>8} {'returned':>9} {'peak - before':>14} {'working':>8}")
    for r in rows:
        print(f"{r['pass']:<10} {r['T']:>5} {r['input_mib']:>8.1f} {r['returned_mib']:>9.1f} "
              f"{r['peak_increase_mib']:>14.1f} {r['working_mib']:>8.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
