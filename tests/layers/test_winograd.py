"""Winograd F(2x2, 5x5) on the CPU (backend/cpu/winograd.py): the matrices, the hand-written
transforms against them, convolutions against a direct reference, gradients, the engine choice."""
from fractions import Fraction

import numpy as np
import pytest

from caffeish.backend.cpu import conv_ops, winograd as W
from caffeish.backend.cpu.conv_ops import _buffer
from caffeish.backend.cpu.threads import run_blocks, workers
from caffeish.testing import check_gradient_spec, forward_layer, make_layer, setup_layer, blobs_from


def conv_direct(x, w, b, ph, pw):
    """Cross-correlation by shifted windows in float64 (no Winograd, no im2col)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh, ow = h + 2 * ph - kh + 1, wd + 2 * pw - kw + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("oc,nchw->nohw", w[:, :, i, j].astype(np.float64),
                           xp[:, :, i:i + oh, j:j + ow])
    return y + (0 if b is None else np.asarray(b, np.float64).reshape(1, -1, 1, 1))


@pytest.mark.parametrize("m,r", [(2, 5), (2, 3), (4, 3), (3, 2), (5, 2)])
def test_matrices_compute_the_correlation_exactly(m, r):
    pts = [0, 1, -1, 2, -2, Fraction(1, 2), -Fraction(1, 2)][:m + r - 2]
    at, g, bt = W.winograd_matrices(m, r, pts)
    n = m + r - 1
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(3):
        gv = [Fraction(int(v)) for v in rng.integers(-9, 10, r)]
        dv = [Fraction(int(v)) for v in rng.integers(-9, 10, n)]
        gg = [sum(g[i][k] * gv[k] for k in range(r)) for i in range(n)]
        bd = [sum(bt[i][k] * dv[k] for k in range(n)) for i in range(n)]
        y = [sum(at[j][i] * gg[i] * bd[i] for i in range(n)) for j in range(m)]
        assert y == [sum(gv[k] * dv[j + k] for k in range(r)) for j in range(m)]


@pytest.mark.parametrize("m,r", [(2, 5), (4, 3)], ids=["F(2x2,5x5)", "F(4x4,3x3)"])
def test_hand_written_transforms_are_the_matrices(m, r):
    """One 6x6 input tile (a 6x6 image, no padding) gives one m x m output tile."""
    at, g, bt = (np.array([[float(v) for v in row] for row in mat])
                 for mat in W.winograd_matrices(m, r, (0, 1, -1, 2, -2)))
    rng = np.random.default_rng(r)
    x = rng.standard_normal((1, 2, 6, 6))
    oh, ow, th, tw, s, src, dst = W._plan(6, 6, 0, 0, r)
    assert (oh, ow, th, tw) == (m, m, 1, 1) and s == 1 + 5 // m
    v = np.full((36, 2, 1), np.nan)
    rows = np.zeros((m, 6, 2 * s + 2 * tw))
    W._transform_in(x, src, s, tw, v, np.empty((6, m * s)), rows)
    for c in range(2):
        np.testing.assert_allclose(v[:, c, 0], (bt @ x[0, c] @ bt.T).ravel(), atol=1e-12)
    mm = rng.standard_normal((36, 3, 1))
    y = np.full((1, 3, m, m), np.nan)
    bias = np.array([0.5, -1.0, 2.0])
    W._transform_out(mm, bias, dst, y, np.empty((m, 6, 3)), np.empty((m, m, 3)))
    for o in range(3):
        np.testing.assert_allclose(y[0, o], at @ mm[:, o, 0].reshape(6, 6) @ at.T + bias[o],
                                   atol=1e-12)
    w = rng.standard_normal((3, 2, r, r))
    u = W.filter_transform(w, np.float64)
    assert u.shape == (36, 3, 2)
    np.testing.assert_allclose(u[:, 1, 0], (g @ w[1, 0] @ g.T).ravel(), atol=1e-12)
    if r == 5:      # F(5x5, 2x2)'s transform of a 2x2 top-gradient tile: G2 D G2^T
        g2 = np.array([[float(v) for v in row]
                       for row in W.winograd_matrices(5, 2, W._POINTS)[1]])
        dy = rng.standard_normal((1, 3, 2, 2))
        ud = np.full((36, 3, 1), np.nan)
        W._transform_dy(dy, dst, ud, np.empty((4, 3)), np.empty((2, 6, 3)))
        for o in range(3):
            np.testing.assert_allclose(ud[:, o, 0], (g2 @ dy[0, o] @ g2.T).ravel(),
                                       atol=1e-12)


# (N, C, H, W, O, ph, pw): one image per GEMM block (>= 64 tiles) and several (small images),
# odd output sizes, every padding 0..4, fewer images than workers
SHAPES = [(3, 16, 16, 16, 16, 2, 2), (5, 16, 7, 8, 17, 4, 3), (4, 17, 13, 11, 16, 0, 2),
          (2, 16, 9, 12, 16, 1, 1), (1, 16, 18, 17, 16, 3, 0)]


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
@pytest.mark.parametrize("nw", [1, 2, 3])
def test_conv_winograd_vs_direct(shape, nw):
    n, c, h, wd, o, ph, pw = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((n, c, h, wd))
    w = rng.standard_normal((o, c, 5, 5)) * 0.1
    b = rng.standard_normal(o)
    want = conv_direct(x, w, b, ph, pw)
    for dt, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        y = np.full(want.shape, np.nan, dt)
        W.conv_winograd(x.astype(dt), W.filter_transform(w, dt), b.astype(dt), y, ph, pw,
                        _buffer, run_blocks, nw)
        err = np.abs(y - want).max() / np.abs(want).max()
        assert err < tol, (dt, err)


# 3x3 filters: F(4x4, 3x3) on the same 6x6 tiles; every padding 0..2, odd sizes
SHAPES3 = [(3, 16, 16, 16, 16, 1, 1), (5, 16, 7, 9, 17, 2, 1), (4, 17, 13, 11, 16, 0, 2),
           (1, 16, 18, 17, 16, 2, 0), (2, 32, 8, 8, 24, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES3, ids=[str(s) for s in SHAPES3])
@pytest.mark.parametrize("nw", [1, 2])
def test_conv_winograd_3x3_vs_direct(shape, nw):
    n, c, h, wd, o, ph, pw = shape
    rng = np.random.default_rng(sum(shape) + 3)
    x = rng.standard_normal((n, c, h, wd))
    w = rng.standard_normal((o, c, 3, 3)) * 0.2
    b = rng.standard_normal(o)
    want = conv_direct(x, w, b, ph, pw)
    for dt, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        y = np.full(want.shape, np.nan, dt)
        W.conv_winograd(x.astype(dt), W.filter_transform(w, dt), b.astype(dt), y, ph, pw,
                        _buffer, run_blocks, nw, r=3)
        err = np.abs(y - want).max() / np.abs(want).max()
        assert err < tol, (dt, err)


@pytest.mark.parametrize("pad,size,batch", [(1, 16, 3), (0, 18, 2), (2, 9, 3), (1, 8, 1)])
def test_3x3_layer_matches_im2col_and_its_gradient_checks(pad, size, batch, wino_calls):
    """Forward by F(4x4, 3x3), the input gradient too where pad >= 1, the weight gradient by
    im2col; all against im2col alone in float64, then a finite-difference check."""
    x = np.random.default_rng(pad + size).standard_normal((batch, 16, size, size + 1))
    out = []
    for engine in (None, "CAFFE"):
        layer = make_layer(wino_spec(engine, kernel_size=3, pad=pad), dtype=np.float64, seed=3)
        bottom = blobs_from([x])
        top = setup_layer(layer, bottom)
        layer.forward(bottom, top)
        top[0].diff[...] = np.random.default_rng(9).standard_normal(top[0].shape)
        layer.backward(top, [True], bottom)
        out.append((top[0].data.copy(), bottom[0].diff.copy(), layer.blobs[0].diff.copy(),
                    layer.blobs[1].diff.copy()))
    if batch >= workers():
        assert wino_calls == [(pad, pad)] + ([(2 - pad, 2 - pad)] if pad >= 1 else [])
    else:                   # fewer images than workers: im2col's batched path, all cores
        assert wino_calls == []
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
    small = np.random.default_rng(4).standard_normal((1, 16, 8, 9))
    check_gradient_spec(wino_spec(kernel_size=3, pad=pad), [small], stepsize=1e-3,
                        threshold=1e-5)


def wgrad_direct(x, dy, ph, pw, r=5):
    """sum over images and positions of dy * the shifted padded input, float64."""
    n, c, h, wd = x.shape
    oh, ow = dy.shape[2:]
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    dw = np.zeros((dy.shape[1], c, r, r))
    for i in range(r):
        for j in range(r):
            dw[:, :, i, j] = np.einsum("nohw,nchw->oc", dy, xp[:, :, i:i + oh, j:j + ow])
    return dw


# one image per block, several (4 images of 64 tiles; 13 of 20), a short last block, odd sizes
WGRAD_SHAPES = [(1, 16, 16, 16, 16, 2, 2), (6, 16, 16, 17, 17, 2, 1), (5, 17, 15, 16, 16, 3, 4),
                (2, 16, 20, 20, 16, 0, 0), (7, 16, 8, 9, 16, 2, 2), (30, 16, 12, 12, 20, 0, 0)]


def check_wgrad(shape, nw, r, seed, tol32):
    """conv_winograd_wgrad with r x r filters against wgrad_direct, float64 and float32."""
    n, c, h, wd, o, ph, pw = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, wd))
    dy = rng.standard_normal((n, o, h + 2 * ph - (r - 1), wd + 2 * pw - (r - 1)))
    if r == 5:      # the 5x5 shapes are all ones conv_ops would send here
        assert W.eligible(x.shape, o, (r, r, 1, 1, ph, pw, 1, 1) + dy.shape[2:], 1)
    want = wgrad_direct(x, dy, ph, pw, r)
    for dt, tol in ((np.float64, 1e-12), (np.float32, tol32)):
        got = W.conv_winograd_wgrad(x.astype(dt), dy.astype(dt), ph, pw, _buffer, run_blocks,
                                    nw, r=r)
        assert got.shape == want.shape
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < tol, (dt, err)


@pytest.mark.parametrize("shape", WGRAD_SHAPES, ids=[str(s) for s in WGRAD_SHAPES])
@pytest.mark.parametrize("nw", [1, 2])
def test_conv_winograd_wgrad_vs_direct(shape, nw):
    check_wgrad(shape, nw, 5, sum(shape) + 1, 3e-5)


WGRAD3_SHAPES = [(2, 16, 16, 16, 16, 1, 1), (3, 17, 13, 18, 16, 0, 0), (5, 16, 9, 9, 20, 2, 2),
                 (1, 16, 30, 29, 16, 1, 0)]


@pytest.mark.parametrize("shape", WGRAD3_SHAPES, ids=[str(s) for s in WGRAD3_SHAPES])
@pytest.mark.parametrize("nw", [1, 2])
def test_conv_winograd_wgrad_3x3_vs_direct(shape, nw):
    """F(3x3, 4x4): 4x4 tiles of dy against the forward's 6x6 input tiles."""
    check_wgrad(shape, nw, 3, sum(shape) + 2, 2e-5)


