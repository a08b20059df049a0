"""``nblstm.LSTM(..., dropout=p)``: torch's semantics (between layers, training forwards only,
inverted scaling), masks from the model's generator, reused by ``backward``, drawn where the
data lives (the same mask on every backend for one generator state)."""
import warnings

import numpy as np
import pytest

import nblstm
from nblstm import ops, reference
from nblstm._dispatch import CPU

X, H = 3, 4


def model(backend=None, **kwargs):
    options = dict(num_layers=3, dtype=np.float64, seed=0, dropout=0.3)
    options.update(kwargs)
    lstm = nblstm.LSTM(X, H, **options)
    return lstm.to("cuda") if backend is not None and backend.name != "cpu" else lstm


def problem(T=3, B=2, seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, X))


def test_training_outputs_differ_from_inference_and_between_calls():
    lstm = model()
    x = problem()
    inference, _ = lstm(x)
    first, _, _ = lstm.forward(x, train=True)
    second, _, _ = lstm.forward(x, train=True)
    assert not np.allclose(first, inference)
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(lstm(x)[0], inference)  # inference is unaffected
    lstm.generator = np.random.default_rng(7)
    again_a, _, _ = lstm.forward(x, train=True)
    lstm.generator = 7  # an integer seeds a new generator
    again_b, _, _ = lstm.forward(x, train=True)
    np.testing.assert_array_equal(again_a, again_b)
    again_c, _, _ = lstm.manual_seed(7).forward(x, train=True)
    np.testing.assert_array_equal(again_a, again_c)


def test_the_seed_seeds_the_masks_and_leaves_the_weights_as_they_were():
    x = problem()
    a, b = model(seed=3), model(seed=3)
    np.testing.assert_array_equal(a.forward(x, train=True)[0], b.forward(x, train=True)[0])
    plain = nblstm.LSTM(X, H, num_layers=3, dtype=np.float64, seed=3)
    for name, value in plain.parameters().items():  # dropout draws from its own stream
        np.testing.assert_array_equal(a.parameters()[name], value)


def test_masks_are_per_element_with_the_right_rate_and_scale():
    """About a fraction p of what each layer passes on is dropped, independently per element,
    and what is kept is scaled by exactly 1/(1-p)."""
    p = 0.3
    lstm = nblstm.LSTM(8, 64, num_layers=3, bidirectional=True, dropout=p, seed=1)
    x = np.random.default_rng(0).standard_normal((50, 16, 8)).astype(np.float32)
    _, _, cache = lstm.forward(x, train=True)
    masks = cache.dropout_masks()
    assert len(masks) == 2 and all(m.shape == (50, 16, 128) for m in masks)
    scale = np.float32(1 / (1 - p))
    for mask in masks:
        assert set(np.unique(mask).tolist()) == {0.0, float(scale)}
        dropped = mask == 0
        assert abs(dropped.mean() - p) < 0.01  # 102,400 elements: ~5 standard deviations
        # per element: no structure along time, batch or feature. The drop rates of the
        # slices along an axis of n elements spread like a binomial's, sqrt(p(1-p)/n): a
        # mask shared along the axis would spread them sqrt(n) times wider
        for axis in range(3):
            n = dropped.shape[axis]
            spread = dropped.mean(axis=axis).std() / np.sqrt(p * (1 - p) / n)
            assert 0.8 < spread < 1.2, (axis, spread)
        a, b = dropped[:, :, :-1].ravel(), dropped[:, :, 1:].ravel()
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.02
    assert (masks[0] != masks[1]).mean() > 0.3  # every layer has its own mask
    # what the next layer reads: the layer's output times its mask
    layer_0 = cache.directions[0]
    outputs = np.concatenate([layer_0[0].h_all, layer_0[1].h_all[::-1]], axis=2)
    np.testing.assert_array_equal(cache.directions[1][0].x, outputs * masks[0])


