"""Deconvolution, Im2col, SPP, Crop: shapes, naive references, gradients, errors."""
import math

import numpy as np
import pytest

from caffeish.blob import Blob
from caffeish.errors import ConfigError, ShapeError
from caffeish.testing import (blobs_from, check_gradient_spec, forward_layer, make_layer,
                              setup_layer)


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def distinct(shape, seed=0, scale=0.1):
    """No ties, gaps far above a gradient-check step (for max pooling)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2.0) * scale


def build(spec, arrays, dtype=np.float64):
    layer = make_layer(spec, dtype=dtype)
    bottom = blobs_from(arrays, dtype)
    top = setup_layer(layer, bottom)
    return layer, bottom, top


def assert_names_layer(excinfo, name, type_name):
    msg = str(excinfo.value)
    assert f"layer '{name}' ({type_name})" in msg, msg


def pair(p, name, h, w, default):
    if h in p:
        return (p[h], p[w])
    v = p.get(name, default)
    v = v if isinstance(v, list) else [v]
    return (v[0], v[-1])


# ============================================================================== Deconvolution
def deconv_ref(x, w, b, stride=(1, 1), pad=(0, 0), dil=(1, 1), group=1):
    """Every input pixel scatters value * kernel into the (padded) output; then crop the pad."""
    n_img, chans, height, width = x.shape
    _, og, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dil
    oh = sh * (height - 1) + dh * (kh - 1) + 1 - 2 * ph
    ow = sw * (width - 1) + dw * (kw - 1) + 1 - 2 * pw
    full = np.zeros((n_img, og * group, oh + 2 * ph, ow + 2 * pw))
    cg = chans // group
    for n in range(n_img):
        for c in range(chans):
            g = c // cg
            for i in range(height):
                for j in range(width):
                    for o in range(og):
                        for ki in range(kh):
                            for kj in range(kw):
                                full[n, g * og + o, i * sh + ki * dh, j * sw + kj * dw] += \
                                    x[n, c, i, j] * w[c, o, ki, kj]
    y = full[:, :, ph:ph + oh, pw:pw + ow]
    if b is not None:
        y = y + b.reshape(1, -1, 1, 1)
    return y


def deconv_spec(name="deconv", **p):
    p.setdefault("weight_filler", {"type": "gaussian", "std": 0.3})
    p.setdefault("bias_filler", {"type": "gaussian", "std": 0.3})
    return {"name": name, "type": "Deconvolution", "convolution_param": p}


DECONV_CASES = {
    "k3": (dict(num_output=3, kernel_size=3), (2, 2, 3, 4)),
    "k3s2p1": (dict(num_output=2, kernel_size=3, stride=2, pad=1), (2, 3, 3, 3)),
    "k4s2p1-group2": (dict(num_output=4, kernel_size=4, stride=2, pad=1, group=2), (1, 2, 3, 2)),
    "k2s2-dil2": (dict(num_output=2, kernel_size=2, stride=2, dilation=2), (2, 2, 2, 3)),
    "rect-kh2kw3-sh2sw1-ph1pw0": (dict(num_output=2, kernel_h=2, kernel_w=3, stride_h=2,
                                       stride_w=1, pad_h=1, pad_w=0), (1, 2, 3, 3)),
    "nobias-group3-k1s3": (dict(num_output=3, kernel_size=1, stride=3, group=3,
                                bias_term=False), (2, 3, 2, 2)),
}


def _deconv_args(p, layer):
    k = pair(p, "kernel_size", "kernel_h", "kernel_w", None)
    s = pair(p, "stride", "stride_h", "stride_w", 1)
    pad = pair(p, "pad", "pad_h", "pad_w", 0)
    d = pair(p, "dilation", "-", "-", 1)
    b = layer.blobs[1].data.astype(float) if p.get("bias_term", True) else None
    return dict(b=b, stride=s, pad=pad, dil=d, group=p.get("group", 1)), k


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(DECONV_CASES), ids=list(DECONV_CASES))
def test_deconv_forward_vs_reference(case, dtype):
    p, shape = DECONV_CASES[case]
    x = rand(shape)
    layer, _, top = forward_layer(deconv_spec(**p), [x], dtype=dtype)
    args, k = _deconv_args(p, layer)
    assert layer.blobs[0].shape == (shape[1], p["num_output"] // p.get("group", 1)) + k
    want = deconv_ref(x.astype(dtype).astype(float), layer.blobs[0].data.astype(float), **args)
    assert top[0].shape == want.shape
    np.testing.assert_allclose(top[0].data, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("case", ["k3s2p1", "k4s2p1-group2", "k2s2-dil2",
                                  "rect-kh2kw3-sh2sw1-ph1pw0", "nobias-group3-k1s3"])
def test_deconv_gradient(case):
    p, shape = DECONV_CASES[case]
    check_gradient_spec(deconv_spec(**p), [rand(shape)], stepsize=1e-3, threshold=1e-5)


@pytest.mark.parametrize("p,shape,want", [
    (dict(num_output=4, kernel_size=4, stride=2, pad=1), (1, 3, 5, 6), (1, 4, 10, 12)),
    (dict(num_output=2, kernel_size=3), (2, 1, 4, 4), (2, 2, 6, 6)),
    (dict(num_output=2, kernel_size=3, stride=3, dilation=2), (1, 2, 2, 3), (1, 2, 8, 11)),
    (dict(num_output=6, kernel_size=16, stride=8, pad=4, group=3), (1, 3, 2, 2), (1, 6, 16, 16)),
    (dict(num_output=2, kernel_size=3, stride=2), (4, 3, 5), (4, 2, 11)),
], ids=["k4s2p1-2x", "k3", "k3s3d2", "k16s8p4-group3-8x", "1d"])
def test_deconv_shapes(p, shape, want):
    _, _, top = build(deconv_spec(**p), [np.zeros(shape)])
    assert top[0].shape == want


def test_deconv_1d_vs_2d_with_height_1():
    x = rand((2, 2, 4))
    spec1 = deconv_spec(num_output=3, kernel_size=3, stride=2, pad=1)
    l1, _, t1 = forward_layer(spec1, [x])
    want = deconv_ref(x[:, :, None, :], l1.blobs[0].data[:, :, None, :], l1.blobs[1].data,
                      stride=(1, 2), pad=(0, 1))
    np.testing.assert_allclose(t1[0].data, want[:, :, 0, :], rtol=1e-12, atol=1e-12)
    check_gradient_spec(spec1, [x])


def test_deconv_is_the_adjoint_of_convolution():
    """<conv_W(a), b> == <a, deconv_W(b)> for the same weights and geometry, no bias."""
    geo = dict(kernel_size=3, stride=2, pad=1, group=2, bias_term=False)
    b = rand((2, 4, 3, 3), seed=1)
    dec, _, dtop = forward_layer(deconv_spec(num_output=2, **geo), [b])
    a = rand(dtop[0].shape, seed=2)
    conv = make_layer({"type": "Convolution", "convolution_param": dict(num_output=4, **geo)})
    ab = blobs_from([a])
    ctop = setup_layer(conv, ab)
    conv.blobs[0].data[...] = dec.blobs[0].data
    conv.forward(ab, ctop)
    assert ctop[0].shape == b.shape
    assert float((ctop[0].data * b).sum()) == pytest.approx(float((a * dtop[0].data).sum()),
                                                            rel=1e-12)


def bilinear_ref(x, f):
    """Bilinear interpolation at (o + 0.5)/f - 0.5, zero outside the image (FCN upsampling)."""
    n_img, chans, height, width = x.shape
    y = np.zeros((n_img, chans, height * f, width * f))

    def tri(t):
        return max(0.0, 1.0 - abs(t))

    for oy in range(height * f):
        sy = (oy + 0.5) / f - 0.5
        for ox in range(width * f):
            sx = (ox + 0.5) / f - 0.5
            for i in range(height):
                for j in range(width):
                    wgt = tri(i - sy) * tri(j - sx)
                    if wgt:
                        y[:, :, oy, ox] += wgt * x[:, :, i, j]
    return y


@pytest.mark.parametrize("f", [2, 3], ids=["2x", "3x"])
def test_deconv_bilinear_filler_upsamples_like_fcn(f):
    chans = 3
    spec = {"type": "Deconvolution", "convolution_param": {
        "num_output": chans, "group": chans, "bias_term": False,
        "kernel_size": 2 * f - f % 2, "stride": f, "pad": math.ceil((f - 1) / 2),
        "weight_filler": {"type": "bilinear"}}}
    x = rand((2, chans, 4, 5))
    _, _, top = forward_layer(spec, [x])
    assert top[0].shape == (2, chans, 4 * f, 5 * f)
    np.testing.assert_allclose(top[0].data, bilinear_ref(x, f), rtol=1e-12, atol=1e-12)
    ramp = np.add.outer(np.arange(4.0), 2 * np.arange(5.0))[None, None].repeat(chans, 1)
    _, _, rtop = forward_layer(spec, [ramp])
    oy, ox = np.meshgrid((np.arange(4 * f) + 0.5) / f - 0.5, (np.arange(5 * f) + 0.5) / f - 0.5,
                         indexing="ij")
    inner = (slice(None), slice(None), slice(f, -f), slice(f, -f))
    np.testing.assert_allclose(rtop[0].data[inner], (oy + 2 * ox)[None, None].repeat(
        chans, 1)[inner], rtol=1e-12)


def test_deconv_chunked_batch_matches_one_chunk():
    p, shape = DECONV_CASES["k4s2p1-group2"]
    x = rand((5,) + shape[1:])
    ref, rb, rt = forward_layer(deconv_spec(**p), [x])
    layer = make_layer(deconv_spec(**p))
    layer.col_budget = 64
    bottom = blobs_from([x])
    top = setup_layer(layer, bottom)
    assert layer.chunk < 5
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data, rt[0].data, rtol=1e-13, atol=1e-13)
    d = rand(top[0].shape, seed=4)
    for lay, b, t in ((ref, rb, rt), (layer, bottom, top)):
        t[0].diff[...] = d
        for blob in lay.blobs:
            blob.diff[...] = 0
        lay.backward(t, [True], b)
    np.testing.assert_allclose(bottom[0].diff, rb[0].diff, rtol=1e-12, atol=1e-12)
    for a, b in zip(layer.blobs, ref.blobs):
        np.testing.assert_allclose(a.diff, b.diff, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p,shape,err,words", [
    (dict(kernel_size=3), (1, 2, 3, 3), ConfigError, "num_output"),
    (dict(num_output=2), (1, 2, 3, 3), ConfigError, "kernel_size"),
    (dict(num_output=3, kernel_size=3, group=2), (1, 2, 3, 3), ConfigError, "num_output (3)"),
    (dict(num_output=2, kernel_size=3, group=2), (1, 3, 3, 3), ConfigError, "group"),
    (dict(num_output=2, kernel_size=1, pad=1), (1, 2, 1, 1), ShapeError, "output size"),
], ids=["no-num_output", "no-kernel", "num_output-vs-group", "channels-vs-group",
        "output-not-positive"])
def test_deconv_errors(p, shape, err, words):
    with pytest.raises(err) as e:
        build(deconv_spec(name="up", **p), [np.zeros(shape)])
    assert words in str(e.value)
    assert_names_layer(e, "up", "Deconvolution")


def test_deconv_channel_mismatch_with_loaded_weights():
    layer = make_layer(deconv_spec(name="up", num_output=2, kernel_size=2))
    bottom = blobs_from([np.zeros((1, 3, 2, 2))])
    setup_layer(layer, bottom)
    bottom[0].reshape((1, 4, 2, 2))
    with pytest.raises(ShapeError) as e:
        layer.reshape(bottom, [Blob((), np.float64)])
    assert_names_layer(e, "up", "Deconvolution")
    assert "(3, 2, 2, 2)" in str(e.value)


# ============================================================================== Im2col
def im2col_ref(x, k, s, p, d):
    n_img, chans, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k, s, p, d
    oh = (height + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (width + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    out = np.zeros((n_img, chans * kh * kw, oh, ow))
    for n in range(n_img):
        for c in range(chans):
            for i in range(kh):
                for j in range(kw):
                    for y in range(oh):
                        for xo in range(ow):
                            h, w = y * sh - ph + i * dh, xo * sw - pw + j * dw
                            if 0 <= h < height and 0 <= w < width:
                                out[n, (c * kh + i) * kw + j, y, xo] = x[n, c, h, w]
    return out


IM2COL_CASES = {
    "k2": (dict(kernel_size=2), (2, 2, 3, 4)),
    "k3s2p1": (dict(kernel_size=3, stride=2, pad=1), (1, 2, 5, 4)),
    "k2-dil2-p1": (dict(kernel_size=2, dilation=2, pad=1), (2, 1, 4, 4)),
    "rect-kh1kw3-sh2sw1-ph0pw1": (dict(kernel_h=1, kernel_w=3, stride_h=2, stride_w=1, pad_h=0,
                                       pad_w=1), (1, 3, 3, 3)),
}


@pytest.mark.parametrize("case", list(IM2COL_CASES), ids=list(IM2COL_CASES))
def test_im2col_forward_and_gradient(case):
    p, shape = IM2COL_CASES[case]
    x = rand(shape)
    spec = {"name": "i2c", "type": "Im2col", "convolution_param": p}
    _, _, top = forward_layer(spec, [x])
    want = im2col_ref(x, pair(p, "kernel_size", "kernel_h", "kernel_w", None),
                      pair(p, "stride", "stride_h", "stride_w", 1),
                      pair(p, "pad", "pad_h", "pad_w", 0), pair(p, "dilation", "-", "-", 1))
    assert top[0].shape == want.shape
    np.testing.assert_array_equal(top[0].data, want)
    check_gradient_spec(spec, [x])


def test_im2col_float32_and_batch_axes():
    x = rand((2, 3, 2, 4, 4)).astype(np.float32)
    spec = {"type": "Im2col", "convolution_param": {"kernel_size": 3, "axis": 2}}
    _, _, top = forward_layer(spec, [x], dtype=np.float32)
    assert top[0].shape == (2, 3, 18, 2, 2)
    want = im2col_ref(x.reshape(6, 2, 4, 4).astype(float), (3, 3), (1, 1), (0, 0), (1, 1))
    np.testing.assert_array_equal(top[0].data, want.reshape(2, 3, 18, 2, 2))


@pytest.mark.parametrize("p,shape,err", [
    (dict(), (1, 1, 3, 3), ConfigError),
    (dict(kernel_size=4), (1, 1, 3, 3), ShapeError),
    (dict(kernel_size=2, stride=0), (1, 1, 3, 3), ConfigError),
], ids=["no-kernel", "kernel-too-big", "stride0"])
def test_im2col_errors(p, shape, err):
    with pytest.raises(err) as e:
        build({"name": "i2c", "type": "Im2col", "convolution_param": p}, [np.zeros(shape)])
    assert_names_layer(e, "i2c", "Im2col")


# ============================================================================== SPP
def pool_ref(x, pool, kh, kw, ph, pw):
    """Caffe's MAX / AVE pooling with stride = kernel: ceil output size, clipped windows."""
    n_img, chans, height, width = x.shape

    def out_size(size, k, p):
        o = math.ceil((size + 2 * p - k) / k) + 1
        if p and (o - 1) * k >= size + p:
            o -= 1
        return o

    oh, ow = out_size(height, kh, ph), out_size(width, kw, pw)
    y = np.zeros((n_img, chans, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * kh - ph, j * kw - pw
            h1, w1 = min(h0 + kh, height + ph), min(w0 + kw, width + pw)
            win = x[:, :, max(h0, 0):min(h1, height), max(w0, 0):min(w1, width)]
            if pool == "MAX":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                y[:, :, i, j] = win.sum(axis=(2, 3)) / ((h1 - h0) * (w1 - w0))
    return y


def spp_ref(x, height, pool):
    n_img, _, h, w = x.shape
    levels = []
    for level in range(height):
        bins = 2 ** level
        kh, kw = math.ceil(h / bins), math.ceil(w / bins)
        ph, pw = (kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2
        levels.append(pool_ref(x, pool, kh, kw, ph, pw))
    if height == 1:
        return levels[0]
    return np.concatenate([lv.reshape(n_img, -1) for lv in levels], axis=1)


SPP_CASES = {
    "max-h1": (1, "MAX", (2, 3, 5, 4), (2, 3, 1, 1)),
    "max-h2": (2, "MAX", (2, 2, 5, 6), (2, 2 * 5)),
    "ave-h2": (2, "AVE", (1, 3, 4, 4), (1, 3 * 5)),
    "max-h3": (3, "MAX", (1, 2, 8, 7), (1, 2 * 21)),
    "ave-h3": (3, "AVE", (2, 1, 7, 9), (2, 21)),
}


@pytest.mark.parametrize("case", list(SPP_CASES), ids=list(SPP_CASES))
def test_spp_forward_and_gradient(case):
    height, pool, shape, want_shape = SPP_CASES[case]
    x = distinct(shape, seed=5)
    spec = {"name": "spp", "type": "SPP", "spp_param": {"pyramid_height": height, "pool": pool}}
    _, _, top = forward_layer(spec, [x])
    assert top[0].shape == want_shape
    np.testing.assert_allclose(top[0].data, spp_ref(x, height, pool), rtol=1e-13, atol=1e-15)
    check_gradient_spec(spec, [x])


def test_spp_follows_bottom_resize_and_float32():
    spec = {"type": "SPP", "spp_param": {"pyramid_height": 2}}
    layer, bottom, top = forward_layer(spec, [distinct((1, 2, 4, 4))], dtype=np.float32)
    bottom[0].reshape((3, 2, 6, 5))
    x = distinct((3, 2, 6, 5), seed=1)
    bottom[0].data[...] = x
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (3, 10) and top[0].data.dtype == np.float32
    np.testing.assert_allclose(top[0].data, spp_ref(x.astype(np.float32).astype(float), 2, "MAX"),
                               rtol=1e-6)


def test_spp_stochastic_test_phase_is_weighted_average():
    x = np.abs(rand((1, 2, 4, 4))) + 0.1
    spec = {"type": "SPP", "spp_param": {"pyramid_height": 2, "pool": "STOCHASTIC"}}
    _, _, top = forward_layer(spec, [x], phase="TEST")
    want = []
    for bins in (1, 2):
        k = 4 // bins
        for c in range(2):
            for i in range(bins):
                for j in range(bins):
                    win = x[0, c, i * k:(i + 1) * k, j * k:(j + 1) * k]
                    want.append((win ** 2).sum() / win.sum())
    np.testing.assert_allclose(top[0].data[0], want, rtol=1e-12)


@pytest.mark.parametrize("p,shape,err,words", [
    (dict(), (1, 1, 4, 4), ConfigError, "pyramid_height"),
    (dict(pyramid_height=3), (1, 1, 3, 3), ShapeError, "too small"),
    (dict(pyramid_height=2), (1, 4, 4), ShapeError, "4 axes"),
    (dict(pyramid_height=2, pool="STOCHASTIC"), (1, 1, 5, 5), ShapeError, "STOCHASTIC"),
], ids=["no-height", "too-small", "not-4d", "stochastic-needs-pad"])
def test_spp_errors(p, shape, err, words):
    with pytest.raises(err) as e:
        build({"name": "spp", "type": "SPP", "spp_param": p}, [np.zeros(shape)])
    assert words in str(e.value)
    assert_names_layer(e, "spp", "SPP")


# ============================================================================== Crop
def crop_spec(**p):
    return {"name": "crop", "type": "Crop", "crop_param": p}


CROP_CASES = {
    "axis2-offset1": (dict(offset=[1]), (2, 3, 6, 5), (1, 1, 3, 4),
                      (slice(None), slice(None), slice(1, 4), slice(1, 5))),
    "axis2-default-offset0": (dict(), (2, 3, 6, 5), (2, 1, 2, 3),
                              (slice(None), slice(None), slice(0, 2), slice(0, 3))),
    "axis1-per-axis": (dict(axis=1, offset=[1, 2, 0]), (2, 4, 5, 3), (2, 2, 3, 3),
                       (slice(None), slice(1, 3), slice(2, 5), slice(0, 3))),
    "axis-1-offset2": (dict(axis=-1, offset=[2]), (2, 3, 6), (1, 1, 3),
                       (slice(None), slice(None), slice(2, 5))),
    "axis0-2d": (dict(axis=0, offset=[1, 0]), (4, 3), (2, 2), (slice(1, 3), slice(0, 2))),
}


@pytest.mark.parametrize("case", list(CROP_CASES), ids=list(CROP_CASES))
def test_crop_forward_backward_gradient(case):
    p, s0, s1, region = CROP_CASES[case]
    x = rand(s0)
    layer, bottom, top = forward_layer(crop_spec(**p), [x, np.zeros(s1)])
    want = x[region]
    assert top[0].shape == want.shape
    np.testing.assert_array_equal(top[0].data, want)
    d = rand(want.shape, seed=3)
    top[0].diff[...] = d
    bottom[0].diff[...] = 7.0
    bottom[1].diff[...] = 7.0
    layer.backward(top, [True, True], bottom)
    pad = np.zeros(s0)
    pad[region] = d
    np.testing.assert_array_equal(bottom[0].diff, pad)
    assert np.all(bottom[1].diff == 0)
    check_gradient_spec(crop_spec(**p), [x, np.zeros(s1)], check_bottom=[0])


def test_crop_axes_before_axis_keep_bottom0_and_are_not_checked():
    """FCN's crop: a 21-channel score map cropped to its 3-channel image from axis 2 (Caffe
    checks only the cropped axes; a smaller bottom[1] there is fine too)."""
    x = np.random.default_rng(2).standard_normal((2, 21, 9, 9))
    layer, bottom, top = build(crop_spec(axis=2, offset=[3]), [x, np.zeros((1, 3, 4, 5))])
    assert top[0].shape == (2, 21, 4, 5)
    layer.forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, x[:, :, 3:7, 3:8])


def test_crop_only_first_bottom_is_forced_backward():
    layer, _, _ = build(crop_spec(), [np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 2, 2))])
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(1)