def test_3x3_weight_gradient_through_winograd_in_a_layer(monkeypatch):
    """With the rule relaxed, a 3x3 layer's weight gradient goes through F(3x3, 4x4) and
    matches im2col's (float64)."""
    monkeypatch.setattr(W, "WGRAD3_MIN", 8)
    wgrad = []
    real = W.conv_winograd_wgrad
    monkeypatch.setattr(W, "conv_winograd_wgrad",
                        lambda *a, **k: wgrad.append(k.get("r")) or real(*a, **k))
    x = np.random.default_rng(7).standard_normal((3, 16, 12, 13))
    diffs = []
    for engine in (None, "CAFFE"):
        layer = make_layer(wino_spec(engine, kernel_size=3, pad=1), dtype=np.float64, seed=3)
        bottom = blobs_from([x])
        top = setup_layer(layer, bottom)
        layer.forward(bottom, top)
        top[0].diff[...] = np.random.default_rng(9).standard_normal(top[0].shape)
        layer.backward(top, [True], bottom)
        diffs.append([layer.blobs[0].diff.copy(), layer.blobs[1].diff.copy(),
                      bottom[0].diff.copy()])
    assert wgrad == [3]
    for a, b in zip(*diffs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())


def wino_spec(engine=None, **p):
    p = {"num_output": 16, "kernel_size": 5, "pad": 2, **p}
    p.setdefault("weight_filler", {"type": "gaussian", "std": 0.1})
    p.setdefault("bias_filler", {"type": "gaussian", "std": 0.3})
    if engine:
        p["engine"] = engine
    return {"name": "conv", "type": "Convolution", "convolution_param": p}


