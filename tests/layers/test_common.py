"""InnerProduct: shapes, a naive reference, gradients (axis, transpose, bias), errors."""
import numpy as np
import pytest

from caffeish.errors import ConfigError, ShapeError
from caffeish.testing import (blobs_from, check_gradient_spec, forward_layer, make_layer,
                              setup_layer)


def gauss(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, shape)


def ip(num_output=3, axis=None, transpose=None, bias_term=None, name=None, **fillers):
    p = {"num_output": num_output,
         "weight_filler": fillers.get("weight_filler", {"type": "gaussian", "std": 0.5}),
         "bias_filler": fillers.get("bias_filler", {"type": "gaussian", "std": 0.5})}
    for k, v in (("axis", axis), ("transpose", transpose), ("bias_term", bias_term)):
        if v is not None:
            p[k] = v
    spec = {"type": "InnerProduct", "inner_product_param": p}
    if name:
        spec["name"] = name
    return spec


def ip_ref(x, w, b, axis, transpose):
    """Loops over the M rows and N outputs of the flattened bottom."""
    axis = axis % x.ndim
    m = int(np.prod(x.shape[:axis]))
    k = int(np.prod(x.shape[axis:]))
    x2 = x.reshape(m, k)
    n_out = w.shape[1] if transpose else w.shape[0]
    y = np.zeros((m, n_out))
    for r in range(m):
        for o in range(n_out):
            s = 0.0
            for j in range(k):
                s += x2[r, j] * (w[j, o] if transpose else w[o, j])
            y[r, o] = s + (b[o] if b is not None else 0.0)
    return y.reshape(x.shape[:axis] + (n_out,))


CONFIGS = [
    ("axis1", dict(), (2, 3, 2, 2)),
    ("axis2", dict(axis=2), (2, 3, 4)),
    ("axis-1", dict(axis=-1), (2, 3, 4)),
    ("transpose", dict(transpose=True), (3, 2, 2)),
    ("transpose-axis2", dict(axis=2, transpose=True), (2, 2, 3)),
    ("nobias", dict(bias_term=False), (2, 5)),
]


# --- shapes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,shape,top_shape,wshape,nblobs", [
    (dict(num_output=10), (2, 3, 4, 5), (2, 10), (10, 60), 2),
    (dict(num_output=7, axis=2), (2, 3, 4, 5), (2, 3, 7), (7, 20), 2),
    (dict(num_output=7, axis=-1), (2, 3, 4, 5), (2, 3, 4, 7), (7, 5), 2),
    (dict(num_output=6, axis=0), (2, 3), (6,), (6, 6), 2),
    (dict(num_output=4, transpose=True), (2, 3, 5), (2, 4), (15, 4), 2),
    (dict(num_output=4, bias_term=False), (2, 3), (2, 4), (4, 3), 1),
], ids=["axis1", "axis2", "axis-1", "axis0", "transpose", "nobias"])
def test_inner_product_shapes(kw, shape, top_shape, wshape, nblobs):
    layer = make_layer(ip(**kw))
    top = setup_layer(layer, blobs_from([np.zeros(shape)]))
    assert top[0].shape == top_shape
    assert len(layer.blobs) == nblobs
    assert layer.blobs[0].shape == wshape
    if nblobs == 2:
        assert layer.blobs[1].shape == (kw["num_output"],)


def test_inner_product_fillers_and_defaults():
    spec = {"type": "InnerProduct",
            "inner_product_param": {"num_output": 3, "weight_filler": {"type": "constant",
                                                                       "value": 0.25}}}
    layer = make_layer(spec)
    setup_layer(layer, blobs_from([np.zeros((2, 4))]))
    assert np.all(layer.blobs[0].data == 0.25)
    assert len(layer.blobs) == 2                      # bias_term defaults to true
    assert np.all(layer.blobs[1].data == 0.0)         # default filler: constant 0


