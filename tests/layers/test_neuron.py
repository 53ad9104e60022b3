"""ReLU, Sigmoid, TanH and Dropout: shapes, naive references, gradients, in-place runs, errors."""
import numpy as np
import pytest

from caffeish.errors import ConfigError
from caffeish.testing import (blobs_from, check_gradient_spec, check_in_place, forward_layer,
                              make_layer, setup_layer)


def gauss(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, shape)


# --- naive references (plain numpy / Python, independent of the kernels) -----------------------
def relu_ref(x, slope=0.0):
    out = np.empty_like(x)
    flat_x, flat_o = x.reshape(-1), out.reshape(-1)
    for i, v in enumerate(flat_x):
        flat_o[i] = v if v > 0 else slope * v
    return out


def sigmoid_ref(x):
    return 1.0 / (1.0 + np.exp(-x))


def tanh_ref(x):
    return (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x))


RELU = {"type": "ReLU"}
LEAKY = {"type": "ReLU", "relu_param": {"negative_slope": 0.1}}
SIGMOID = {"type": "Sigmoid"}
TANH = {"type": "TanH"}


def dropout(p=None):
    spec = {"type": "Dropout"}
    if p is not None:
        spec["dropout_param"] = {"dropout_ratio": p}
    return spec


# --- shapes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [RELU, SIGMOID, TANH, dropout()],
                         ids=["relu", "sigmoid", "tanh", "dropout"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (6,), (3, 7)], ids=["4d", "1d", "2d"])
def test_neuron_shapes(spec, shape):
    layer = make_layer(spec)
    bottom = blobs_from([gauss(shape)])
    top = setup_layer(layer, bottom)
    assert top[0].shape == shape


# --- forward references --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("slope", [0.0, 0.1, -0.5], ids=["relu", "leaky0.1", "neg-0.5"])
def test_relu_forward(slope, dtype):
    x = gauss((2, 3, 4, 5), seed=1)
    x.reshape(-1)[:3] = 0.0
    _, _, top = forward_layer({"type": "ReLU", "relu_param": {"negative_slope": slope}}, [x],
                              dtype=dtype)
    assert top[0].data.dtype == dtype
    np.testing.assert_allclose(top[0].data, relu_ref(x.astype(dtype), dtype(slope)), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_sigmoid_forward(dtype):
    x = gauss((2, 3, 4), seed=2, scale=3.0)
    _, _, top = forward_layer(SIGMOID, [x], dtype=dtype)
    assert top[0].data.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, sigmoid_ref(x), rtol=tol, atol=tol)


def test_sigmoid_saturates_without_overflow():
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with np.errstate(all="raise"):
        _, _, top = forward_layer(SIGMOID, [x], dtype=np.float32)
    np.testing.assert_allclose(top[0].data, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_tanh_forward(dtype):
    x = gauss((3, 5), seed=3, scale=2.0)
    _, _, top = forward_layer(TANH, [x], dtype=dtype)
    assert top[0].data.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, tanh_ref(x), rtol=tol, atol=tol)


def test_relu_backward_reference():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    layer, bottom, top = forward_layer(LEAKY, [x])
    top[0].diff[...] = [[1.0, 2.0, 3.0, 4.0, 5.0]]
    layer.backward(top, [True], bottom)
    # Caffe's gradient at exactly 0 is negative_slope.
    np.testing.assert_allclose(bottom[0].diff, [[0.1, 0.2, 0.3, 4.0, 5.0]])


def test_sigmoid_tanh_backward_reference():
    x = gauss((2, 4), seed=4)
    dy = gauss((2, 4), seed=5)
    layer, bottom, top = forward_layer(SIGMOID, [x])
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    s = sigmoid_ref(x)
    np.testing.assert_allclose(bottom[0].diff, dy * s * (1 - s), rtol=1e-12)
    layer, bottom, top = forward_layer(TANH, [x])
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, dy * (1 - tanh_ref(x) ** 2), rtol=1e-10)


def test_no_propagate_down_leaves_bottom_diff():
    layer, bottom, top = forward_layer(RELU, [gauss((2, 3))])
    bottom[0].diff[...] = 7.0
    top[0].diff[...] = 1.0
    layer.backward(top, [False], bottom)
    assert np.all(bottom[0].diff == 7.0)


