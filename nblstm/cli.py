"""The ``nblstm`` command: ``nblstm info``, ``nblstm check``, ``nblstm bench``,
``nblstm demo digits|adding`` and ``nblstm infer``."""
import argparse
import inspect
import json
import os
import sys
from typing import Callable

import numpy as np

from . import reference, seed
from ._dispatch import backend_named, convert, cuda_unavailable_reason

#: Same bounds as the test suite: float64 within 1e-9, float32 within 1e-5 (relative to
#: 1 + max|reference|) of the float64 reference.
CHECK_TOLERANCE = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-5}


def available_backends() -> dict[str, str]:
    """Backend name -> "available: <where>" or "not available: <why>"."""
    reason = cuda_unavailable_reason()
    if reason is None:
        from .kernels.cuda.target import device_description
        cuda_status = f"available: {device_description()}"
    else:
        cuda_status = f"not available: {reason}"
    return {"cpu": "available", "cuda": cuda_status}


def info_document() -> dict:
    """Everything ``nblstm info`` shows, as plain data (``nblstm info --json``)."""
    from . import _environment as env
    return {"versions": env.versions(), "cpu": env.cpu_description(),
            "numba_threading": env.numba_threading(), "cpu_gemm": env.cpu_gemm(),
            "cuda_recurrence": env.cuda_recurrence(), "blas": env.blas_pools(),
            "backends": available_backends()}


def info(as_json: bool = False) -> int:
    from . import _environment as env
    document = info_document()
    if as_json:
        print(json.dumps(document, indent=1, default=str))
        return 0
    version, cpu, threading = document["versions"], document["cpu"], document["numba_threading"]
    rows = [(name, version[name]) for name in ("nblstm", "python", "platform")]
    rows.append(("cpu", f"{cpu['model']} ({cpu['machine']}, {cpu['logical_cpus']} logical CPUs, "
                        f"{' '.join(cpu['simd']) or 'no AVX2/AVX-512/NEON'})"))
    rows += [(name, version[name]) for name in ("numpy", "numba", "llvmlite", "scipy",
                                                 "numba-cuda")]
    rows.append(("numba threading layer",
                 f"configured {threading['configured']!r}, available: "
                 f"{', '.join(threading['available'])} ({threading['threads']} threads)"))
    rows.append(("CPU GEMM", document["cpu_gemm"]))
    rows.append(("CUDA recurrence", document["cuda_recurrence"]))
    rows += [("BLAS", env.describe_blas_pool(pool)) for pool in document["blas"]]
    rows += [(f"backend {name}", status) for name, status in document["backends"].items()]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def output_path_problem(path: str | os.PathLike | None) -> str | None:
    """Why ``path`` cannot be written (checked before any work), or None."""
    if path is None:
        return None
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"{path} is a directory"
    if not os.path.isdir(directory):
        return f"the folder {directory} does not exist"
    if not os.access(directory, os.W_OK):
        return f"the folder {directory} is not writable"
    return None


def _refuse_output(option: str, path: str | None) -> bool:
    """Print why ``path`` (given with ``option``) cannot be written; True if it cannot."""
    problem = output_path_problem(path)
    if problem:
        print(f"nblstm: error: {option} {path}: {problem}", file=sys.stderr)
    return problem is not None


def _random_problem(rng) -> tuple:
    """A float64 seed-API problem: ``x, a0, parameters, da``."""
    n_x, m, T, n_a, n_y = 7, 5, 6, 9, 4  # small: the CUDA simulator runs threads as Python
    params = {}
    for gate in "fico":
        params["W" + gate] = rng.standard_normal((n_a, n_a + n_x)) * 0.4
        params["b" + gate] = rng.standard_normal((n_a, 1)) * 0.5
    params["Wy"] = rng.standard_normal((n_y, n_a)) * 0.4
    params["by"] = rng.standard_normal((n_y, 1)) * 0.5
    return (rng.standard_normal((n_x, m, T)), rng.standard_normal((n_a, m)), params,
            rng.standard_normal((n_a, m, T)))


