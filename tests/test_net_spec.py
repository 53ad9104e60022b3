"""net_spec: pycaffe's NetSpec / L / P, building the same NetParameter a YAML file gives."""
import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import parse_message
from caffeish.errors import ConfigError
from caffeish.io.prototxt import parse_prototxt
from caffeish.net_spec import NetSpec, layers as L, params as P, to_proto

LENET = """\
layer:
  - name: data
    type: DummyData
    top: [data, label]
    dummy_data_param:
      shape: [{dim: [8, 1, 28, 28]}, {dim: [8]}]
      data_filler: [{type: gaussian, std: 1}, {type: constant, value: 3}]
  - name: conv1
    type: Convolution
    bottom: data
    top: conv1
    param: [{lr_mult: 1}, {lr_mult: 2}]
    convolution_param: {num_output: 20, kernel_size: 5, weight_filler: {type: xavier}}
  - {name: pool1, type: Pooling, bottom: conv1, top: pool1,
     pooling_param: {pool: MAX, kernel_size: 2, stride: 2}}
  - name: ip1
    type: InnerProduct
    bottom: pool1
    top: ip1
    inner_product_param: {num_output: 50, weight_filler: {type: xavier}}
  - {name: relu1, type: ReLU, bottom: ip1, top: ip1}
  - name: ip2
    type: InnerProduct
    bottom: ip1
    top: ip2
    inner_product_param: {num_output: 10, weight_filler: {type: xavier}}
  - {name: accuracy, type: Accuracy, bottom: [ip2, label], top: accuracy,
     include: {phase: TEST}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label], top: loss}
"""


def lenet() -> NetSpec:
    """pycaffe's LeNet example, written with NetSpec."""
    n = NetSpec()
    n.data, n.label = L.DummyData(shape=[dict(dim=[8, 1, 28, 28]), dict(dim=[8])],
                                  data_filler=[dict(type="gaussian", std=1),
                                               dict(type="constant", value=3)], ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type="xavier"),
                            param=[dict(lr_mult=1), dict(lr_mult=2)])
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.ip1 = L.InnerProduct(n.pool1, num_output=50, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.ip1, in_place=True)
    n.ip2 = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type="xavier"))
    n.accuracy = L.Accuracy(n.ip2, n.label, include=dict(phase=caffeish.TEST))
    n.loss = L.SoftmaxWithLoss(n.ip2, n.label)
    return n


def test_lenet_equals_the_yaml_net():
    got = lenet().to_proto()
    want = parse_message(LENET, "NetParameter")
    assert got == want
    # in place: relu1 writes ip1, and ip2 reads ip1 (the blob), not 'relu1'
    relu, ip2 = got.layer[4], got.layer[5]
    assert (relu.name, list(relu.bottom), list(relu.top)) == ("relu1", ["ip1"], ["ip1"])
    assert list(ip2.bottom) == ["ip1"]


def test_prototxt_and_yaml_round_trip_and_the_net_trains(tmp_path):
    n = lenet()
    text = str(n.to_proto())                    # pycaffe: open(f, 'w').write(str(n.to_proto()))
    assert text.startswith('layer {\n  name: "data"')
    assert parse_prototxt(text, "NetParameter") == n.to_proto()
    (tmp_path / "lenet.yaml").write_text(n.to_yaml())
    net = caffeish.Net(str(tmp_path / "lenet.yaml"), caffeish.TRAIN, seed=1)
    assert list(net.layer_dict)[:3] == ["data", "conv1", "pool1"]
    assert "accuracy" not in net.layer_dict     # include: TEST
    loss = net.forward_backward()
    assert np.isfinite(loss) and loss > 0
    assert np.abs(net.params["conv1"][0].diff).sum() > 0


def test_auto_names_ntop_and_silence():
    x, y = L.DummyData(shape=[dict(dim=[2, 3]), dict(dim=[2, 3])], ntop=2)
    s = L.Eltwise(x, y, operation=P.Eltwise.SUM)
    sil = L.Silence(s, ntop=0)
    proto = to_proto(s)
    assert [(lay.name, list(lay.top)) for lay in proto.layer] == [
        ("DummyData1", ["DummyData1", "DummyData2"]), ("Eltwise1", ["Eltwise1"])]
    n = NetSpec()
    n.a, n.b = x, y
    n.sum = s
    assert [lay.name for lay in n.to_proto().layer] == ["a", "sum"]
    assert sil.ntop == 0 and sil.tops == ()


def test_fields_go_to_the_type_message_or_the_layer():
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2, 4, 4]))
    n.up = L.Deconvolution(n.x, num_output=2, kernel_size=2, stride=2, bias_term=False,
                           weight_filler=dict(type="bilinear"), param=dict(lr_mult=0),
                           propagate_down=[False], loss_weight=0.5)
    n.pool = L.Pooling(n.up, global_pooling=True, pool=P.Pooling.AVE, engine=P.Pooling.CAFFE)
    lay = n.to_proto().layer[1]
    assert lay.convolution_param.num_output == 2 and not lay.convolution_param.bias_term
    assert lay.param[0].lr_mult == 0 and list(lay.propagate_down) == [False]
    assert list(lay.loss_weight) == [0.5]
    assert n.to_proto().layer[2].pooling_param.engine == "CAFFE"
    net = caffeish.Net(n.to_proto(), caffeish.TEST)
    assert net.blobs["pool"].shape == (1, 2, 1, 1)


def test_errors_name_the_layer_and_the_field():
    n = NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 3]))
    n.ip = L.InnerProduct(n.x, num_ouput=3)
    with pytest.raises(ConfigError, match=r"L.InnerProduct \(layer 'ip'\): 'num_ouput' is not a "
                                          r"field of InnerProductParameter or LayerParameter "
                                          r"\(did you mean 'num_output'\?\)"):
        n.to_proto()
    n.ip = L.Pooling(n.x, pool="MAXX")
    with pytest.raises(ConfigError, match=r"^NetSpec: layer 'ip' \(Pooling\): bad value 'MAXX'"):
        n.to_proto()
    with pytest.raises(AttributeError, match="P.Pooling has no value 'MAXX' .*did you mean 'MAX'"):
        P.Pooling.MAXX
    with pytest.raises(TypeError, match="bottom 0 is int 3, not a top"):
        L.ReLU(3)
    with pytest.raises(TypeError, match="assign a top made by L.<Type>"):
        n.y = 3
    with pytest.raises(AttributeError, match="NetSpec has no top 'ipp'"):
        n.ipp
