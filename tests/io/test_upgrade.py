"""Caffe's proto upgrades: V1 layers, data-transform fields, inputs, BatchNorm, solver_type."""
from pathlib import Path

import numpy as np
import pytest

import caffeish.config  # noqa: F401
from caffeish.config.schema import Msg
from caffeish.errors import ConfigError
from caffeish.io.prototxt import parse_prototxt, to_prototxt
from caffeish.io.upgrade import (
    net_needs_upgrade, unknown_layer_types, upgrade_net, upgrade_solver,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TINY = SHARED / "caffe_vectors" / "tiny_net_a"

V1_NET = '''name: "LeNetV1"
layers {
  name: "mnist"
  type: DATA
  top: "data"
  top: "label"
  data_param {
    source: "mnist_train_lmdb"
    backend: LMDB
    batch_size: 64
    scale: 0.00390625
    mean_file: "mean.binaryproto"
  }
  include: { phase: TRAIN }
}
layers {
  name: "conv1"
  type: CONVOLUTION
  bottom: "data"
  top: "conv1"
  blobs_lr: 1
  blobs_lr: 2
  weight_decay: 1
  weight_decay: 0
  param: "conv1_w"
  param: "conv1_b"
  convolution_param {
    num_output: 20
    kernel_size: 5
    stride: 1
    weight_filler { type: "xavier" }
    bias_filler { type: "constant" }
  }
}
layers {
  name: "pool1"
  type: POOLING
  bottom: "conv1"
  top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 }
}
layers {
  name: "ip1"
  type: INNER_PRODUCT
  bottom: "pool1"
  top: "ip1"
  blobs_lr: 1
  blobs_lr: 2
  inner_product_param { num_output: 10 }
  exclude { phase: TEST stage: "deploy" }
}
layers {
  name: "loss"
  type: SOFTMAX_LOSS
  bottom: "ip1"
  bottom: "label"
  top: "loss"
  loss_weight: 1
  loss_param { ignore_label: -1 }
}
'''


def _v1():
    return parse_prototxt(V1_NET, "NetParameter", "lenet_v1.prototxt")


def test_v1_net_upgrades_to_v2():
    net, notes = upgrade_net(_v1())
    assert not net.layers
    assert net.name == "LeNetV1"
    assert [(lp.name, lp.type) for lp in net.layer] == [
        ("mnist", "Data"), ("conv1", "Convolution"), ("pool1", "Pooling"),
        ("ip1", "InnerProduct"), ("loss", "SoftmaxWithLoss")]
    data, conv1, pool1, ip1, loss = net.layer
    # legacy data transform fields moved into transform_param
    assert data.transform_param.scale == pytest.approx(0.00390625)
    assert data.transform_param.mean_file == "mean.binaryproto"
    assert not data.data_param.has("scale") and not data.data_param.has("mean_file")
    assert (data.data_param.source, data.data_param.batch_size, data.data_param.backend) == \
        ("mnist_train_lmdb", 64, "LMDB")
    assert data.include[0].phase == "TRAIN"
    assert list(data.top) == ["data", "label"]
    # blobs_lr / weight_decay / param names -> ParamSpec
    assert [(p.name, p.lr_mult, p.decay_mult) for p in conv1.param] == [
        ("conv1_w", 1.0, 1.0), ("conv1_b", 2.0, 0.0)]
    assert conv1.convolution_param.num_output == 20
    assert conv1.convolution_param.weight_filler.type == "xavier"
    assert [p.lr_mult for p in ip1.param] == [1.0, 2.0]
    assert not ip1.param[0].has("decay_mult")
    assert ip1.exclude[0].phase == "TEST" and ip1.exclude[0].stage == ["deploy"]
    assert pool1.pooling_param.pool == "MAX" and not pool1.param
    assert loss.loss_weight == [1.0]
    assert loss.loss_param.ignore_label == -1
    assert list(loss.bottom) == ["ip1", "label"]
    assert any("moved the deprecated data_param fields scale, mean_file into transform_param"
               in n for n in notes)
    assert any("upgraded 5 V1 'layers' entries to 'layer'" in n for n in notes)


def test_upgrade_keeps_source_lines():
    original = _v1()
    net, _ = upgrade_net(original)
    lines = V1_NET.splitlines()
    conv1 = net.layer[1]
    assert conv1.src == ("lenet_v1.prototxt", original.layers[1].src[1])
    assert lines[conv1.line("type") - 1].strip() == "type: CONVOLUTION"
    assert lines[conv1.line("param") - 1].strip() == "blobs_lr: 1"
    assert net.layer[0].transform_param.line("scale") == original.layers[0].data_param.line("scale")
    assert "lenet_v1.prototxt:" in net.layer[4].where("loss_param")


def test_upgrade_does_not_touch_its_input():
    original = _v1()
    before = to_prototxt(original)
    upgrade_net(original)
    assert to_prototxt(original) == before


def test_upgraded_net_round_trips_and_is_stable():
    net, _ = upgrade_net(_v1())
    text = to_prototxt(net)
    assert "layers" not in text and 'type: "SoftmaxWithLoss"' in text
    back = parse_prototxt(text, "NetParameter")
    assert back == net
    again, notes = upgrade_net(back)
    assert again == net and notes == []
    assert not net_needs_upgrade(net) and net_needs_upgrade(_v1())


def test_v1_blobs_and_share_mode_are_kept():
    v1 = Msg("NetParameter", {"layers": [{
        "name": "ip", "type": "INNER_PRODUCT", "blob_share_mode": ["PERMISSIVE"],
        "blobs": [{"shape": {"dim": [2]}, "data": np.array([1.0, 2.0], np.float32)}]}]})
    net, _ = upgrade_net(v1)
    lp = net.layer[0]
    assert lp.param[0].share_mode == "PERMISSIVE"
    np.testing.assert_array_equal(lp.blobs[0].data, [1.0, 2.0])


def test_image_data_transform_and_existing_transform_param():
    text = '''layers { name: "img" type: IMAGE_DATA top: "data" top: "label"
      transform_param { mean_value: 104 }
      image_data_param { source: "list.txt" crop_size: 227 mirror: true batch_size: 5 } }'''
    net, notes = upgrade_net(parse_prototxt(text, "NetParameter"))
    lp = net.layer[0]
    assert lp.type == "ImageData"
    assert lp.transform_param.mean_value == [104.0]
    assert lp.transform_param.crop_size == 227 and lp.transform_param.mirror is True
    assert not lp.image_data_param.has("crop_size") and lp.image_data_param.batch_size == 5


def test_v2_layers_keep_deprecated_transform_fields_with_a_warning():
    text = 'layer { name: "d" type: "Data" top: "data" data_param { scale: 0.5 source: "x" } }'
    net, notes = upgrade_net(parse_prototxt(text, "NetParameter", "n.prototxt"))
    assert net.layer[0].data_param.scale == 0.5 and not net.layer[0].has("transform_param")
    assert len(notes) == 1
    assert notes[0].startswith("n.prototxt:1: warning: layer 'd' (Data): data_param sets the "
                               "deprecated scale; Caffe ignores these")


def test_input_dim_becomes_an_input_layer():
    text = '''name: "dep"
input: "data"
input_dim: 10
input_dim: 3
input_dim: 227
input_dim: 227
input: "im_info"
input_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1
layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }
'''
    net, notes = upgrade_net(parse_prototxt(text, "NetParameter", "dep.prototxt"))
    assert not net.input and not net.input_dim
    inp = net.layer[0]
    assert (inp.name, inp.type, list(inp.top)) == ("input", "Input", ["data", "im_info"])
    assert [list(s.dim) for s in inp.input_param.shape] == [[10, 3, 227, 227], [1, 3, 1, 1]]
    assert net.layer[1].name == "relu"
    assert inp.where() == "dep.prototxt:2"
    assert any("converted the legacy input fields into an Input layer" in n for n in notes)


def test_input_shape_becomes_an_input_layer_and_bare_input_is_dropped():
    text = 'input: "x" input_shape { dim: 1 dim: 2 }'
    net, _ = upgrade_net(parse_prototxt(text, "NetParameter"))
    assert [list(s.dim) for s in net.layer[0].input_param.shape] == [[1, 2]]
    net, notes = upgrade_net(parse_prototxt('input: "x"', "NetParameter"))
    assert not net.layer and not net.input
    assert "dropped the 'input' field" in notes[0]
    with pytest.raises(ConfigError, match="input_dim needs 4 values per input"):
        upgrade_net(parse_prototxt('input: "x" input_dim: 1 input_dim: 2', "NetParameter"))
    with pytest.raises(ConfigError, match="2 inputs but 1 input_shape entries"):
        upgrade_net(parse_prototxt('input: "x" input: "y" input_shape { dim: 1 }',
                                   "NetParameter"))


def test_batch_norm_old_params_removed():
    text = '''layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x"
  param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 } }
layer { name: "bn2" type: "BatchNorm" bottom: "x" top: "x" param { lr_mult: 0 } }
layer { name: "sc" type: "Scale" bottom: "x" top: "x"
  param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 } }'''
    net, notes = upgrade_net(parse_prototxt(text, "NetParameter", "bn.prototxt"))
    assert not net.layer[0].param
    assert len(net.layer[1].param) == 1  # Caffe only drops the old three-spec form
    assert len(net.layer[2].param) == 3  # and only for BatchNorm
    assert notes == ["bn.prototxt:2: layer 'bn' (BatchNorm): removed its 3 param specs "
                     "(BatchNorm's mean, variance and scale factor are not learned; Caffe's "
                     "upgrade drops these specs)"]


def test_v0_net_is_refused():
    text = '''name: "old"
layers {
  layer { name: "conv1" type: "conv" num_output: 96 kernelsize: 11 }
  bottom: "data" top: "conv1"
}'''
    with pytest.raises(ConfigError) as ei:
        upgrade_net(parse_prototxt(text, "NetParameter", "v0.prototxt"))
    msg = str(ei.value)
    assert msg.startswith("v0.prototxt:3: layer 'conv1': this is a V0 layer")
    assert "V0 nets are not supported" in msg


def test_layer_and_layers_together_is_refused():
    text = 'layer { name: "a" type: "ReLU" } layers { name: "b" type: RELU }'
    with pytest.raises(ConfigError, match="both 'layer'.*and 'layers'"):
        upgrade_net(parse_prototxt(text, "NetParameter"))


def test_upgrade_solver_type():
    s = parse_prototxt('base_lr: 0.1\nsolver_type: ADAM\n', "SolverParameter", "s.prototxt")
    up, notes = upgrade_solver(s)
    assert up.type == "Adam" and not up.has("solver_type")
    assert up.where("type") == "s.prototxt:2"
    assert notes == ["s.prototxt:2: solver: replaced the deprecated 'solver_type: ADAM' with "
                     "'type: \"Adam\"'"]
    for old, new in [("SGD", "SGD"), ("NESTEROV", "Nesterov"), ("ADAGRAD", "AdaGrad"),
                     ("RMSPROP", "RMSProp"), ("ADADELTA", "AdaDelta")]:
        s = parse_prototxt(f"solver_type: {old}", "SolverParameter")
        assert upgrade_solver(s)[0].type == new
    with pytest.raises(ConfigError, match="cannot both be given"):
        upgrade_solver(parse_prototxt('solver_type: SGD type: "SGD"', "SolverParameter"))
    plain = parse_prototxt('type: "Nesterov"', "SolverParameter")
    assert upgrade_solver(plain) == (plain, [])


def test_upgrade_solver_inline_nets():
    text = 'net_param { layers { name: "r" type: RELU } }\n' \
           'test_net_param { input: "x" input_dim: [1, 1, 2, 2] }'
    up, notes = upgrade_solver(parse_prototxt(text, "SolverParameter"))
    assert up.net_param.layer[0].type == "ReLU"
    assert up.test_net_param[0].layer[0].type == "Input"
    assert any(n.startswith("net_param: ") for n in notes)
    assert any(n.startswith("test_net_param[0]: ") for n in notes)


def test_unknown_layer_types_lists_all_with_lines():
    text = '''layer { name: "a" type: "Convolution" }
layer { name: "b" type: "NoSuchLayerA" }
layer { name: "c" type: "ReLU" }
layer {
  name: "d"
  type: "NoSuchLayerB"
}
layer { name: "e" type: "NoSuchLayerA" }'''
    net = parse_prototxt(text, "NetParameter", "u.prototxt")
    from caffeish.layers import layer_types
    known = set(layer_types())
    expected = [(n, t, ln) for n, t, ln in [("a", "Convolution", 1), ("b", "NoSuchLayerA", 2),
                                            ("c", "ReLU", 3), ("d", "NoSuchLayerB", 6),
                                            ("e", "NoSuchLayerA", 8)] if t not in known]
    assert unknown_layer_types(net) == expected
    assert [x[0] for x in expected if x[1].startswith("NoSuch")] == ["b", "d", "e"]


def test_unknown_layer_types_judges_v1_layers_by_their_v2_name():
    from caffeish.layers import layer_types
    known = set(layer_types())
    v1 = parse_prototxt('layers { name: "x" type: IM2COL }\n'
                        'layers { name: "y" type: CONVOLUTION }', "NetParameter", "v.pt")
    expected = [(n, t, ln) for n, t, ln in [("x", "Im2col", 1), ("y", "Convolution", 2)]
                if t not in known]
    assert unknown_layer_types(v1) == expected
    assert unknown_layer_types(upgrade_net(v1)[0]) == expected


V1_TINY_DEPLOY = '''name: "TinyA"
input: "data"
input_dim: 1 input_dim: 1 input_dim: 28 input_dim: 28
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
         convolution_param { num_output: 8 kernel_size: 5 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
         pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "conv2" type: CONVOLUTION bottom: "pool1" top: "conv2"
         convolution_param { num_output: 16 kernel_size: 3 pad: 1 } }
layers { name: "pool2" type: POOLING bottom: "conv2" top: "pool2"
         pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layers { name: "ip1" type: INNER_PRODUCT bottom: "pool2" top: "ip1"
         inner_product_param { num_output: 10 } }
layers { name: "prob" type: SOFTMAX bottom: "ip1" top: "prob" }
'''


def test_upgraded_v1_deploy_runs_caffes_weights():
    """The tiny net written in V1 form, upgraded, gives Caffe's output with Caffe's weights."""
    if not (TINY / "tiny_a_iter_30.caffemodel").is_file():
        pytest.skip(f"{TINY} not present: ../shared/caffe_vectors holds files real Caffe wrote")
    import caffeish
    net_param, _ = upgrade_net(parse_prototxt(V1_TINY_DEPLOY, "NetParameter"))
    unknown = unknown_layer_types(net_param)
    if unknown:
        pytest.skip(f"layers not implemented yet: {unknown}")
    net = caffeish.Net(net_param, phase="TEST", weights=str(TINY / "tiny_a_iter_30.caffemodel"))
    out = net.forward(data=np.load(TINY / "input.npy"))
    np.testing.assert_allclose(out["prob"], np.load(TINY / "expected_prob.npy"), atol=1e-5)
