"""``nblstm.LSTM`` against ``torch.nn.LSTM`` on whole layers, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/layer.py [--device cpu|cuda]

Configurations: the two demos' shapes (digits, adding problem), a 2-layer bidirectional
layer on a padded batch (``lengths``; torch packs and unpacks, as its users must), and one
mid-size layer. Passes: inference (``lstm(x)`` / ``torch.no_grad()``), training (forward
plus backward of ``sum(out * d_out)``) and step (training plus an Adam step, nblstm's and
torch's). Both peers get the same weights (``from_torch``) and the same thread count on the
CPU. Timed as loops run (``nblstm._timing``): samples of back-to-back calls (>= 0.2 s each),
interleaved peer by peer, the median of the samples, no pause anywhere; a cold single call
after an idle pause is reported apart. ``torch/nblstm`` > 1 means nblstm is faster. Writes
``benchmarks/results/layer_<device>.json``.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

import nblstm
from nblstm import _timing
from nblstm.bench import STEP_LR, environment
from nblstm.training import Adam

CONFIGS = {  # name: (T, B, X, H, num_layers, bidirectional, padded)
    "digits": (8, 64, 8, 64, 1, False, False),
    "adding": (100, 64, 2, 64, 1, False, False),
    "bi2-padded": (50, 32, 64, 128, 2, True, True),
    "mid": (100, 64, 256, 256, 1, False, False),
}


def make_runners(config, dtype, device, torch):
    T, B, X, H, layers, bidirectional, padded = config
    torch_dtype = getattr(torch, np.dtype(dtype).name)
    module = torch.nn.LSTM(X, H, layers, bidirectional=bidirectional, dtype=torch_dtype)
    lstm = nblstm.LSTM.from_torch(module)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, X)).astype(dtype)
    d_out = rng.standard_normal((T, B, H * (2 if bidirectional else 1))).astype(dtype)
    lengths = rng.integers(1, T + 1, size=B) if padded else None
    if padded:
        lengths[0] = T
    if device == "cuda":
        import cupy
        module = module.cuda()
        lstm.to("cuda")
        x_nb, d_out_nb = cupy.asarray(x), cupy.asarray(d_out)
        x_t, d_out_t = torch.tensor(x, device="cuda"), torch.tensor(d_out, device="cuda")

        def sync():
            cupy.cuda.get_current_stream().synchronize()
            torch.cuda.synchronize()
    else:
        x_nb, d_out_nb = x, d_out
        x_t, d_out_t = torch.tensor(x), torch.tensor(d_out)

        def sync():
            pass
    lengths_t = None if lengths is None else torch.tensor(lengths)

    def torch_forward(x_in):
        if lengths_t is None:
            return module(x_in)[0]
        packed = torch.nn.utils.rnn.pack_padded_sequence(x_in, lengths_t, enforce_sorted=False)
        return torch.nn.utils.rnn.pad_packed_sequence(module(packed)[0], total_length=T)[0]

    optimizer = Adam(lstm.parameters(), lr=STEP_LR)
    torch_optimizer = torch.optim.Adam(module.parameters(), lr=STEP_LR)

    def nblstm_inference():
        lstm(x_nb, lengths=lengths)
        sync()

    def nblstm_training(step=False):
        _, _, cache = lstm.forward(x_nb, lengths=lengths, train=True)
        _, _, grads = lstm.backward(cache, d_out_nb)
        if step:
            optimizer.step(grads)
        sync()

    def torch_inference():
        with torch.no_grad():
            torch_forward(x_t)
        sync()

    def torch_training(step=False):
        x_in = x_t.detach().requires_grad_(True)
        module.zero_grad(set_to_none=True)
        (torch_forward(x_in) * d_out_t).sum().backward()
        if step:
            torch_optimizer.step()
        sync()

    return {"inference": {"nblstm": nblstm_inference, "torch": torch_inference},
            "training": {"nblstm": nblstm_training, "torch": torch_training},
            "step": {"nblstm": lambda: nblstm_training(True),
                     "torch": lambda: torch_training(True)}}


def measure(runners: dict, samples: int, cold_repeats: int) -> tuple[dict, dict]:
    """Steady-state and cold medians per peer, after one warm-up call each."""
    for run in runners.values():
        run()
    steady = _timing.time_steady(runners, samples)
    cold = _timing.time_cold(runners, cold_repeats) if cold_repeats else {}
    return ({name: _timing.median(v) for name, v in steady.items()},
            {name: _timing.median(v) for name, v in cold.items()})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=7, help="steady-state samples")
    parser.add_argument("--cold", type=int, default=3, help="cold single calls per peer")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/)")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(os.cpu_count())  # the thread count OpenBLAS uses by default
    rows = []
    print(f"{'config':<12} {'dtype':<8} {'pass':<10} {'nblstm ms':>10} {'torch ms':>10} "
          f"{'torch/nblstm':>13} {'cold nb ms':>11} {'cold torch':>11}")
    for name, config in CONFIGS.items():
        for dtype in args.dtypes:
            runners = make_runners(config, np.dtype(dtype), args.device, torch)
            for pass_name, peers in runners.items():
                times, cold = measure(peers, args.repeats, args.cold)
                ratio = times["torch"] / times["nblstm"]
                rows.append({"config": name, "shape": dict(zip(
                    ("T", "B", "X", "H", "num_layers", "bidirectional", "padded"), config)),
                    "dtype": dtype, "pass": pass_name, "seconds": times, "cold_seconds": cold,
                    "torch_over_nblstm": ratio})
                cold_cells = "".join(f" {cold[p] * 1e3:>11.2f}" for p in ("nblstm", "torch")
                                     if p in cold)
                print(f"{name:<12} {dtype:<8} {pass_name:<10} {times['nblstm'] * 1e3:>10.2f} "
                      f"{times['torch'] * 1e3:>10.2f} {ratio:>13.2f}{cold_cells}", flush=True)
    document = {"device": args.device, "environment": environment(),
                "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                "timing": "steady state: median of --repeats interleaved samples of "
                          "back-to-back calls >= 0.2 s each; cold: one call after 0.5 s idle",
                "repeats": args.repeats, "rows": rows}
    if args.device == "cuda":
        document["gpu"] = torch.cuda.get_device_name()
    out = Path(args.out or Path(__file__).parent / "results" / f"layer_{args.device}.json")
    out.write_text(json.dumps(document, indent=1, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
