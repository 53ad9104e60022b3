"""Convolution and Pooling: shapes, naive references, gradients, errors, Caffe's own outputs."""
import math
from pathlib import Path

import numpy as np
import pytest

from caffeish.errors import ConfigError, ShapeError
from caffeish.testing import (blobs_from, check_gradient, check_gradient_spec, forward_layer,
                              make_layer, setup_layer)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "caffe_vectors" / "tiny_net_a"


# --- naive references ---------------------------------------------------------------------------
def conv_ref(x, w, b, stride=(1, 1), pad=(0, 0), dil=(1, 1), group=1):
    """Direct cross-correlation with zero padding, groups and dilation (loops over outputs)."""
    n_img, chans, height, width = x.shape
    n_out, cg, kh, kw = w.shape
    sh, sw = stride
    ph, pw = pad
    dh, dw = dil
    oh = (height + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (width + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    xp = np.zeros((n_img, chans, height + 2 * ph, width + 2 * pw))
    xp[:, :, ph:ph + height, pw:pw + width] = x
    og = n_out // group
    y = np.zeros((n_img, n_out, oh, ow))
    for n in range(n_img):
        for o in range(n_out):
            g = o // og
            for i in range(oh):
                for j in range(ow):
                    s = 0.0
                    for c in range(cg):
                        for ki in range(kh):
                            for kj in range(kw):
                                s += w[o, c, ki, kj] * xp[n, g * cg + c, i * sh + ki * dh,
                                                          j * sw + kj * dw]
                    y[n, o, i, j] = s + (b[o] if b is not None else 0.0)
    return y


def pool_out_size(size, k, p, s, ceil=True):
    v = (size + 2 * p - k) / s
    out = (math.ceil(v) if ceil else math.floor(v)) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool_ref(x, pool, kh, kw, sh=1, sw=1, ph=0, pw=0, ceil=True):
    """Caffe's pooling written out: returns (top, argmax mask or None)."""
    n_img, chans, height, width = x.shape
    oh = pool_out_size(height, kh, ph, sh, ceil)
    ow = pool_out_size(width, kw, pw, sw, ceil)
    y = np.zeros((n_img, chans, oh, ow))
    mask = np.full((n_img, chans, oh, ow), -1)
    for n in range(n_img):
        for c in range(chans):
            for i in range(oh):
                for j in range(ow):
                    h0, w0 = i * sh - ph, j * sw - pw
                    h1p, w1p = min(h0 + kh, height + ph), min(w0 + kw, width + pw)
                    cells = [(h, w) for h in range(max(h0, 0), min(h1p, height))
                             for w in range(max(w0, 0), min(w1p, width))]
                    if pool == "MAX":
                        best, arg = -np.inf, -1
                        for h, w in cells:
                            if x[n, c, h, w] > best:
                                best, arg = x[n, c, h, w], h * width + w
                        y[n, c, i, j], mask[n, c, i, j] = best, arg
                    else:
                        y[n, c, i, j] = sum(x[n, c, h, w] for h, w in cells) / (
                            (h1p - h0) * (w1p - w0))
    return y, (mask if pool == "MAX" else None)


def distinct(shape, seed=0, scale=0.1):
    """Values with no ties and gaps far above a gradient check step (for max pooling)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2.0) * scale


def conv_spec(name="conv", **p):
    p.setdefault("weight_filler", {"type": "gaussian", "std": 0.3})
    p.setdefault("bias_filler", {"type": "gaussian", "std": 0.3})
    return {"name": name, "type": "Convolution", "convolution_param": p}


def pool_spec(name="pool", **p):
    return {"name": name, "type": "Pooling", "pooling_param": p}


# --- Convolution -----------------------------------------------------------------------------
CONV_CASES = {
    "k3": (dict(num_output=3, kernel_size=3), (2, 2, 5, 6)),
    "k3s2p1": (dict(num_output=4, kernel_size=3, stride=2, pad=1), (2, 3, 7, 6)),
    "k1": (dict(num_output=3, kernel_size=1), (2, 4, 3, 3)),
    "group2-dil2": (dict(num_output=4, kernel_size=3, group=2, dilation=2, pad=1), (2, 4, 7, 7)),
    "rect-kh2kw3-sh1sw2-ph1pw0": (dict(num_output=2, kernel_h=2, kernel_w=3, stride_h=1,
                                       stride_w=2, pad_h=1, pad_w=0), (1, 3, 5, 7)),
    "perdim-k[3,2]-s[2,1]-p[0,1]-d[1,2]": (dict(num_output=2, kernel_size=[3, 2], stride=[2, 1],
                                               pad=[0, 1], dilation=[1, 2]), (2, 2, 7, 6)),
    "nobias-group3": (dict(num_output=3, kernel_size=2, group=3, bias_term=False), (2, 6, 4, 5)),
    # 1x1 without padding: the direct path (no im2col) when there are as many images as workers
    "k1-batch5": (dict(num_output=4, kernel_size=1), (5, 3, 4, 5)),
    "k1s2-odd": (dict(num_output=3, kernel_size=1, stride=2), (4, 2, 5, 6)),
    "k1-rect-s[1,3]-nobias": (dict(num_output=2, kernel_size=1, stride=[1, 3], bias_term=False),
                              (3, 3, 3, 7)),
}


def _conv_param_tuple(p):
    def two(name, h, w, default):
        if h in p:
            return (p[h], p[w])
        v = p.get(name, default)
        v = v if isinstance(v, list) else [v]
        return tuple(v) if len(v) == 2 else (v[0], v[0])
    k = two("kernel_size", "kernel_h", "kernel_w", None)
    s = two("stride", "stride_h", "stride_w", 1)
    pad = two("pad", "pad_h", "pad_w", 0)
    d = two("dilation", "-", "-", 1)
    return k, s, pad, d


@pytest.mark.parametrize("case", list(CONV_CASES), ids=list(CONV_CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_conv_forward_vs_reference(case, dtype):
    p, shape = CONV_CASES[case]
    x = np.random.default_rng(3).standard_normal(shape)
    layer, bottom, top = forward_layer(conv_spec(**p), [x], dtype=dtype)
    w = layer.blobs[0].data.astype(np.float64)
    b = layer.blobs[1].data.astype(np.float64) if p.get("bias_term", True) else None
    assert len(layer.blobs) == (2 if b is not None else 1)
    _, s, pad, d = _conv_param_tuple(p)
    want = conv_ref(bottom[0].data.astype(np.float64), w, b, s, pad, d, p.get("group", 1))
    assert top[0].data.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", list(CONV_CASES), ids=list(CONV_CASES))
def test_conv_gradient(case):
    p, shape = CONV_CASES[case]
    x = np.random.default_rng(4).standard_normal(shape)
    check_gradient_spec(conv_spec(**p), [x], stepsize=1e-3, threshold=1e-5)


@pytest.mark.parametrize("p,shape,want", [
    (dict(num_output=5, kernel_size=3), (2, 3, 10, 9), (2, 5, 8, 7)),
    (dict(num_output=4, kernel_size=3, stride=2, pad=1), (2, 3, 10, 9), (2, 4, 5, 5)),
    (dict(num_output=2, kernel_size=3, dilation=2), (1, 1, 9, 9), (1, 2, 5, 5)),
    (dict(num_output=6, kernel_h=1, kernel_w=5, stride_h=2, stride_w=3), (3, 2, 7, 11),
     (3, 6, 4, 3)),
    (dict(num_output=4, kernel_size=2, group=2), (1, 6, 4, 4), (1, 4, 3, 3)),
], ids=["k3", "k3s2p1", "dil2", "rect", "group2"])
def test_conv_shapes(p, shape, want):
    layer = make_layer(conv_spec(**p))
    top = setup_layer(layer, blobs_from([np.zeros(shape)]))
    assert top[0].shape == want
    g = p.get("group", 1)
    k, _, _, _ = _conv_param_tuple(p)
    assert layer.blobs[0].shape == (p["num_output"], shape[1] // g) + k
    assert layer.blobs[1].shape == (p["num_output"],)


def test_conv_default_fillers_are_caffe_constant_zero():
    layer = make_layer({"name": "c", "type": "Convolution",
                        "convolution_param": {"num_output": 2, "kernel_size": 1}})
    setup_layer(layer, blobs_from([np.ones((1, 2, 3, 3))]))
    assert not layer.blobs[0].data.any() and not layer.blobs[1].data.any()


def test_conv_1d_spatial():
    """A (N, C, L) bottom: one spatial axis; weights (O, C, k)."""
    x = np.random.default_rng(5).standard_normal((2, 3, 9))
    spec = conv_spec(num_output=2, kernel_size=3, stride=2, pad=1, dilation=1)
    layer, bottom, top = forward_layer(spec, [x])
    assert layer.blobs[0].shape == (2, 3, 3)
    assert top[0].shape == (2, 2, 5)
    want = conv_ref(x[:, :, None, :], layer.blobs[0].data[:, :, None, :], layer.blobs[1].data,
                    (1, 2), (0, 1), (1, 1))[:, :, 0, :]
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12, atol=1e-12)
    check_gradient_spec(spec, [x], threshold=1e-5)


def test_conv_axis2_leading_batch_dims():
    """axis: 2 on a 5-D bottom: the first two axes are both batch axes."""
    x = np.random.default_rng(6).standard_normal((2, 2, 3, 4, 4))
    spec = conv_spec(num_output=2, kernel_size=3, pad=1, axis=2)
    layer, bottom, top = forward_layer(spec, [x])
    assert top[0].shape == (2, 2, 2, 4, 4)
    want = conv_ref(x.reshape(4, 3, 4, 4), layer.blobs[0].data, layer.blobs[1].data,
                    pad=(1, 1)).reshape(2, 2, 2, 4, 4)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12, atol=1e-12)


def test_conv_two_bottoms_share_weights():
    rng = np.random.default_rng(7)
    x0, x1 = rng.standard_normal((2, 2, 4, 4)), rng.standard_normal((2, 2, 4, 4))
    spec = conv_spec(num_output=2, kernel_size=2)
    layer, bottom, top = forward_layer(spec, [x0, x1], n_tops=2)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    np.testing.assert_allclose(top[0].data, conv_ref(x0, w, b), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(top[1].data, conv_ref(x1, w, b), rtol=1e-12, atol=1e-12)
    layer = make_layer(spec)
    bottom = blobs_from([x0, x1])
    top = setup_layer(layer, bottom, n_tops=2)
    check_gradient(layer, bottom, top, threshold=1e-5)


@pytest.mark.parametrize("group", [1, 2], ids=["group1", "group2"])
def test_conv_chunked_batch(group):
    """A small col_budget splits the batch into several GEMM chunks; results are unchanged."""
    x = np.random.default_rng(8).standard_normal((5, 4, 5, 5))
    spec = conv_spec(num_output=4, kernel_size=3, pad=1, stride=2, group=group)
    layer = make_layer(spec)
    layer.col_budget = 2 * 36 * 9  # two images per chunk
    bottom = blobs_from([x])
    top = setup_layer(layer, bottom)
    assert layer.chunk == 2
    layer.forward(bottom, top)
    want = conv_ref(x, layer.blobs[0].data, layer.blobs[1].data, (2, 2), (1, 1), (1, 1), group)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12, atol=1e-12)
    check_gradient(layer, bottom, top, threshold=1e-5)


def test_conv_backward_accumulates_param_diffs_and_overwrites_bottom_diff():
    x = np.random.default_rng(9).standard_normal((2, 2, 4, 4))
    layer, bottom, top = forward_layer(conv_spec(num_output=3, kernel_size=3, pad=1), [x])
    top[0].diff[...] = np.random.default_rng(10).standard_normal(top[0].shape)
    layer.backward(top, [True], bottom)
    w1, b1, d1 = (layer.blobs[0].diff.copy(), layer.blobs[1].diff.copy(), bottom[0].diff.copy())
    np.testing.assert_allclose(b1, top[0].diff.sum(axis=(0, 2, 3)), rtol=1e-12)
    bottom[0].diff[...] = 123.0
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * w1, rtol=1e-12)
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * b1, rtol=1e-12)
    np.testing.assert_allclose(bottom[0].diff, d1, rtol=1e-12)
    bottom[0].diff[...] = 7.0
    layer.backward(top, [False], bottom)
    assert (bottom[0].diff == 7.0).all()


def test_conv_buffers_reused_and_batch_resize():
    layer = make_layer(conv_spec(num_output=2, kernel_size=3))
    rng = np.random.default_rng(11)
    bottom = blobs_from([rng.standard_normal((2, 1, 5, 5))])
    top = setup_layer(layer, bottom)
    col, res = layer._col, layer._res
    layer.reshape(bottom, top)
    assert layer._col is col and layer._res is res
    bottom[0].reshape((3, 1, 6, 5))
    bottom[0].data[...] = rng.standard_normal((3, 1, 6, 5))
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (3, 2, 4, 3)
    want = conv_ref(bottom[0].data, layer.blobs[0].data, layer.blobs[1].data)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p,shape,err,words", [
    (dict(num_output=4, kernel_size=3, group=2), (1, 3, 5, 5), ConfigError, "group"),
    (dict(num_output=3, kernel_size=3, group=2), (1, 4, 5, 5), ConfigError, "num_output"),
    (dict(num_output=0, kernel_size=3), (1, 1, 5, 5), ConfigError, "num_output"),
    (dict(num_output=2), (1, 1, 5, 5), ConfigError, "kernel_size"),
    (dict(num_output=2, kernel_size=3, kernel_h=3, kernel_w=3), (1, 1, 5, 5), ConfigError,
     "not both"),
    (dict(num_output=2, kernel_size=[3, 3, 3]), (1, 1, 5, 5), ConfigError, "spatial dim"),
    (dict(num_output=2, kernel_size=3, stride=0), (1, 1, 5, 5), ConfigError, "stride"),
    (dict(num_output=2, kernel_h=3), (1, 1, 5, 5), ConfigError, "nonzero"),
    (dict(num_output=2, kernel_size=3), (1, 1, 4, 4, 4, 4), ConfigError, "1, 2 or 3 spatial"),
    (dict(num_output=2, kernel_size=3, kernel_h=2, kernel_w=2), (1, 1, 5), ConfigError, "2-D"),
    (dict(num_output=2, kernel_size=7), (1, 1, 5, 5), ShapeError, "kernel extent"),
], ids=["group-channels", "group-num_output", "num_output0", "no-kernel", "kernel-both",
        "kernel-3dims", "stride0", "kernel_h-only", "4d-spatial", "kernel_h-1d", "too-small"])
def test_conv_bad_params(p, shape, err, words):
    layer = make_layer(conv_spec(name="convbad", **p))
    with pytest.raises(err) as e:
        setup_layer(layer, blobs_from([np.zeros(shape)]))
    assert "convbad" in str(e.value) and words in str(e.value)


def test_conv_channel_mismatch_with_loaded_weights_names_both_shapes():
    layer = make_layer(conv_spec(name="c1", num_output=4, kernel_size=3))
    bottom = blobs_from([np.zeros((1, 3, 6, 6))])
    top = setup_layer(layer, bottom)
    bottom[0].reshape((1, 5, 6, 6))
    with pytest.raises(ShapeError) as e:
        layer.reshape(bottom, top)
    msg = str(e.value)
    assert "c1" in msg and "(1, 5, 6, 6)" in msg and "(4, 3, 3, 3)" in msg


# --- Pooling -------------------------------------------------------------------------------------
POOL_CASES = {
    "max-k2s2": (dict(pool="MAX", kernel_size=2, stride=2), (2, 2, 6, 6)),
    "max-k3s2-ceil": (dict(pool="MAX", kernel_size=3, stride=2), (1, 2, 6, 7)),
    "max-k3s2p1": (dict(pool="MAX", kernel_size=3, stride=2, pad=1), (2, 2, 5, 6)),
    "max-k3s3p2-lastdropped": (dict(pool="MAX", kernel_size=3, stride=3, pad=2), (1, 2, 4, 4)),
    "max-rect-kh2kw3-sh1sw2-ph1pw0": (dict(pool="MAX", kernel_h=2, kernel_w=3, stride_h=1,
                                           stride_w=2, pad_h=1, pad_w=0), (1, 2, 4, 7)),
    "max-k3s2-floor": (dict(pool="MAX", kernel_size=3, stride=2, round_mode="FLOOR"),
                       (1, 2, 6, 7)),
    "ave-k3s2-ceil": (dict(pool="AVE", kernel_size=3, stride=2), (2, 2, 6, 7)),
    "ave-k3s2p1": (dict(pool="AVE", kernel_size=3, stride=2, pad=1), (2, 2, 5, 6)),
    "ave-k3s3p2-lastdropped": (dict(pool="AVE", kernel_size=3, stride=3, pad=2), (1, 2, 4, 4)),
    "ave-rect-kh3kw2-ph2pw1": (dict(pool="AVE", kernel_h=3, kernel_w=2, stride=2, pad_h=2,
                                    pad_w=1), (1, 2, 5, 5)),
    "ave-k2s2-floor": (dict(pool="AVE", kernel_size=2, stride=2, round_mode="FLOOR"),
                       (1, 2, 5, 5)),
    "ave-k4s1p3": (dict(pool="AVE", kernel_size=4, stride=1, pad=3), (1, 1, 3, 3)),
}


def _pool_geom(p, shape):
    if p.get("global_pooling"):
        return shape[2], shape[3], 1, 1, 0, 0
    kh = p.get("kernel_h", p.get("kernel_size"))
    kw = p.get("kernel_w", p.get("kernel_size"))
    sh = p.get("stride_h", p.get("stride", 1))
    sw = p.get("stride_w", p.get("stride", 1))
    ph = p.get("pad_h", p.get("pad", 0))
    pw = p.get("pad_w", p.get("pad", 0))
    return kh, kw, sh, sw, ph, pw


@pytest.mark.parametrize("case", list(POOL_CASES), ids=list(POOL_CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_pool_forward_vs_reference(case, dtype):
    p, shape = POOL_CASES[case]
    x = np.random.default_rng(12).standard_normal(shape)
    ntops = 2 if p["pool"] == "MAX" else 1
    layer, bottom, top = forward_layer(pool_spec(**p), [x], dtype=dtype, n_tops=ntops)
    want, mask = pool_ref(bottom[0].data.astype(np.float64), p["pool"], *_pool_geom(p, shape),
                          ceil=p.get("round_mode", "CEIL") == "CEIL")
    assert top[0].shape == want.shape
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, want, rtol=tol, atol=tol)
    if mask is not None:
        np.testing.assert_array_equal(top[1].data, mask)


@pytest.mark.parametrize("case", list(POOL_CASES), ids=list(POOL_CASES))
def test_pool_gradient(case):
    p, shape = POOL_CASES[case]
    x = distinct(shape, seed=13)
    check_gradient_spec(pool_spec(**p), [x], stepsize=1e-3, threshold=1e-6)


def test_pool_max_two_tops_gradient():
    x = distinct((1, 2, 5, 5), seed=14)
    spec = dict(pool_spec(pool="MAX", kernel_size=3, stride=2, pad=1), top=["p", "mask"])
    layer = make_layer(spec)
    bottom = blobs_from([x])
    top = setup_layer(layer, bottom)
    assert len(top) == 2 and top[1].shape == top[0].shape
    check_gradient(layer, bottom, top, threshold=1e-6, top_index=0)


def test_pool_hand_values():
    """Numbers worked out by hand from Caffe's rules."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    # AVE k2 s2, ceil: 2x2 output; the right/bottom windows are clipped to the image (no pad, so
    # the divisor is clipped too): [[0+1+3+4)/4, (2+5)/2], [(6+7)/2, 8/1]]
    _, _, top = forward_layer(pool_spec(pool="AVE", kernel_size=2, stride=2), [x])
    np.testing.assert_allclose(top[0].data[0, 0], [[2.0, 3.5], [6.5, 8.0]])
    # AVE k2 s2 pad 1: windows start at -1; divisor is the window clipped to the padded image:
    # (-1..0)x(-1..0) -> 4 cells, holding only x[0,0]=0; (-1..0)x(1..2) -> 4 cells: 1+2 ...
    _, _, top = forward_layer(pool_spec(pool="AVE", kernel_size=2, stride=2, pad=1), [x])
    np.testing.assert_allclose(top[0].data[0, 0], [[0 / 4, 3 / 4], [9 / 4, 24 / 4]])
    # MAX with pad: padded cells never win, even against negative values.
    _, _, top = forward_layer(pool_spec(pool="MAX", kernel_size=2, stride=2, pad=1), [-1 - x],
                              n_tops=2)
    np.testing.assert_allclose(top[0].data[0, 0], [[-1, -2], [-4, -5]])
    np.testing.assert_array_equal(top[1].data[0, 0], [[0, 1], [3, 4]])
    # Ties: the first maximum in row-major order wins.
    _, _, top = forward_layer(pool_spec(pool="MAX", kernel_size=3), [np.ones((1, 1, 3, 3))],
                              n_tops=2)
    assert top[1].data.ravel().tolist() == [0.0]


@pytest.mark.parametrize("p,shape,want", [
    (dict(pool="MAX", kernel_size=3, stride=2), (2, 3, 12, 12), (2, 3, 6, 6)),
    (dict(pool="MAX", kernel_size=3, stride=2, round_mode="FLOOR"), (2, 3, 12, 12), (2, 3, 5, 5)),
    (dict(pool="AVE", kernel_size=3, stride=3, pad=2), (1, 1, 4, 4), (1, 1, 2, 2)),
    (dict(pool="AVE", global_pooling=True), (2, 3, 5, 4), (2, 3, 1, 1)),
    (dict(pool="MAX", kernel_h=2, kernel_w=3, stride_h=2, stride_w=1), (1, 1, 7, 7), (1, 1, 4, 5)),
    (dict(pool="MAX", kernel_size=3, stride=2), (1, 1, 2, 2), (1, 1, 1, 1)),
], ids=["ceil-12to6", "floor-12to5", "pad-last-window-dropped", "global", "rect",
        "kernel-larger-than-input"])
def test_pool_shapes(p, shape, want):
    layer = make_layer(pool_spec(**p))
    top = setup_layer(layer, blobs_from([np.zeros(shape)]))
    assert top[0].shape == want


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_pool_global(pool):
    x = distinct((2, 3, 4, 5), seed=15)
    _, _, top = forward_layer(pool_spec(pool=pool, global_pooling=True), [x])
    want = x.max(axis=(2, 3)) if pool == "MAX" else x.mean(axis=(2, 3))
    np.testing.assert_allclose(top[0].data[:, :, 0, 0], want, rtol=1e-12)
    check_gradient_spec(pool_spec(pool=pool, global_pooling=True), [x], threshold=1e-6)


def test_pool_global_follows_bottom_resize():
    layer = make_layer(pool_spec(pool="AVE", global_pooling=True))
    bottom = blobs_from([np.ones((1, 2, 3, 3))])
    top = setup_layer(layer, bottom)
    bottom[0].reshape((1, 2, 5, 4))
    bottom[0].data[...] = np.arange(40.0).reshape(1, 2, 5, 4)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    np.testing.assert_allclose(top[0].data[0, :, 0, 0], [9.5, 29.5])


def test_pool_stride_larger_than_kernel_matches_caffe():
    """CEIL rounding with stride > kernel and no pad leaves an empty last window: Caffe gives
    -FLT_MAX (mask -1) there for MAX, and it receives no gradient."""
    x = distinct((1, 1, 5, 5), seed=16)
    layer, bottom, top = forward_layer(pool_spec(pool="MAX", kernel_size=1, stride=3), [x],
                                       n_tops=2)
    assert top[0].shape == (1, 1, 3, 3)
    np.testing.assert_allclose(top[0].data[0, 0, :2, :2], x[0, 0, ::3, ::3][:2, :2])
    assert top[0].data[0, 0, 2, 2] == np.float32(-3.4028234663852886e38)
    assert top[1].data[0, 0, 2, 2] == -1
    top[0].diff[...] = 1.0
    layer.backward(top, [True], bottom)
    assert bottom[0].diff.sum() == 4.0


@pytest.mark.parametrize("p,ntops,err,words", [
    (dict(pool="MAX", global_pooling=True, kernel_size=2), 1, ConfigError, "global_pooling"),
    (dict(pool="MAX", kernel_size=2, pad=2), 1, ConfigError, "smaller than the kernel"),
    (dict(pool="MAX"), 1, ConfigError, "kernel_size"),
    (dict(pool="MAX", kernel_size=2, kernel_h=2, kernel_w=2), 1, ConfigError, "not both"),
    (dict(pool="MAX", kernel_h=2), 1, ConfigError, "kernel_h"),
    (dict(pool="MAX", kernel_size=2, pad=1, pad_h=1, pad_w=1), 1, ConfigError, "pad"),
    (dict(pool="MAX", kernel_size=2, stride_h=2), 1, ConfigError, "stride"),
    (dict(pool="MAX", kernel_size=2, stride=0), 1, ConfigError, "stride"),
    (dict(pool="AVE", kernel_size=2), 2, ConfigError, "mask"),
    (dict(pool="STOCHASTIC", kernel_size=3, pad=1), 1, ConfigError, "padding"),
    (dict(pool="MAX", global_pooling=True, stride=2), 1, ConfigError, "stride"),
    (dict(pool="MAX", kernel_size=3, round_mode="FLOOR"), 1, ShapeError, "too small"),
], ids=["global-with-kernel", "pad-ge-kernel", "no-kernel", "kernel-both", "kernel_h-only",
        "pad-both", "stride_h-only", "stride0", "ave-two-tops", "stochastic-pad",
        "global-stride", "too-small"])
def test_pool_bad_params(p, ntops, err, words):
    layer = make_layer(pool_spec(name="poolbad", **p))
    with pytest.raises(err) as e:
        setup_layer(layer, blobs_from([np.zeros((1, 1, 2, 2))]), n_tops=ntops)
    assert "poolbad" in str(e.value) and words in str(e.value)


def test_pool_needs_4d_bottom():
    layer = make_layer(pool_spec(name="p3", pool="MAX", kernel_size=2))
    with pytest.raises(ShapeError) as e:
        setup_layer(layer, blobs_from([np.zeros((2, 4, 4))]))
    assert "p3" in str(e.value) and "4 axes" in str(e.value)


# --- stochastic pooling ---------------------------------------------------------------------------
def test_stochastic_train_samples_proportionally():
    vals = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = np.broadcast_to(vals, (4, 5000, 2, 2)).copy()
    layer, bottom, top = forward_layer(pool_spec(pool="STOCHASTIC", kernel_size=2), [x])
    y = top[0].data.ravel()
    freq = np.array([(y == v).mean() for v in (1.0, 2.0, 3.0, 4.0)])
    assert freq.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    np.testing.assert_array_equal(layer._index.ravel(), (y - 1).astype(int))


def test_stochastic_train_forward_and_gradient():
    x = np.random.default_rng(17).uniform(0.1, 1.0, (2, 2, 5, 6))
    spec = pool_spec(pool="STOCHASTIC", kernel_size=3, stride=2)
    layer, bottom, top = forward_layer(spec, [x])
    assert top[0].shape == (2, 2, 2, 3)
    idx = layer._index
    for n, c, i, j in np.ndindex(*top[0].shape):
        h, w = divmod(int(idx[n, c, i, j]), 6)
        assert 2 * i <= h < 2 * i + 3 and 2 * j <= w < 2 * j + 3
        assert top[0].data[n, c, i, j] == x[n, c, h, w]
    check_gradient_spec(spec, [x], stepsize=1e-4, threshold=1e-6)


def test_stochastic_test_phase_weighted_average():
    x = np.random.default_rng(18).uniform(0.1, 1.0, (1, 2, 5, 5))
    x[0, 1, :3, :3] = 0.0
    spec = pool_spec(pool="STOCHASTIC", kernel_size=3, stride=2)
    _, _, top = forward_layer(spec, [x], phase="TEST")
    want = np.zeros((1, 2, 2, 2))
    for c, i, j in np.ndindex(2, 2, 2):
        win = x[0, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
        want[0, c, i, j] = (win ** 2).sum() / win.sum() if win.sum() > 0 else 0.0
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12)
    assert top[0].data[0, 1, 0, 0] == 0.0
    # The all-zero window is a kink (sum(x) crosses 0 there): skip its exact zeros.
    check_gradient_spec(spec, [x], phase="TEST", threshold=1e-6, kink=0.0, kink_range=1e-12)


# --- Caffe's own outputs (tiny_net_a) -------------------------------------------------------------
def _caffe(name):
    if not SHARED.is_dir():
        pytest.skip(f"Caffe reference vectors not found at {SHARED}")
    return np.load(SHARED / f"{name}.npy")


def _run_f32(spec, x, params=()):
    layer = make_layer(spec, dtype=np.float32)
    bottom = blobs_from([x], np.float32)
    top = setup_layer(layer, bottom)
    for blob, arr in zip(layer.blobs, params):
        blob.data[...] = arr
    layer.forward(bottom, top)
    return top[0].data


@pytest.mark.parametrize("layer_name", ["conv1", "pool1", "conv2", "pool2"])
def test_matches_caffe_tiny_net_a(layer_name):
    if layer_name == "conv1":
        got = _run_f32(conv_spec("conv1", num_output=8, kernel_size=5), _caffe("input"),
                       [_caffe("param_conv1_0"), _caffe("param_conv1_1")])
        want = _caffe("expected_conv1__before_relu1")
    elif layer_name == "pool1":
        got = _run_f32(pool_spec("pool1", pool="MAX", kernel_size=2, stride=2),
                       _caffe("expected_conv1"))
        want = _caffe("expected_pool1")
    elif layer_name == "conv2":
        got = _run_f32(conv_spec("conv2", num_output=16, kernel_size=3, pad=1),
                       _caffe("expected_pool1"),
                       [_caffe("param_conv2_0"), _caffe("param_conv2_1")])
        want = _caffe("expected_conv2")
    else:
        got = _run_f32(pool_spec("pool2", pool="AVE", kernel_size=3, stride=2),
                       _caffe("expected_conv2"))
        want = _caffe("expected_pool2")
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