def check(implementation=seed) -> int:
    """Forward and backward of every available backend against the NumPy reference.

    Prints a table of max errors and returns a non-zero exit status on any mismatch.
    ``implementation`` is the module under test (the seed API; replaceable for tests).
    """
    rng = np.random.default_rng(2024)
    x, a0, params, da = _random_problem(rng)
    ref_a, ref_y, ref_c, ref_caches = reference.lstm_forward(x, a0, params)
    ref_grads = reference.lstm_backward(da, ref_caches)
    failures = 0
    print(f"{'backend':<8} {'dtype':<8} {'quantity':<9} {'max abs error':>14} {'bound':>10}  result")
    for backend, status in available_backends().items():
        if not status.startswith("available"):
            print(f"{backend:<8} {'-':<8} {'-':<9} {'-':>14} {'-':>10}  skipped ({status})")
            continue
        for dtype in CHECK_TOLERANCE:
            cast: Callable = lambda v: v.astype(dtype)
            # backend= moves the NumPy inputs to the backend and the results back
            a, y, c, caches = implementation.lstm_forward(
                cast(x), cast(a0), {k: cast(v) for k, v in params.items()}, backend=backend)
            grads = implementation.lstm_backward(cast(da), caches, backend=backend)
            results = [("a", a, ref_a), ("y", y, ref_y), ("c", c, ref_c)]
            results += [(key, grads[key], ref_grads[key]) for key in ref_grads]
            for name, got, ref in results:
                got = np.asarray(got, dtype=np.float64)
                bound = CHECK_TOLERANCE[dtype] * (1 + np.max(np.abs(ref)))
                error = np.max(np.abs(got - ref)) if got.shape == ref.shape else np.inf
                ok = bool(error <= bound)  # NaN fails too
                failures += not ok
                print(f"{backend:<8} {dtype.name:<8} {name:<9} {error:>14.3e} {bound:>10.1e}  "
                      f"{'ok' if ok else 'MISMATCH'}")
    failures += _check_layer()
    print("all checks passed" if not failures else f"{failures} check(s) FAILED")
    return 1 if failures else 0


def _check_layer() -> int:
    """``nblstm.LSTM`` (2 layers, bidirectional, a padded batch, a given state) on every
    available backend against ``reference.layer_forward``; prints rows, returns failures."""
    from .layers import LSTM
    rng = np.random.default_rng(7)
    T, B, X, H = 5, 3, 4, 3
    x = rng.standard_normal((T, B, X))
    state = tuple(rng.standard_normal((4, B, H)) for _ in range(2))
    lengths = np.array([5, 2, 4])
    failures = 0
    for backend, status in available_backends().items():
        if not status.startswith("available"):
            continue
        for dtype in CHECK_TOLERANCE:
            lstm = LSTM(X, H, num_layers=2, bidirectional=True, dtype=dtype, seed=1)
            expected = reference.layer_forward(lstm.parameters(), 2, True, x, state, lengths)
            if backend == "cuda":
                lstm.to("cuda")
            inputs = [value.astype(dtype) for value in (x, *state)]
            if backend == "cuda":
                inputs = [backend_named("cuda").adopt(value) for value in inputs]
            out, (h_n, c_n) = lstm(inputs[0], (inputs[1], inputs[2]), lengths)
            for name, got, ref in zip(("LSTM out", "LSTM h_n", "LSTM c_n"), (out, h_n, c_n),
                                      expected):
                got = np.asarray(convert(got, "numpy"), dtype=np.float64)
                bound = CHECK_TOLERANCE[dtype] * (1 + np.max(np.abs(ref)))
                error = np.max(np.abs(got - ref)) if got.shape == ref.shape else np.inf
                ok = bool(error <= bound)
                failures += not ok
                print(f"{backend:<8} {dtype.name:<8} {name:<9} {error:>14.3e} {bound:>10.1e}  "
                      f"{'ok' if ok else 'MISMATCH'}")
    return failures


