"""Training helpers: a loss, two optimizers, gradient clipping and a minibatch iterator.

Small and plain, no autograd: a training step is an explicit chain that you write out,
forward -> loss and its gradient -> backward -> (clip) -> optimizer step. With a linear head
``W (H, C)``, ``b (C,)`` on the last step of a batch-first LSTM::

    out, _, cache = lstm.forward(x, train=True)            # out (B, T, H)
    loss, dlogits = softmax_cross_entropy(out[:, -1] @ W + b, y)
    d_out = np.zeros_like(out)
    d_out[:, -1] = dlogits @ W.T                           # the head's backward
    _, _, grads = lstm.backward(cache, d_out)
    grads.update(W=out[:, -1].T @ dlogits, b=dlogits.sum(axis=0))
    clip_grad_norm(grads, 1.0)
    optimizer.step(grads)        # Adam({**lstm.parameters(), "W": W, "b": b}): in place

Every function works on NumPy arrays (CPU kernels, ``@njit``) and on GPU arrays: CuPy arrays
or numba device arrays (CUDA kernels). The arithmetic runs in ``nblstm.kernels`` (numba
device arrays support no arithmetic of their own), so optimizer state and updates stay on
the device. Host and device arrays mixed in one call raise ``TypeError``.

Semantics follow PyTorch: ``SGD`` and ``Adam`` compute what ``torch.optim.SGD`` /
``torch.optim.Adam`` compute (default dampening / AMSGrad off; weight decay added to the
gradient), ``clip_grad_norm`` is ``torch.nn.utils.clip_grad_norm_`` with the L2 norm, and
``softmax_cross_entropy`` is ``torch.nn.functional.cross_entropy`` with mean reduction.
The test suite checks each against torch.
"""
import math
from collections.abc import Iterator, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np

from ._dispatch import (Backend, array_dtype, array_kind, convert, is_device_array,
                        select_backend)
from ._validate import (check_ndim, check_nonempty, common_float_dtype, describe_shape,
                        key_mismatch)

__all__ = ["softmax_cross_entropy", "mse_loss", "Linear", "SGD", "Adam", "clip_grad_norm",
           "Batcher", "iterate_minibatches"]

#: torch.nn.utils.clip_grad_norm_ divides by ``total_norm + 1e-6``.
CLIP_EPS = 1e-6


# ------------------------------------------------------------------------------ helpers

def _is_c_contiguous(array: Any) -> bool:
    if hasattr(array, "is_c_contiguous"):  # numba device arrays
        return bool(array.is_c_contiguous())
    if array_kind(array) in ("torch", "jax"):  # through their NumPy / numba view
        return _is_c_contiguous(convert(array, "numpy" if not is_device_array(array)
                                        else "numba"))
    return bool(array.flags.c_contiguous)


def _flat_view(array: Any) -> Any:
    """The 1-D view of a C-contiguous array (the same memory: writes reach ``array``)."""
    return array.reshape(int(np.prod(array.shape, dtype=np.int64)))


def _check_real(name: str, value: Any, minimum: float = 0.0, below: float | None = None) -> float:
    """``value`` as a float, with ``minimum <= value`` (and ``value < below`` if given)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    upper = f" and < {below}" if below is not None else ""
    if not (value >= minimum) or (below is not None and not value < below):
        raise ValueError(f"{name} must be >= {minimum}{upper}, got {value!r}")
    return value


def _check_array_dict(name: str, arrays: Any) -> dict:
    """A non-empty mapping of arrays, as a plain dict (same array objects)."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"{name} must be a dict of arrays (name -> array), "
                        f"got {type(arrays).__name__}")
    if not arrays:
        raise ValueError(f"{name} is empty; expected at least one array")
    return dict(arrays)