# --- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,kw", [
    (RELU, dict(kink=0.0, kink_range=0.01)),
    (LEAKY, dict(kink=0.0, kink_range=0.01)),
    (SIGMOID, {}),
    (TANH, {}),
], ids=["relu", "leaky", "sigmoid", "tanh"])
def test_neuron_gradient(spec, kw):
    x = gauss((2, 3, 2, 2), seed=6)
    check_gradient_spec(spec, [x], stepsize=1e-2, threshold=1e-3, **kw)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
@pytest.mark.parametrize("p", [0.5, 0.2], ids=["p0.5", "p0.2"])
def test_dropout_gradient(p, phase):
    x = gauss((2, 3, 4), seed=7)
    check_gradient_spec(dropout(p), [x], phase=phase, stepsize=1e-2, threshold=1e-3)


# --- in place ------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,phase", [
    (RELU, "TRAIN"), (LEAKY, "TRAIN"), (SIGMOID, "TRAIN"), (TANH, "TRAIN"),
    (dropout(0.4), "TRAIN"), (dropout(0.4), "TEST"),
], ids=["relu", "leaky", "sigmoid", "tanh", "dropout-train", "dropout-test"])
def test_neuron_in_place(spec, phase):
    check_in_place(spec, [gauss((2, 3, 4, 3), seed=8)], phase=phase)


# --- Dropout semantics ---------------------------------------------------------------------------
def test_dropout_test_phase_is_identity():
    x = gauss((4, 5), seed=9)
    layer, bottom, top = forward_layer(dropout(0.7), [x], phase="TEST", dtype=np.float32)
    np.testing.assert_array_equal(top[0].data, x.astype(np.float32))
    top[0].diff[...] = 3.0
    layer.backward(top, [True], bottom)
    assert np.all(bottom[0].diff == 3.0)


@pytest.mark.parametrize("p", [0.5, 0.3, 0.9], ids=["p0.5", "p0.3", "p0.9"])
def test_dropout_train_scaling(p):
    n = 200_000
    x = np.ones(n)
    layer, bottom, top = forward_layer(dropout(p), [x], dtype=np.float32, seed=3)
    y = top[0].data
    kept = y != 0
    # Kept values are scaled by 1/(1-p); the drop fraction is p within a few standard errors.
    np.testing.assert_allclose(y[kept], 1.0 / (1.0 - np.float32(p)), rtol=1e-6)
    se = np.sqrt(p * (1 - p) / n)
    assert abs((1.0 - kept.mean()) - p) < 5 * se
    assert abs(y.mean() - 1.0) < 5 * se / (1 - p)
    # Backward reuses the forward's mask.
    top[0].diff[...] = 2.0
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff != 0, kept)
    np.testing.assert_allclose(bottom[0].diff[kept], 2.0 / (1.0 - np.float32(p)), rtol=1e-6)


def test_dropout_mask_redrawn_each_forward_and_seeded():
    x = np.ones(1000)
    layer, bottom, top = forward_layer(dropout(0.5), [x], seed=11)
    first = top[0].data.copy()
    layer.forward(bottom, top)
    assert not np.array_equal(first, top[0].data)
    _, _, top2 = forward_layer(dropout(0.5), [x], seed=11)
    np.testing.assert_array_equal(first, top2[0].data)


def test_dropout_ratio_zero_keeps_everything():
    x = gauss((3, 4), seed=12)
    _, _, top = forward_layer(dropout(0.0), [x])
    np.testing.assert_array_equal(top[0].data, x)


def test_dropout_default_ratio_is_half():
    layer = make_layer(dropout())
    setup_layer(layer, blobs_from([np.ones(4)]))
    assert layer.threshold == 0.5 and layer.scale == 2.0


# --- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [1.0, 1.5, -0.1], ids=["one", "above-one", "negative"])
def test_dropout_bad_ratio(p):
    spec = dict(dropout(p), name="drop7")
    with pytest.raises(ConfigError, match=r"drop7.*Dropout.*dropout_ratio"):
        forward_layer(spec, [np.ones(3)])


def test_neuron_needs_one_bottom():
    layer = make_layer(dict(RELU, name="relu3"))
    with pytest.raises(ConfigError, match=r"relu3.*exactly 1 bottom"):
        setup_layer(layer, blobs_from([np.ones(3), np.ones(3)]))
