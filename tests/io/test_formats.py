"""Caffe files: caffemodel / solverstate / binaryproto, including files written by real Caffe."""
import os
from pathlib import Path

import numpy as np
import pytest

import caffeish.config  # noqa: F401
from caffeish.config.schema import Msg
from caffeish.errors import FormatError
from caffeish.io.codec import decode, encode
from caffeish.io.formats import (
    array_to_blob, blob_to_array, layer_blobs, read_binaryproto, read_netparameter,
    read_solverstate, write_binaryproto, write_netparameter, write_solverstate,
)

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / ".." / "shared" / "caffe_vectors"
TINY = VECTORS / "tiny_net_a"


@pytest.fixture(scope="module")
def tiny():
    if not (TINY / "tiny_a_iter_30.caffemodel").is_file():
        pytest.skip(f"../shared/caffe_vectors not present: {TINY.resolve()} has no Caffe snapshot")
    return TINY


# --- files written by real Caffe ---------------------------------------------------------
TINY_LAYERS = [("data", "HDF5Data", 0), ("conv1", "Convolution", 2), ("relu1", "ReLU", 0),
               ("pool1", "Pooling", 0), ("conv2", "Convolution", 2), ("pool2", "Pooling", 0),
               ("ip1", "InnerProduct", 2), ("loss", "SoftmaxWithLoss", 0)]


def test_caffe_caffemodel(tiny):
    net = read_netparameter(tiny / "tiny_a_iter_30.caffemodel")
    assert net.name == "TinyA"
    got = layer_blobs(net)
    assert [(n, t, len(b)) for n, t, b in got] == TINY_LAYERS
    for name, _, blobs in got:
        for i, arr in enumerate(blobs):
            want = np.load(tiny / f"param_{name}_{i}.npy")
            assert arr.dtype == np.float32 and arr.shape == want.shape
            np.testing.assert_array_equal(arr, want)
    conv1 = net.layer[1]
    assert conv1.convolution_param.num_output == 8
    assert conv1.convolution_param.kernel_size == [5]
    assert net.layer[3].pooling_param.pool == "MAX"


def test_caffe_caffemodel_reencodes_to_same_bytes(tiny, tmp_path):
    src = tiny / "tiny_a_iter_30.caffemodel"
    out = tmp_path / "copy.caffemodel"
    write_netparameter(read_netparameter(src), out)
    assert out.read_bytes() == src.read_bytes()


def test_caffe_solverstate(tiny, tmp_path):
    st = read_solverstate(tiny / "tiny_a_iter_30.solverstate")
    assert st.iter == 30
    assert st.current_step == 0
    assert st.learned_net.endswith("tiny_a_iter_30.caffemodel")
    params = [np.load(tiny / f"param_{n}_{i}.npy") for n, _, k in TINY_LAYERS for i in range(k)]
    hist = [blob_to_array(h) for h in st.history]
    assert [h.shape for h in hist] == [p.shape for p in params]
    out = tmp_path / "s.solverstate"
    write_solverstate(st, out)
    assert out.read_bytes() == (tiny / "tiny_a_iter_30.solverstate").read_bytes()


# --- blobs -------------------------------------------------------------------------------
def test_array_blob_roundtrip():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    b = array_to_blob(a)
    assert b.shape.dim == [2, 3, 4] and not b.has("num")
    out = blob_to_array(decode(encode(b), "BlobProto"))
    assert out.dtype == np.float32 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, a)
    out[0, 0, 0] = 5  # writable copy


def test_legacy_4d_blob():
    a = np.ones((3, 5, 7), np.float32)
    b = array_to_blob(a, legacy_4d=True)
    assert (b.num, b.channels, b.height, b.width) == (1, 3, 5, 7) and not b.has("shape")
    assert blob_to_array(b).shape == (1, 3, 5, 7)
    with pytest.raises(FormatError):
        array_to_blob(np.zeros((1, 1, 1, 1, 2)), legacy_4d=True)


def test_scalar_blob_and_double_data():
    assert blob_to_array(array_to_blob(np.float32(3.5))).shape == ()
    b = Msg("BlobProto", {"shape": {"dim": [2]}, "double_data": np.array([1.5, -2.0])})
    np.testing.assert_array_equal(blob_to_array(b), np.array([1.5, -2.0], np.float32))


def test_blob_count_mismatch():
    b = Msg("BlobProto", {"shape": {"dim": [2, 3]}, "data": np.zeros(5, np.float32)})
    with pytest.raises(FormatError, match=r"shape \[2, 3\] holds 6 values but data has 5"):
        blob_to_array(b)


