"""The adding problem (Hochreiter & Schmidhuber 1997) with an LSTM: sequences of T=100
(value, marker) pairs, target the sum of the two marked values. Predicting the mean gives an
MSE of 1/6; the LSTM gets below 0.01 by remembering the marked values across ~50 steps.
The same as ``nblstm demo adding``; the code is in ``nblstm/demos.py`` (run_adding).

    pip install ".[examples]"     # in the nblstm clone
    python examples/adding.py [--steps 2000] [--seed 0] [--plot adding_loss.png]
"""
import sys

from nblstm.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", "adding", *sys.argv[1:]]))
