"""The full benchmark grid, results committed under benchmarks/results/.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run_grid.py

(`OPENBLAS_CORETYPE`/`OPENBLAS_L2_SIZE` are set on this project's machines and slow
OpenBLAS ~1.6x: unset them for benchmark runs only, never in tests or CI.)
Writes ``results/grid_<machine>.json`` and ``.png`` and prints the table.
"""
import argparse
import os
from pathlib import Path

from nblstm import bench

RESULTS = Path(__file__).with_name("results")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="cpu", help="suffix of the result files")
    parser.add_argument("--groups", nargs="+", default=list(bench.GRID), choices=list(bench.GRID))
    args = parser.parse_args()
    shapes = [shape for group in args.groups for shape in bench.GRID[group]]
    document = bench.run_benchmark(shapes, repeats=args.repeats)
    print(bench.format_table(document))
    RESULTS.mkdir(exist_ok=True)
    bench.save_json(document, RESULTS / f"grid_{args.name}.json")
    bench.plot(document, str(RESULTS / f"grid_{args.name}.png"))
    print(f"wrote {RESULTS / f'grid_{args.name}.json'} and .png")
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
        print("WARNING: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE were set during this run")


if __name__ == "__main__":
    main()