def _check_writable(name: str, array: Any, why: str) -> None:
    """NumPy arrays can be read-only (``flags.writeable``), JAX arrays always are, torch
    inference tensors refuse in-place updates; CuPy and numba arrays are always writable."""
    kind = array_kind(array)
    if kind == "jax":
        raise TypeError(f"{name} is a JAX array, which is immutable, but is {why}: pass a "
                        f"NumPy, CuPy or torch array")
    if kind == "torch" and array.is_inference():
        raise ValueError(f"{name} is a torch inference tensor, which cannot be {why}: make it "
                         f"outside torch.inference_mode() or pass x.clone()")
    flags = getattr(array, "flags", None) if isinstance(array, np.ndarray) else None
    if flags is not None and not flags.writeable:
        raise ValueError(f"{name} is read-only (flags.writeable is False) but is {why}: "
                         f"pass a writable array (a copy: np.array(a, copy=True))")


#: dtypes the CPU gather kernel compiles for (native byte order; numba has no float16,
#: long double or object arrays): everything else is gathered by NumPy's own indexing.
_KERNEL_GATHER_CHARS = frozenset("?bBhHiIlLqQfdFD")


def _gathered_by_kernel(dtype: np.dtype) -> bool:
    return dtype.isnative and dtype.char in _KERNEL_GATHER_CHARS


def _check_in_place(named: dict[str, Any], how: str) -> None:
    """Arrays a helper will ``how`` (update / scale) in place through flat views: float, one
    dtype each, C-contiguous and writable; every check before anything changes."""
    for name, value in named.items():
        common_float_dtype({name: value})
        _check_contiguous(name, value, f"{how} in place through a flat view")
        _check_writable(name, value, f"{how} in place")


def _check_contiguous(name: str, array: Any, why: str) -> None:
    if not _is_c_contiguous(array):
        strides = (array.stride() if array_kind(array) == "torch"  # in elements, as torch says
                   else tuple(array.strides))
        raise ValueError(f"{name} must be C-contiguous ({why}), got an array with strides "
                         f"{tuple(strides)} for shape {describe_shape(array.shape)}")


# ------------------------------------------------------------------------ cross-entropy

def softmax_cross_entropy(logits: Any, targets: Any) -> tuple[float, Any]:
    """Mean softmax cross-entropy over rows and its gradient.

    logits   (N, C)  float32 or float64: unnormalised class scores, one row per sample
    targets  (N,)    integer class of each row, in ``0..C-1``
    Returns ``(loss, dlogits)``: ``loss`` a Python float,
    ``mean_r(logsumexp(logits[r]) - logits[r, targets[r]])``, and ``dlogits (N, C)``,
    its gradient ``(softmax(logits) - onehot(targets)) / N``, a new array of the logits'
    type and dtype. Numerically stable (row maxima subtracted before ``exp``). Inputs are not
    modified.

    On the GPU the per-row losses (N values) come back to the host to form the float; the
    gradient stays on the device.
    """
    backend, origin = select_backend({"logits": logits, "targets": targets})
    check_ndim("logits", logits, 2, "(N, C)")
    check_nonempty("logits", logits, "(N, C)")
    check_ndim("targets", targets, 1, "(N,)")
    dtype = common_float_dtype({"logits": logits})
    if not np.issubdtype(array_dtype(targets), np.integer):
        raise TypeError(f"targets must hold integer class indices, got dtype "
                        f"{array_dtype(targets)}")
    N, C = (int(n) for n in logits.shape)
    if int(targets.shape[0]) != N:
        raise ValueError(f"targets must have shape (N,) = ({N},) to match logits "
                         f"{describe_shape(logits.shape)}, got {describe_shape(targets.shape)}")
    xp = backend.xp
    dlogits = xp.empty((N, C), dtype=dtype)
    losses = xp.empty((N,), dtype=dtype)
    backend.kernels.softmax_cross_entropy_rows(backend.adopt(logits), backend.adopt(targets),
                                               dlogits, losses, dtype.type(1.0 / N))
    row_losses = convert(losses, "numpy")
    invalid = np.flatnonzero(row_losses < 0)  # the kernel's mark for a label out of range
    if invalid.size:
        r = int(invalid[0])
        label = int(convert(targets, "numpy")[r])
        raise ValueError(f"targets[{r}] = {label} is not a class index for logits with C = {C} "
                         f"columns: expected 0 <= targets < {C} "
                         f"({invalid.size} row(s) out of range)")
    loss = float(row_losses.astype(np.float64).sum() / N)
    return loss, convert(dlogits, origin)


