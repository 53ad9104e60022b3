"""Softmax, SoftmaxWithLoss, EuclideanLoss and Accuracy: references, gradients, Caffe's rules."""
import math

import numpy as np
import pytest

from caffeish.errors import ConfigError, DataError, ShapeError
from caffeish.testing import (blobs_from, check_gradient_spec, check_in_place, forward_layer,
                              make_layer, setup_layer)

FLT_MIN = 1.1754943508222875e-38


def gauss(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, shape)


def int_labels(shape, n_classes, seed=0):
    return np.random.default_rng(seed).integers(0, n_classes, shape).astype(np.float64)


# --- naive references ---------------------------------------------------------------------------
def softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def split(shape, axis):
    axis = axis % len(shape)
    return (int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:])))


def softmax_loss_ref(x, labels, axis=1, ignore=None, normalization="VALID"):
    """Loss by explicit loops over outer and inner positions; returns (loss, probabilities)."""
    p = softmax_ref(x, axis)
    outer, chans, inner = split(x.shape, axis)
    p3 = p.reshape(outer, chans, inner)
    lab = labels.reshape(outer, inner)
    loss, count = 0.0, 0
    for o in range(outer):
        for i in range(inner):
            lv = int(lab[o, i])
            if ignore is not None and lv == ignore:
                continue
            loss -= math.log(max(p3[o, lv, i], FLT_MIN))
            count += 1
    norm = {"FULL": outer * inner, "VALID": count, "BATCH_SIZE": outer, "NONE": 1}[normalization]
    return loss / max(1, norm), p


def accuracy_ref(scores, labels, top_k=1, axis=1, ignore=None):
    """Caffe's rule written out: a hit when fewer than top_k other classes score >= the truth."""
    outer, chans, inner = split(scores.shape, axis)
    s3 = scores.reshape(outer, chans, inner)
    lab = labels.reshape(outer, inner)
    hits, count = 0, 0
    class_hits, class_n = np.zeros(chans), np.zeros(chans)
    for o in range(outer):
        for i in range(inner):
            lv = int(lab[o, i])
            if ignore is not None and lv == ignore:
                continue
            better = sum(1 for c in range(chans) if c != lv and s3[o, c, i] >= s3[o, lv, i])
            hit = better < top_k
            hits += hit
            count += 1
            class_hits[lv] += hit
            class_n[lv] += 1
    per_class = np.array([h / n if n else 0.0 for h, n in zip(class_hits, class_n)])
    return (hits / count if count else 0.0), per_class


def swl(axis=None, ignore=None, normalization=None, normalize=None, name=None):
    spec = {"type": "SoftmaxWithLoss"}
    if axis is not None:
        spec["softmax_param"] = {"axis": axis}
    lp = {}
    if ignore is not None:
        lp["ignore_label"] = ignore
    if normalization is not None:
        lp["normalization"] = normalization
    if normalize is not None:
        lp["normalize"] = normalize
    if lp:
        spec["loss_param"] = lp
    if name:
        spec["name"] = name
    return spec


# =================================================================================================
# Softmax
# =================================================================================================
@pytest.mark.parametrize("axis,shape", [(1, (2, 5)), (1, (2, 3, 2, 2)), (2, (2, 3, 4)),
                                        (-1, (2, 3, 4)), (0, (4, 3))],
                         ids=["axis1-2d", "axis1-4d", "axis2", "axis-1", "axis0"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_softmax_forward(axis, shape, dtype):
    x = gauss(shape, seed=1, scale=3.0)
    _, _, top = forward_layer({"type": "Softmax", "softmax_param": {"axis": axis}}, [x],
                              dtype=dtype)
    assert top[0].shape == shape and top[0].data.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, softmax_ref(x, axis), rtol=tol, atol=tol)


def test_softmax_is_numerically_stable():
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0]])
    _, _, top = forward_layer({"type": "Softmax"}, [x], dtype=np.float32)
    assert np.all(np.isfinite(top[0].data))
    np.testing.assert_allclose(top[0].data, softmax_ref(x, 1), rtol=1e-6)


@pytest.mark.parametrize("axis,shape", [(1, (2, 4)), (1, (2, 3, 2, 2)), (2, (2, 2, 3))],
                         ids=["axis1-2d", "axis1-4d", "axis2"])
def test_softmax_gradient(axis, shape):
    check_gradient_spec({"type": "Softmax", "softmax_param": {"axis": axis}},
                        [gauss(shape, seed=2)], stepsize=1e-2, threshold=1e-3)


def test_softmax_in_place():
    check_in_place({"type": "Softmax"}, [gauss((2, 3, 2, 2), seed=3)])


def test_softmax_bad_axis():
    with pytest.raises(ShapeError, match=r"sm1.*Softmax.*axis"):
        forward_layer({"type": "Softmax", "name": "sm1", "softmax_param": {"axis": 2}},
                      [np.zeros((2, 3))])