@pytest.mark.parametrize("p,s0,s1,err,words", [
    (dict(offset=[1, 1]), (1, 2, 5, 5, 5), (1, 2, 3, 3, 3), ConfigError, "2 offsets"),
    (dict(offset=[2]), (1, 1, 4, 4), (1, 1, 3, 3), ShapeError, "dimension 2"),
    (dict(), (1, 1, 4, 4), (1, 1, 4), ShapeError, "same number of axes"),
    (dict(axis=4), (1, 1, 4, 4), (1, 1, 2, 2), ConfigError, "axis"),
], ids=["offset-count", "too-big", "num-axes", "bad-axis"])
def test_crop_errors(p, s0, s1, err, words):
    with pytest.raises(err) as e:
        build(crop_spec(**p), [np.zeros(s0), np.zeros(s1)])
    assert words in str(e.value)
    assert_names_layer(e, "crop", "Crop")


def test_im2col_1d_matches_2d_with_height_1():
    x = rand((2, 3, 7))
    spec = {"type": "Im2col", "convolution_param": {"kernel_size": 3, "stride": 2, "pad": 1}}
    _, _, top = forward_layer(spec, [x])
    want = im2col_ref(x[:, :, None, :], (1, 3), (1, 2), (0, 1), (1, 1))
    assert top[0].shape == (2, 9, 4)
    np.testing.assert_array_equal(top[0].data, want[:, :, 0, :])
    check_gradient_spec(spec, [x])
