"""Record torch's references for the torch parity tests into ``torch_lstm_2.13.npz``.

Regenerate (from the repository root, with torch 2.13.0 installed; the CPU build is enough)::

    pip install torch==2.13.0
    python tests/torch_fixtures/make_torch_fixtures.py

and commit the new ``tests/torch_fixtures/torch_lstm_2.13.npz``. Regenerate when a case of
``tests/test_torch_parity.py`` or ``tests/test_layer_torch_parity.py`` changes (the cases,
the problems and the torch computations are in ``tests/_torch_fixtures.py``, shared with the
tests), or when ``tests/_problems.py`` changes the seed API's problems. With torch installed
the tests check that the recordings still match live torch.

What is recorded (float64 references, CPU, one thread, fixed seeds: deterministic):
every (shape, T_prime_fraction) of test_lstm_forward_and_backward_match_torch and every
shape of test_lstm_cell_forward_and_backward_match_torch (inputs, the seed's parameters,
a, y, c_n, every gradient); every configuration of the layer test in float32 and float64
and test_float64_acceptance_bound_on_cpu's problem (inputs, the module's weights, out, h_n,
c_n, dx, dh0, dc0, every parameter gradient; float32 problems keep their float32 inputs
and weights, their references are torch's float64 run on those values); torch's version
under ``meta/torch_version``. ``--output PATH`` writes elsewhere (to compare two runs).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: _torch_fixtures

import _torch_fixtures as fx  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=fx.FIXTURE_PATH,
                        help=f"the .npz to write (default: {fx.FIXTURE_PATH})")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print(f"needs torch=={fx.RECORDED_TORCH}: pip install torch=={fx.RECORDED_TORCH}",
              file=sys.stderr)
        return 2
    if torch.__version__.split("+")[0] != fx.RECORDED_TORCH:
        print(f"needs torch=={fx.RECORDED_TORCH} (the file name and the tests say so), "
              f"found {torch.__version__}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # one summation order: reruns give the same numbers
    arrays = fx.record_all()
    output = args.output if args.output.suffix == ".npz" else args.output.with_suffix(".npz")
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **arrays)

    sections = {}
    for name in arrays:
        section = name.split("/")[0]
        sections[section] = sections.get(section, 0) + 1
    cases = {name.rsplit("/", 2)[0] for name in arrays if not name.startswith("meta/")}
    print(f"wrote {output}: {output.stat().st_size} bytes, {len(arrays)} arrays, "
          f"{len(cases)} cases, torch {torch.__version__}, numpy {np.__version__}")
    for section, count in sections.items():
        print(f"  {section}: {count} arrays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
