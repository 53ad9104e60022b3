"""SigmoidCrossEntropyLoss, HingeLoss, ContrastiveLoss, InfogainLoss, MultinomialLogisticLoss:
naive references, gradients, Caffe's normalization defaults, label rules, errors."""
import math

import numpy as np
import pytest

from caffeish.errors import ConfigError, DataError, ShapeError
from caffeish.io.formats import write_binaryproto
from caffeish.testing import (blobs_from, check_gradient_spec, forward_layer, make_layer,
                              setup_layer)

KLOG = float(np.float32(1e-20))


def gauss(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, shape)


def int_labels(shape, n_classes, seed=0):
    return np.random.default_rng(seed).integers(0, n_classes, shape).astype(np.float64)


def loss_of(top):
    assert top[0].shape == ()
    return float(top[0].data)


def backward(layer, bottom, top, weight=1.0, prop=None):
    top[0].diff[...] = weight
    layer.backward(top, prop or [True] + [False] * (len(bottom) - 1), bottom)
    return bottom[0].diff.copy()


# --- SigmoidCrossEntropyLoss ---------------------------------------------------------------------
def sce_ref(x, t, ignore=None, normalization="BATCH_SIZE"):
    """Plain -t log p - (1 - t) log(1 - p) per element, p = 1 / (1 + e^-x)."""
    loss, count = 0.0, 0
    for xv, tv in zip(x.reshape(-1), t.reshape(-1)):
        if ignore is not None and int(tv) == ignore:
            continue
        p = 1.0 / (1.0 + math.exp(-xv))
        loss -= tv * math.log(p) + (1 - tv) * math.log(1 - p)
        count += 1
    n = x.shape[0]
    norm = {"FULL": x.size, "VALID": count, "BATCH_SIZE": n, "NONE": 1}[normalization]
    return loss / max(1, norm)


def sce(**loss_param):
    spec = {"type": "SigmoidCrossEntropyLoss"}
    if loss_param:
        spec["loss_param"] = loss_param
    return spec


SCE_CASES = [
    ("default-batch", sce(), None, "BATCH_SIZE"),
    ("full", sce(normalization="FULL"), None, "FULL"),
    ("valid", sce(normalization="VALID"), None, "VALID"),
    ("none", sce(normalization="NONE"), None, "NONE"),
    ("legacy-normalize-true", sce(normalize=True), None, "VALID"),
    ("legacy-normalize-false", sce(normalize=False), None, "BATCH_SIZE"),
    ("ignore-valid", sce(ignore_label=-1, normalization="VALID"), -1, "VALID"),
    ("ignore-default", sce(ignore_label=-1), -1, "BATCH_SIZE"),
]


def sce_inputs(shape=(3, 4, 2), ignore=None, seed=0):
    x = gauss(shape, seed=seed, scale=2.0)
    t = np.random.default_rng(seed + 1).random(shape)
    t.reshape(-1)[::3] = np.round(t.reshape(-1)[::3])
    if ignore is not None:
        t.reshape(-1)[1::4] = ignore
    return x, t


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,spec,ignore,norm", SCE_CASES, ids=[c[0] for c in SCE_CASES])
def test_sigmoid_cross_entropy_forward(name, spec, ignore, norm, dtype):
    x, t = sce_inputs(ignore=ignore)
    _, _, top = forward_layer(spec, [x, t], dtype=dtype)
    assert top[0].data.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss_of(top) == pytest.approx(sce_ref(x, t, ignore, norm), rel=tol)


