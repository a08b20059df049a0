"""The torch references of the torch parity tests: computed by live torch, or recorded.

``tests/test_torch_parity.py`` (seed API vs ``torch.nn.LSTM`` / ``LSTMCell``) and
``tests/test_layer_torch_parity.py`` (``nblstm.LSTM`` vs ``torch.nn.LSTM``) take their inputs
and torch's outputs and gradients from here, as a ``Reference``:

- with torch installed (``LIVE``), computed by torch now, exactly as the tests always did;
- without torch, read from ``torch_fixtures/torch_lstm_2.13.npz``, recorded from torch 2.13
  (CPU) by ``torch_fixtures/make_torch_fixtures.py`` with the same functions.

Each test module also has a test (skipped without torch) that the recordings still match
live torch within the dtype tolerances: never bitwise, since torch's (oneDNN's) results
differ in the last bits between CPU instruction sets.

A ``Reference`` is flat ``{name: array}`` in groups: ``input/`` (the problem), ``weight/``
(the seed's parameters or the torch module's weights), ``output/`` (torch's outputs),
``grad/`` (gradients of the loss with respect to inputs and states; in the seed API every
gradient) and ``weight_grad/`` (the torch module's parameter gradients). In the file each is
stored under a case prefix: ``seed_lstm/3-10-7-5-2/frac1.0/output/a``,
``layer/L2-bi-bf-len-state/float64/weight_grad/weight_ih_l0``, ...

float32: the seed API's references are float64 torch runs whatever the dtype (the tests cast
the float64 problem to float32), as before. The layer test's float32 problem is a float32
torch module (torch's float32 initialisation) with float32 inputs; live, it is compared with
torch's float32 run, as before; recorded, the float32 inputs and weights are stored as they
are and the reference is torch's *float64* run on exactly those values (upcast), so the
recorded float32 comparison is against a more accurate reference under the same float32
tolerances.
"""
import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from _problems import cell_problem, sequence_problem

FIXTURE_PATH = Path(__file__).resolve().parent / "torch_fixtures" / "torch_lstm_2.13.npz"
#: The torch the fixture file was recorded with (``make_torch_fixtures.py`` refuses others).
RECORDED_TORCH = "2.13.0"
REGENERATE = "python tests/torch_fixtures/make_torch_fixtures.py (needs torch==2.13.0)"


def _import_torch():
    """torch, or None when it cannot be imported."""
    try:
        import torch
    except ImportError:
        return None
    return torch


torch = _import_torch()
#: True: the tests compare with torch now; False: with the recordings.
LIVE = torch is not None


def _torch():
    """torch, for the functions that need it (ImportError without it)."""
    if torch is None:
        raise ImportError("torch is not installed: the live torch references need it")
    return torch


# ---------------------------------------------------------------------- the cases

#: test_lstm_forward_and_backward_match_torch: (n_x, m, T, n_a, n_y) x T_prime_fraction
SEQUENCE_SHAPES = [(3, 10, 7, 5, 2), (1, 1, 1, 1, 1), (8, 6, 12, 16, 4)]
T_PRIME_FRACTIONS = [1.0, 0.5]
#: test_lstm_cell_forward_and_backward_match_torch: (n_x, m, n_a, n_y)
CELL_SHAPES = [(3, 10, 5, 2), (2, 1, 1, 3)]


@dataclass(frozen=True)
class Config:
    """One ``torch.nn.LSTM`` configuration of the layer parity test."""
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    lengths: tuple | None = None
    given_state: bool = False
    bias: bool = True
    T: int = 4
    B: int = 3
    X: int = 3
    H: int = 2

    @property
    def id(self) -> str:
        return (f"L{self.num_layers}{'-bi' if self.bidirectional else ''}"
                f"{'-bf' if self.batch_first else ''}{'-len' if self.lengths else ''}"
                f"{'-state' if self.given_state else ''}{'' if self.bias else '-nobias'}")

    @property
    def x_shape(self) -> tuple:
        return (self.B, self.T, self.X) if self.batch_first else (self.T, self.B, self.X)