# =================================================================================================
# SoftmaxWithLoss
# =================================================================================================
MODES = ["FULL", "VALID", "BATCH_SIZE", "NONE"]


def seg_inputs(seed=0, shape=(2, 4, 2, 3), ignore=None):
    """Scores (N, C, H, W) and labels (N, 1, H, W); with ``ignore``, a few labels are ignored."""
    x = gauss(shape, seed=seed)
    n, c, h, w = shape
    lab = int_labels((n, 1, h, w), c, seed=seed + 1)
    if ignore is not None:
        lab.reshape(-1)[[0, 3, 7]] = ignore
    return x, lab


def test_softmax_loss_shapes():
    x, lab = seg_inputs()
    layer = make_layer(swl())
    top = setup_layer(layer, blobs_from([x, lab]), n_tops=2)
    assert top[0].shape == () and top[0].count == 1
    assert top[1].shape == x.shape
    assert layer.is_loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("ignore", [None, 2, 255], ids=["no-ignore", "ignore2", "ignore255"])
@pytest.mark.parametrize("mode", MODES)
def test_softmax_loss_forward(mode, ignore, dtype):
    x, lab = seg_inputs(seed=4, ignore=ignore)
    _, _, top = forward_layer(swl(ignore=ignore, normalization=mode), [x, lab], dtype=dtype)
    want, _ = softmax_loss_ref(x, lab, ignore=ignore, normalization=mode)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(float(top[0].data), want, rtol=tol)


@pytest.mark.parametrize("normalize,mode", [(True, "VALID"), (False, "BATCH_SIZE")],
                         ids=["normalize-true", "normalize-false"])
def test_softmax_loss_legacy_normalize(normalize, mode):
    x, lab = seg_inputs(seed=5, ignore=1)
    _, _, top = forward_layer(swl(ignore=1, normalize=normalize), [x, lab])
    want, _ = softmax_loss_ref(x, lab, ignore=1, normalization=mode)
    np.testing.assert_allclose(float(top[0].data), want, rtol=1e-12)
    # An explicit normalization wins over the legacy field.
    _, _, top = forward_layer(swl(ignore=1, normalize=normalize, normalization="NONE"), [x, lab])
    want, _ = softmax_loss_ref(x, lab, ignore=1, normalization="NONE")
    np.testing.assert_allclose(float(top[0].data), want, rtol=1e-12)


@pytest.mark.parametrize("axis,shape,lshape", [
    (1, (4, 5), (4,)), (2, (2, 3, 4), (2, 3)), (-1, (2, 3, 4), (2, 3, 1))],
    ids=["axis1-2d", "axis2", "axis-1"])
def test_softmax_loss_axis(axis, shape, lshape):
    x = gauss(shape, seed=6)
    lab = int_labels(lshape, shape[axis], seed=7)
    _, _, top = forward_layer(swl(axis=axis), [x, lab], n_tops=2)
    want, probs = softmax_loss_ref(x, lab, axis=axis)
    np.testing.assert_allclose(float(top[0].data), want, rtol=1e-12)
    np.testing.assert_allclose(top[1].data, probs, rtol=1e-12)


def test_softmax_loss_clamps_tiny_probabilities():
    x = np.array([[0.0, 200.0]])
    _, _, top = forward_layer(swl(), [x, np.array([0.0])], dtype=np.float32)
    np.testing.assert_allclose(float(top[0].data), -math.log(FLT_MIN), rtol=1e-6)


@pytest.mark.parametrize("ignore", [None, 3], ids=["no-ignore", "ignore3"])
@pytest.mark.parametrize("mode", MODES)
def test_softmax_loss_gradient(mode, ignore):
    x, lab = seg_inputs(seed=8, shape=(2, 4, 2, 2), ignore=ignore)
    check_gradient_spec(swl(ignore=ignore, normalization=mode), [x, lab], stepsize=1e-2,
                        threshold=1e-3, check_bottom=0)


def test_softmax_loss_gradient_axis2():
    x = gauss((2, 3, 4), seed=9)
    lab = int_labels((2, 3), 4, seed=10)
    check_gradient_spec(swl(axis=2), [x, lab], stepsize=1e-2, threshold=1e-3, check_bottom=0)


def test_softmax_loss_backward_reference_and_loss_weight():
    x, lab = seg_inputs(seed=11, ignore=0)
    layer, bottom, top = forward_layer(swl(ignore=0, normalization="VALID"), [x, lab])
    top[0].diff[...] = 2.5
    bottom[1].diff[...] = 42.0
    layer.backward(top, [True, True], bottom)
    _, p = softmax_loss_ref(x, lab)
    n, c, h, w = x.shape
    want = p.copy()
    valid = 0
    for b in range(n):
        for i in range(h):
            for j in range(w):
                lv = int(lab[b, 0, i, j])
                if lv == 0:
                    want[b, :, i, j] = 0
                else:
                    want[b, lv, i, j] -= 1
                    valid += 1
    np.testing.assert_allclose(bottom[0].diff, want * 2.5 / valid, rtol=1e-12)
    assert np.all(bottom[1].diff == 42.0)         # labels get no gradient
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(1)


