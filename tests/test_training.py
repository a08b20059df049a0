"""nblstm.training: cross-entropy, SGD, Adam, gradient clipping and the minibatch iterator.

Oracles: a NumPy formula and finite differences (float64) for the loss; torch's
``cross_entropy``, ``optim.SGD``, ``optim.Adam`` and ``clip_grad_norm_`` where torch is
installed. Every helper runs on the parity fixtures (cpu, cuda: simulated or real, cupy), so
the kernels of both backends are checked; shapes stay tiny for the simulator.
"""
import numpy as np
import pytest

from nblstm import training
from nblstm.training import (SGD, Adam, Batcher, clip_grad_norm, iterate_minibatches,
                             softmax_cross_entropy)

#: A small parameter dict with the layouts of an LSTM layer (and one odd shape).
PARAM_SHAPES = {"weight_ih_l0": (8, 3), "weight_hh_l0": (8, 2), "bias_ih_l0": (8,),
                "head": (2, 3, 2)}


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in PARAM_SHAPES.items()}


def make_grad_sequence(dtype, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(s).astype(dtype) for k, s in PARAM_SHAPES.items()}
            for _ in range(steps)]


def reference_cross_entropy(logits, targets):
    """Plain float64 NumPy: mean over rows of logsumexp - logit of the target, and its
    gradient (softmax - onehot) / N."""
    z = logits.astype(np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1))
    n = z.shape[0]
    loss = np.mean(log_sum - shifted[np.arange(n), targets])
    grad = np.exp(shifted - log_sum[:, None])
    grad[np.arange(n), targets] -= 1
    return loss, grad / n


# ------------------------------------------------------------------------ cross-entropy

@pytest.mark.parametrize("shape", [(5, 3), (1, 1), (7, 10)])
def test_cross_entropy_matches_numpy(backend, dtype, shape):
    rng = np.random.default_rng(sum(shape))
    logits = (rng.standard_normal(shape) * 3).astype(dtype.dtype)
    targets = rng.integers(0, shape[1], shape[0])
    logits_before = logits.copy()
    device_logits, device_targets = backend.put(logits), backend.put(targets)
    loss, dlogits = softmax_cross_entropy(device_logits, device_targets)
    ref_loss, ref_grad = reference_cross_entropy(logits, targets)
    assert isinstance(loss, float)
    dtype.assert_output_close(loss, ref_loss, "loss")
    assert type(dlogits) is type(device_logits)
    got = backend.get(dlogits)
    assert got.dtype == dtype.dtype
    dtype.assert_gradient_close(got, ref_grad, "dlogits")
    np.testing.assert_array_equal(backend.get(device_logits), logits_before)  # not modified


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the simulator's inf - inf
@pytest.mark.parametrize("target_dtype", [np.int32, np.int64, np.uint8])
def test_cross_entropy_is_stable_for_huge_logits(backend, target_dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-3e4, 2e4, 2e4], [np.inf, 0.0, 1.0]])
    targets = np.array([1, 2, 0], dtype=target_dtype)
    loss, dlogits = softmax_cross_entropy(backend.put(logits[:2]), backend.put(targets[:2]))
    ref_loss, ref_grad = reference_cross_entropy(logits[:2], targets[:2])
    assert loss == pytest.approx(ref_loss, rel=1e-12)  # (2e4 + log 2) / 2
    np.testing.assert_allclose(backend.get(dlogits), ref_grad, atol=1e-15)
    # an infinite logit gives a NaN loss (inf - inf), not a crash or a silent number
    loss, _ = softmax_cross_entropy(backend.put(logits[2:]), backend.put(targets[2:]))
    assert np.isnan(loss)


def test_cross_entropy_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((9, 4)) * 2).astype(dtype.dtype)
    targets = rng.integers(0, 4, 9)
    loss, dlogits = softmax_cross_entropy(logits, targets)
    t_logits = torch.from_numpy(logits).requires_grad_()
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(targets))
    t_loss.backward()
    dtype.assert_output_close(loss, t_loss.item(), "loss")
    dtype.assert_gradient_close(dlogits, t_logits.grad.numpy(), "dlogits")