# The acceptance case first: 2-layer bidirectional batch_first with lengths and a state.
ACCEPTANCE = Config(num_layers=2, bidirectional=True, batch_first=True, lengths=(4, 1, 3),
                    given_state=True)
CONFIGS = [
    ACCEPTANCE,
    Config(),
    Config(given_state=True),
    Config(num_layers=3),
    Config(bidirectional=True),
    Config(batch_first=True, lengths=(2, 4, 3)),
    Config(num_layers=2, lengths=(3, 3, 1), given_state=True),
    Config(num_layers=3, bidirectional=True, lengths=(1, 4, 2), bias=False),
    Config(bidirectional=True, T=1, B=1, X=1, H=1, given_state=True),
]
#: test_float64_acceptance_bound_on_cpu's problem: (config, dtype, seed)
ACCEPTANCE_BOUND_CASE = (ACCEPTANCE, "float64", 3)
#: Every layer problem recorded: (config, dtype name, seed)
LAYER_CASES = ([(config, name, 0) for name in ("float32", "float64") for config in CONFIGS]
               + [ACCEPTANCE_BOUND_CASE])


def sequence_prefix(shape, T_prime_fraction) -> str:
    return f"seed_lstm/{'-'.join(map(str, shape))}/frac{T_prime_fraction}"


def cell_prefix(shape) -> str:
    return f"seed_cell/{'-'.join(map(str, shape))}"


def layer_prefix(config: Config, dtype, seed: int = 0) -> str:
    return f"layer/{config.id}/{'' if seed == 0 else f'seed{seed}/'}{np.dtype(dtype).name}"


def case_id(config: Config, dtype, seed: int = 0) -> str:
    """A test id for a layer problem: ``float32-L1``, ``float64-L2-bi-bf-len-state-seed3``."""
    return f"{np.dtype(dtype).name}-{config.id}{'' if seed == 0 else f'-seed{seed}'}"


# ---------------------------------------------------------------------- references

@dataclass
class Reference:
    """A problem with torch's answers (module docstring): ``reference["output/a"]``."""
    source: str
    arrays: dict
    module: Any = field(default=None, repr=False)  # the live torch module (layer, live only)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    def group(self, group: str) -> dict:
        """``{name: array}`` of one group, in recorded (torch's) order."""
        start = group + "/"
        return {name[len(start):]: value for name, value in self.arrays.items()
                if name.startswith(start)}

    # the layer problem
    @property
    def state(self):
        return (self["input/h0"], self["input/c0"]) if "input/h0" in self else None

    @property
    def d_state(self):
        return self["input/d_h_n"], self["input/d_c_n"]

    @property
    def lengths(self):
        return self.arrays.get("input/lengths")


def live_source() -> str:
    return f"torch {_torch().__version__}"


