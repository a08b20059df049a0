"""Classify scikit-learn's 8x8 handwritten digits with an LSTM (each image read as 8 time
steps of 8 pixels), trained with nblstm's explicit chain: forward, cross-entropy, backward,
Adam. The same as ``nblstm demo digits``; the code is in ``nblstm/demos.py`` (run_digits).

    pip install ".[examples]"     # in the nblstm clone
    python examples/digits.py [--epochs 25] [--seed 0] [--plot digits_loss.png]
"""
import sys

from nblstm.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", "digits", *sys.argv[1:]]))