def test_sigmoid_cross_entropy_is_stable_for_large_scores():
    x = np.array([[-200.0, 200.0, -50.0, 50.0]])
    t = np.array([[1.0, 0.0, 0.0, 1.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        layer, bottom, top = forward_layer(sce(), [x, t], dtype=np.float32)
    # -log sigmoid(-200) = 200 (+ e^-200), likewise for the mirrored pair; the others ~ e^-50
    assert loss_of(top) == pytest.approx(400.0 + 2 * math.exp(-50.0), rel=1e-6)
    np.testing.assert_allclose(backward(layer, bottom, top), [[-1.0, 1.0, 0.0, 0.0]], atol=1e-7)


@pytest.mark.parametrize("name,spec,ignore,norm", SCE_CASES[:2] + SCE_CASES[6:7],
                         ids=["default-batch", "full", "ignore-valid"])
def test_sigmoid_cross_entropy_gradient(name, spec, ignore, norm):
    x, t = sce_inputs((2, 3, 2), ignore=ignore, seed=3)
    check_gradient_spec(spec, [x, t], stepsize=1e-3, threshold=1e-3, check_bottom=0)


def test_sigmoid_cross_entropy_backward_reference():
    x, t = sce_inputs((2, 5), ignore=-1, seed=4)
    layer, bottom, top = forward_layer(sce(ignore_label=-1, normalization="VALID"), [x, t])
    diff = backward(layer, bottom, top, weight=2.0)
    valid = t != -1
    want = np.where(valid, 2.0 * (1 / (1 + np.exp(-x)) - t) / valid.sum(), 0.0)
    np.testing.assert_allclose(diff, want, rtol=1e-12, atol=1e-15)


def test_sigmoid_cross_entropy_all_ignored_gives_zero():
    x = gauss((2, 3))
    t = np.full((2, 3), 5.0)
    layer, bottom, top = forward_layer(sce(ignore_label=5, normalization="VALID"), [x, t])
    assert loss_of(top) == 0.0
    assert np.all(backward(layer, bottom, top) == 0.0)


def test_sigmoid_cross_entropy_errors():
    with pytest.raises(ShapeError, match=r"sce1.*SigmoidCrossEntropyLoss.*same count"):
        forward_layer(dict(sce(), name="sce1"), [gauss((2, 3)), np.zeros((2, 4))])
    layer, bottom, top = forward_layer(dict(sce(), name="sce2"), list(sce_inputs((2, 3))))
    with pytest.raises(ConfigError, match=r"sce2.*label input"):
        layer.backward(top, [True, True], bottom)


# --- HingeLoss -----------------------------------------------------------------------------------
def hinge_ref(x, labels, norm="L1"):
    n = x.shape[0]
    rows = x.reshape(n, -1)
    loss = 0.0
    for i in range(n):
        for j in range(rows.shape[1]):
            s = -1.0 if j == int(labels.reshape(-1)[i]) else 1.0
            m = max(0.0, 1.0 + s * rows[i, j])
            loss += m if norm == "L1" else m * m
    return loss / n


def hinge(norm=None):
    spec = {"type": "HingeLoss"}
    if norm:
        spec["hinge_loss_param"] = {"norm": norm}
    return spec


def hinge_inputs(shape, seed=0):
    x = gauss(shape, seed=seed)
    # keep 1 + s x away from 0, the kink
    x[np.abs(np.abs(x) - 1.0) < 0.05] += 0.2
    labels = int_labels((shape[0],), int(np.prod(shape[1:])), seed=seed + 1)
    return x, labels


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("norm", [None, "L1", "L2"], ids=["default", "L1", "L2"])
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 2, 2)], ids=["2d", "4d"])
def test_hinge_forward(shape, norm, dtype):
    x, labels = hinge_inputs(shape)
    _, _, top = forward_layer(hinge(norm), [x, labels], dtype=dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss_of(top) == pytest.approx(hinge_ref(x, labels, norm or "L1"), rel=tol)


@pytest.mark.parametrize("norm", ["L1", "L2"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2)], ids=["2d", "3d"])
def test_hinge_gradient(shape, norm):
    x, labels = hinge_inputs(shape, seed=5)
    check_gradient_spec(hinge(norm), [x, labels], stepsize=1e-3, threshold=1e-3,
                        check_bottom=0)


def test_hinge_backward_reference():
    x = np.array([[0.5, -2.0, 0.2], [3.0, 0.0, -0.4]])
    labels = np.array([0.0, 2.0])
    layer, bottom, top = forward_layer(hinge("L1"), [x, labels])
    # margins: row 0: [max(0, 1-0.5), max(0, 1-2), 1.2] = [0.5, 0, 1.2]
    #          row 1: [4.0, 1.0, max(0, 1+0.4)] = [4, 1, 1.4]
    assert loss_of(top) == pytest.approx((0.5 + 1.2 + 4.0 + 1.0 + 1.4) / 2)
    np.testing.assert_allclose(backward(layer, bottom, top, weight=3.0),
                               3.0 / 2 * np.array([[-1.0, 0.0, 1.0], [1.0, 1.0, -1.0]]))
    layer, bottom, top = forward_layer(hinge("L2"), [x, labels])
    np.testing.assert_allclose(backward(layer, bottom, top),
                               1.0 / 2 * np.array([[-1.0, 0.0, 2.4], [8.0, 2.0, -2.8]]))