# ------------------------------------------------------------ NumPy head and MSE loss

class Linear:
    """A linear layer ``y = x @ weight.T + bias`` on NumPy arrays, with its backward.

    weight (out_features, in_features) and bias (out_features,), torch's ``nn.Linear``
    layout and initialisation (uniform in +-1/sqrt(in_features)). ``parameters()`` returns
    the live arrays under ``prefix + "weight"`` / ``prefix + "bias"``.
    """

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator,
                 dtype=np.float32, prefix: str = "head."):
        bound = 1.0 / np.sqrt(in_features)
        self.weight = rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype)
        self.bias = rng.uniform(-bound, bound, (out_features,)).astype(dtype)
        self.prefix = prefix

    def parameters(self) -> dict:
        return {self.prefix + "weight": self.weight, self.prefix + "bias": self.bias}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (N, in_features) -> (N, out_features)."""
        return x @ self.weight.T + self.bias

    def backward(self, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, dict]:
        """Given the input ``x`` and ``dy = dLoss/dy (N, out_features)``: ``dLoss/dx`` and
        the parameter gradients (keys of ``parameters()``)."""
        grads = {self.prefix + "weight": dy.T @ x, self.prefix + "bias": dy.sum(axis=0)}
        return dy @ self.weight, grads


def mse_loss(prediction: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over all entries and its gradient ``2 (prediction - target) / N``."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction and target must have one shape, got {prediction.shape} "
                         f"and {target.shape}")
    error = prediction - target
    loss = float(np.mean(error.astype(np.float64) ** 2))
    return loss, (2.0 / error.size) * error


# ---------------------------------------------------------------------------- optimizers

class _Optimizer:
    """Holds the live parameter arrays and checks each ``step``'s gradients against them.

    ``params`` maps names to float32/float64 arrays (C-contiguous, all on one device); the
    optimizer keeps those very objects and updates them in place, so a model whose
    ``parameters()`` returned them sees every step. Replace an array in the model and the
    optimizer keeps updating the old one (as in torch): make a new optimizer then.
    """

    def __init__(self, params: Mapping[str, Any]):
        params = _check_array_dict("params", params)
        named = {f"params[{key!r}]": value for key, value in params.items()}
        self._backend, _ = select_backend(named)
        _check_in_place(named, "updated")
        self.params = params
        self._flat = {key: _flat_view(self._backend.adopt(value)) for key, value in params.items()}
        self.step_count = 0

    @property
    def backend(self) -> Backend:
        return self._backend

    def _zeros_like_flat(self, key: str) -> Any:
        flat = self._flat[key]
        return self._backend.xp.zeros(flat.shape, dtype=flat.dtype)

    def _flat_grads(self, grads: Any) -> dict:
        """``grads`` checked against the parameters, as flat arrays of the parameters'
        backend (non-contiguous gradients are copied; gradients are never modified)."""
        if not isinstance(grads, Mapping):
            raise TypeError(f"grads must be a dict of arrays with the keys of params, "
                            f"got {type(grads).__name__}")
        mismatch = key_mismatch(grads, self.params)
        if mismatch:
            raise ValueError(f"grads has {mismatch}; expected exactly the keys of params: "
                             f"{', '.join(map(repr, self.params))}")
        named = {f"params[{key!r}]": value for key, value in self.params.items()}
        named.update({f"grads[{key!r}]": grads[key] for key in self.params})
        select_backend(named)  # TypeError for a non-array or for host and device mixed
        flat = {}
        for key, param in self.params.items():
            grad = grads[key]
            if array_dtype(grad) != array_dtype(param):
                raise TypeError(f"grads[{key!r}] has dtype {array_dtype(grad)}; expected "
                                f"{array_dtype(param)}, the dtype of params[{key!r}]")
            if tuple(grad.shape) != tuple(param.shape):
                raise ValueError(f"grads[{key!r}] must have the shape of params[{key!r}], "
                                 f"{describe_shape(param.shape)}, got {describe_shape(grad.shape)}")
            flat[key] = _flat_view(self._backend.xp.ascontiguousarray(self._backend.adopt(grad)))
        return flat

    def step(self, grads: Mapping[str, Any]) -> None:
        """One update of every parameter, in place, from ``grads`` (same keys, shapes,
        dtypes and device as the parameters)."""
        flat_grads = self._flat_grads(grads)
        for key, param in self.params.items():  # every check before anything changes
            _check_writable(f"params[{key!r}]", param, "updated in place")
        self.step_count += 1
        for key, param in self._flat.items():
            if param.shape[0]:
                self._update(key, param, flat_grads[key])

    def _update(self, key: str, param: Any, grad: Any) -> None:
        raise NotImplementedError


class SGD(_Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and weight decay, as
    ``torch.optim.SGD`` (dampening 0)::

        g = grad + weight_decay * param
        buf = momentum * buf + g             (buf = g at the first step)
        step = g + momentum * buf  if nesterov  else  buf   (g when momentum == 0)
        param -= lr * step

    ``lr`` may be changed between steps (learning-rate schedules).
    """

    def __init__(self, params: Mapping[str, Any], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        self.lr = _check_real("lr", lr)
        self.momentum = _check_real("momentum", momentum)
        self.weight_decay = _check_real("weight_decay", weight_decay)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
        if nesterov and self.momentum <= 0:
            raise ValueError(f"nesterov=True needs momentum > 0, got momentum={self.momentum!r}")
        self.nesterov = bool(nesterov)
        super().__init__(params)
        self.momentum_buffers: dict = {}

    def _update(self, key: str, param: Any, grad: Any) -> None:
        scalar = np.dtype(param.dtype).type
        kernels = self._backend.kernels
        if self.momentum == 0:
            kernels.sgd_update(param, grad, scalar(self.lr), scalar(self.weight_decay))
            return
        if key not in self.momentum_buffers:
            self.momentum_buffers[key] = self._zeros_like_flat(key)
        kernels.sgd_momentum_update(param, grad, self.momentum_buffers[key], scalar(self.lr),
                                    scalar(self.momentum), scalar(self.weight_decay),
                                    self.nesterov)


class Adam(_Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam`` without AMSGrad; at step ``t``::

        g = grad + weight_decay * param
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        param -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    ``lr`` may be changed between steps (learning-rate schedules).
    """

    def __init__(self, params: Mapping[str, Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.lr = _check_real("lr", lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_check_real("betas[0]", betas[0], below=1.0),
                      _check_real("betas[1]", betas[1], below=1.0))
        self.eps = _check_real("eps", eps)
        self.weight_decay = _check_real("weight_decay", weight_decay)
        super().__init__(params)
        self.exp_avg: dict = {}
        self.exp_avg_sq: dict = {}

    def _update(self, key: str, param: Any, grad: Any) -> None:
        if key not in self.exp_avg:
            self.exp_avg[key] = self._zeros_like_flat(key)
            self.exp_avg_sq[key] = self._zeros_like_flat(key)
        beta1, beta2 = self.betas
        t = self.step_count
        # host-side scalars in float64, in torch's order of operations
        step_size = self.lr / (1 - beta1 ** t)
        bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5
        scalar = np.dtype(param.dtype).type
        self._backend.kernels.adam_update(
            param, grad, self.exp_avg[key], self.exp_avg_sq[key], scalar(step_size),
            scalar(1 - beta1), scalar(beta2), scalar(1 - beta2), scalar(self.eps),
            scalar(self.weight_decay), scalar(bias_correction2_sqrt))


# ------------------------------------------------------------------------------ clipping

def clip_grad_norm(grads: Mapping[str, Any], max_norm: float) -> float:
    """Scale all gradients together, in place, so that their global L2 norm is at most
    ``max_norm``; returns the norm before clipping (a Python float).

    As ``torch.nn.utils.clip_grad_norm_``: ``total = sqrt(sum of squares of every entry)``;
    the arrays are multiplied by ``max_norm / (total + 1e-6)`` unless that factor is
    ``>= 1``. A NaN or infinite norm scales them too (to NaN / zeros), as in torch.
    The arrays must be C-contiguous float arrays on one device.
    """
    grads = _check_array_dict("grads", grads)
    max_norm = _check_real("max_norm", max_norm)
    named = {f"grads[{key!r}]": value for key, value in grads.items()}
    backend, _ = select_backend(named)
    _check_in_place(named, "scaled")
    flat = [_flat_view(backend.adopt(value)) for value in grads.values()]
    flat = [array for array in flat if array.shape[0]]
    total = math.sqrt(sum(backend.kernels.sum_of_squares(array) for array in flat))
    factor = max_norm / (total + CLIP_EPS)
    if not factor >= 1.0:  # also NaN, like torch's clamp(max=1) followed by a multiply
        for array in flat:
            backend.kernels.scale_in_place(array, np.dtype(array.dtype).type(factor))
    return total


# ------------------------------------------------------------------------------ batching

class Batcher:
    """Minibatches of one or more arrays that share their first (sample) axis.

    ``Batcher(x, y, batch_size=32, shuffle=True, seed=0)``: every iteration over it is one
    epoch and yields tuples ``(x_batch, y_batch)`` with the samples of the batch along the
    first axis, in the arrays' type (NumPy, CuPy or numba device arrays, any dtype). Each
    epoch draws a new order from a generator seeded once with ``seed``, so a Batcher made
    with the same seed yields the same sequence of batches. The last, smaller batch is kept
    unless ``drop_last=True``. Batches are new arrays (gathered rows): the inputs are never
    modified.
    """

    def __init__(self, *arrays: Any, batch_size: int, shuffle: bool = True,
                 seed: int | None = None, drop_last: bool = False):
        if not arrays:
            raise TypeError("Batcher needs at least one array")
        if isinstance(batch_size, bool) or not isinstance(batch_size, Integral):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        named = {f"arrays[{k}]": array for k, array in enumerate(arrays)}
        backend, self._origin = select_backend(named)
        for name, array in named.items():
            if len(array.shape) < 1:
                raise ValueError(f"{name} must have at least one axis (the samples), "
                                 f"got a 0-D array")
        n = int(arrays[0].shape[0])
        if n < 1:
            raise ValueError("arrays[0] has no samples (its first axis has length 0)")
        for name, array in named.items():
            if int(array.shape[0]) != n:
                raise ValueError(f"every array must have the same number of samples (first "
                                 f"axis): arrays[0] has {n}, {name} has {int(array.shape[0])}")
        self._backend = backend
        xp = backend.xp
        # (N, rest) contiguous views (a copy only for non-contiguous inputs)
        self._sources = [xp.ascontiguousarray(backend.adopt(array)) for array in arrays]
        self._sources = [(s.reshape(n, int(np.prod(s.shape[1:], dtype=np.int64))), tuple(s.shape[1:]))
                         for s in self._sources]
        self.n_samples = n
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.n_samples // self.batch_size
        return -(-self.n_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple]:
        order = self._rng.permutation(self.n_samples) if self.shuffle else np.arange(self.n_samples)
        xp = self._backend.xp
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size].astype(np.int64)
            device_index = convert(index, self._backend.array_kind)
            batch = []
            for source, tail in self._sources:
                if self._backend.name == "cpu" and not _gathered_by_kernel(source.dtype):
                    out = source[index]  # NumPy's indexing: any dtype, a new array
                else:
                    out = xp.empty((index.shape[0], source.shape[1]), dtype=source.dtype)
                    self._backend.kernels.gather_rows(source, device_index, out)
                batch.append(convert(out.reshape((index.shape[0],) + tail), self._origin))
            yield tuple(batch)


def iterate_minibatches(*arrays: Any, batch_size: int, shuffle: bool = True,
                        seed: int | None = None, drop_last: bool = False) -> Iterator[tuple]:
    """One epoch of ``Batcher(*arrays, ...)``: tuples of batches, samples along axis 0."""
    return iter(Batcher(*arrays, batch_size=batch_size, shuffle=shuffle, seed=seed,
                        drop_last=drop_last))