# --- forward -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,kw,shape", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_inner_product_forward(name, kw, shape, dtype):
    x = gauss(shape, seed=1)
    layer, bottom, top = forward_layer(ip(**kw), [x], dtype=dtype)
    w = layer.blobs[0].data.astype(np.float64)
    b = layer.blobs[1].data.astype(np.float64) if len(layer.blobs) > 1 else None
    want = ip_ref(bottom[0].data.astype(np.float64), w, b, kw.get("axis", 1),
                  kw.get("transpose", False))
    assert top[0].data.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, want, rtol=tol, atol=tol)


# --- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kw,shape", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_inner_product_gradient(name, kw, shape):
    check_gradient_spec(ip(**kw), [gauss(shape, seed=2)], stepsize=1e-2, threshold=1e-3)


def test_inner_product_param_diffs_accumulate():
    x = gauss((3, 4), seed=3)
    layer, bottom, top = forward_layer(ip(), [x])
    top[0].diff[...] = gauss((3, 3), seed=4)
    layer.backward(top, [True], bottom)
    once = [p.diff.copy() for p in layer.blobs]
    dx_once = bottom[0].diff.copy()
    layer.backward(top, [True], bottom)
    for p, d in zip(layer.blobs, once):
        np.testing.assert_allclose(p.diff, 2 * d, rtol=1e-12)
    np.testing.assert_allclose(bottom[0].diff, dx_once, rtol=1e-12)  # bottom diff overwritten
    dy = top[0].diff
    np.testing.assert_allclose(once[0], dy.T @ x, rtol=1e-12)
    np.testing.assert_allclose(once[1], dy.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(dx_once, dy @ layer.blobs[0].data, rtol=1e-12)


def test_inner_product_no_propagate_down_still_updates_params():
    layer, bottom, top = forward_layer(ip(), [gauss((2, 4), seed=5)])
    bottom[0].diff[...] = 9.0
    top[0].diff[...] = 1.0
    layer.backward(top, [False], bottom)
    assert np.all(bottom[0].diff == 9.0)
    assert np.abs(layer.blobs[0].diff).sum() > 0


def test_inner_product_batch_size_change():
    layer, bottom, top = forward_layer(ip(), [gauss((2, 3, 2), seed=6)])
    bottom[0].reshape((5, 3, 2))
    bottom[0].data[...] = gauss((5, 3, 2), seed=7)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    want = ip_ref(bottom[0].data, layer.blobs[0].data, layer.blobs[1].data, 1, False)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12)


# --- errors --------------------------------------------------------------------------------------
def test_inner_product_k_mismatch_names_layer_and_sizes():
    spec = dict(ip(name="fc6"), bottom=["pool5"])
    layer, bottom, top = forward_layer(spec, [np.zeros((2, 3, 4))])      # K = 12
    bottom[0].reshape((2, 5, 4))                                          # K = 20
    with pytest.raises(ShapeError) as e:
        layer.reshape(bottom, top)
    msg = str(e.value)
    assert "fc6" in msg and "InnerProduct" in msg and "pool5" in msg
    assert "K = 20" in msg and "K = 12" in msg


def test_inner_product_k_mismatch_with_loaded_weights():
    layer = make_layer(ip(name="fc7"))
    layer.blobs = blobs_from([np.zeros((3, 8)), np.zeros(3)])            # weights for K = 8
    bottom = blobs_from([np.zeros((2, 6))])
    with pytest.raises(ShapeError, match=r"fc7.*K = 6.*K = 8"):
        setup_layer(layer, bottom)


def test_inner_product_needs_num_output():
    spec = {"type": "InnerProduct", "name": "fc1", "inner_product_param": {"bias_term": False}}
    with pytest.raises(ConfigError, match=r"fc1.*num_output"):
        forward_layer(spec, [np.zeros((2, 3))])


def test_inner_product_bad_axis():
    with pytest.raises(ShapeError, match=r"fc2.*axis"):
        forward_layer(ip(axis=3, name="fc2"), [np.zeros((2, 3))])