def test_hinge_errors():
    x = gauss((3, 4))
    with pytest.raises(DataError, match=r"hinge1.*HingeLoss.*label value 4.*\[0, 4\)"):
        forward_layer(dict(hinge(), name="hinge1"), [x, np.array([0.0, 4.0, 1.0])])
    with pytest.raises(ShapeError, match=r"hinge2.*HingeLoss.*one label per example"):
        forward_layer(dict(hinge(), name="hinge2"), [x, np.zeros((3, 2))])
    with pytest.raises(ShapeError, match=r"hinge3.*HingeLoss.*same first dimension"):
        forward_layer(dict(hinge(), name="hinge3"), [x, np.zeros(2)])


# --- ContrastiveLoss -----------------------------------------------------------------------------
def contrastive_ref(a, b, y, margin=1.0, legacy=False):
    n = a.shape[0]
    loss = 0.0
    for i in range(n):
        d2 = float(np.sum((a[i].reshape(-1) - b[i].reshape(-1)) ** 2))
        if int(y.reshape(-1)[i]):
            loss += d2
        elif legacy:
            loss += max(margin - d2, 0.0)
        else:
            loss += max(margin - math.sqrt(d2), 0.0) ** 2
    return loss / (2.0 * n)


def contrastive(margin=None, legacy=None):
    spec = {"type": "ContrastiveLoss"}
    p = {}
    if margin is not None:
        p["margin"] = margin
    if legacy is not None:
        p["legacy_version"] = legacy
    if p:
        spec["contrastive_loss_param"] = p
    return spec