def test_eligibility():
    geom = (5, 5, 1, 1, 2, 2, 1, 1, 16, 16)
    assert W.eligible((2, 16, 16, 16), 16, geom, 1)
    assert W.eligible((2, 16, 12, 13), 16, (5, 5, 1, 1, 4, 4, 1, 1, 16, 17), 1)
    assert W.eligible((2, 16, 15, 15), 16, (5, 5, 1, 1, 2, 2, 1, 1, 15, 15), 1)   # 8x8 tiles
    assert not W.eligible((2, 3, 16, 16), 32, geom, 1)          # too few input channels
    assert not W.eligible((2, 32, 16, 16), 8, geom, 1)          # too few outputs
    assert not W.eligible((2, 32, 16, 16), 32, geom, 2)         # groups
    assert not W.eligible((2, 32, 16, 16), 32, (5, 5, 2, 2, 2, 2, 1, 1, 8, 8), 1)   # stride
    assert W.eligible((2, 32, 16, 16), 32, (3, 3, 1, 1, 1, 1, 1, 1, 16, 16), 1)      # 3x3
    assert not W.eligible((2, 32, 16, 16), 32, (3, 3, 1, 1, 3, 3, 1, 1, 20, 20), 1)  # pad 3
    assert not W.eligible((2, 32, 7, 7), 32, (3, 3, 1, 1, 1, 1, 1, 1, 7, 7), 1)     # 7x7
    assert not W.eligible((2, 32, 16, 16), 32, (3, 3, 1, 1, 1, 1, 2, 2, 14, 14), 1)  # dilation
    assert not W.eligible((2, 32, 16, 16), 32, (3, 5, 1, 1, 1, 2, 1, 1, 16, 16), 1)  # 3x5
    assert W.dgrad_eligible((3, 3, 1, 1, 1, 1, 1, 1, 16, 16))
    assert not W.dgrad_eligible((3, 3, 1, 1, 0, 0, 1, 1, 16, 16))
    assert W.wgrad_eligible((3, 3, 1, 1, 1, 1, 1, 1, 56, 56), 64, 64)      # 3x3: big planes
    assert not W.wgrad_eligible((3, 3, 1, 1, 1, 1, 1, 1, 16, 16), 64, 64)  # small planes
    assert not W.wgrad_eligible((3, 3, 1, 1, 1, 1, 1, 1, 56, 56), 256, 256)   # many pairs
    assert not W.eligible((2, 32, 16, 16), 32, (5, 5, 1, 1, 5, 5, 1, 1, 22, 22), 1)  # pad 5
    assert W.eligible((2, 32, 8, 8), 32, (5, 5, 1, 1, 2, 2, 1, 1, 8, 8), 1)          # 8x8
    assert not W.eligible((2, 32, 8, 7), 32, (5, 5, 1, 1, 2, 2, 1, 1, 8, 7), 1)      # 8x7


