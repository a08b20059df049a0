"""The demos (``nblstm demo digits|adding``, ``examples/``): their building blocks against
finite differences and exact formulas, and smoke runs with tiny settings (the full demos
take a minute or more; their measured results are in the README)."""
import sys

import numpy as np
import pytest

from nblstm import cli, demos, training
from _problems import numerical_gradient as finite_difference

pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")


def test_mse_loss_and_its_gradient():
    rng = np.random.default_rng(0)
    prediction, target = rng.standard_normal(7), rng.standard_normal(7)
    loss, grad = training.mse_loss(prediction, target)
    assert loss == pytest.approx(np.mean((prediction - target) ** 2), rel=1e-14)
    numeric = finite_difference(lambda: training.mse_loss(prediction, target)[0], prediction)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-10)
    with pytest.raises(ValueError, match="one shape"):
        training.mse_loss(prediction, target[:3])


def test_linear_head_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    head = training.Linear(4, 3, rng, dtype=np.float64)
    x = rng.standard_normal((5, 4))
    weights = rng.standard_normal((5, 3))  # loss = sum(weights * head(x))
    loss = lambda: float(np.sum(weights * head(x)))
    dx, grads = head.backward(x, weights)
    np.testing.assert_allclose(dx, finite_difference(loss, x), rtol=1e-7, atol=1e-9)
    for name, array in head.parameters().items():
        np.testing.assert_allclose(grads[name], finite_difference(loss, array), rtol=1e-7,
                                   atol=1e-9, err_msg=name)
    np.testing.assert_allclose(head(x), x @ head.weight.T + head.bias)


def test_adding_problem_data():
    rng = np.random.default_rng(2)
    T = 10
    x, y = demos.adding_problem_batch(rng, 20000, T)
    assert x.shape == (20000, T, 2) and y.shape == (20000,) and x.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() <= 1
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :T // 2].sum(axis=1) == 1)  # one marker in each half
    np.testing.assert_allclose(y, (values * markers).sum(axis=1), rtol=1e-6)
    # predicting the mean (1) gives the documented baseline, the variance 1/6
    assert np.mean((y - 1.0) ** 2) == pytest.approx(demos.ADDING_BASELINE_MSE, rel=0.03)
    # seeded: the same generator state gives the same data
    again = demos.adding_problem_batch(np.random.default_rng(2), 20000, T)
    np.testing.assert_array_equal(again[0], x)


def test_digits_demo_smoke(tmp_path):
    pytest.importorskip("sklearn")
    plot = tmp_path / "digits.png"
    settings = dict(hidden_size=16, epochs=1, batch_size=64, lr=2e-2, max_steps=12,
                    plot_path=str(plot), progress=False)
    result = demos.run_digits(**settings)
    assert len(result.losses) == 12
    assert np.mean(result.losses[-3:]) < np.mean(result.losses[:3])  # it learns
    assert result.losses[0] == pytest.approx(np.log(10), rel=0.2)  # starts near chance
    assert 0.2 < result.metric <= 1.0  # better than chance (0.1) after 12 steps
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = result.summary()
    for fragment in ("digits: test accuracy = ", "wall time:", str(plot), "450"):
        assert fragment in summary
    # deterministic: the same seed gives the same run
    again = demos.run_digits(**{**settings, "plot_path": None})
    assert again.losses == result.losses and again.metric == result.metric


def test_adding_demo_smoke(tmp_path):
    plot = tmp_path / "adding.png"
    result = demos.run_adding(T=12, hidden_size=8, steps=40, batch_size=16, lr=1e-2,
                              test_size=64, plot_path=str(plot), progress=False)
    assert len(result.losses) == 40
    # from predicting ~0 (MSE ~ E[y^2] = 7/6) to about the mean
    assert np.mean(result.losses[:5]) > 2 * np.mean(result.losses[-5:])
    assert result.metric < 0.5
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "adding: test MSE = " in result.summary()


def test_demo_command_runs_and_reports(tmp_path, capsys):
    pytest.importorskip("sklearn")
    plot = tmp_path / "curve.png"
    assert cli.main(["demo", "digits", "--epochs", "1", "--plot", str(plot),
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "digits: test accuracy = " in out and "wall time:" in out
    assert plot.exists()


def test_demo_command_without_the_extra_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now fails
    assert cli.main(["demo", "digits"]) == 2
    err = capsys.readouterr().err
    assert "scikit-learn" in err and 'pip install ".[examples]"' in err
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert cli.main(["demo", "adding"]) == 2
    err = capsys.readouterr().err
    assert "tqdm" in err and "scikit-learn" not in err


def test_demo_command_rejects_options_of_the_other_demo(capsys):
    assert cli.main(["demo", "adding", "--epochs", "3"]) == 2
    assert "--epochs applies to 'nblstm demo digits' only" in capsys.readouterr().err
    assert cli.main(["demo", "digits", "--epochs", "0"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["demo", "chess"])


def test_readme_training_loop_runs_and_learns():
    """The README's complete training loop, executed as written."""
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Training: a complete loop"):]
    code = section[section.index("```python") + len("```python"):section.index("```\n")]
    namespace = {}
    exec(compile(code, "README.md (training loop)", "exec"), namespace)
    lstm, W, b, x, y = (namespace[k] for k in ("lstm", "W", "b", "x", "y"))
    out, _ = lstm(x)
    accuracy = np.mean(np.argmax(out[:, -1] @ W + b, axis=1) == y)
    assert accuracy > 0.9  # chance is 0.5; the README states 0.97


def test_example_script_runs_the_demo(tmp_path):
    import subprocess
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "examples" / "adding.py"
    plot = tmp_path / "adding.png"
    result = subprocess.run([sys.executable, str(script), "--steps", "3", "--no-progress",
                             "--plot", str(plot)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "adding: test MSE = " in result.stdout and "training steps: 3" in result.stdout
    assert plot.exists()


def test_the_readme_states_the_demo_defaults_of_the_code():
    """README and ``nblstm demo --help`` quote the demos' defaults: they must be the code's."""
    import inspect
    import re
    import subprocess
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    digits = inspect.signature(demos.run_digits).parameters
    adding = inspect.signature(demos.run_adding).parameters
    digits_text = readme[readme.index("- **digits**"):readme.index("- **adding problem**")]
    adding_text = readme[readme.index("- **adding problem**"):readme.index("### Streaming")]
    assert f"{digits['epochs'].default} epochs of batches of {digits['batch_size'].default}" \
        in digits_text
    assert f"LSTM(8, {digits['hidden_size'].default})" in digits_text
    assert f"(lr {digits['lr'].default:.0e}".replace("e-0", "e-") in digits_text
    assert f"T={adding['T'].default}" in adding_text
    assert f"LSTM(2, {adding['hidden_size'].default})" in adding_text
    assert f"{adding['steps'].default} steps of {adding['batch_size'].default} fresh" \
        in adding_text
    assert f"tested on {adding['test_size'].default} others" in adding_text
    help_text = subprocess.run([sys.executable, "-m", "nblstm.cli", "demo", "--help"],
                               capture_output=True, text=True, timeout=120).stdout
    help_text = re.sub(r"\s+", " ", help_text)
    assert f"training epochs (default: {digits['epochs'].default})" in help_text
    assert f"optimizer steps (default: {adding['steps'].default})" in help_text