def test_cross_entropy_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((4, 5))
    targets = np.array([0, 4, 2, 2])
    _, dlogits = softmax_cross_entropy(logits, targets)
    eps = 1e-6
    numeric = np.zeros_like(logits)
    for index in np.ndindex(*logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (softmax_cross_entropy(plus, targets)[0]
                          - softmax_cross_entropy(minus, targets)[0]) / (2 * eps)
    np.testing.assert_allclose(dlogits, numeric, rtol=1e-7, atol=1e-9)


CROSS_ENTROPY_ERRORS = {
    # name: (logits, targets, exception, fragments)
    "logits 1-D": (np.zeros(3), np.zeros(3, np.int64), ValueError,
                   ["logits must be a 2-D array of shape (N, C)", "(3,)"]),
    "targets 2-D": (np.zeros((3, 2)), np.zeros((3, 1), np.int64), ValueError,
                    ["targets must be a 1-D array of shape (N,)"]),
    "targets float": (np.zeros((3, 2)), np.zeros(3), TypeError,
                      ["targets must hold integer class indices", "float64"]),
    "logits int": (np.zeros((3, 2), np.int64), np.zeros(3, np.int64), TypeError,
                   ["logits has dtype int64"]),
    "length mismatch": (np.zeros((3, 2)), np.zeros(4, np.int64), ValueError,
                        ["targets must have shape (N,) = (3,)", "got (4,)"]),
    "label too large": (np.zeros((3, 2)), np.array([0, 2, 1]), ValueError,
                        ["targets[1] = 2", "0 <= targets < 2"]),
    "label negative": (np.zeros((3, 2)), np.array([0, 1, -1]), ValueError,
                       ["targets[2] = -1", "0 <= targets < 2"]),
    "no rows": (np.zeros((0, 2)), np.zeros(0, np.int64), ValueError, ["at least 1"]),
    "logits a list": ([[0.0, 1.0]], np.zeros(1, np.int64), TypeError,
                      ["logits must be an array", "list"]),
}


@pytest.mark.parametrize("case", sorted(CROSS_ENTROPY_ERRORS))
def test_cross_entropy_rejects(backend, case):
    logits, targets, error, fragments = CROSS_ENTROPY_ERRORS[case]
    put = lambda a: backend.put(a) if isinstance(a, np.ndarray) else a
    with pytest.raises(error) as info:
        softmax_cross_entropy(put(logits), put(targets))
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"


def test_mixed_host_and_device_arguments_are_refused(backend):
    if backend.name == "cpu":
        pytest.skip("needs a device backend")
    logits, targets = np.zeros((2, 3)), np.zeros(2, np.int64)
    with pytest.raises(TypeError, match="targets on the host"):
        softmax_cross_entropy(backend.put(logits), targets)
    params = make_params(np.float64)
    with pytest.raises(TypeError, match="on the host"):
        SGD({k: backend.put(v) for k, v in params.items()}, lr=0.1).step(params)
    with pytest.raises(TypeError, match="on the host"):
        Batcher(backend.put(logits), targets, batch_size=1)


# ---------------------------------------------------------------------------- optimizers

def run_ours(backend, make_optimizer, params, grad_sequence):
    """Our optimizer on the backend; returns the final parameters (host) and checks that
    the arrays given to it are the ones updated (in place)."""
    device_params = {k: backend.put(v.copy()) for k, v in params.items()}  # cpu: no copy
    originals = dict(device_params)
    optimizer = make_optimizer(device_params)
    for grads in grad_sequence:
        device_grads = {k: backend.put(v) for k, v in grads.items()}
        before = {k: backend.get(v).copy() for k, v in device_grads.items()}
        optimizer.step(device_grads)
        for k in grads:  # gradients are never modified
            np.testing.assert_array_equal(backend.get(device_grads[k]), before[k])
    assert all(device_params[k] is originals[k] for k in params)
    return {k: backend.get(v) for k, v in device_params.items()}


def run_torch(torch, make_optimizer, params, grad_sequence):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    optimizer = make_optimizer(list(tensors.values()))
    for grads in grad_sequence:
        for k, t in tensors.items():
            t.grad = torch.from_numpy(grads[k].copy())
        optimizer.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


OPTIMIZER_SETTINGS = {
    # name: (ours, torch's name, settings)
    "SGD plain": (SGD, "SGD", dict(lr=0.1)),
    "SGD weight decay": (SGD, "SGD", dict(lr=0.05, weight_decay=0.3)),
    "SGD momentum": (SGD, "SGD", dict(lr=0.1, momentum=0.9)),
    "SGD nesterov + decay": (SGD, "SGD", dict(lr=0.02, momentum=0.8, weight_decay=0.01,
                                              nesterov=True)),
    "Adam defaults": (Adam, "Adam", dict()),
    "Adam tuned": (Adam, "Adam", dict(lr=0.03, betas=(0.8, 0.95), eps=1e-6)),
    "Adam weight decay": (Adam, "Adam", dict(lr=0.01, weight_decay=0.1)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZER_SETTINGS))
def test_optimizer_matches_torch(backend, dtype, name):
    """Four steps with the same gradients as torch's optimizer: same parameters."""
    torch = pytest.importorskip("torch")
    ours, torch_name, settings = OPTIMIZER_SETTINGS[name]
    params = make_params(dtype.dtype)
    grads = make_grad_sequence(dtype.dtype, steps=4)
    got = run_ours(backend, lambda p: ours(p, **settings), params, grads)
    ref = run_torch(torch, lambda p: getattr(torch.optim, torch_name)(p, **settings), params,
                    grads)
    for k in params:
        dtype.assert_output_close(got[k], ref[k], f"{name} {k}")
        assert not np.allclose(got[k], params[k])  # it did move


def test_adam_first_step_moves_each_entry_by_lr():
    """With bias correction, Adam's first step is ``lr * grad / (|grad| + eps)``."""
    params = {"w": np.array([1.0, -2.0, 3.0])}
    grad = np.array([5.0, -0.001, 1e3])
    Adam(params, lr=0.01).step({"w": grad})
    np.testing.assert_allclose(params["w"], [1.0, -2.0, 3.0] - 0.01 * grad / (abs(grad) + 1e-8),
                               rtol=1e-14)


def test_learning_rate_can_change_between_steps():
    params = {"w": np.zeros(2)}
    optimizer = SGD(params, lr=1.0)
    optimizer.step({"w": np.ones(2)})
    optimizer.lr = 0.5
    optimizer.step({"w": np.ones(2)})
    np.testing.assert_array_equal(params["w"], [-1.5, -1.5])


OPTIMIZER_ERRORS = {
    # name: (constructor, grads given to step or None, exception, fragments)
    "params a list": (lambda p, put: SGD(list(p.values()), lr=0.1), None, TypeError,
                      ["params must be a dict"]),
    "params empty": (lambda p, put: Adam({}), None, ValueError, ["params is empty"]),
    "param int": (lambda p, put: SGD({**p, "n": put(np.zeros(3, np.int64))}, lr=0.1), None, TypeError,
                  ["params['n'] has dtype int64"]),
    "param not contiguous": (lambda p, put: SGD({"w": put(np.zeros((4, 6)))[:, ::2]}, lr=0.1), None,
                             ValueError, ["params['w'] must be C-contiguous"]),
    "negative lr": (lambda p, put: SGD(p, lr=-0.1), None, ValueError, ["lr must be >= 0", "-0.1"]),
    "lr a string": (lambda p, put: Adam(p, lr="0.1"), None, TypeError, ["lr must be a real number"]),
    "beta of 1": (lambda p, put: Adam(p, betas=(0.9, 1.0)), None, ValueError,
                  ["betas[1] must be >= 0.0 and < 1.0", "1.0"]),
    "nesterov without momentum": (lambda p, put: SGD(p, lr=0.1, nesterov=True), None, ValueError,
                                  ["nesterov=True needs momentum > 0"]),
    "grads a list": (lambda p, put: SGD(p, lr=0.1), [], TypeError, ["grads must be a dict"]),
    "missing grad": (lambda p, put: SGD(p, lr=0.1), {"weight_ih_l0": np.zeros((8, 3))}, ValueError,
                     ["grads has missing key(s) 'weight_hh_l0'", "expected exactly the keys"]),
    "extra grad": (lambda p, put: Adam(p), "extra", ValueError, ["unexpected key(s) 'bias_hh_l0'"]),
    "grad wrong shape": (lambda p, put: Adam(p), "shape", ValueError,
                         ["grads['head'] must have the shape of params['head'], (2, 3, 2)",
                          "got (2, 3)"]),
    "grad wrong dtype": (lambda p, put: SGD(p, lr=0.1), "dtype", TypeError,
                         ["grads['head'] has dtype float32; expected float64"]),
    "grad not an array": (lambda p, put: SGD(p, lr=0.1), "list", TypeError,
                          ["grads['head'] must be an array", "list"]),
}


@pytest.mark.parametrize("case", sorted(OPTIMIZER_ERRORS))
def test_optimizers_reject(backend, case):
    make, grads, error, fragments = OPTIMIZER_ERRORS[case]
    host_params = make_params(np.float64)
    good = {k: np.ones_like(v) for k, v in host_params.items()}
    variants = {"extra": {**good, "bias_hh_l0": np.zeros(8)},
                "shape": {**good, "head": np.zeros((2, 3))},
                "dtype": {**good, "head": good["head"].astype(np.float32)},
                "list": {**good, "head": good["head"].tolist()}}
    grads = variants.get(grads, grads) if isinstance(grads, str) else grads
    put = lambda a: backend.put(a) if isinstance(a, np.ndarray) else a
    params = {k: backend.put(v) for k, v in host_params.items()}
    before = {k: backend.get(v).copy() for k, v in params.items()}
    with pytest.raises(error) as info:
        optimizer = make(params, backend.put)
        optimizer.step({k: put(v) for k, v in grads.items()} if isinstance(grads, dict) else grads)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    for k, v in params.items():  # nothing was updated
        np.testing.assert_array_equal(backend.get(v), before[k])


# ------------------------------------------------------------------------------ clipping

@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(backend, dtype, max_norm):
    torch = pytest.importorskip("torch")
    grads = make_grad_sequence(dtype.dtype, steps=1)[0]
    device = {k: backend.put(v.copy()) for k, v in grads.items()}  # cpu: no copy
    total = clip_grad_norm(device, max_norm)
    tensors = [torch.zeros(v.shape, dtype=torch.from_numpy(v).dtype, requires_grad=True)
               for v in grads.values()]
    for t, v in zip(tensors, grads.values()):
        t.grad = torch.from_numpy(v.copy())
    ref_total = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    assert isinstance(total, float)
    dtype.assert_output_close(total, ref_total.item(), "total norm")
    for (k, v), t in zip(device.items(), tensors):
        dtype.assert_output_close(backend.get(v), t.grad.numpy(), f"clipped {k}")
    clipped = np.sqrt(sum(np.sum(backend.get(v).astype(np.float64) ** 2) for v in device.values()))
    assert clipped == pytest.approx(min(max_norm, total), rel=1e-5)


def test_clip_grad_norm_of_nonfinite_gradients_follows_torch():
    torch = pytest.importorskip("torch")
    for bad in (np.nan, np.inf):
        grads = {"a": np.array([1.0, bad]), "b": np.array([2.0])}
        total = clip_grad_norm(grads, 1.0)
        tensors = [torch.zeros(2, dtype=torch.float64, requires_grad=True),
                   torch.zeros(1, dtype=torch.float64, requires_grad=True)]
        tensors[0].grad = torch.tensor([1.0, bad], dtype=torch.float64)
        tensors[1].grad = torch.tensor([2.0], dtype=torch.float64)
        ref = torch.nn.utils.clip_grad_norm_(tensors, 1.0).item()
        np.testing.assert_array_equal(total, ref)
        np.testing.assert_array_equal(grads["a"], tensors[0].grad.numpy())
        np.testing.assert_array_equal(grads["b"], tensors[1].grad.numpy())


def test_clip_grad_norm_rejects_bad_input():
    with pytest.raises(TypeError, match="grads must be a dict"):
        clip_grad_norm([np.ones(2)], 1.0)
    with pytest.raises(ValueError, match="max_norm must be >= 0"):
        clip_grad_norm({"a": np.ones(2)}, -1.0)
    with pytest.raises(ValueError, match="max_norm must be >= 0.*nan"):
        clip_grad_norm({"a": np.ones(2)}, float("nan"))
    with pytest.raises(ValueError, match=r"grads\['a'\] must be C-contiguous"):
        clip_grad_norm({"a": np.ones((3, 2)).T}, 1.0)
    with pytest.raises(TypeError, match=r"grads\['a'\] has dtype int64"):
        clip_grad_norm({"a": np.ones(2, np.int64)}, 1.0)


# ------------------------------------------------------------------------------ batching

def collect(batcher_or_iterator, backend):
    return [tuple(backend.get(a) for a in batch) for batch in batcher_or_iterator]


def test_batcher_covers_every_sample_once_per_epoch_and_keeps_rows_aligned(backend):
    n = 11
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n) * 10
    batcher = Batcher(backend.put(x), backend.put(y), batch_size=4, seed=7)
    assert len(batcher) == 3
    epochs = [collect(batcher, backend) for _ in range(2)]
    for epoch in epochs:
        assert [len(b[0]) for b in epoch] == [4, 4, 3]  # last partial batch kept
        xs = np.concatenate([b[0] for b in epoch])
        ys = np.concatenate([b[1] for b in epoch])
        assert sorted(ys.tolist()) == list(range(0, 10 * n, 10))
        np.testing.assert_array_equal(xs, x[ys // 10])  # rows stay paired
        assert xs.dtype == np.float32 and ys.dtype == y.dtype
    assert not np.array_equal(epochs[0][0][1], epochs[1][0][1])  # a new order each epoch
    # same seed, same sequence of batches; another seed, another one
    again = Batcher(backend.put(x), backend.put(y), batch_size=4, seed=7)
    for first, second in zip(epochs, [collect(again, backend) for _ in range(2)]):
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a[1], b[1])
    other = collect(iterate_minibatches(x, y, batch_size=4, seed=8), BatchesOnCpu)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(epochs[0], other))


