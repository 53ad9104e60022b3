"""caffemodels written by caffeish: read back identical, decode with Google's protobuf runtime,
copy by layer name with Caffe's rules."""
import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import parse_message
from caffeish.errors import ShapeError
from tests.io.test_codec import pb  # noqa: F401  (the independent protobuf schema fixture)

DEPLOY = """\
name: small
layer:
  - {name: data, type: Input, top: data, input_param: {shape: {dim: [2, 1, 8, 8]}}}
  - {name: conv1, type: Convolution, bottom: data, top: conv1,
     convolution_param: {num_output: 3, kernel_size: 3, weight_filler: {type: gaussian, std: 0.2},
                         bias_filler: {type: uniform, min: -1, max: 1}}}
  - {name: relu1, type: ReLU, bottom: conv1, top: conv1}
  - {name: ip1, type: InnerProduct, bottom: conv1, top: ip1,
     inner_product_param: {num_output: 4, weight_filler: {type: xavier},
                           bias_filler: {type: constant, value: 0.25}}}
  - {name: prob, type: Softmax, bottom: ip1, top: prob}
"""


def make(text=DEPLOY, seed=1):
    return caffeish.Net(parse_message(text, "NetParameter", "small.yaml"), phase="TEST", seed=seed)


def test_caffemodel_round_trip_is_identical(tmp_path):
    a = make(seed=1)
    path = tmp_path / "m.caffemodel"
    a.save(str(path))
    b = make(seed=2)
    assert not np.array_equal(a.params["conv1"][0].data, b.params["conv1"][0].data)
    report = b.copy_from(str(path))
    assert report["copied"] == ["conv1", "ip1"] and report["not_in_file"] == []
    for name in a.params:
        for x, y in zip(a.params[name], b.params[name]):
            np.testing.assert_array_equal(x.data, y.data)
    x = np.random.default_rng(0).normal(size=(2, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(a.forward(data=x)["prob"].copy(), b.forward(data=x)["prob"])
    # weights= in the constructor does the same
    c = caffeish.Net(parse_message(DEPLOY, "NetParameter", "s.yaml"), phase="TEST",
                     weights=str(path))
    np.testing.assert_array_equal(c.params["ip1"][1].data, a.params["ip1"][1].data)


def test_caffemodel_decodes_with_googles_protobuf(tmp_path, pb):  # noqa: F811
    net = make()
    path = tmp_path / "m.caffemodel"
    net.save(str(path))
    msg = pb["NetParameter"]()
    msg.ParseFromString(path.read_bytes())
    assert msg.name == "small"
    by_name = {layer.name: layer for layer in msg.layer}
    assert [layer.type for layer in msg.layer] == ["Input", "Convolution", "ReLU",
                                                   "InnerProduct", "Softmax"]
    conv = by_name["conv1"]
    assert list(conv.bottom) == ["data"] and list(conv.top) == ["conv1"]
    assert [list(b.shape.dim) for b in conv.blobs] == [[3, 1, 3, 3], [3]]
    np.testing.assert_array_equal(np.array(conv.blobs[0].data, np.float32).reshape(3, 1, 3, 3),
                                  net.params["conv1"][0].data)
    ip = by_name["ip1"]
    assert ip.inner_product_param.num_output == 4
    np.testing.assert_array_equal(np.array(ip.blobs[1].data, np.float32), np.full(4, 0.25))


def test_copy_skips_unknown_layers_and_errors_on_shape_mismatch(tmp_path):
    src = make()
    path = tmp_path / "m.caffemodel"
    src.save(str(path))
    renamed = make(DEPLOY.replace("name: ip1", "name: ip1_new"))
    rep = renamed.copy_from(str(path))
    assert rep == {"copied": ["conv1"], "skipped": ["ip1"],
                   "not_in_file": ["ip1_new"]}
    wider = make(DEPLOY.replace("num_output: 4", "num_output: 5"), seed=5)
    with pytest.raises(ShapeError) as ei:
        wider.copy_from(str(path))
    msg = str(ei.value)
    assert msg.startswith(f"{path}: 2 parameter blobs do not fit the net:")
    assert "layer 'ip1' (InnerProduct) blob 0: the file has shape (4, 108) but the net expects " \
           "(5, 108)" in msg
    assert "layer 'ip1' (InnerProduct) blob 1: the file has shape (4,) but the net expects (5,)" \
        in msg
    # nothing was copied: the net keeps its own weights
    assert not np.array_equal(wider.params["conv1"][0].data, src.params["conv1"][0].data)


def test_inner_product_from_a_different_input_size_names_both_sizes(tmp_path):
    src = make()
    path = tmp_path / "m.caffemodel"
    src.save(str(path))
    # the saved ip1 weights expect 3*6*6 = 108 inputs; feed a bigger image
    net = make(DEPLOY.replace("dim: [2, 1, 8, 8]", "dim: [2, 1, 10, 10]"))
    with pytest.raises(ShapeError) as ei:
        net.copy_from(str(path))
    assert "ip1" in str(ei.value) and "(4, 108)" in str(ei.value) and "(4, 192)" in str(ei.value)


def test_legacy_4d_blobs_are_accepted(tmp_path):
    from caffeish.io.formats import array_to_blob, write_netparameter
    from caffeish.weights import net_to_proto
    net = make()
    proto = net_to_proto(net)
    for lp in proto.layer:
        if lp.name == "ip1":
            w = net.params["ip1"][0].data
            lp.set("blobs", [array_to_blob(w.reshape(1, 1, *w.shape), legacy_4d=True),
                             array_to_blob(net.params["ip1"][1].data.reshape(1, 1, 1, -1),
                                           legacy_4d=True)])
    write_netparameter(proto, str(tmp_path / "old.caffemodel"))
    other = make(seed=9)
    other.copy_from(str(tmp_path / "old.caffemodel"))
    np.testing.assert_array_equal(other.params["ip1"][0].data, net.params["ip1"][0].data)
