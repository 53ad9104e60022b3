"""BatchNorm, Scale, Bias, LRN and MVN: shapes, naive references, gradients, in place, errors,
and a small Conv -> BatchNorm -> Scale -> ReLU net trained by the SGD solver."""
import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import parse_message
from caffeish.errors import ConfigError, ShapeError
from caffeish.testing import (blobs_from, check_gradient, check_gradient_spec, check_in_place,
                              forward_layer, make_layer, setup_layer)


def gauss(shape, seed=0, scale=1.0, mean=0.0):
    return np.random.default_rng(seed).normal(mean, scale, shape)


# --- naive references (plain numpy / Python, independent of the kernels) -----------------------
def bn_batch_ref(x, eps=1e-5):
    """Per channel (axis 1): mean and biased variance over every other axis."""
    y = np.empty_like(x, dtype=np.float64)
    means, variances = [], []
    for c in range(x.shape[1]):
        v = x[:, c].astype(np.float64)
        m = v.sum() / v.size
        var = ((v - m) ** 2).sum() / v.size
        y[:, c] = (v - m) / np.sqrt(var + eps)
        means.append(m)
        variances.append(var)
    return y, np.array(means), np.array(variances)


def bn_global_ref(x, mean_blob, var_blob, factor, eps=1e-5):
    s = 0.0 if factor == 0 else 1.0 / factor
    y = np.empty_like(x, dtype=np.float64)
    for c in range(x.shape[1]):
        y[:, c] = (x[:, c] - mean_blob[c] * s) / np.sqrt(var_blob[c] * s + eps)
    return y


def broadcast_shape(x_ndim, axis, p_shape):
    return [1] * axis + list(p_shape) + [1] * (x_ndim - axis - len(p_shape))


def scale_ref(x, gamma, axis, beta=None):
    shape = broadcast_shape(x.ndim, axis, gamma.shape)
    y = x * gamma.reshape(shape)
    if beta is not None:
        y = y + beta.reshape(shape)
    return y


def lrn_across_ref(x, size, alpha, beta, k):
    n_img, chans, height, width = x.shape
    pad = (size - 1) // 2
    y = np.zeros_like(x)
    for n in range(n_img):
        for c in range(chans):
            for h in range(height):
                for w in range(width):
                    s = 0.0
                    for cc in range(c - pad, c + pad + 1):
                        if 0 <= cc < chans:
                            s += x[n, cc, h, w] ** 2
                    y[n, c, h, w] = x[n, c, h, w] * (k + alpha / size * s) ** (-beta)
    return y


def lrn_within_ref(x, size, alpha, beta):
    n_img, chans, height, width = x.shape
    pad = (size - 1) // 2
    y = np.zeros_like(x)
    for n in range(n_img):
        for c in range(chans):
            for h in range(height):
                for w in range(width):
                    s = 0.0
                    for hh in range(h - pad, h + pad + 1):
                        for ww in range(w - pad, w + pad + 1):
                            if 0 <= hh < height and 0 <= ww < width:
                                s += x[n, c, hh, ww] ** 2
                    y[n, c, h, w] = x[n, c, h, w] * (1 + alpha * s / (size * size)) ** (-beta)
    return y


def mvn_ref(x, normalize_variance=True, across_channels=False, eps=1e-9):
    x4 = x.reshape(x.shape + (1,) * (4 - x.ndim))
    y = np.empty_like(x4)
    for n in range(x4.shape[0]):
        groups = [slice(None)] if across_channels else [slice(c, c + 1)
                                                       for c in range(x4.shape[1])]
        for g in groups:
            v = x4[n, g]
            m = v.mean()
            d = v - m
            if normalize_variance:
                d = d / (np.sqrt((d ** 2).mean()) + eps)
            y[n, g] = d
    return y


def bn(**p):
    return {"type": "BatchNorm", "batch_norm_param": p} if p else {"type": "BatchNorm"}


def scale(bias_term=False, **p):
    spec = {"type": "Scale", "scale_param": dict(p)}
    if bias_term:
        spec["scale_param"]["bias_term"] = True
        spec["scale_param"].setdefault("bias_filler", {"type": "gaussian", "std": 0.5})
    spec["scale_param"].setdefault("filler", {"type": "gaussian", "std": 1.0, "mean": 0.5})
    return spec


def bias(**p):
    p.setdefault("filler", {"type": "gaussian", "std": 1.0})
    return {"type": "Bias", "bias_param": p}


def lrn(region="ACROSS_CHANNELS", **p):
    return {"type": "LRN", "lrn_param": {"norm_region": region, **p}}


def mvn(**p):
    return {"type": "MVN", "mvn_param": p} if p else {"type": "MVN"}