def test_outputs_and_gradients_equal_a_reference_with_the_same_masks(backend):
    """With the masks fixed: the NumPy reference applying the forward's masks gives its
    outputs; central differences (float64, the generator reseeded before every forward so
    every forward draws the same masks) give its gradients."""
    lstm = model(backend, num_layers=2, bidirectional=True, dropout=0.4)
    put, get = backend.put, backend.get
    x = problem(T=3, B=2)
    lengths = np.array([3, 2])
    d_out = np.random.default_rng(1).standard_normal((3, 2, 2 * H))

    def loss(x_value, parameters=None):
        if parameters is not None:
            for name, value in parameters.items():
                lstm.parameters()[name] = put(value)
        lstm.generator = 11
        out, state, cache = lstm.forward(put(x_value), lengths=lengths, train=True)
        return float(np.sum(get(out) * d_out)), out, state, cache

    _, out, (h_n, c_n), cache = loss(x)
    masks = [get(m) for m in cache.dropout_masks()]
    host_parameters = {name: get(value) for name, value in lstm.parameters().items()}
    ref_out, ref_h, ref_c = reference.layer_forward(host_parameters, 2, True, x, None, lengths,
                                                    dropout_masks=masks)
    np.testing.assert_allclose(get(out), ref_out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(get(h_n), ref_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(get(c_n), ref_c, rtol=0, atol=1e-12)

    dx, _, grads = lstm.backward(cache, put(d_out))
    dx, grads = get(dx), {name: get(g) for name, g in grads.items()}
    rng = np.random.default_rng(2)
    eps = 1e-6
    # the layer-0 parameters and x: their gradients cross the mask between the layers
    direction_x = rng.standard_normal(x.shape)
    direction = {name: rng.standard_normal(v.shape) for name, v in host_parameters.items()
                 if "_l0" in name}
    shifted = []
    for sign in (1, -1):
        moved = {name: host_parameters[name] + sign * eps * direction[name]
                 for name in direction}
        shifted.append(loss(x + sign * eps * direction_x, moved)[0])
    numeric = (shifted[0] - shifted[1]) / (2 * eps)
    expected = np.sum(dx * direction_x) + sum(np.sum(grads[n] * direction[n])
                                              for n in direction)
    assert abs(expected - numeric) <= 1e-7 * (1 + abs(numeric))


def test_backward_uses_each_forwards_own_masks():
    lstm = model()
    x = problem()
    d_out = np.ones((3, 2, H))
    lstm.generator = 1
    _, _, cache_a = lstm.forward(x, train=True)
    _, _, cache_b = lstm.forward(x, train=True)
    grads_b = lstm.backward(cache_b, d_out)[0]
    grads_a = lstm.backward(cache_a, d_out)[0]
    lstm.generator = 1
    np.testing.assert_array_equal(lstm.backward(lstm.forward(x, train=True)[2], d_out)[0],
                                  grads_a)
    assert not np.allclose(grads_a, grads_b)


def test_the_same_generator_state_gives_the_same_masks_on_every_backend(backend):
    lstm = model(num_layers=2, bidirectional=True)
    x = problem()
    lstm.generator = 5
    out_cpu, _, cache = lstm.forward(x, train=True)
    masks_cpu = cache.dropout_masks()
    if backend.name != "cpu":
        lstm.to("cuda")
    lstm.generator = 5
    out, _, cache = lstm.forward(backend.put(x), train=True)
    np.testing.assert_allclose(backend.get(out), out_cpu, rtol=0, atol=1e-12)
    for mask, mask_cpu in zip(cache.dropout_masks(), masks_cpu):
        np.testing.assert_array_equal(backend.get(mask), mask_cpu)


def test_zero_and_one():
    x = problem()
    lstm = model(dropout=0.0)
    np.testing.assert_array_equal(lstm.forward(x, train=True)[0], lstm(x)[0])
    assert lstm.forward(x, train=True)[2].dropout_masks() == []
    lstm.dropout = 1.0  # every layer above the first sees zeros: its bias alone
    _, _, cache = lstm.forward(x, train=True)
    assert all(np.all(m == 0) for m in cache.dropout_masks())
    np.testing.assert_array_equal(cache.directions[1][0].x, 0)


def test_nan_survives_dropout_as_in_torch():
    values = np.array([np.nan, 1.0, np.nan, 2.0] * 64)
    out = ops.dropout(CPU, values, (3, 4), 0.5)
    assert np.isnan(out[np.isnan(values)]).all()  # NaN * 0 is NaN, as torch's x * mask


def test_dropout_is_kept_by_torch_interop_and_files(tmp_path):
    lstm = model(dropout=0.25)
    loaded = nblstm.LSTM.load(lstm.save(tmp_path / "m"))
    assert loaded.dropout == 0.25 and loaded.config() == lstm.config()
    torch = pytest.importorskip("torch")
    module = torch.nn.LSTM(X, H, num_layers=2, dropout=0.3, dtype=torch.float64)
    converted = nblstm.LSTM.from_torch(module)
    assert converted.dropout == 0.3
    assert converted.to_torch().dropout == 0.3
    module.eval()  # torch in eval mode is nblstm's inference: no dropout
    x = torch.randn(5, 2, X, dtype=torch.float64)
    with torch.no_grad():
        expected = module(x)[0].numpy()
    np.testing.assert_allclose(converted(x.numpy())[0], expected, rtol=0, atol=1e-12)
    module.train()
    torch.manual_seed(0)
    with torch.no_grad():
        torch_train = module(x)[0].numpy()
    assert not np.allclose(torch_train, expected)  # the same semantics on torch's side


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.1", True, None, float("nan")])
def test_bad_dropout_is_a_value_error(bad):
    with pytest.raises(ValueError, match="dropout must be a number in"):
        nblstm.LSTM(X, H, num_layers=2, dropout=bad)
    lstm = nblstm.LSTM(X, H, num_layers=2)
    with pytest.raises(ValueError, match="dropout"):
        lstm.dropout = bad


def test_one_layer_with_dropout_warns_as_torch_does():
    with pytest.warns(UserWarning, match="num_layers=1"):
        nblstm.LSTM(X, H, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nblstm.LSTM(X, H, num_layers=2, dropout=0.5)
        nblstm.LSTM(X, H)


def test_generator_must_be_a_numpy_generator():
    lstm = model()
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        lstm.generator = np.random.RandomState(0)
    assert isinstance(lstm.generator, np.random.Generator)


def test_inputs_are_never_modified():
    lstm = model(bidirectional=True)
    x = problem()
    d_out = np.random.default_rng(3).standard_normal((3, 2, 2 * H))
    copies = x.copy(), d_out.copy()
    _, _, cache = lstm.forward(x, train=True)
    lstm.backward(cache, d_out)
    np.testing.assert_array_equal(copies[0], x)
    np.testing.assert_array_equal(copies[1], d_out)