@functools.lru_cache(maxsize=1)
def _recorded_arrays() -> dict:
    with np.load(FIXTURE_PATH, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    for value in arrays.values():
        value.setflags(write=False)
    return arrays


def recorded_torch_version() -> str:
    return str(_recorded_arrays()["meta/torch_version"])


def recorded(prefix: str) -> Reference:
    """The recorded case under ``prefix`` (copies: tests may write to them)."""
    start = prefix + "/"
    arrays = {name[len(start):]: value.copy() for name, value in _recorded_arrays().items()
              if name.startswith(start)}
    if not arrays:
        raise KeyError(f"{FIXTURE_PATH.name} has no case {prefix!r}: regenerate it with "
                       f"{REGENERATE}")
    return Reference(f"recorded torch {recorded_torch_version()} ({FIXTURE_PATH.name})", arrays)


def recorded_layer(config: Config, dtype, seed: int = 0) -> Reference:
    reference = recorded(layer_prefix(config, dtype, seed))
    lengths = reference.lengths
    recorded_lengths = None if lengths is None else tuple(int(n) for n in lengths)
    if reference["input/x"].shape != config.x_shape or recorded_lengths != config.lengths:
        raise ValueError(f"{FIXTURE_PATH.name}: {layer_prefix(config, dtype, seed)} was recorded "
                         f"for another configuration than {config}: regenerate it with "
                         f"{REGENERATE}")
    return reference


def sequence_reference(shape, T_prime_fraction) -> Reference:
    if LIVE:
        return live_sequence(shape, T_prime_fraction)
    return recorded(sequence_prefix(shape, T_prime_fraction))


def cell_reference(shape) -> Reference:
    return live_cell(shape) if LIVE else recorded(cell_prefix(shape))


def layer_reference(config: Config, dtype, seed: int = 0) -> Reference:
    return live_layer(config, dtype, seed) if LIVE else recorded_layer(config, dtype, seed)


def assert_recorded_matches(recorded_ref: Reference, live_ref: Reference, dtype_case) -> None:
    """Every recorded array against its live counterpart, within ``dtype_case``'s tolerances
    (a ``DtypeCase`` of ``tests/conftest.py``): gradients with the gradient bound, the rest
    (inputs, weights, outputs) with the output bound."""
    assert list(recorded_ref.arrays) == list(live_ref.arrays), (
        f"the recorded arrays differ from live torch's: regenerate with {REGENERATE}")
    for name, live in live_ref.arrays.items():
        what = f"{name} ({recorded_ref.source} vs {live_ref.source})"
        if name.split("/")[0].endswith("grad"):
            dtype_case.assert_gradient_close(recorded_ref[name], live, what)
        else:
            dtype_case.assert_output_close(recorded_ref[name], live, what)


# ---------------------------------------------------------------------- the seed API in torch

SEED_GATES = ("i", "f", "c", "o")  # torch's (i, f, g, o)


def load_seed_weights(module, parameters, n_a):
    """Copy the seed's weights into a torch LSTM (layer 0) or LSTMCell."""
    torch = _torch()
    suffix = "" if isinstance(module, torch.nn.LSTMCell) else "_l0"
    fused = {
        "weight_hh": np.concatenate([parameters["W" + g][:, :n_a] for g in SEED_GATES]),
        "weight_ih": np.concatenate([parameters["W" + g][:, n_a:] for g in SEED_GATES]),
        "bias_ih": np.concatenate([parameters["b" + g][:, 0] for g in SEED_GATES]),
    }
    with torch.no_grad():
        for name, value in fused.items():
            getattr(module, name + suffix).copy_(torch.from_numpy(value))
        getattr(module, "bias_hh" + suffix).zero_()


def torch_grads_as_seed(weight_ih_grad, weight_hh_grad, bias_grad, n_a):
    """torch's fused gradients -> the seed's dW*, db* (n_a, n_a + n_x), (n_a, 1)."""
    out = {}
    for k, g in enumerate(SEED_GATES):
        rows = slice(k * n_a, (k + 1) * n_a)
        out["dW" + g] = np.concatenate([weight_hh_grad[rows], weight_ih_grad[rows]], axis=1)
        out["db" + g] = bias_grad[rows].reshape(n_a, 1)
    return out


def live_sequence(shape, T_prime_fraction) -> Reference:
    """``lstm_forward`` / ``lstm_backward``'s problem and torch's float64 answers: the loss is
    ``sum(a[:, :, :T'] * da)``; ``output/c_n`` is the last time step's cell state."""
    torch = _torch()
    n_x, m, T, n_a, n_y = shape
    T_prime = max(1, int(T * T_prime_fraction))
    prob = sequence_problem(n_x, m, T, n_a, n_y, seed=T + n_a, dtype=np.float64)
    x, a0, params = prob["x"], prob["a0"], prob["parameters"]
    da = prob["da"][:, :, :T_prime]

    lstm = torch.nn.LSTM(n_x, n_a, dtype=torch.float64)
    load_seed_weights(lstm, params, n_a)
    tx = torch.from_numpy(x.transpose(2, 1, 0).copy()).requires_grad_()
    th0 = torch.from_numpy(a0.T.copy()[None]).requires_grad_()
    out, (_, c_n) = lstm(tx, (th0, torch.zeros_like(th0)))
    logits = out @ torch.from_numpy(params["Wy"]).T + torch.from_numpy(params["by"][:, 0])
    ty = torch.softmax(logits, dim=-1)
    loss = (out[:T_prime] * torch.from_numpy(da.transpose(2, 1, 0).copy())).sum()
    loss.backward()
    ref_grads = torch_grads_as_seed(lstm.weight_ih_l0.grad.numpy(), lstm.weight_hh_l0.grad.numpy(),
                                    lstm.bias_ih_l0.grad.numpy(), n_a)
    ref_grads["dx"] = tx.grad.numpy().transpose(2, 1, 0)[:, :, :T_prime]
    ref_grads["da0"] = th0.grad.numpy()[0].T

    arrays = {"input/x": x, "input/a0": a0, "input/da": np.ascontiguousarray(da)}
    arrays.update(("weight/" + k, v) for k, v in params.items())
    arrays["output/a"] = out.detach().numpy().transpose(2, 1, 0)
    arrays["output/y"] = ty.detach().numpy().transpose(2, 1, 0)
    arrays["output/c_n"] = c_n.detach().numpy()[0].T
    arrays.update(("grad/" + k, v) for k, v in ref_grads.items())
    return Reference(live_source(), {k: np.ascontiguousarray(v) for k, v in arrays.items()})


def live_cell(shape) -> Reference:
    """``lstm_cell_forward`` / ``lstm_cell_backward``'s problem and torch's float64 answers:
    the loss is ``sum(a_next * da_next) + sum(c_next * dc_next)``."""
    torch = _torch()
    n_x, m, n_a, n_y = shape
    prob = cell_problem(n_x, m, n_a, n_y, seed=n_x * m, dtype=np.float64)
    params = prob["parameters"]
    cell = torch.nn.LSTMCell(n_x, n_a, dtype=torch.float64)
    load_seed_weights(cell, params, n_a)
    tx = torch.from_numpy(prob["xt"].T.copy()).requires_grad_()
    th = torch.from_numpy(prob["a_prev"].T.copy()).requires_grad_()
    tc = torch.from_numpy(prob["c_prev"].T.copy()).requires_grad_()
    h1, c1 = cell(tx, (th, tc))
    loss = (h1 * torch.from_numpy(prob["da_next"].T.copy())).sum() + \
           (c1 * torch.from_numpy(prob["dc_next"].T.copy())).sum()
    loss.backward()
    ref = torch_grads_as_seed(cell.weight_ih.grad.numpy(), cell.weight_hh.grad.numpy(),
                              cell.bias_ih.grad.numpy(), n_a)
    ref.update(dxt=tx.grad.numpy().T, da_prev=th.grad.numpy().T, dc_prev=tc.grad.numpy().T)

    arrays = {"input/" + k: prob[k] for k in ("xt", "a_prev", "c_prev", "da_next", "dc_next")}
    arrays.update(("weight/" + k, v) for k, v in params.items())
    arrays["output/a_next"] = h1.detach().numpy().T
    arrays["output/c_next"] = c1.detach().numpy().T
    arrays.update(("grad/" + k, v) for k, v in ref.items())
    return Reference(live_source(), {k: np.ascontiguousarray(v) for k, v in arrays.items()})


# ---------------------------------------------------------------------- the layer in torch

def torch_run(module, x, state, lengths, d_out, d_state):
    """torch's outputs and gradients: ``out, h_n, c_n, dx, dh0, dc0, {name: grad}``."""
    torch = _torch()
    x_t = torch.tensor(x, requires_grad=True)
    state_t = tuple(torch.tensor(s, requires_grad=True) for s in state) if state else None
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x_t, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False)
        out_packed, (h_n, c_n) = module(packed, state_t)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out_packed, batch_first=module.batch_first, total_length=x.shape[1 if module.batch_first else 0])
    else:
        out, (h_n, c_n) = module(x_t, state_t)
    loss = ((out * torch.tensor(d_out)).sum() + (h_n * torch.tensor(d_state[0])).sum()
            + (c_n * torch.tensor(d_state[1])).sum())
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    d_h0, d_c0 = (s.grad.numpy() for s in state_t) if state_t else (None, None)
    return (out.detach().numpy(), h_n.detach().numpy(), c_n.detach().numpy(), x_t.grad.numpy(),
            d_h0, d_c0, grads)