def pair_inputs(n=6, c=3, seed=0, scale=0.4, shape_tail=()):
    a = gauss((n, c) + shape_tail, seed=seed, scale=scale)
    b = gauss((n, c) + shape_tail, seed=seed + 1, scale=scale)
    y = np.array([1.0, 0.0] * (n // 2))
    return a, b, y


CONTRASTIVE = [
    ("default", contrastive(), 1.0, False),
    ("margin2", contrastive(margin=2.0), 2.0, False),
    ("legacy", contrastive(legacy=True), 1.0, True),
    ("legacy-margin0.5", contrastive(margin=0.5, legacy=True), 0.5, True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,spec,margin,legacy", CONTRASTIVE,
                         ids=[c[0] for c in CONTRASTIVE])
def test_contrastive_forward(name, spec, margin, legacy, dtype):
    a, b, y = pair_inputs()
    _, _, top = forward_layer(spec, [a, b, y], dtype=dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss_of(top) == pytest.approx(contrastive_ref(a, b, y, margin, legacy), rel=tol)


def test_contrastive_defaults_and_4d_pairs():
    layer = make_layer(contrastive())
    a, b, y = pair_inputs(4, 3, shape_tail=(1, 1))
    setup_layer(layer, blobs_from([a, b, y]))
    assert (layer.margin, layer.legacy) == (1.0, False)
    _, _, top = forward_layer(contrastive(), [a, b, y.reshape(4, 1, 1, 1)])
    assert loss_of(top) == pytest.approx(contrastive_ref(a, b, y))


@pytest.mark.parametrize("name,spec,margin,legacy", CONTRASTIVE,
                         ids=[c[0] for c in CONTRASTIVE])
def test_contrastive_gradient(name, spec, margin, legacy):
    # pairs at chosen distances: dissimilar ones both inside and beyond the margin, none at it
    dist = np.array([0.5, 0.3, 0.9, 0.6, 1.5, 0.85])
    y = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    a = gauss((6, 3), seed=7)
    u = gauss((6, 3), seed=8)
    b = a + u / np.linalg.norm(u, axis=1, keepdims=True) * dist[:, None]
    reach = dist ** 2 if legacy else dist
    assert np.any((y == 0) & (reach < margin))
    assert np.all(np.abs(reach - margin)[y == 0] > 0.1)
    if margin < 2:
        assert np.any((y == 0) & (reach > margin))
    # Caffe's non-legacy gradient divides by d + 1e-4, hence the threshold.
    check_gradient_spec(spec, [a, b, y], stepsize=1e-4, threshold=2e-3, check_bottom=[0, 1])


def test_contrastive_backward_reference():
    a = np.array([[1.0, 0.0], [0.3, 0.0], [2.0, 0.0]])
    b = np.zeros((3, 2))
    y = np.array([1.0, 0.0, 0.0])
    layer, bottom, top = forward_layer(contrastive(), [a, b, y])
    top[0].diff[...] = 1.0
    layer.backward(top, [True, True, False], bottom)
    # similar: (a - b)/N; dissimilar inside margin: -(m - d)/(d + 1e-4) (a - b)/N; outside: 0
    want = np.array([[1.0, 0.0], [-(1.0 - 0.3) / (0.3 + 1e-4) * 0.3, 0.0], [0.0, 0.0]]) / 3
    np.testing.assert_allclose(bottom[0].diff, want, rtol=1e-12)
    np.testing.assert_allclose(bottom[1].diff, -want, rtol=1e-12)


def test_contrastive_force_backward_and_label_gradient():
    layer = make_layer(contrastive())
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, True, False]
    layer, bottom, top = forward_layer(dict(contrastive(), name="c1"), list(pair_inputs(2)))
    with pytest.raises(ConfigError, match=r"c1.*similarity label"):
        layer.backward(top, [True, True, True], bottom)


def test_contrastive_shape_errors():
    a, b, y = pair_inputs(4, 3)
    with pytest.raises(ShapeError, match=r"c2.*ContrastiveLoss.*same C"):
        forward_layer(dict(contrastive(), name="c2"), [a, gauss((4, 2)), y])
    with pytest.raises(ShapeError, match=r"c3.*ContrastiveLoss.*\(N, C\)"):
        forward_layer(dict(contrastive(), name="c3"), [gauss((4, 3, 2)), gauss((4, 3, 2)), y])
    with pytest.raises(ShapeError, match=r"c4.*ContrastiveLoss.*similarity label"):
        forward_layer(dict(contrastive(), name="c4"), [a, b, np.zeros((4, 2))])


# --- InfogainLoss --------------------------------------------------------------------------------
def infogain_ref(x, labels, h, axis=1, ignore=None, normalization="VALID"):
    """Softmax along ``axis``, then -sum_c H[label, c] log(max(p_c, 1e-20)) per position."""
    axis = axis % x.ndim
    xm = np.moveaxis(x, axis, -1)
    e = np.exp(xm - xm.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    rows = p.reshape(-1, x.shape[axis])
    lab = labels.reshape(-1)
    loss, count = 0.0, 0
    for r in range(rows.shape[0]):
        lv = int(lab[r])
        if ignore is not None and lv == ignore:
            continue
        for c in range(rows.shape[1]):
            loss -= h[lv, c] * math.log(max(rows[r, c], KLOG))
        count += 1
    outer = int(np.prod(x.shape[:axis]))
    inner = int(np.prod(x.shape[axis + 1:]))
    norm = {"FULL": outer * inner, "VALID": count, "BATCH_SIZE": outer, "NONE": 1}[normalization]
    return loss / max(1, norm), np.moveaxis(p, -1, axis)


def infogain(axis=None, source=None, **loss_param):
    spec = {"type": "InfogainLoss"}
    ip = {}
    if axis is not None:
        ip["axis"] = axis
    if source is not None:
        ip["source"] = str(source)
    if ip:
        spec["infogain_loss_param"] = ip
    if loss_param:
        spec["loss_param"] = loss_param
    return spec


def infogain_inputs(shape=(3, 4), axis=1, seed=0, ignore=None):
    x = gauss(shape, seed=seed, scale=1.5)
    c = shape[axis]
    label_shape = shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
    labels = int_labels(label_shape, c, seed=seed + 1)
    if ignore is not None:
        labels.reshape(-1)[::3] = ignore
    h = np.random.default_rng(seed + 2).random((c, c)) + np.eye(c)
    return x, labels, h


INFOGAIN = [
    ("2d", (3, 4), 1, None, {}),
    ("4d-axis1", (2, 3, 2, 2), 1, None, {}),
    ("4d-axis-1", (2, 2, 3, 4), -1, None, {}),
    ("ignore-valid", (4, 3, 2), 1, 1, {"ignore_label": 1}),
    ("full", (2, 3, 2), 1, None, {"normalization": "FULL"}),
    ("batch", (2, 3, 2), 1, None, {"normalization": "BATCH_SIZE"}),
    ("none-ignore", (4, 3), 1, 0, {"normalization": "NONE", "ignore_label": 0}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,shape,axis,ignore,lp", INFOGAIN, ids=[c[0] for c in INFOGAIN])
def test_infogain_forward_matrix_as_bottom(name, shape, axis, ignore, lp, dtype):
    x, labels, h = infogain_inputs(shape, axis, ignore=ignore)
    _, _, top = forward_layer(infogain(axis, **lp), [x, labels, h], dtype=dtype, n_tops=2)
    want, prob = infogain_ref(x, labels, h, axis, ignore, lp.get("normalization", "VALID"))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss_of(top) == pytest.approx(want, rel=tol)
    np.testing.assert_allclose(top[1].data, prob, rtol=tol, atol=tol)


def test_infogain_with_identity_equals_softmax_with_loss():
    x, labels, _ = infogain_inputs((3, 5, 2), seed=2)
    _, _, top = forward_layer(infogain(), [x, labels, np.eye(5)])
    _, _, ref = forward_layer({"type": "SoftmaxWithLoss"}, [x, labels])
    assert loss_of(top) == pytest.approx(loss_of(ref), rel=1e-12)


def test_infogain_matrix_from_binaryproto(tmp_path, monkeypatch):
    x, labels, h = infogain_inputs((4, 3), seed=3)
    write_binaryproto(h.astype(np.float32).reshape(1, 1, 3, 3), tmp_path / "H.binaryproto")
    _, _, top = forward_layer(infogain(source=tmp_path / "H.binaryproto"), [x, labels])
    want, _ = infogain_ref(x, labels, h.astype(np.float32).astype(np.float64))
    assert loss_of(top) == pytest.approx(want, rel=1e-12)
    monkeypatch.chdir(tmp_path)  # a relative source is looked up in the current directory
    _, _, top = forward_layer(infogain(source="H.binaryproto"), [x, labels])
    assert loss_of(top) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("name,shape,axis,ignore,lp", [INFOGAIN[0], INFOGAIN[2], INFOGAIN[3]],
                         ids=["2d", "4d-axis-1", "ignore-valid"])
def test_infogain_gradient(name, shape, axis, ignore, lp):
    x, labels, h = infogain_inputs(shape, axis, seed=4, ignore=ignore)
    check_gradient_spec(infogain(axis, **lp), [x, labels, h], stepsize=1e-3, threshold=1e-3,
                        check_bottom=0)


def test_infogain_gradient_matrix_from_file(tmp_path):
    x, labels, h = infogain_inputs((3, 4), seed=5)
    write_binaryproto(h.astype(np.float32), tmp_path / "H.binaryproto", legacy_4d=False)
    check_gradient_spec(infogain(source=tmp_path / "H.binaryproto"), [x, labels],
                        stepsize=1e-3, threshold=1e-3, check_bottom=0)


def test_infogain_backward_reference():
    x, labels, h = infogain_inputs((3, 4), seed=6)
    layer, bottom, top = forward_layer(infogain(), [x, labels, h])
    diff = backward(layer, bottom, top, weight=2.0, prop=[True, False, False])
    _, p = infogain_ref(x, labels, h)
    want = np.empty_like(p)
    for n in range(3):
        lv = int(labels[n])
        want[n] = 2.0 * (p[n] * h[lv].sum() - h[lv]) / 3
    np.testing.assert_allclose(diff, want, rtol=1e-10, atol=1e-14)


def test_infogain_errors(tmp_path):
    x, labels, h = infogain_inputs((3, 4))
    with pytest.raises(ConfigError, match=r"ig1.*InfogainLoss.*source"):
        forward_layer(dict(infogain(), name="ig1"), [x, labels])
    with pytest.raises(DataError, match=r"ig2.*InfogainLoss.*not found"):
        forward_layer(dict(infogain(source=tmp_path / "nope.binaryproto"), name="ig2"),
                      [x, labels])
    with pytest.raises(ShapeError, match=r"ig3.*InfogainLoss.*4 x 4 = 16"):
        forward_layer(dict(infogain(), name="ig3"), [x, labels, np.eye(3)])
    with pytest.raises(ConfigError, match=r"ig4.*InfogainLoss.*normalize.*deprecated"):
        forward_layer(dict(infogain(normalize=True), name="ig4"), [x, labels, h])
    with pytest.raises(DataError, match=r"ig5.*InfogainLoss.*label value 4"):
        forward_layer(dict(infogain(), name="ig5"), [x, np.array([0.0, 4.0, 1.0]), h])
    with pytest.raises(ShapeError, match=r"ig6.*InfogainLoss.*number of labels"):
        forward_layer(dict(infogain(), name="ig6"), [x, np.zeros((3, 2)), h])
    layer, bottom, top = forward_layer(dict(infogain(), name="ig7"), [x, labels, h])
    with pytest.raises(ConfigError, match=r"ig7.*infogain matrix input"):
        layer.backward(top, [True, False, True], bottom)
    assert [layer.allow_force_backward(i) for i in range(3)] == [True, False, False]


# --- MultinomialLogisticLoss ---------------------------------------------------------------------
def mll_ref(p, labels):
    n = p.shape[0]
    rows = p.reshape(n, -1)
    return sum(-math.log(max(rows[i, int(labels[i])], KLOG)) for i in range(n)) / n


MLL = {"type": "MultinomialLogisticLoss"}


def probabilities(shape, seed=0):
    p = np.random.default_rng(seed).random(shape) + 0.2
    return p / p.reshape(shape[0], -1).sum(axis=1).reshape((shape[0],) + (1,) * (len(shape) - 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(4, 5), (3, 2, 2, 2)], ids=["2d", "4d"])
def test_multinomial_logistic_forward(shape, dtype):
    p = probabilities(shape)
    labels = int_labels((shape[0],), int(np.prod(shape[1:])), seed=1)
    _, _, top = forward_layer(MLL, [p, labels], dtype=dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss_of(top) == pytest.approx(mll_ref(p, labels), rel=tol)


def test_multinomial_logistic_clamps_at_log_threshold():
    p = np.array([[0.0, 1.0], [0.5, 0.5]])
    labels = np.array([0.0, 1.0])
    layer, bottom, top = forward_layer(MLL, [p, labels])
    assert loss_of(top) == pytest.approx((-math.log(KLOG) - math.log(0.5)) / 2)
    diff = backward(layer, bottom, top)
    np.testing.assert_allclose(diff, [[-1.0 / KLOG / 2, 0.0], [0.0, -1.0 / 0.5 / 2]])


@pytest.mark.parametrize("shape", [(3, 4), (2, 2, 3)], ids=["2d", "3d"])
def test_multinomial_logistic_gradient(shape):
    p = probabilities(shape, seed=2)
    labels = int_labels((shape[0],), int(np.prod(shape[1:])), seed=3)
    check_gradient_spec(MLL, [p, labels], stepsize=1e-4, threshold=1e-3, check_bottom=0)


def test_multinomial_logistic_errors():
    p = probabilities((3, 4))
    with pytest.raises(DataError, match=r"mll1.*MultinomialLogisticLoss.*label value -1"):
        forward_layer(dict(MLL, name="mll1"), [p, np.array([0.0, -1.0, 2.0])])
    with pytest.raises(ShapeError, match=r"mll2.*MultinomialLogisticLoss.*one label"):
        forward_layer(dict(MLL, name="mll2"), [p, np.zeros((3, 4))])
    layer, bottom, top = forward_layer(dict(MLL, name="mll3"), [p, np.array([0.0, 1.0, 2.0])])
    with pytest.raises(ConfigError, match=r"mll3.*label input"):
        layer.backward(top, [True, True], bottom)


# --- shared loss-layer contract ------------------------------------------------------------------
@pytest.mark.parametrize("spec,arrays", [
    (sce(), [gauss((2, 3)), np.zeros((2, 3))]),
    (hinge(), [gauss((2, 3)), np.zeros(2)]),
    (contrastive(), list(pair_inputs(2))),
    (infogain(), [gauss((2, 3)), np.zeros(2), np.eye(3)]),
    (MLL, [probabilities((2, 3)), np.zeros(2)]),
], ids=["sce", "hinge", "contrastive", "infogain", "mll"])
def test_loss_layer_contract(spec, arrays):
    layer = make_layer(spec)
    assert layer.is_loss
    top = setup_layer(layer, blobs_from(arrays))
    assert top[0].shape == ()