class BatchesOnCpu:
    get = staticmethod(np.asarray)


def test_batcher_without_shuffle_and_with_drop_last():
    x = np.arange(10).reshape(5, 2)
    batches = collect(iterate_minibatches(x, batch_size=2, shuffle=False, drop_last=True),
                      BatchesOnCpu)
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[0][0], x[:2])
    np.testing.assert_array_equal(batches[1][0], x[2:4])
    assert len(Batcher(x, batch_size=2, drop_last=False)) == 3
    # batches are copies: changing one leaves the data alone
    batch = next(iterate_minibatches(x, batch_size=5, shuffle=False))[0]
    batch[:] = -1
    assert x.min() == 0


def test_batcher_rejects_bad_input():
    with pytest.raises(TypeError, match="batch_size must be an int"):
        Batcher(np.zeros(3), batch_size=2.0)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        Batcher(np.zeros(3), batch_size=0)
    with pytest.raises(ValueError, match="arrays\\[0\\] has 3, arrays\\[1\\] has 4"):
        Batcher(np.zeros(3), np.zeros(4), batch_size=2)
    with pytest.raises(TypeError, match="arrays\\[1\\] must be an array"):
        Batcher(np.zeros(3), [1, 2, 3], batch_size=2)
    with pytest.raises(TypeError, match="at least one array"):
        Batcher(batch_size=2)
    with pytest.raises(ValueError, match="no samples"):
        Batcher(np.zeros((0, 2)), batch_size=2)