def test_softmax_loss_all_ignored_gives_zero():
    x = gauss((2, 3), seed=12)
    lab = np.array([5.0, 5.0])
    layer, bottom, top = forward_layer(swl(ignore=5), [x, lab])
    assert float(top[0].data) == 0.0                  # VALID normalizer clamped to 1
    top[0].diff[...] = 1.0
    layer.backward(top, [True, False], bottom)
    assert np.all(bottom[0].diff == 0.0)


def test_softmax_loss_label_count_mismatch():
    with pytest.raises(ShapeError, match=r"loss1.*SoftmaxWithLoss.*number of labels.*8.*6"):
        forward_layer(swl(name="loss1"), [np.zeros((2, 3, 4)), np.zeros((2, 3))])


def test_softmax_loss_first_dim_mismatch():
    with pytest.raises(ShapeError, match=r"loss2.*same first dimension"):
        forward_layer(swl(name="loss2"), [np.zeros((2, 3)), np.zeros((1, 2))])


@pytest.mark.parametrize("bad", [3.0, -1.0, 7.0], ids=["eq-C", "negative", "above-C"])
def test_softmax_loss_bad_label(bad):
    lab = np.array([0.0, bad, 1.0])
    with pytest.raises(DataError, match=rf"loss3.*SoftmaxWithLoss.*label value {bad:g}"):
        forward_layer(swl(name="loss3"), [np.zeros((3, 3)), lab])


def test_softmax_loss_out_of_range_ignore_label_is_fine():
    x = gauss((3, 3), seed=13)
    lab = np.array([0.0, -1.0, 2.0])
    _, _, top = forward_layer(swl(ignore=-1), [x, lab])
    want, _ = softmax_loss_ref(x, lab, ignore=-1)
    np.testing.assert_allclose(float(top[0].data), want, rtol=1e-12)


def test_softmax_loss_too_many_tops():
    layer = make_layer(swl(name="loss4"))
    with pytest.raises(ConfigError, match=r"loss4.*at most 2 top"):
        setup_layer(layer, blobs_from([np.zeros((2, 3)), np.zeros(2)]), n_tops=3)


# =================================================================================================
# EuclideanLoss
# =================================================================================================
def euclid_ref(a, b):
    s = 0.0
    for u, v in zip(a.reshape(-1), b.reshape(-1)):
        s += (u - v) ** 2
    return s / a.shape[0] / 2.0