# --- shapes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,shapes,want", [
    (bn(), [(2, 3, 4, 5)], (2, 3, 4, 5)),
    (bn(), [(5, 3)], (5, 3)),
    (scale(), [(2, 3, 4, 5)], (2, 3, 4, 5)),
    (scale(axis=0, num_axes=-1), [(2, 3, 4)], (2, 3, 4)),
    (scale(), [(2, 3, 4, 5), (3, 4)], (2, 3, 4, 5)),
    (bias(), [(2, 3, 4)], (2, 3, 4)),
    (bias(), [(2, 3, 4), (3,)], (2, 3, 4)),
    (lrn(), [(2, 6, 3, 4)], (2, 6, 3, 4)),
    (lrn("WITHIN_CHANNEL"), [(2, 6, 3, 4)], (2, 6, 3, 4)),
    (mvn(), [(2, 3, 4, 5)], (2, 3, 4, 5)),
    (mvn(), [(4, 6)], (4, 6, 1, 1)),
    (mvn(across_channels=True), [(2, 3, 4)], (2, 3, 4, 1)),
], ids=["bn-4d", "bn-2d", "scale", "scale-all-axes", "scale-2bottoms", "bias", "bias-2bottoms",
        "lrn-across", "lrn-within", "mvn-4d", "mvn-2d-legacy-4d-top", "mvn-3d"])
def test_top_shapes(spec, shapes, want):
    layer = make_layer(spec)
    top = setup_layer(layer, blobs_from([gauss(s, seed=i) for i, s in enumerate(shapes)]))
    assert top[0].shape == want


@pytest.mark.parametrize("spec,shape,blob_shapes", [
    (bn(), (2, 3, 4, 5), [(3,), (3,), (1,)]),
    (bn(), (7, 4), [(4,), (4,), (1,)]),
    (bn(), (6,), [(1,), (1,), (1,)]),
    ({"type": "Scale"}, (2, 3, 4, 5), [(3,)]),
    ({"type": "Scale", "scale_param": {"bias_term": True, "axis": 2, "num_axes": 2}},
     (2, 3, 4, 5), [(4, 5), (4, 5)]),
    ({"type": "Scale", "scale_param": {"num_axes": 0}}, (2, 3, 4), [()]),
    ({"type": "Scale", "scale_param": {"axis": -2, "num_axes": -1}}, (2, 3, 4, 5), [(4, 5)]),
    ({"type": "Bias", "bias_param": {"axis": 0, "num_axes": 2}}, (2, 3, 4), [(2, 3)]),
], ids=["bn-4d", "bn-2d", "bn-1d", "scale-default", "scale-bias-axis2", "scale-scalar",
        "scale-neg-axis", "bias-axis0"])
def test_blob_shapes_and_default_fillers(spec, shape, blob_shapes):
    layer = make_layer(spec)
    setup_layer(layer, blobs_from([gauss(shape)]))
    assert [b.shape for b in layer.blobs] == blob_shapes
    if spec["type"] == "BatchNorm":
        assert all(np.all(b.data == 0) for b in layer.blobs)
    elif spec["type"] == "Scale":
        assert np.all(layer.blobs[0].data == 1.0)  # unset filler: constant 1 (identity)
        if len(layer.blobs) > 1:
            assert np.all(layer.blobs[1].data == 0.0)  # bias_filler default: constant 0
    else:
        assert np.all(layer.blobs[0].data == 0.0)


# --- BatchNorm -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (6, 3), (2, 3, 4)], ids=["4d", "2d", "3d"])
def test_batchnorm_train_forward(shape, dtype):
    x = gauss(shape, seed=1, scale=2.0, mean=0.7)
    layer, _, top = forward_layer(bn(), [x], dtype=dtype)
    assert not layer.use_global_stats
    want, _, _ = bn_batch_ref(x.astype(dtype))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, want, rtol=tol, atol=tol)
    assert top[0].data.dtype == dtype


def test_batchnorm_running_statistics_over_several_forwards():
    layer = make_layer(bn(moving_average_fraction=0.9, eps=1e-4))
    xs = [gauss((4, 3, 2, 3), seed=s, scale=1.0 + s, mean=s) for s in range(4)]
    bottom = blobs_from([xs[0]])
    top = setup_layer(layer, bottom)
    mean_sum, var_sum, factor = np.zeros(3), np.zeros(3), 0.0
    m = 4 * 2 * 3
    for x in xs:
        bottom[0].data[...] = x
        layer.forward(bottom, top)
        want, mu, var = bn_batch_ref(x, eps=1e-4)
        np.testing.assert_allclose(top[0].data, want, rtol=1e-10, atol=1e-12)
        factor = factor * 0.9 + 1
        mean_sum = mean_sum * 0.9 + mu
        var_sum = var_sum * 0.9 + var * m / (m - 1)
        np.testing.assert_allclose(layer.blobs[0].data, mean_sum, rtol=1e-12)
        np.testing.assert_allclose(layer.blobs[1].data, var_sum, rtol=1e-12)
        np.testing.assert_allclose(layer.blobs[2].data, [factor], rtol=1e-12)
    # the same layer switched to the stored statistics normalises with the running averages
    layer.use_global_stats = True
    x = gauss((2, 3, 2, 3), seed=9)
    b2, t2 = blobs_from([x]), blobs_from([np.zeros(0)])
    layer.reshape(b2, t2)
    layer.forward(b2, t2)
    np.testing.assert_allclose(t2[0].data, bn_global_ref(x, mean_sum, var_sum, factor, 1e-4),
                               rtol=1e-10)


