"""The CUDA recurrence tiers against ``torch.nn.LSTM`` on cuDNN, on a real GPU.

    python benchmarks/gpu_recurrence.py [--samples 3] [--min-sample 0.1] [--out DIR]

For every configuration: nblstm's ``auto`` and each persistent tier (``rows``, ``units``;
``steps`` at one T=1000 configuration only: it is the slow per-step path) against torch with
TF32 off (cuDNN in exact float32, the fair comparison) and with TF32 on (torch's default,
tensor cores, which numba-cuda cannot use). Inference (``lstm(x)`` / ``torch.no_grad()``),
the training forward (``forward(train=True)`` / a forward recording autograd) and training
(forward plus backward of ``sum(out * d_out)``), float32; steady state (``nblstm._timing``: back-to-back calls, synchronized after each,
samples interleaved, median). Same weights (``from_torch``). Writes
``gpu_recurrence.json`` and ``gpu_recurrence.txt`` into ``--out``.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

import nblstm
from nblstm import _timing
from nblstm.bench import environment

#: name: (T, B, X, H, num_layers, bidirectional): the layer benchmark's configurations plus
#: T = 1000 at B in {1, 16, 64} and H in {64, 256, 512}
CONFIGS = {"digits": (8, 64, 8, 64, 1, False), "adding": (100, 64, 2, 64, 1, False),
           "bi2": (50, 32, 64, 128, 2, True), "mid": (100, 64, 256, 256, 1, False)}
CONFIGS.update({f"T1000-B{B}-H{H}": (1000, B, H, H, 1, False)
                for B in (1, 16, 64) for H in (64, 256, 512)})
STEPS_CONFIG = "T1000-B16-H256"
PASSES = ("inference", "training-forward", "training")


def runners(config, name, torch, cupy):
    T, B, X, H, layers, bidirectional = config
    module = torch.nn.LSTM(X, H, layers, bidirectional=bidirectional).cuda()
    lstm = nblstm.LSTM.from_torch(module)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, X)).astype(np.float32)
    d_out = rng.standard_normal((T, B, H * (2 if bidirectional else 1))).astype(np.float32)
    x_nb, x_t = cupy.asarray(x), torch.tensor(x, device="cuda")
    d_out_nb, d_out_t = cupy.asarray(d_out), torch.tensor(d_out, device="cuda")

    def sync():
        cupy.cuda.get_current_stream().synchronize()
        torch.cuda.synchronize()

    tiers = ["auto", "rows", "units"] + (["steps"] if name == STEPS_CONFIG else [])
    runs = {}
    for pass_name in PASSES:
        for tier in tiers:
            def run(tier=tier, pass_name=pass_name):
                os.environ["NBLSTM_CUDA_RECURRENCE"] = tier
                if pass_name == "inference":
                    lstm(x_nb)
                else:
                    _, _, cache = lstm.forward(x_nb, train=True)
                    if pass_name == "training":
                        lstm.backward(cache, d_out_nb)
                sync()
            runs[(pass_name, f"nblstm-{tier}")] = run
        for tf32 in (False, True):
            def run(tf32=tf32, pass_name=pass_name):
                torch.backends.cudnn.allow_tf32 = tf32
                torch.backends.cuda.matmul.allow_tf32 = tf32
                if pass_name == "inference":
                    with torch.no_grad():
                        module(x_t)
                else:
                    module.zero_grad(set_to_none=True)
                    out, _ = module(x_t)
                    if pass_name == "training":
                        out.backward(d_out_t)
                sync()
            runs[(pass_name, f"torch-tf32-{'on' if tf32 else 'off'}")] = run
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--min-sample", type=float, default=0.05)
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/gpu"))
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS))
    args = parser.parse_args(argv)
    import cupy
    import torch
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    document = {"environment": environment(), "device": torch.cuda.get_device_name(),
                "samples": args.samples, "min_sample_s": args.min_sample, "results": []}
    lines = [f"device: {document['device']}; float32; times in ms; steady state, median of "
             f"{args.samples} samples (>= {args.min_sample} s each), synchronized",
             f"{'config':<16} {'pass':<17} " + " ".join(
                 f"{n:>12}" for n in ("auto", "rows", "units", "steps", "tc-tf32-off",
                                      "tc-tf32-on", "off/auto", "on/auto", "us/step"))]
    for name in args.configs:
        config = CONFIGS[name]
        runs = runners(config, name, torch, cupy)
        for run in runs.values():  # compile and allocate before any timing
            run()
        for pass_name in PASSES:
            subset = {peer: run for (p, peer), run in runs.items() if p == pass_name}
            times = _timing.time_steady(subset, samples=args.samples,
                                        min_sample_s=args.min_sample, handover_s=0.02)
            median = {peer: _timing.median(v) for peer, v in times.items()}
            row = {"config": name, "shape": list(config), "pass": pass_name,
                   "median_s": median, "all_s": times,
                   "torch_tf32_off_over_auto": median["torch-tf32-off"] / median["nblstm-auto"],
                   "torch_tf32_on_over_auto": median["torch-tf32-on"] / median["nblstm-auto"],
                   "auto_us_per_step": median["nblstm-auto"] / config[0] * 1e6}
            document["results"].append(row)
            cell = lambda peer: (f"{median[peer] * 1e3:.3f}" if peer in median else "-")
            lines.append(f"{name:<16} {pass_name:<17} " + " ".join(f"{v:>12}" for v in (
                cell("nblstm-auto"), cell("nblstm-rows"), cell("nblstm-units"),
                cell("nblstm-steps"), cell("torch-tf32-off"), cell("torch-tf32-on"),
                f"{row['torch_tf32_off_over_auto']:.2f}x",
                f"{row['torch_tf32_on_over_auto']:.2f}x",
                f"{row['auto_us_per_step']:.2f}")))
            print(lines[-1], flush=True)
    os.environ.pop("NBLSTM_CUDA_RECURRENCE", None)
    (out / "gpu_recurrence.json").write_text(json.dumps(document, indent=1, default=str))
    (out / "gpu_recurrence.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