def bench(args: argparse.Namespace) -> int:
    """A quick version of the benchmark grid: table, optional JSON and PNG."""
    from . import bench as harness
    shapes = {"quick": harness.QUICK_SHAPES, "batch": harness.BATCH_SHAPES,
              "full": [s for group in harness.GRID.values() for s in group]}.get(
        args.grid, harness.GRID.get(args.grid))
    if _refuse_output("--json", args.json) or _refuse_output("--plot", args.plot):
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib: pip install '.[bench]' in the nblstm clone", file=sys.stderr)
            return 2
    document = harness.run_benchmark(shapes, dtypes=args.dtypes, passes=args.passes,
                                     repeats=args.repeats,
                                     include_reference=not args.no_reference,
                                     min_sample_s=args.min_sample, cold_repeats=args.cold)
    print(harness.format_table(document))
    if args.json:
        harness.save_json(document, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        harness.plot(document, args.plot)
        print(f"wrote {args.plot}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Run one of the demos of ``nblstm.demos``; exit status 2 (and the pip command to run)
    when the optional packages of the ``examples`` extra are missing."""
    from . import demos
    missing = demos.missing_packages(args.demo)
    if missing:
        print(f"nblstm demo {args.demo} needs {', '.join(missing)}, which "
              f"{'is' if len(missing) == 1 else 'are'} not installed. Install the examples "
              f"extra:\n    {demos.EXTRAS_HINT}", file=sys.stderr)
        return 2
    if args.seed < 0:
        print(f"--seed must be a non-negative integer, got {args.seed}", file=sys.stderr)
        return 2
    options = {"seed": args.seed, "plot_path": args.plot or f"{args.demo}_loss.png",
               "progress": not args.no_progress}
    if _refuse_output("--plot", options["plot_path"]):
        return 2
    for option, applies_to in (("epochs", "digits"), ("steps", "adding")):
        value = getattr(args, option)
        if value is None:
            continue
        if args.demo != applies_to:
            print(f"--{option} applies to 'nblstm demo {applies_to}' only", file=sys.stderr)
            return 2
        if value < 1:
            print(f"--{option} must be at least 1, got {value}", file=sys.stderr)
            return 2
        options[option] = value
    result = demos.DEMOS[args.demo](**options)
    print(result.summary())
    return 0


def infer(args: argparse.Namespace) -> int:
    """Batch inference over an array file (``nblstm.inference``); bad files -> exit status 2
    with the reason on stderr, and no output file."""
    from .inference import infer_file
    if _refuse_output("-o", args.output):
        return 2
    try:
        result = infer_file(args.model, args.inputs, args.output, batch_size=args.batch_size,
                            scheduler=args.scheduler, progress=not args.quiet)
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as error:
        print(f"nblstm infer: error: {error}", file=sys.stderr)
        return 2
    rate = result.sequences / result.seconds if result.seconds > 0 else float("inf")
    print(f"wrote {result.output_path}: {result.dtype.name} {result.shape}, "
          f"{result.sequences} sequences in {result.blocks} blocks, {result.seconds:.2f} s "
          f"({rate:.0f} sequences/s)")
    return 0


DESCRIPTION = ("Numba-compiled LSTM kernels for NumPy and GPU arrays (CPU and CUDA "
               "backends), checked against a NumPy reference and torch.nn.LSTM.")
EPILOG = "Run 'nblstm COMMAND --help' for the options of a command."


def _default(function: Callable, parameter: str):
    """The default of ``function``'s ``parameter``: help texts quote the code's defaults."""
    return inspect.signature(function).parameters[parameter].default


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from . import bench as harness
    from . import demos
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="nblstm", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"nblstm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info_parser = commands.add_parser(
        "info", help="versions, BLAS, numba threading layer, backends",
        description="Versions, CPU, BLAS libraries, numba threading layer, the CPU GEMM plan "
                    "and the available backends: what to paste into a bug report.")
    info_parser.add_argument("--json", action="store_true",
                             help="print one JSON document instead of the table")
    commands.add_parser(
        "check", help="compare every available backend with the NumPy reference",
        description="Forward and backward of the course API and of nblstm.LSTM on every "
                    "available backend, float32 and float64, against the NumPy reference: a "
                    "table of max errors; exit status 1 on any mismatch.")
    quick = ", ".join(str(shape) for shape in harness.QUICK_SHAPES)
    bench_parser = commands.add_parser(
        "bench", help="time nblstm against torch.nn.LSTM, ONNX Runtime, the NumPy reference and "
             "the GEMM floor",
        formatter_class=formatter,
        description="Time nblstm's kernels against torch.nn.LSTM and ONNX Runtime (when "
                    "installed), the NumPy reference and the GEMM floor on shapes (T, B, X, H); prints a table of "
                    f"medians and ratios. The quick grid is {quick}.")
    bench_parser.add_argument("--grid", default="quick",
                              choices=["quick", "tiny", "mid", "large", "full", "batch"],
                              help="shapes to run: quick = tiny + mid; full = tiny + mid + large; "
                                   "batch = T=50, X=64, B 256/1024/4096 x H 64/128/256 "
                                   "(many sequences)")
    bench_parser.add_argument("--repeats", type=int, default=5,
                              help="steady-state samples per peer (median), each of "
                                   "back-to-back calls lasting >= --min-sample seconds")
    bench_parser.add_argument("--min-sample", type=float, default=harness.MIN_SAMPLE_S,
                              help="seconds a steady-state sample lasts at least")
    bench_parser.add_argument("--cold", type=int, default=harness.COLD_REPEATS,
                              help="cold single calls per peer (after an idle pause; 0: none)")
    bench_parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                              choices=["float32", "float64"], help="dtypes to time")
    bench_parser.add_argument("--passes", nargs="+", default=list(harness.PASSES),
                              choices=list(harness.PASSES),
                              help="passes to time: inference, training (forward + backward), "
                                   "step (training + an Adam step)")
    bench_parser.add_argument("--no-reference", action="store_true",
                              help="skip the (slow) NumPy reference")
    bench_parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    bench_parser.add_argument("--plot", metavar="PATH", help="write a PNG chart of the ratios")
    digits_epochs = _default(demos.run_digits, "epochs")
    adding_steps = _default(demos.run_adding, "steps")
    demo_parser = commands.add_parser(
        "demo", help="train an LSTM on a real task: the digits or the adding problem",
        description="Train an LSTM with nblstm.training on a real task, with a progress bar, "
                    "a summary and a PNG of the loss curve (needs the examples extra).")
    demo_parser.add_argument("demo", choices=["digits", "adding"],
                             help="digits: scikit-learn's 8x8 digits, 8 steps of 8 features; "
                                  "adding: the adding problem, T=100")
    demo_parser.add_argument("--seed", type=int, default=0,
                             help="seed of data and weights (default: 0)")
    demo_parser.add_argument("--plot", metavar="PATH",
                             help="where to save the loss curve (default: ./<demo>_loss.png)")
    demo_parser.add_argument("--epochs", type=int,
                             help=f"digits: training epochs (default: {digits_epochs})")
    demo_parser.add_argument("--steps", type=int,
                             help=f"adding: optimizer steps (default: {adding_steps})")
    demo_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    infer_parser = commands.add_parser(
        "infer", help="run a saved LSTM (or an ONNX model's LSTM) over a .npy file of "
                      "sequences, block by block",
        formatter_class=formatter,
        description="Run a model saved with LSTM.save (.npz) or an ONNX model's LSTM nodes "
                    "(.onnx, as LSTM.from_onnx reads them) over every sequence of a .npy file, "
                    "block by block (files larger than memory work), locally or on a Dask "
                    "cluster. Bad files: exit status 2 and nothing written.")
    infer_parser.add_argument("model", help="an LSTM.save file (.npz) or an ONNX model (.onnx)")
    infer_parser.add_argument("inputs", help=".npy array in the model's layout: (T, B, X), or "
                                             "(B, T, X) for a batch_first model")
    infer_parser.add_argument("-o", "--output", required=True,
                              help="the .npy file to write: (T, B, D*H) or (B, T, D*H)")
    infer_parser.add_argument("--batch-size", type=int, default=256,
                              help="sequences per block")
    infer_parser.add_argument("--scheduler", metavar="ADDRESS",
                              help="run the blocks on this Dask scheduler (tcp://host:8786); "
                                   "needs the dask extra: pip install '.[dask]'")
    infer_parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        return bench(args)
    if args.command == "demo":
        return demo(args)
    if args.command == "infer":
        return infer(args)
    if args.command == "info":
        return info(as_json=args.json)
    return check()


if __name__ == "__main__":
    sys.exit(main())