def test_batchnorm_single_value_per_channel_has_no_bias_correction():
    layer, _, _ = forward_layer(bn(), [np.array([[1.0, 2.0]])])  # m = 1
    np.testing.assert_allclose(layer.blobs[1].data, [0.0, 0.0])
    np.testing.assert_allclose(layer.blobs[2].data, [1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_batchnorm_global_stats_inference(dtype):
    x = gauss((2, 3, 4, 4), seed=2, mean=1.0)
    layer = make_layer(bn(), phase="TEST", dtype=dtype)
    bottom = blobs_from([x], dtype)
    top = setup_layer(layer, bottom)
    assert layer.use_global_stats
    mean_blob, var_blob, f = np.array([2.0, -1.0, 0.5]), np.array([3.0, 0.5, 8.0]), 2.5
    layer.blobs[0].data[...] = mean_blob
    layer.blobs[1].data[...] = var_blob
    layer.blobs[2].data[...] = f
    layer.forward(bottom, top)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, bn_global_ref(x, mean_blob, var_blob, f), rtol=tol,
                               atol=tol)
    # global statistics are read, never updated
    np.testing.assert_array_equal(layer.blobs[0].data, mean_blob.astype(dtype))
    np.testing.assert_array_equal(layer.blobs[2].data, np.array([f], dtype))


def test_batchnorm_zero_scale_factor_reads_as_zero_statistics():
    x = gauss((2, 2, 3), seed=3)
    layer = make_layer(bn(), phase="TEST")
    bottom = blobs_from([x])
    top = setup_layer(layer, bottom)
    layer.blobs[0].data[...] = 5.0  # ignored: 1 / factor is taken as 0 when the factor is 0
    layer.blobs[1].data[...] = 7.0
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, x / np.sqrt(1e-5), rtol=1e-12)


@pytest.mark.parametrize("phase,param,want_global", [
    ("TRAIN", {}, False), ("TEST", {}, True),
    ("TRAIN", {"use_global_stats": True}, True), ("TEST", {"use_global_stats": False}, False),
], ids=["train-default", "test-default", "train-frozen", "test-batch"])
def test_batchnorm_use_global_stats_default(phase, param, want_global):
    x = gauss((3, 2, 2), seed=4)
    layer, _, _ = forward_layer(bn(**param), [x], phase=phase)
    assert layer.use_global_stats is want_global
    # batch statistics update the running sums in any phase (as in Caffe); global ones never do
    assert layer.blobs[2].data[0] == (0.0 if want_global else 1.0)


def test_batchnorm_marks_its_statistics_lr_mult_zero():
    layer = make_layer(bn())
    setup_layer(layer, blobs_from([gauss((2, 3))]))
    assert [float(p.lr_mult) for p in layer.layer_param.param] == [0.0, 0.0, 0.0]
    layer = make_layer({**bn(), "param": [{"lr_mult": 0, "decay_mult": 0}]})
    setup_layer(layer, blobs_from([gauss((2, 3))]))
    assert [(float(p.lr_mult), float(p.decay_mult)) for p in layer.layer_param.param] == \
        [(0.0, 0.0), (0.0, 1.0), (0.0, 1.0)]


@pytest.mark.parametrize("shape", [(3, 2, 3, 2), (5, 3)], ids=["4d", "2d"])
def test_batchnorm_gradient_batch_stats(shape):
    # Only the input is checked: the statistics are not learned. The harness re-runs the forward
    # for every perturbation, which keeps updating the running sums; with batch statistics the
    # output does not read them, and the check below confirms the sums moved as expected.
    layer = make_layer(bn())
    bottom = blobs_from([gauss(shape, seed=5, scale=1.5, mean=0.3)])
    top = setup_layer(layer, bottom)
    check_gradient(layer, bottom, top, stepsize=1e-3, threshold=1e-4, check_params=False)
    assert layer.blobs[2].data[0] > 1.0