# --- binaryproto ---------------------------------------------------------------------------
def test_binaryproto_roundtrip(tmp_path):
    mean = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    p = tmp_path / "mean.binaryproto"
    write_binaryproto(mean, p)
    got = read_binaryproto(p)
    assert got.shape == (1, 3, 4, 5)
    np.testing.assert_array_equal(got[0], mean)
    # compute_image_mean layout: num, channels, height, width, then packed data
    assert p.read_bytes()[:8] == b"\x08\x01\x10\x03\x18\x04\x20\x05"
    write_binaryproto(mean, p, legacy_4d=False)
    assert read_binaryproto(p).shape == (3, 4, 5)


# --- V1 / V0 nets --------------------------------------------------------------------------
def test_v1_layers(tmp_path):
    w = np.arange(6, dtype=np.float32)
    net = Msg("NetParameter", {"name": "old", "layers": [
        {"name": "conv1", "type": "CONVOLUTION",
         "blobs": [{"num": 1, "channels": 1, "height": 2, "width": 3, "data": w}],
         "blobs_lr": [1.0, 2.0]},
        {"name": "fc", "type": "INNER_PRODUCT", "blobs": [{"shape": {"dim": [2, 3]}, "data": w}]},
        {"name": "loss", "type": "SOFTMAX_LOSS"},
        {"layer": {"name": "v0conv", "type": "conv",
                   "blobs": [{"num": 1, "channels": 1, "height": 1, "width": 6, "data": w}]}},
    ]})
    p = tmp_path / "old.caffemodel"
    write_netparameter(net, p)
    got = layer_blobs(read_netparameter(p))
    assert [(n, t) for n, t, _ in got] == [("conv1", "Convolution"), ("fc", "InnerProduct"),
                                          ("loss", "SoftmaxWithLoss"), ("v0conv", "Convolution")]
    assert got[0][2][0].shape == (1, 1, 2, 3)
    assert got[1][2][0].shape == (2, 3)
    assert got[3][2][0].shape == (1, 1, 1, 6)


def test_layer_blob_error_names_layer():
    net = Msg("NetParameter", {"layer": [{"name": "bad", "type": "InnerProduct",
                                          "blobs": [{"shape": {"dim": [4]}, "data": [1.0]}]}]})
    with pytest.raises(FormatError, match="layer 'bad' blob 0"):
        layer_blobs(net)


# --- writing and errors ----------------------------------------------------------------------
def _net():
    return Msg("NetParameter", {"name": "n", "layer": [
        {"name": "ip", "type": "InnerProduct",
         "blobs": [array_to_blob(np.ones((10, 20), np.float32))]}]})


def test_write_is_atomic(tmp_path):
    p = tmp_path / "m.caffemodel"
    write_netparameter(_net(), p)
    first = p.read_bytes()
    bad = Msg("NetParameter", {"layer": [{"name": "x", "phase": "NOT_A_PHASE"}]})
    with pytest.raises(FormatError):
        write_netparameter(bad, p)
    assert p.read_bytes() == first
    assert os.listdir(tmp_path) == ["m.caffemodel"]
    assert read_netparameter(str(p)).layer[0].name == "ip"


def test_missing_file(tmp_path):
    p = tmp_path / "nope.caffemodel"
    with pytest.raises(FormatError, match=r"nope\.caffemodel: no such file"):
        read_netparameter(p)
    with pytest.raises(FormatError, match="no such file"):
        read_solverstate(tmp_path / "nope.solverstate")
    with pytest.raises(FormatError, match="no such file"):
        read_binaryproto(tmp_path / "nope.binaryproto")


def test_truncated_file(tmp_path):
    raw = encode(_net())
    p = tmp_path / "cut.caffemodel"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FormatError, match=r"cut\.caffemodel: not a Caffe NetParameter file: .*byte"):
        read_netparameter(p)


@pytest.mark.parametrize("garbage", [
    b"name: \"LeNet\"\nlayer {\n  name: \"data\"\n}\n",           # a text prototxt
    b"\x89HDF\r\n\x1a\n" + bytes(range(200)),                      # an HDF5 caffemodel
    np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    b"",
])
def test_garbage(tmp_path, garbage):
    p = tmp_path / "junk.caffemodel"
    p.write_bytes(garbage)
    with pytest.raises(FormatError, match=r"junk\.caffemodel: not a Caffe NetParameter file"):
        read_netparameter(p)
