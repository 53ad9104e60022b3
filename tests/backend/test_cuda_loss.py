"""Softmax, the loss layers and Accuracy: the CUDA backend against the CPU backend.

Runs on numba's CUDA simulator here (tests/conftest.py); tiny shapes keep simulated threads
cheap."""

import numpy as np
import pytest

from caffeish import backend
from caffeish.backend import cpu as cpu_be
from caffeish.blob import Blob
from caffeish.errors import DataError
from caffeish.io.formats import write_binaryproto
from caffeish.testing import blobs_from, compare_backends, make_layer, setup_layer

pytestmark = pytest.mark.cuda

MODES = ["VALID", "FULL", "BATCH_SIZE", "NONE"]


def gauss(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


def labels(shape, n_classes, seed=0, ignore=None, every=3):
    lab = np.random.default_rng(seed).integers(0, n_classes, size=shape).astype(np.float64)
    if ignore is not None:
        lab.reshape(-1)[::every] = ignore
    return lab


@pytest.fixture
def block_columns(monkeypatch):
    """Make softmax take its one-block-per-column kernels at tiny channel counts."""
    from caffeish.backend.cuda import loss_ops
    monkeypatch.setattr(loss_ops, "BLOCK_COLUMN_MIN_CHANNELS", 2)


# --- Softmax -------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis,shape", [(1, (3, 5)), (1, (2, 3, 2, 2)), (2, (2, 3, 4)),
                                        (-1, (2, 3, 4)), (0, (4, 3))],
                         ids=["axis1-2d", "axis1-4d", "axis2", "axis-1", "axis0"])
def test_softmax(axis, shape):
    compare_backends({"type": "Softmax", "softmax_param": {"axis": axis}},
                     [gauss(shape, 1, 3.0)])


def test_softmax_in_place():
    compare_backends({"type": "Softmax"}, [gauss((2, 4, 3), 2, 3.0)], in_place=True)


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4)], ids=["inner1", "inner4"])
def test_softmax_block_per_column(block_columns, shape):
    compare_backends({"type": "Softmax"}, [gauss(shape, 3, 4.0)])
    compare_backends({"type": "Softmax"}, [gauss(shape, 4, 4.0)], in_place=True)


def test_softmax_block_per_column_many_channels(block_columns):
    # more channels than the simulator's 32 threads per block: each thread takes several
    compare_backends({"type": "Softmax"}, [gauss((2, 70), 5, 3.0)])


# --- SoftmaxWithLoss -----------------------------------------------------------------------------
def swl(axis=None, ignore=None, normalization=None, normalize=None):
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
    return spec


@pytest.mark.parametrize("ignore", [None, 2], ids=["no-ignore", "ignore2"])
@pytest.mark.parametrize("mode", MODES)
def test_softmax_loss_normalization(mode, ignore):
    x = gauss((2, 4, 2, 3), 4, 2.0)
    lab = labels((2, 1, 2, 3), 4, 5, ignore)
    compare_backends(swl(ignore=ignore, normalization=mode), [x, lab], passes=2)


@pytest.mark.parametrize("normalize", [True, False])
def test_softmax_loss_legacy_normalize(normalize):
    compare_backends(swl(ignore=1, normalize=normalize),
                     [gauss((3, 4, 2), 6), labels((3, 2), 4, 7, ignore=1)])


@pytest.mark.parametrize("axis,shape,lshape", [(2, (2, 3, 4), (2, 3)), (-1, (3, 2, 5), (3, 2)),
                                               (1, (4, 6), (4,))],
                         ids=["axis2", "axis-1", "2d"])
def test_softmax_loss_axis(axis, shape, lshape):
    chans = shape[axis]
    compare_backends(swl(axis=axis), [gauss(shape, 8, 2.0), labels(lshape, chans, 9)])


def test_softmax_loss_prob_top():
    x, lab = gauss((2, 4, 3), 10, 2.0), labels((2, 3), 4, 11, ignore=255)
    compare_backends(swl(ignore=255), [x, lab], n_tops=2, passes=2)


def test_softmax_loss_all_ignored_and_tiny_probabilities():
    x = np.array([[-200.0, 200.0, 0.0], [5.0, 1.0, -3.0]])
    compare_backends(swl(), [x, np.array([0.0, 2.0])])  # p[label] below FLT_MIN clamps
    compare_backends(swl(ignore=1), [gauss((2, 3), 12), np.array([1.0, 1.0])])


def test_softmax_loss_block_per_column(block_columns):
    compare_backends(swl(), [gauss((3, 5), 13, 2.0), labels((3,), 5, 14)], n_tops=2)


# --- EuclideanLoss -------------------------------------------------------------------------------
def test_euclidean():
    compare_backends({"type": "EuclideanLoss"}, [gauss((3, 2, 2), 15), gauss((3, 4), 16)],
                     passes=2)