def make_problem(config: Config, dtype, seed=0):
    """A torch module of ``dtype`` (torch's initialisation after ``manual_seed(seed)``) and
    the inputs ``x, state, d_out, d_state`` of ``dtype``."""
    torch = _torch()
    torch.manual_seed(seed)
    module = torch.nn.LSTM(config.X, config.H, config.num_layers, bias=config.bias,
                           batch_first=config.batch_first, bidirectional=config.bidirectional,
                           dtype=getattr(torch, np.dtype(dtype).name))
    rng = np.random.default_rng(seed)
    D = 2 if config.bidirectional else 1
    x_shape = config.x_shape
    out_shape = x_shape[:2] + (D * config.H,)
    state_shape = (config.num_layers * D, config.B, config.H)
    x = rng.standard_normal(x_shape).astype(dtype)
    state = (tuple(rng.standard_normal(state_shape).astype(dtype) for _ in range(2))
             if config.given_state else None)
    d_out = rng.standard_normal(out_shape).astype(dtype)
    d_state = tuple(rng.standard_normal(state_shape).astype(dtype) for _ in range(2))
    return module, x, state, d_out, d_state


def live_layer(config: Config, dtype, seed: int = 0, reference_dtype=None) -> Reference:
    """``make_problem``'s problem and torch's answers, computed in ``reference_dtype``
    (default: ``dtype``, as the live test does; the recordings use float64: the module and
    inputs are upcast exactly)."""
    torch = _torch()
    module, x, state, d_out, d_state = make_problem(config, dtype, seed)
    lengths = None if config.lengths is None else np.array(config.lengths)
    run_dtype = np.dtype(dtype if reference_dtype is None else reference_dtype)
    run_module = module
    if run_dtype != np.dtype(dtype):
        run_module = copy.deepcopy(module).to(getattr(torch, run_dtype.name))
    cast = lambda a: a.astype(run_dtype)  # noqa: E731
    out, h_n, c_n, dx, dh0, dc0, grads = torch_run(
        run_module, cast(x), None if state is None else tuple(cast(s) for s in state), lengths,
        cast(d_out), tuple(cast(s) for s in d_state))

    arrays = {"input/x": x}
    if state is not None:
        arrays["input/h0"], arrays["input/c0"] = state
    arrays["input/d_out"] = d_out
    arrays["input/d_h_n"], arrays["input/d_c_n"] = d_state
    if lengths is not None:
        arrays["input/lengths"] = lengths
    arrays.update(("weight/" + name, p.detach().numpy().copy())
                  for name, p in module.named_parameters())
    arrays.update({"output/out": out, "output/h_n": h_n, "output/c_n": c_n, "grad/dx": dx})
    if state is not None:
        arrays["grad/dh0"], arrays["grad/dc0"] = dh0, dc0
    arrays.update(("weight_grad/" + name, g) for name, g in grads.items())
    return Reference(live_source(), arrays, module=module)


# ---------------------------------------------------------------------- recording

def record_all() -> dict:
    """Every case, flat ``{prefix/group/name: array}`` (float64 references), for the file."""
    torch = _torch()
    arrays = {"meta/torch_version": np.array(torch.__version__),
              "meta/numpy_version": np.array(np.__version__)}

    def add(prefix, reference):
        arrays.update((f"{prefix}/{name}", np.ascontiguousarray(value))
                      for name, value in reference.arrays.items())

    for shape in SEQUENCE_SHAPES:
        for fraction in T_PRIME_FRACTIONS:
            add(sequence_prefix(shape, fraction), live_sequence(shape, fraction))
    for shape in CELL_SHAPES:
        add(cell_prefix(shape), live_cell(shape))
    for config, dtype, seed in LAYER_CASES:
        add(layer_prefix(config, dtype, seed),
            live_layer(config, dtype, seed, reference_dtype=np.float64))
    return arrays