def test_training_module_is_exported():
    import nblstm
    assert nblstm.training is training


# ------------------------------------------------------------------ with the LSTM layer

def test_optimizer_step_then_forward_uses_the_updated_weights(backend):
    """The optimizer updates ``lstm.parameters()`` in place and the next forward sees it:
    no stale packed or cached weights, on either backend."""
    from nblstm import LSTM
    rng = np.random.default_rng(5)
    T, B, X, H = 3, 2, 3, 2
    x_host = rng.standard_normal((T, B, X))
    lstm = LSTM(X, H, dtype=np.float64, seed=0)
    reference = LSTM(X, H, dtype=np.float64, seed=0)  # gets the expected weights by hand
    if backend.name != "cpu":
        lstm.to("cuda")
    x = backend.put(x_host)
    before, _ = lstm(x)  # a first call, as a cache or packed copy would be made here
    out, _, cache = lstm.forward(x, train=True)
    d_out = backend.put(rng.standard_normal((T, B, H)))
    _, _, grads = lstm.backward(cache, d_out)
    params = lstm.parameters()
    identities = {k: id(v) for k, v in params.items()}
    SGD(params, lr=0.5).step(grads)
    assert {k: id(v) for k, v in lstm.parameters().items()} == identities
    for key, value in reference.parameters().items():
        value -= 0.5 * backend.get(grads[key])
        np.testing.assert_allclose(backend.get(lstm.parameters()[key]), value, rtol=1e-12,
                                   atol=1e-12, err_msg=key)
    after, _ = lstm(x)
    expected, _ = reference(x_host)
    assert not np.allclose(backend.get(after), backend.get(before))
    np.testing.assert_allclose(backend.get(after), expected, rtol=1e-10, atol=1e-12)