# --- Accuracy ------------------------------------------------------------------------------------
def acc(top_k=None, axis=None, ignore=None):
    p = {}
    if top_k is not None:
        p["top_k"] = top_k
    if axis is not None:
        p["axis"] = axis
    if ignore is not None:
        p["ignore_label"] = ignore
    spec = {"type": "Accuracy"}
    if p:
        spec["accuracy_param"] = p
    return spec


@pytest.mark.parametrize("n_tops", [1, 2], ids=["1top", "per-class"])
@pytest.mark.parametrize("top_k", [1, 3])
def test_accuracy_top_k(top_k, n_tops):
    compare_backends(acc(top_k=top_k), [gauss((7, 5), 17), labels((7,), 5, 18)], n_tops=n_tops)


@pytest.mark.parametrize("n_tops", [1, 2], ids=["1top", "per-class"])
def test_accuracy_ignore_and_axis(n_tops):
    x = gauss((2, 3, 4), 19)
    lab = labels((2, 3), 4, 20, ignore=1, every=2)
    compare_backends(acc(axis=-1, ignore=1, top_k=2), [x, lab], n_tops=n_tops)
    x4 = gauss((2, 4, 2, 3), 21)
    compare_backends(acc(ignore=0), [x4, labels((2, 1, 2, 3), 4, 22, ignore=0)], n_tops=n_tops)


def test_accuracy_ties_and_empty_classes():
    x = np.array([[1.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.2], [0.0, 2.0, 2.0, 1.0]])
    lab = np.array([0.0, 2.0, 1.0])  # ties count against; class 3 has no examples
    compare_backends(acc(), [x, lab], n_tops=2)
    compare_backends(acc(top_k=2), [x, lab], n_tops=2)
    compare_backends(acc(ignore=-1), [x, np.array([-1.0, -1.0, -1.0])], n_tops=2)


# --- SigmoidCrossEntropyLoss ------------------------------------------------------------------
@pytest.mark.parametrize("ignore", [None, -1], ids=["no-ignore", "ignore"])
@pytest.mark.parametrize("mode", [None] + MODES)
def test_sigmoid_cross_entropy(mode, ignore):
    x = gauss((3, 4, 2), 23, 3.0)
    t = np.random.default_rng(24).random((3, 4, 2))
    t.reshape(-1)[::3] = np.round(t.reshape(-1)[::3])
    lp = {}
    if ignore is not None:
        t.reshape(-1)[1::4] = ignore
        lp["ignore_label"] = ignore
    if mode is not None:
        lp["normalization"] = mode
    spec = {"type": "SigmoidCrossEntropyLoss"}
    if lp:
        spec["loss_param"] = lp
    compare_backends(spec, [x, t], propagate_down=[True, False], passes=2)


# --- HingeLoss -----------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_hinge(norm):
    compare_backends({"type": "HingeLoss", "hinge_loss_param": {"norm": norm}},
                     [gauss((4, 3, 2), 25), labels((4,), 6, 26)], propagate_down=[True, False])


# --- ContrastiveLoss -----------------------------------------------------------------------------
@pytest.mark.parametrize("margin,legacy", [(1.0, False), (2.0, False), (1.0, True), (0.5, True)])
def test_contrastive(margin, legacy):
    a, b = gauss((6, 3), 27, 0.5), gauss((6, 3, 1, 1), 28, 0.5)
    y = np.array([1.0, 0.0] * 3)
    compare_backends({"type": "ContrastiveLoss",
                      "contrastive_loss_param": {"margin": margin, "legacy_version": legacy}},
                     [a, b, y], propagate_down=[True, True, False], passes=2)


# --- InfogainLoss --------------------------------------------------------------------------------
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


def infogain_matrix(c, seed):
    return np.abs(gauss((c, c), seed)) + np.eye(c)


@pytest.mark.parametrize("mode", MODES)
def test_infogain_normalization_and_ignore(mode):
    x, lab = gauss((2, 3, 4), 29, 2.0), labels((2, 4), 3, 30, ignore=2)
    compare_backends(infogain(ignore_label=2, normalization=mode),
                     [x, lab, infogain_matrix(3, 31)], propagate_down=[True, False, False])


@pytest.mark.parametrize("axis,shape,lshape", [(1, (4, 3), (4,)), (-1, (2, 3, 4), (2, 3))],
                         ids=["2d", "axis-1"])
def test_infogain_axis_and_prob_top(axis, shape, lshape):
    c = shape[axis]
    compare_backends(infogain(axis=axis), [gauss(shape, 32, 2.0), labels(lshape, c, 33),
                                           infogain_matrix(c, 34)],
                     n_tops=2, propagate_down=[True, False, False], passes=2)


def test_infogain_matrix_from_file(tmp_path):
    write_binaryproto(infogain_matrix(3, 35).astype(np.float32).reshape(1, 1, 3, 3),
                      tmp_path / "H.binaryproto")
    compare_backends(infogain(source=tmp_path / "H.binaryproto"),
                     [gauss((4, 3), 36), labels((4,), 3, 37)], propagate_down=[True, False],
                     passes=2)