@pytest.mark.parametrize("sa,sb", [((4, 3), (4, 3)), ((2, 3, 2, 2), (2, 12)), ((3,), (3,))],
                         ids=["2d", "4d-vs-2d", "1d"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_euclidean_forward(sa, sb, dtype):
    a, b = gauss(sa, seed=14), gauss(sb, seed=15)
    _, _, top = forward_layer({"type": "EuclideanLoss"}, [a, b], dtype=dtype)
    assert top[0].shape == ()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(float(top[0].data), euclid_ref(a, b), rtol=tol)


@pytest.mark.parametrize("sa,sb", [((3, 4), (3, 4)), ((2, 2, 3), (2, 6))], ids=["2d", "3d-vs-2d"])
def test_euclidean_gradient(sa, sb):
    check_gradient_spec({"type": "EuclideanLoss"}, [gauss(sa, seed=16), gauss(sb, seed=17)],
                        stepsize=1e-2, threshold=1e-3)


def test_euclidean_backward_signs_and_weight():
    a, b = gauss((2, 3), seed=18), gauss((2, 3), seed=19)
    layer, bottom, top = forward_layer({"type": "EuclideanLoss"}, [a, b])
    top[0].diff[...] = 3.0
    layer.backward(top, [True, True], bottom)
    np.testing.assert_allclose(bottom[0].diff, 3.0 * (a - b) / 2, rtol=1e-12)
    np.testing.assert_allclose(bottom[1].diff, -3.0 * (a - b) / 2, rtol=1e-12)
    assert layer.allow_force_backward(1)


@pytest.mark.parametrize("sa,sb", [((2, 3), (2, 4)), ((2, 3), (3, 2))],
                         ids=["count", "first-dim"])
def test_euclidean_shape_mismatch(sa, sb):
    spec = {"type": "EuclideanLoss", "name": "l2loss"}
    with pytest.raises(ShapeError, match=r"l2loss.*EuclideanLoss"):
        forward_layer(spec, [np.zeros(sa), np.zeros(sb)])


# =================================================================================================
# Accuracy
# =================================================================================================
def acc(top_k=None, axis=None, ignore=None, name=None):
    p = {}
    for k, v in (("top_k", top_k), ("axis", axis), ("ignore_label", ignore)):
        if v is not None:
            p[k] = v
    spec = {"type": "Accuracy"}
    if p:
        spec["accuracy_param"] = p
    if name:
        spec["name"] = name
    return spec


def test_accuracy_shapes():
    layer = make_layer(acc())
    top = setup_layer(layer, blobs_from([np.zeros((5, 7)), np.zeros(5)]), n_tops=2)
    assert top[0].shape == () and top[1].shape == (7,)


@pytest.mark.parametrize("top_k", [1, 3], ids=["top1", "top3"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_accuracy_matches_argsort_reference(top_k, dtype):
    """Tie-free scores: Caffe's rule equals 'label among the k highest scores'."""
    x = gauss((40, 6), seed=20)
    lab = int_labels(40, 6, seed=21)
    _, _, top = forward_layer(acc(top_k=top_k), [x, lab], dtype=dtype, n_tops=2)
    order = np.argsort(-x, axis=1)[:, :top_k]
    hits = np.array([lab[i] in order[i] for i in range(40)])
    assert float(top[0].data) == pytest.approx(hits.mean())
    _, per_class = accuracy_ref(x, lab, top_k)
    np.testing.assert_allclose(top[1].data, per_class, rtol=1e-6)


@pytest.mark.parametrize("top_k,ignore,axis,shape", [
    (1, None, 1, (3, 5, 2, 2)), (3, None, 1, (3, 5, 2, 2)), (1, 2, 1, (3, 5, 2, 2)),
    (3, 4, 1, (3, 5, 2, 2)), (2, None, 2, (2, 3, 6)), (1, None, -1, (4, 3, 5))],
    ids=["top1", "top3", "top1-ignore2", "top3-ignore4", "top2-axis2", "top1-axis-1"])
def test_accuracy_forward(top_k, ignore, axis, shape):
    outer, chans, inner = split(shape, axis)
    # Rounded scores make ties common, so Caffe's tie rule is exercised too.
    x = np.round(gauss(shape, seed=22), 0)
    lab = int_labels(outer * inner, chans, seed=23)
    _, _, top = forward_layer(acc(top_k, axis, ignore), [x, lab], n_tops=2)
    want, per_class = accuracy_ref(x, lab, top_k, axis, ignore)
    assert float(top[0].data) == pytest.approx(want)
    np.testing.assert_allclose(top[1].data, per_class, rtol=1e-12)


@pytest.mark.parametrize("label,top_k,hit", [(1, 1, 0.0), (0, 1, 0.0), (2, 1, 0.0),
                                             (1, 2, 1.0), (0, 2, 1.0), (2, 2, 0.0),
                                             (2, 3, 1.0)],
                         ids=["tie-l1-k1", "tie-l0-k1", "low-k1", "tie-l1-k2", "tie-l0-k2",
                              "low-k2", "low-k3"])
def test_accuracy_ties_count_against(label, top_k, hit):
    """Caffe counts every other class scoring >= the truth as better: a tie for first is a miss."""
    x = np.array([[2.0, 2.0, 1.0]])
    _, _, top = forward_layer(acc(top_k), [x, np.array([float(label)])])
    assert float(top[0].data) == hit


def test_accuracy_all_ignored_is_zero():
    _, _, top = forward_layer(acc(ignore=1), [gauss((3, 4), seed=24), np.ones(3)], n_tops=2)
    assert float(top[0].data) == 0.0
    assert np.all(top[1].data == 0.0)


def test_accuracy_has_no_gradient():
    layer, bottom, top = forward_layer(acc(), [gauss((3, 4), seed=25), np.zeros(3)])
    assert not layer.allow_force_backward(0)
    bottom[0].diff[...] = 5.0
    layer.backward(top, [True, False], bottom)
    assert np.all(bottom[0].diff == 0.0)


def test_accuracy_bad_label():
    with pytest.raises(DataError, match=r"acc1.*Accuracy.*label value 4"):
        forward_layer(acc(name="acc1"), [np.zeros((2, 4)), np.array([1.0, 4.0])])


def test_accuracy_label_count_mismatch():
    with pytest.raises(ShapeError, match=r"acc2.*Accuracy.*number of labels"):
        forward_layer(acc(name="acc2"), [np.zeros((2, 4)), np.zeros(3)])


def test_accuracy_top_k_above_classes():
    with pytest.raises(ConfigError, match=r"acc3.*top_k \(5\).*4"):
        forward_layer(acc(top_k=5, name="acc3"), [np.zeros((2, 4)), np.zeros(2)])