def test_batchnorm_backward_is_caffes_formula():
    x, dy = gauss((4, 3, 2, 2), seed=6), gauss((4, 3, 2, 2), seed=7)
    layer, bottom, top = forward_layer(bn(), [x])
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    y, _, var = bn_batch_ref(x)
    want = np.empty_like(x)
    for c in range(3):
        g, yc = dy[:, c], y[:, c]
        want[:, c] = (g - g.mean() - yc * (g * yc).mean()) / np.sqrt(var[c] + 1e-5)
    np.testing.assert_allclose(bottom[0].diff, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("factor", [0.0, 3.0], ids=["factor0", "factor3"])
def test_batchnorm_gradient_global_stats(factor):
    layer = make_layer(bn(), phase="TEST")
    bottom = blobs_from([gauss((2, 3, 2, 3), seed=8)])
    top = setup_layer(layer, bottom)
    layer.blobs[0].data[...] = [0.5, -1.0, 2.0]
    layer.blobs[1].data[...] = [1.0, 4.0, 0.25]
    layer.blobs[2].data[...] = factor
    before = [b.data.copy() for b in layer.blobs]
    check_gradient(layer, bottom, top, stepsize=1e-3, threshold=1e-4, check_params=False)
    for b, want in zip(layer.blobs, before):
        np.testing.assert_array_equal(b.data, want)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_batchnorm_in_place(phase):
    check_in_place(bn(), [gauss((3, 4, 2, 2), seed=9, mean=0.5)], phase=phase)


def test_batchnorm_in_place_backward_survives_a_later_in_place_layer():
    # BatchNorm -> Scale both in place on one blob: Scale overwrites the data BatchNorm wrote,
    # so BatchNorm's backward must not read it.
    x, dy = gauss((3, 2, 3, 2), seed=10), gauss((3, 2, 3, 2), seed=11)
    ref, rb, rt = forward_layer(bn(), [x])
    rt[0].diff[...] = dy
    ref.backward(rt, [True], rb)
    layer = make_layer(bn())
    b = blobs_from([x])
    t = setup_layer(layer, b, in_place=True)
    layer.forward(b, t)
    t[0].data[...] = 123.0
    t[0].diff[...] = dy
    layer.backward(t, [True], b)
    np.testing.assert_allclose(b[0].diff, rb[0].diff, rtol=1e-12, atol=1e-14)


# --- Scale ---------------------------------------------------------------------------------------
SCALE_CONFIGS = [
    (dict(), (2, 3, 4, 5), 1, (3,)),
    (dict(axis=0, num_axes=2), (2, 3, 4), 0, (2, 3)),
    (dict(axis=2, num_axes=-1), (2, 3, 4, 2), 2, (4, 2)),
    (dict(axis=-1), (2, 3, 4), 2, (4,)),
    (dict(num_axes=0), (2, 3, 4), 0, ()),
    (dict(axis=0, num_axes=-1), (2, 3), 0, (2, 3)),
]
SCALE_IDS = ["default", "axis0-2axes", "axis2-to-end", "axis-neg1", "scalar", "eltwise"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bias_term", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("p,shape,axis,pshape", SCALE_CONFIGS, ids=SCALE_IDS)
def test_scale_forward_learned(p, shape, axis, pshape, bias_term, dtype):
    x = gauss(shape, seed=12)
    layer, _, top = forward_layer(scale(bias_term, **p), [x], dtype=dtype)
    gamma = layer.blobs[0].data.astype(np.float64)
    assert gamma.shape == pshape
    beta = layer.blobs[1].data.astype(np.float64) if bias_term else None
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, scale_ref(x.astype(dtype), gamma, axis, beta),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("bias_term", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("p,shape,pshape,axis", [
    (dict(), (2, 3, 4, 5), (3, 4), 1),
    (dict(axis=0), (2, 3, 4), (2,), 0),
    (dict(axis=-2), (2, 3, 4), (3, 4), 1),
    (dict(num_axes=5), (2, 3, 4), (), 0),  # scalar bottom[1]; num_axes is ignored
], ids=["axis1", "axis0", "axis-neg2", "scalar"])
def test_scale_forward_two_bottoms(p, shape, pshape, axis, bias_term):
    x, g = gauss(shape, seed=13), gauss(pshape, seed=14)
    layer, _, top = forward_layer(scale(bias_term, **p), [x, g])
    assert len(layer.blobs) == (1 if bias_term else 0)
    beta = layer.blobs[0].data if bias_term else None
    if bias_term:
        assert beta.shape == pshape
    np.testing.assert_allclose(top[0].data, scale_ref(x, g, axis, beta), rtol=1e-12)


@pytest.mark.parametrize("bias_term", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("p,shape,axis,pshape", SCALE_CONFIGS, ids=SCALE_IDS)
def test_scale_gradient_learned(p, shape, axis, pshape, bias_term):
    check_gradient_spec(scale(bias_term, **p), [gauss(shape, seed=15)], stepsize=1e-3,
                        threshold=1e-4)


@pytest.mark.parametrize("bias_term", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("p,shape,pshape", [
    (dict(), (2, 3, 3, 2), (3, 3)),
    (dict(axis=0), (2, 3, 2), (2, 3, 2)),
    (dict(), (2, 3, 2), ()),
], ids=["axis1", "eltwise", "scalar"])
def test_scale_gradient_two_bottoms(p, shape, pshape, bias_term):
    check_gradient_spec(scale(bias_term, **p), [gauss(shape, seed=16), gauss(pshape, seed=17)],
                        stepsize=1e-3, threshold=1e-4)


def test_scale_param_diff_accumulates_and_bottom1_diff_is_overwritten():
    x, dy = gauss((2, 3, 2), seed=18), gauss((2, 3, 2), seed=19)
    layer, bottom, top = forward_layer(scale(True), [x])
    top[0].diff[...] = dy
    layer.blobs[0].diff[...] = 1.0
    layer.blobs[1].diff[...] = 2.0
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(layer.blobs[0].diff, 1.0 + (dy * x).sum(axis=(0, 2)))
    np.testing.assert_allclose(layer.blobs[1].diff, 2.0 + dy.sum(axis=(0, 2)))
    g = gauss((3,), seed=20)
    layer, bottom, top = forward_layer(scale(), [x, g])
    top[0].diff[...] = dy
    bottom[1].diff[...] = 5.0
    layer.backward(top, [True, True], bottom)
    np.testing.assert_allclose(bottom[1].diff, (dy * x).sum(axis=(0, 2)))
    np.testing.assert_allclose(bottom[0].diff, dy * g[None, :, None])


@pytest.mark.parametrize("spec,shapes", [
    (scale(), [(2, 3, 2, 2)]),
    (scale(True), [(2, 3, 2, 2)]),
    (scale(True, axis=2, num_axes=-1), [(2, 3, 2, 2)]),
    (scale(), [(2, 3, 2, 2), (3,)]),
    (scale(True), [(2, 3, 2, 2), (3, 2)]),
], ids=["learned", "learned-bias", "to-end-bias", "2bottoms", "2bottoms-bias"])
def test_scale_in_place(spec, shapes):
    arrays = [gauss(s, seed=21 + i) for i, s in enumerate(shapes)]
    check_in_place(spec, arrays)
    # parameter gradients too (Caffe keeps a copy of the bottom for them when in place)
    ref, rb, rt = forward_layer(spec, arrays)
    rt[0].diff[...] = 0.3
    ref.backward(rt, [True] * len(rb), rb)
    layer = make_layer(spec)
    b = blobs_from(arrays)
    t = setup_layer(layer, b, in_place=True)
    layer.forward(b, t)
    t[0].diff[...] = 0.3
    layer.backward(t, [True] * len(b), b)
    for p_ref, p in zip(ref.blobs, layer.blobs):
        np.testing.assert_allclose(p.diff, p_ref.diff, rtol=1e-12)
    if len(b) > 1:
        np.testing.assert_allclose(b[1].diff, rb[1].diff, rtol=1e-12)


# --- Bias ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("p,shape,axis", [
    (dict(), (2, 3, 4), 1),
    (dict(axis=0, num_axes=-1), (2, 3, 2), 0),
    (dict(axis=2, num_axes=2), (2, 3, 4, 2), 2),
    (dict(num_axes=0), (2, 3), 0),
], ids=["default", "eltwise", "axis2", "scalar"])
def test_bias_forward_learned(p, shape, axis, dtype):
    x = gauss(shape, seed=26)
    layer, _, top = forward_layer(bias(**p), [x], dtype=dtype)
    b = layer.blobs[0].data.astype(np.float64)
    want = x.astype(dtype) + b.reshape(broadcast_shape(x.ndim, axis, b.shape))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("p,shape,pshape,axis", [
    (dict(), (2, 3, 4), (3,), 1),
    (dict(axis=1), (2, 3, 4), (3, 4), 1),
    (dict(axis=0), (2, 3, 4), (), 0),
], ids=["axis1", "axis1-2axes", "scalar"])
def test_bias_two_bottoms(p, shape, pshape, axis):
    x, b = gauss(shape, seed=27), gauss(pshape, seed=28)
    _, _, top = forward_layer(bias(**p), [x, b])
    np.testing.assert_allclose(top[0].data, x + b.reshape(broadcast_shape(x.ndim, axis, b.shape)),
                               rtol=1e-12)
    check_gradient_spec(bias(**p), [x, b], stepsize=1e-3, threshold=1e-4)


@pytest.mark.parametrize("p,shape", [
    (dict(), (2, 3, 2, 2)), (dict(axis=0, num_axes=-1), (2, 3)), (dict(num_axes=0), (3, 2)),
], ids=["default", "eltwise", "scalar"])
def test_bias_gradient_learned(p, shape):
    check_gradient_spec(bias(**p), [gauss(shape, seed=29)], stepsize=1e-3, threshold=1e-4)


@pytest.mark.parametrize("spec,shapes", [
    (bias(), [(2, 3, 2)]), (bias(), [(2, 3, 2), (3, 2)]),
], ids=["learned", "2bottoms"])
def test_bias_in_place(spec, shapes):
    arrays = [gauss(s, seed=30 + i) for i, s in enumerate(shapes)]
    check_in_place(spec, arrays)
    layer = make_layer(spec)
    b = blobs_from(arrays)
    t = setup_layer(layer, b, in_place=True)
    layer.forward(b, t)
    t[0].diff[...] = np.arange(t[0].count).reshape(t[0].shape)
    layer.backward(t, [True] * len(b), b)
    operand = layer.blobs[0] if len(b) == 1 else b[1]
    dy = t[0].diff  # in place, the top diff is left as it was (dx = dy)
    want = dy.sum(axis=0) if operand.num_axes == 2 else dy.sum(axis=(0, 2))
    np.testing.assert_allclose(operand.diff, want)


# --- LRN -----------------------------------------------------------------------------------------
LRN_CONFIGS = [
    ("ACROSS_CHANNELS", dict()),
    ("ACROSS_CHANNELS", dict(local_size=3, alpha=2.0, beta=0.6, k=2.0)),
    ("ACROSS_CHANNELS", dict(local_size=9, alpha=0.5)),
    ("ACROSS_CHANNELS", dict(local_size=1)),
    ("WITHIN_CHANNEL", dict(local_size=3, alpha=1.5, beta=0.75)),
    ("WITHIN_CHANNEL", dict(local_size=5, alpha=4.0, beta=0.5, k=7.0)),
]
LRN_IDS = ["across-default", "across-n3", "across-n9-wider-than-C", "across-n1", "within-n3",
           "within-n5-k-ignored"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("region,p", LRN_CONFIGS, ids=LRN_IDS)
def test_lrn_forward(region, p, dtype):
    x = gauss((2, 5, 4, 3), seed=31, scale=1.5)
    _, _, top = forward_layer(lrn(region, **p), [x], dtype=dtype)
    size, alpha, beta = p.get("local_size", 5), p.get("alpha", 1.0), p.get("beta", 0.75)
    if region == "ACROSS_CHANNELS":
        want = lrn_across_ref(x, size, alpha, beta, p.get("k", 1.0))
    else:
        want = lrn_within_ref(x, size, alpha, beta)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("size", [3, 5])
def test_lrn_within_matches_caffes_layer_composition(size):
    # Caffe builds WITHIN_CHANNEL from Power(x^2) -> Pooling(AVE, pad (n-1)/2, stride 1) ->
    # Power(shift 1, scale alpha, power -beta) -> Eltwise PROD with x; rebuild it from our
    # Pooling layer (whose AVE divides by the padded window size) and numpy.
    x = gauss((1, 2, 5, 4), seed=32)
    pad = (size - 1) // 2
    _, _, pooled = forward_layer({"type": "Pooling", "pooling_param": {
        "pool": "AVE", "kernel_size": size, "pad": pad, "stride": 1}}, [x ** 2])
    assert pooled[0].shape == x.shape
    want = x * (1 + 2.0 * pooled[0].data) ** -0.75
    _, _, top = forward_layer(lrn("WITHIN_CHANNEL", local_size=size, alpha=2.0), [x])
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12)


@pytest.mark.parametrize("region,p", LRN_CONFIGS, ids=LRN_IDS)
def test_lrn_gradient(region, p):
    check_gradient_spec(lrn(region, **p), [gauss((2, 4, 3, 3), seed=33)], stepsize=1e-3,
                        threshold=1e-4)


def test_lrn_backward_does_not_read_the_top_data():
    x, dy = gauss((1, 4, 3, 3), seed=34), gauss((1, 4, 3, 3), seed=35)
    for region in ("ACROSS_CHANNELS", "WITHIN_CHANNEL"):
        layer, bottom, top = forward_layer(lrn(region, local_size=3), [x])
        top[0].diff[...] = dy
        layer.backward(top, [True], bottom)
        want = bottom[0].diff.copy()
        top[0].data[...] = 0.0  # e.g. clobbered by a later in-place layer
        layer.backward(top, [True], bottom)
        np.testing.assert_array_equal(bottom[0].diff, want)


# --- MVN -----------------------------------------------------------------------------------------
MVN_CONFIGS = [dict(), dict(across_channels=True), dict(normalize_variance=False),
               dict(normalize_variance=False, across_channels=True), dict(eps=1e-4)]
MVN_IDS = ["default", "across", "mean-only", "mean-only-across", "eps1e-4"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("p", MVN_CONFIGS, ids=MVN_IDS)
def test_mvn_forward(p, dtype):
    x = gauss((2, 3, 4, 5), seed=36, scale=2.0, mean=1.0)
    _, _, top = forward_layer(mvn(**p), [x], dtype=dtype)
    want = mvn_ref(x, p.get("normalize_variance", True), p.get("across_channels", False),
                   p.get("eps", 1e-9))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, want, rtol=tol, atol=tol)


def test_mvn_eps_is_added_to_the_std():
    x = np.array([[[[1.0, 3.0]]]])  # mean 2, std 1
    _, _, top = forward_layer(mvn(eps=1.0), [x])
    np.testing.assert_allclose(top[0].data.reshape(-1), [-0.5, 0.5])


def test_mvn_2d_bottom_gives_a_legacy_4d_top():
    x = gauss((3, 4), seed=37)
    _, _, top = forward_layer(mvn(across_channels=True), [x])
    assert top[0].shape == (3, 4, 1, 1)
    np.testing.assert_allclose(top[0].data, mvn_ref(x, True, True), rtol=1e-12)


@pytest.mark.parametrize("p", MVN_CONFIGS[:4], ids=MVN_IDS[:4])
def test_mvn_gradient(p):
    # default eps (1e-9): Caffe's backward is the exact gradient up to eps
    check_gradient_spec(mvn(**p), [gauss((2, 3, 2, 3), seed=38, mean=0.5)], stepsize=1e-3,
                        threshold=1e-4)


@pytest.mark.parametrize("across", [False, True], ids=["per-channel", "across"])
def test_mvn_backward_is_caffes_formula(across):
    # Caffe's backward divides by (std + eps) and uses y = (x - mean) / (std + eps) in the
    # correction term; that is the exact gradient only as eps -> 0. With a large eps it differs
    # from the true derivative, and caffeish keeps Caffe's numbers.
    x, dy = gauss((2, 3, 2, 3), seed=40), gauss((2, 3, 2, 3), seed=41)
    eps = 0.5
    layer, bottom, top = forward_layer(mvn(eps=eps, across_channels=across), [x])
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    rows = 2 if across else 6
    xr, gr = x.reshape(rows, -1), dy.reshape(rows, -1)
    mu = xr.mean(axis=1, keepdims=True)
    sd = np.sqrt(((xr - mu) ** 2).mean(axis=1, keepdims=True)) + eps
    y = (xr - mu) / sd
    want = (gr - gr.mean(axis=1, keepdims=True) - y * (gr * y).mean(axis=1, keepdims=True)) / sd
    np.testing.assert_allclose(bottom[0].diff.reshape(rows, -1), want, rtol=1e-12, atol=1e-14)
    layer, bottom, top = forward_layer(mvn(normalize_variance=False, across_channels=across), [x])
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff.reshape(rows, -1),
                               gr - gr.mean(axis=1, keepdims=True), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("p", MVN_CONFIGS[:3], ids=MVN_IDS[:3])
def test_mvn_in_place(p):
    check_in_place(mvn(**p), [gauss((2, 3, 2, 2), seed=39)])


# --- errors --------------------------------------------------------------------------------------
def named(spec, name):
    return {**spec, "name": name}


@pytest.mark.parametrize("spec,shapes,exc,match", [
    (named(lrn(local_size=4), "norm1"), [(1, 3, 4, 4)], ConfigError, r"norm1.*LRN.*odd.*4"),
    (named(lrn(local_size=0), "norm1"), [(1, 3, 4, 4)], ConfigError, r"norm1.*odd"),
    (named(lrn(), "norm2"), [(2, 3, 4)], ShapeError, r"norm2.*4 axes"),
    (named(scale(), "sc"), [(2, 3, 4), (4,)], ShapeError, r"sc.*Scale.*bottom\[1\].*\(4,\)"),
    (named(scale(axis=2), "sc"), [(2, 3, 4), (4, 2)], ShapeError, r"sc.*\(4, 2\)"),
    (named(scale(True), "sc"), [(2, 3, 4), (3, 5)], ShapeError, r"sc.*\(3, 5\)"),
    (named(scale(num_axes=4), "sc"), [(2, 3, 4)], ShapeError, r"sc.*extends past"),
    (named(scale(num_axes=-2), "sc"), [(2, 3, 4)], ConfigError, r"sc.*num_axes"),
    (named(scale(axis=3), "sc"), [(2, 3, 4)], ShapeError, r"sc.*axis"),
    (named(bias(), "bi"), [(2, 3, 4), (2,)], ShapeError, r"bi.*Bias.*bottom\[1\].*\(2,\)"),
    (named(bias(axis=0, num_axes=3), "bi"), [(2, 3)], ShapeError, r"bi.*extends past"),
    (named({**bn(), "param": [{"lr_mult": 0}, {"lr_mult": 1}]}, "bn1"), [(2, 3)], ConfigError,
     r"bn1.*BatchNorm.*param\[1\].*lr_mult 1"),
    (named(mvn(), "mvn1"), [(1, 2, 1, 2, 2)], ShapeError, r"mvn1.*at most 4 axes"),
], ids=["lrn-even", "lrn-zero", "lrn-3d", "scale-b1-mismatch", "scale-b1-axis2-mismatch",
        "scale-bias-b1-mismatch", "scale-too-many-axes", "scale-num-axes-neg2", "scale-bad-axis",
        "bias-b1-mismatch", "bias-too-many-axes", "bn-learned-stats", "mvn-5d"])
def test_errors_name_the_layer(spec, shapes, exc, match):
    with pytest.raises(exc, match=match):
        forward_layer(spec, [gauss(s) for s in shapes])


def test_reshape_errors_after_setup():
    layer, bottom, top = forward_layer(named(bn(), "bn2"), [gauss((2, 3, 2))])
    bottom[0].reshape((2, 4, 2))
    with pytest.raises(ShapeError, match=r"bn2.*4 channels.*set up for 3"):
        layer.reshape(bottom, top)
    layer, bottom, top = forward_layer(named(scale(), "sc2"), [gauss((2, 3, 2))])
    bottom[0].reshape((2, 5, 2))
    with pytest.raises(ShapeError, match=r"sc2.*scale blob.*\(3,\)"):
        layer.reshape(bottom, top)


# --- a small net trained by the SGD solver -------------------------------------------------------
NET_SOLVER = """\
net_param:
  name: bn_net
  layer:
    - {name: data, type: Input, top: [data, label],
       input_param: {shape: [{dim: [8, 2, 5, 5]}, {dim: [8]}]}}
    - name: conv
      type: Convolution
      bottom: data
      top: conv
      convolution_param: {num_output: 4, kernel_size: 3, weight_filler: {type: gaussian, std: 0.3}}
    - {name: bn, type: BatchNorm, bottom: conv, top: conv}
    - {name: scale, type: Scale, bottom: conv, top: conv, scale_param: {bias_term: true}}
    - {name: relu, type: ReLU, bottom: conv, top: conv}
    - name: ip
      type: InnerProduct
      bottom: conv
      top: ip
      inner_product_param: {num_output: 3, weight_filler: {type: gaussian, std: 0.1}}
    - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
base_lr: 0.05
lr_policy: fixed
momentum: 0.9
weight_decay: 0.001
max_iter: 100
random_seed: 5
snapshot_after_train: false
"""


def test_bn_scale_net_trains_and_solver_leaves_bn_statistics_alone():
    solver = caffeish.get_solver(parse_message(NET_SOLVER, "SolverParameter", "solver.yaml"))
    net = solver.net
    rng = np.random.default_rng(0)
    net.blobs["data"].data[...] = rng.normal(size=(8, 2, 5, 5))
    net.blobs["label"].data[...] = rng.integers(0, 3, size=8)
    bn_layer = net.layer_dict["bn"]
    # the net registered BatchNorm's three blobs with lr_mult 0
    idx = [i for i, name in enumerate(net.param_owner_names) if name.startswith("bn[")]
    assert len(idx) == 3 and all(net.param_specs[i][0] == 0.0 for i in idx)

    seen, after_forward = [], []
    original = bn_layer.forward

    def recording_forward(bottom, top):
        seen.append(bottom[0].data.astype(np.float64).copy())
        original(bottom, top)
        after_forward.append([b.data.copy() for b in bn_layer.blobs])

    bn_layer.forward = recording_forward
    losses = []
    for _ in range(30):
        solver.step(1)
        losses.append(net.last_loss)
        # the solver's update left the statistics as the iteration's forward wrote them
        for blob, want in zip(bn_layer.blobs, after_forward[-1]):
            np.testing.assert_array_equal(blob.data, want)
    assert len(seen) == 30
    assert losses[-1] < 0.5 * losses[0]

    # the running sums are exactly the moving averages of the batch statistics seen
    mean_sum, var_sum, factor = np.zeros(4), np.zeros(4), 0.0
    m = 8 * 3 * 3
    for x in seen:
        _, mu, var = bn_batch_ref(x)
        factor = 0.999 * factor + 1
        mean_sum = 0.999 * mean_sum + mu
        var_sum = 0.999 * var_sum + var * m / (m - 1)
    np.testing.assert_allclose(bn_layer.blobs[0].data, mean_sum, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn_layer.blobs[1].data, var_sum, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn_layer.blobs[2].data, [factor], rtol=1e-5)
    # Scale's gamma and beta did learn
    sc = net.layer_dict["scale"]
    assert not np.allclose(sc.blobs[0].data, 1.0) and not np.allclose(sc.blobs[1].data, 0.0)


DEPLOY = """\
name: bn_deploy
layer:
  - {name: data, type: Input, top: data, input_param: {shape: [{dim: [2, 3, 4, 4]}]}}
  - {name: bn, type: BatchNorm, bottom: data, top: bn,
     param: [{lr_mult: 0}, {lr_mult: 0}, {lr_mult: 0}]}
  - {name: scale, type: Scale, bottom: bn, top: bn, scale_param: {bias_term: true}}
  - {name: relu, type: ReLU, bottom: bn, top: bn}
"""


def test_deploy_net_uses_the_stored_statistics():
    net = caffeish.Net(parse_message(DEPLOY, "NetParameter", "deploy.yaml"), phase="TEST",
                       dtype=np.float64)
    mean_blob, var_blob, f = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0]), 2.0
    for blob, v in zip(net.params["bn"], (mean_blob, var_blob, [f])):
        blob.data[...] = v
    gamma, beta = np.array([1.0, -2.0, 0.5]), np.array([0.1, 0.2, -0.3])
    net.params["scale"][0].data[...] = gamma
    net.params["scale"][1].data[...] = beta
    x = gauss((2, 3, 4, 4), seed=42, mean=1.0)
    assert net.outputs == ["bn"]
    out = net.forward(data=x)["bn"]
    want = np.maximum(scale_ref(bn_global_ref(x, mean_blob, var_blob, f), gamma, 1, beta), 0)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(net.params["bn"][2].data, [f])