# --- MultinomialLogisticLoss ---------------------------------------------------------------------
def test_multinomial_logistic():
    p = np.random.default_rng(38).random((4, 5)) + 0.05
    p /= p.sum(axis=1, keepdims=True)
    p[1, 2] = 0.0  # clamps at 1e-20
    compare_backends({"type": "MultinomialLogisticLoss"},
                     [p.reshape(4, 5, 1, 1), np.array([0.0, 2.0, 4.0, 1.0])],
                     propagate_down=[True, False], rtol=1e-4, atol=1e-5)


# --- label checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("has_ignore,ignore", [(False, 0), (True, -1), (True, 255)])
def test_first_bad_label_matches_cpu(has_ignore, ignore):
    backend.set_mode_gpu()
    try:
        gpu_be = backend.get_backend()
        cases = [np.array([0, 1, 2, 3.9, -0.5]), np.array([0, 1, 4, 2, -1]),
                 np.array([0, np.nan, 1]), np.array([1, 255, 2, -1, 7]), np.zeros(70),
                 np.r_[np.zeros(65), np.inf, 9.0, 1e30]]
        for case in cases:
            case = case.astype(np.float32)
            want = cpu_be.first_bad_label(case, 4, has_ignore, ignore)
            got = gpu_be.first_bad_label(gpu_be.to_device(case), 4, has_ignore, ignore)
            assert got == want, (case, has_ignore, ignore)
    finally:
        backend.set_mode_cpu()


@pytest.mark.parametrize("has_ignore,ignore", [(False, 0), (True, -1), (True, 3)])
def test_softmax_loss_forward_finds_the_first_bad_label_like_cpu(has_ignore, ignore):
    """The loss op checks the labels in the same pass: (loss, count, first bad index) agree
    with the CPU op and with first_bad_label; bad columns add nothing."""
    rng = np.random.default_rng(9)
    prob = rng.random((3, 4, 5)).astype(np.float32) + 0.1
    backend.set_mode_gpu()
    try:
        gpu_be = backend.get_backend()
        cases = [np.array([0, 1, 2, 3, 1] * 3), np.array([0, 1, 2, 3, 1] * 2 + [1, 4, 0, -1, 9]),
                 np.array([0, 3, 3, 3, 2] * 2 + [1, 1, np.nan, 0, 2]),
                 np.array([-1.0, 3.9, 2, 1, 0] * 3), np.full(15, 3.0)]
        for case in cases:
            lab = case.astype(np.float32).reshape(3, 5)
            want = cpu_be.softmax_loss_forward(prob, lab, ignore, has_ignore)
            got = gpu_be.softmax_loss_forward(gpu_be.to_device(prob), gpu_be.to_device(lab),
                                              ignore, has_ignore)
            assert got[1:] == want[1:], (case, has_ignore, ignore)
            assert got[0] == pytest.approx(want[0], rel=1e-6)
            assert want[2] == cpu_be.first_bad_label(lab.reshape(-1), 4, has_ignore, ignore)
    finally:
        backend.set_mode_cpu()


@pytest.mark.parametrize("spec,arrays", [
    (swl(), [np.zeros((2, 3)), np.array([1.0, 3.0])]),
    (acc(), [np.zeros((2, 3)), np.array([-1.0, 0.0])]),
    (infogain(), [np.zeros((2, 3)), np.array([0.0, 5.0]), np.eye(3)]),
    ({"type": "HingeLoss"}, [np.zeros((2, 3)), np.array([0.0, 3.0])]),
    ({"type": "MultinomialLogisticLoss"}, [np.full((2, 3), 0.3), np.array([np.nan, 0.0])]),
], ids=["softmax-loss", "accuracy", "infogain", "hinge", "multinomial"])
def test_bad_label_is_a_data_error_on_the_gpu(spec, arrays):
    messages = []
    for mode in ("cpu", "gpu"):
        backend.set_mode_gpu() if mode == "gpu" else backend.set_mode_cpu()
        try:
            layer = make_layer(spec, dtype=np.float32)
            bottom = blobs_from(arrays, np.float32)
            top = setup_layer(layer, bottom)
            with pytest.raises(DataError) as e:
                layer.forward(bottom, top)
            messages.append(str(e.value))
        finally:
            backend.set_mode_cpu()
    assert messages[0] == messages[1]


def test_loss_scratch_follows_the_mode():
    """A layer set up on the CPU keeps working after set_mode_gpu (scratch Blobs move over)."""
    layer = make_layer(swl(), dtype=np.float32)
    bottom = blobs_from([gauss((3, 4), 39), labels((3,), 4, 40)], np.float32)
    top = setup_layer(layer, bottom, n_tops=2)
    layer.forward(bottom, top)
    want = float(top[0].data)
    backend.set_mode_gpu()
    try:
        layer.forward(bottom, top)
        assert float(top[0].data) == pytest.approx(want, rel=1e-5)
        assert isinstance(top[1], Blob) and top[1].shares_data_with(layer.prob)
    finally:
        backend.set_mode_cpu()
