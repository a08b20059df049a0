"""The two demos of ``nblstm demo`` (also ``examples/digits.py`` and ``examples/adding.py``).

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (no download). Each image is
  read row by row: 8 time steps of 8 features. One LSTM layer, a linear head on the last
  step's output, softmax cross-entropy, Adam. Reports the accuracy on a held-out split.
- ``adding``: the adding problem of Hochreiter & Schmidhuber (1997). Each sequence has T
  steps of (value, marker); values are uniform in [0, 1], exactly two markers are 1 (one in
  each half) and the target is the sum of the two marked values. Predicting the mean (1)
  gives an MSE of 1/6 = 0.167; solving it needs memory across ~T/2 steps. One LSTM layer,
  a linear head on the last step's output, mean squared error, Adam, gradient clipping.

Both are written as the explicit chain of ``nblstm.training`` (forward, loss, head
backward, ``lstm.backward``, optimizer step): no autograd. They run on NumPy arrays (the
CPU backend), show a progress bar (tqdm), save a PNG of the loss curve (matplotlib) and
return a ``DemoResult`` with the measured wall time.

The optional packages come with ``pip install ".[examples]"`` (in the clone); ``missing_packages``
tells which are absent.
"""
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._files import atomic_open
from ._progress import progress_bar
from .training import (Adam, Batcher, Linear, clip_grad_norm, mse_loss,  # noqa: F401
                       softmax_cross_entropy)

EXTRAS_HINT = 'pip install ".[examples]"  (in the nblstm clone)'

#: Python module -> the package that provides it, per demo.
REQUIRED_PACKAGES = {
    "digits": {"sklearn": "scikit-learn", "matplotlib": "matplotlib", "tqdm": "tqdm"},
    "adding": {"matplotlib": "matplotlib", "tqdm": "tqdm"},
}

#: MSE of always predicting 1 (the mean of a sum of two U(0, 1) values): the variance 2/12.
ADDING_BASELINE_MSE = 1.0 / 6.0


def missing_packages(demo: str) -> list[str]:
    """Names of the packages ``demo`` needs that cannot be imported here."""
    missing = []
    for module, package in REQUIRED_PACKAGES[demo].items():
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    return missing


@dataclass
class DemoResult:
    """What a demo measured. ``metric`` is the test accuracy (digits) or test MSE
    (adding); ``losses`` the training loss of every optimizer step."""
    name: str
    metric_name: str
    metric: float
    losses: list = field(repr=False)
    wall_time_s: float
    plot_path: str | None
    details: dict

    def summary(self) -> str:
        lines = [f"{self.name}: {self.metric_name} = {self.metric:.4f}"]
        lines += [f"  {key}: {value}" for key, value in self.details.items()]
        lines.append(f"  training steps: {len(self.losses)}, final training loss "
                     f"{self.losses[-1]:.4f}" if self.losses else "  no training steps")
        lines.append(f"  wall time: {self.wall_time_s:.1f} s (data, JIT compilation, "
                     f"training and evaluation)")
        if self.plot_path:
            lines.append(f"  loss curve: {self.plot_path}")
        return "\n".join(lines)


def _last_step_forward(lstm, head: Linear, x: np.ndarray):
    """Training forward of LSTM + head on the last step: ``(prediction, out, cache)``.
    x (B, T, X), batch first."""
    out, _, cache = lstm.forward(x, train=True)
    return head(out[:, -1]), out, cache


def _last_step_backward(lstm, head: Linear, out, cache, d_prediction) -> dict:
    """Backward of ``_last_step_forward``: the gradients of the LSTM and the head."""
    d_last, head_grads = head.backward(out[:, -1], d_prediction)
    d_out = np.zeros_like(out)  # only the last step feeds the loss
    d_out[:, -1] = d_last
    _, _, lstm_grads = lstm.backward(cache, d_out)
    return {**lstm_grads, **head_grads}


def plot_losses(losses: list, path: str, title: str, ylabel: str,
                baseline: tuple[float, str] | None = None, log_scale: bool = False) -> str:
    """Save the training-loss curve (and an optional horizontal baseline) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    steps = np.arange(1, len(losses) + 1)
    axes.plot(steps, losses, linewidth=0.7, alpha=0.5, label="training loss (per step)")
    window = max(1, len(losses) // 50)
    if window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        axes.plot(steps[window - 1:], smooth, linewidth=1.8, label=f"mean of {window} steps")
    if baseline is not None:
        axes.axhline(baseline[0], color="gray", linestyle="--", label=baseline[1])
    if log_scale:
        axes.set_yscale("log")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    with atomic_open(path, "wb") as file:
        figure.savefig(file, format=os.path.splitext(os.fspath(path))[1][1:] or "png")
    return path


# --------------------------------------------------------------------------------- digits

def load_digits_sequences(test_fraction: float, seed: int) -> tuple:
    """scikit-learn's digits as sequences: ``x_train, x_test (N, 8, 8)`` float32 in [0, 1]
    (image rows as time steps, batch first) and integer labels ``y_train, y_test``;
    a stratified, seeded split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8), pixel values 0..16
    return train_test_split(images, digits.target.astype(np.int64), test_size=test_fraction,
                            random_state=seed, stratify=digits.target)