def test_layer_forward_default_engine_is_winograd_caffe_engine_is_im2col(wino_calls):
    x = np.random.default_rng(5).standard_normal((2, 16, 16, 17))
    calls = wino_calls
    layer, bottom, top = forward_layer(wino_spec(), [x], dtype=np.float32)
    assert calls
    want = conv_direct(bottom[0].data.astype(np.float64), layer.blobs[0].data,
                       layer.blobs[1].data, 2, 2)
    np.testing.assert_allclose(top[0].data, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())
    calls.clear()
    layer, bottom, top = forward_layer(wino_spec("CAFFE"), [x], dtype=np.float32)
    assert not calls and layer.algo == "im2col"
    np.testing.assert_allclose(top[0].data, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.fixture
def wino_calls(monkeypatch):
    calls = []
    real = W.conv_winograd
    monkeypatch.setattr(W, "conv_winograd",
                        lambda *a, **k: calls.append(a[4:6]) or real(*a, **k))
    return calls


def test_layer_gradient_through_winograd(wino_calls, monkeypatch):
    monkeypatch.setattr(conv_ops, "workers", lambda: 1)     # one image: Winograd on one worker
    wgrad = []
    real = W.conv_winograd_wgrad
    monkeypatch.setattr(W, "conv_winograd_wgrad",
                        lambda *a, **k: wgrad.append(1) or real(*a, **k))
    x = np.random.default_rng(6).standard_normal((1, 16, 12, 12))
    check_gradient_spec(wino_spec(pad=4), [x], stepsize=1e-3, threshold=1e-5)
    assert (4, 4) in wino_calls and (0, 0) in wino_calls and wgrad   # all three passes


@pytest.mark.parametrize("pad,size,batch", [(0, 20, 3), (0, 20, 1), (1, 19, 3), (2, 16, 3),
                                            (3, 14, 3), (4, 12, 1), (2, 8, 3), (0, 12, 3)])
def test_layer_backward_matches_im2col(pad, size, batch, wino_calls, monkeypatch):
    """Each pass by Winograd where its rule says so (forward: 8x8+ outputs; weight gradient:
    16x16+; input gradient: pad >= 2), the rest by im2col, against im2col alone, float64. Batch 1
    with two workers takes im2col's batched path."""
    wgrad = []
    real = W.conv_winograd_wgrad
    monkeypatch.setattr(W, "conv_winograd_wgrad",
                        lambda *a, **k: wgrad.append(1) or real(*a, **k))
    rng = np.random.default_rng(pad)
    x = rng.standard_normal((batch, 16, size, size + 1))
    out = []
    for engine in (None, "CAFFE"):
        layer = make_layer(wino_spec(engine, pad=pad), dtype=np.float64, seed=3)
        bottom = blobs_from([x])
        top = setup_layer(layer, bottom)
        layer.forward(bottom, top)
        top[0].diff[...] = np.random.default_rng(9).standard_normal(top[0].shape)
        layer.backward(top, [True], bottom)
        out.append((top[0].data.copy(), bottom[0].diff.copy(), layer.blobs[0].diff.copy(),
                    layer.blobs[1].diff.copy()))
    oh = size + 2 * pad - 4
    if batch >= workers():
        assert wino_calls == [(pad, pad)] + ([(4 - pad, 4 - pad)] if pad >= 2 else [])
        assert len(wgrad) == (oh >= 16)
    else:                   # fewer images than workers: im2col's batched path, all cores
        assert wino_calls == [] and not wgrad
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