def run_digits(hidden_size: int = 64, epochs: int = 25, batch_size: int = 32,
               lr: float = 1e-2, seed: int = 0, test_fraction: float = 0.25,
               plot_path: str | None = "digits_loss.png", progress: bool = True,
               max_steps: int | None = None) -> DemoResult:
    """Train LSTM(8, hidden_size) + Linear(hidden_size, 10) on the digits; returns the
    held-out accuracy. ``max_steps`` stops early (smoke tests)."""
    from . import LSTM
    start = time.perf_counter()
    x_train, x_test, y_train, y_test = load_digits_sequences(test_fraction, seed)
    rng = np.random.default_rng(seed)
    lstm = LSTM(8, hidden_size, batch_first=True, seed=seed)
    head = Linear(hidden_size, 10, rng)
    optimizer = Adam({**lstm.parameters(), **head.parameters()}, lr=lr)
    batches = Batcher(x_train, y_train, batch_size=batch_size, seed=seed)
    total = len(batches) * epochs if max_steps is None else min(max_steps, len(batches) * epochs)
    losses = []
    with progress_bar(total, "digits", unit="step", enabled=progress) as bar:
        for _ in range(epochs):
            for x, y in batches:
                if len(losses) == total:
                    break
                logits, out, cache = _last_step_forward(lstm, head, x)
                loss, dlogits = softmax_cross_entropy(logits, y)
                optimizer.step(_last_step_backward(lstm, head, out, cache, dlogits))
                losses.append(loss)
                bar.update()
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
    out, _ = lstm(x_test)
    predicted = np.argmax(head(out[:, -1]), axis=1)
    accuracy = float(np.mean(predicted == y_test))
    wall = time.perf_counter() - start
    if plot_path:
        plot_losses(losses, plot_path, f"digits: LSTM({hidden_size}) + linear head, "
                    f"test accuracy {accuracy:.3f}", "cross-entropy")
    details = {"test samples": f"{len(y_test)} ({int(np.sum(predicted == y_test))} correct)",
               "training samples": len(y_train),
               "model": f"LSTM(8, {hidden_size}) + Linear({hidden_size}, 10), float32",
               "training": f"{epochs} epochs x {len(batches)} batches of {batch_size}, "
                           f"Adam lr={lr}, seed {seed}"}
    return DemoResult("digits", "test accuracy", accuracy, losses, wall, plot_path, details)


# --------------------------------------------------------------------------------- adding

def adding_problem_batch(rng: np.random.Generator, batch_size: int, T: int,
                         dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``x (batch_size, T, 2)``: (value, marker) per step, values uniform in [0, 1], marker
    1 at one random step of each half and 0 elsewhere; ``y (batch_size,)``: the sum of the
    two marked values."""
    values = rng.uniform(0.0, 1.0, (batch_size, T))
    half = T // 2
    first = rng.integers(0, half, batch_size)
    second = rng.integers(half, T, batch_size)
    markers = np.zeros((batch_size, T))
    rows = np.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=2).astype(dtype)
    y = (values[rows, first] + values[rows, second]).astype(dtype)
    return x, y


def run_adding(T: int = 100, hidden_size: int = 64, steps: int = 1500, batch_size: int = 64,
               lr: float = 1e-2, clip: float = 1.0, forget_bias: float = 1.0, seed: int = 0,
               test_size: int = 1000, plot_path: str | None = "adding_loss.png",
               progress: bool = True) -> DemoResult:
    """Train LSTM(2, hidden_size) + Linear(hidden_size, 1) on fresh seeded batches of the
    adding problem; returns the MSE on a fixed test set of ``test_size`` sequences."""
    from . import LSTM
    start = time.perf_counter()
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    x_test, y_test = adding_problem_batch(test_rng, test_size, T)
    lstm = LSTM(2, hidden_size, batch_first=True, seed=seed)
    # added to the forget gate's bias (gate order i, f, g, o), in place
    lstm.parameters()["bias_ih_l0"][hidden_size:2 * hidden_size] += forget_bias
    head = Linear(hidden_size, 1, train_rng)
    optimizer = Adam({**lstm.parameters(), **head.parameters()}, lr=lr)
    losses = []
    with progress_bar(steps, f"adding T={T}", unit="step", enabled=progress) as bar:
        for _ in range(steps):
            x, y = adding_problem_batch(train_rng, batch_size, T)
            prediction, out, cache = _last_step_forward(lstm, head, x)
            loss, d_prediction = mse_loss(prediction[:, 0], y)
            grads = _last_step_backward(lstm, head, out, cache, d_prediction[:, None])
            clip_grad_norm(grads, clip)
            optimizer.step(grads)
            losses.append(loss)
            bar.update()
            bar.set_postfix(mse=f"{loss:.4f}", refresh=False)
    out, _ = lstm(x_test)
    test_mse, _ = mse_loss(head(out[:, -1])[:, 0], y_test)
    wall = time.perf_counter() - start
    if plot_path:
        plot_losses(losses, plot_path, f"adding problem T={T}: LSTM({hidden_size}), "
                    f"test MSE {test_mse:.4f}", "mean squared error",
                    baseline=(ADDING_BASELINE_MSE, "predict the mean (1/6)"), log_scale=True)
    details = {"baseline (predict the mean)": f"MSE {ADDING_BASELINE_MSE:.4f}",
               "test sequences": test_size,
               "model": f"LSTM(2, {hidden_size}) + Linear({hidden_size}, 1), float32",
               "training": f"{steps} steps x {batch_size} fresh sequences of T={T}, Adam "
                           f"lr={lr}, gradient norm clipped at {clip}, seed {seed}"}
    return DemoResult("adding", "test MSE", test_mse, losses, wall, plot_path, details)


DEMOS: dict[str, Any] = {"digits": run_digits, "adding": run_adding}
