"""caffeish inspect: shapes, parameter counts and FLOPs from shapes alone."""
import json
from pathlib import Path

import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import parse_message
from caffeish.errors import ConfigError
from caffeish.tools import shapes as shape_rules
from caffeish.tools.inspect import inspect_net, load_net_for_tools

REPO = Path(__file__).resolve().parents[2]


def conv(name, bottom, n, k, s=1, p=0, g=1):
    return (f"  - {{name: {name}, type: Convolution, bottom: {bottom}, top: {name}, "
            f"convolution_param: {{num_output: {n}, kernel_size: {k}, stride: {s}, pad: {p}, "
            f"group: {g}}}}}\n  - {{name: relu{name[-1]}, type: ReLU, bottom: {name}, "
            f"top: {name}}}\n")


def pool(name, bottom):
    return (f"  - {{name: {name}, type: Pooling, bottom: {bottom}, top: {name}, "
            f"pooling_param: {{pool: MAX, kernel_size: 3, stride: 2}}}}\n")


def lrn(name, bottom):
    return (f"  - {{name: {name}, type: LRN, bottom: {bottom}, top: {name}, "
            f"lrn_param: {{local_size: 5, alpha: 0.0001, beta: 0.75}}}}\n")


def fc(name, bottom, n, relu=True):
    s = (f"  - {{name: {name}, type: InnerProduct, bottom: {bottom}, top: {name}, "
         f"inner_product_param: {{num_output: {n}}}}}\n")
    if relu:
        s += (f"  - {{name: relu{name[-1]}, type: ReLU, bottom: {name}, top: {name}}}\n"
              f"  - {{name: drop{name[-1]}, type: Dropout, bottom: {name}, top: {name}, "
              f"dropout_param: {{dropout_ratio: 0.5}}}}\n")
    return s


# BVLC's models/bvlc_reference_caffenet/deploy.prototxt, layer for layer.
CAFFENET = ("name: CaffeNet\nlayer:\n"
            "  - {name: data, type: Input, top: data, input_param: {shape: {dim: [10, 3, 227, "
            "227]}}}\n"
            + conv("conv1", "data", 96, 11, s=4) + pool("pool1", "conv1") + lrn("norm1", "pool1")
            + conv("conv2", "norm1", 256, 5, p=2, g=2) + pool("pool2", "conv2")
            + lrn("norm2", "pool2") + conv("conv3", "norm2", 384, 3, p=1)
            + conv("conv4", "conv3", 384, 3, p=1, g=2) + conv("conv5", "conv4", 256, 3, p=1, g=2)
            + pool("pool5", "conv5") + fc("fc6", "pool5", 4096) + fc("fc7", "fc6", 4096)
            + fc("fc8", "fc7", 1000, relu=False)
            + "  - {name: prob, type: Softmax, bottom: fc8, top: prob}\n")


def rows_by_name(report):
    return {r.name: r for r in report.rows}


def check_caffenet(report):
    assert report.params == 60_965_224
    r = rows_by_name(report)
    assert r["conv1"].top_shapes == [(10, 96, 55, 55)]
    assert r["pool1"].top_shapes == [(10, 96, 27, 27)]
    assert r["norm1"].top_shapes == [(10, 96, 27, 27)]
    assert r["conv2"].top_shapes == [(10, 256, 27, 27)]
    assert r["conv2"].param_shapes == [(256, 48, 5, 5), (256,)]
    assert r["pool5"].top_shapes == [(10, 256, 6, 6)]
    assert r["fc6"].param_shapes == [(4096, 9216), (4096,)]
    assert r["prob"].top_shapes == [(10, 1000)]
    assert r["relu1"].in_place and r["relu1"].activation_bytes == 0
    assert r["conv1"].activation_bytes == 10 * 96 * 55 * 55 * 4
    assert report.batch_size == 10
    # convolutions + inner products dominate: 2 x 724M multiply-adds per image
    macs = (96 * 3 * 121 * 55 * 55 + 256 * 48 * 25 * 27 * 27 + 384 * 256 * 9 * 13 * 13
            + 384 * 192 * 9 * 13 * 13 + 256 * 192 * 9 * 13 * 13
            + 9216 * 4096 + 4096 * 4096 + 4096 * 1000)
    fl = sum(r[n].flops_per_image for n in ("conv1", "conv2", "conv3", "conv4", "conv5",
                                            "fc6", "fc7", "fc8"))
    assert fl == 2 * macs


def test_caffenet_deploy_has_60965224_parameters_and_caffes_shapes():
    net = parse_message(CAFFENET, "NetParameter", "caffenet.yaml")
    check_caffenet(inspect_net(net, "TEST"))


def test_models_zoo_caffenet_if_present():
    p = REPO / "caffeish" / "models_zoo" / "bvlc_reference_caffenet" / "deploy.yaml"
    if not p.exists():
        pytest.skip(f"{p} not present yet")
    check_caffenet(inspect_net(load_net_for_tools(p), "TEST"))


def test_lenet_flops_per_image_match_a_hand_count():
    net = load_net_for_tools(REPO / "configs" / "mnist" / "lenet_deploy.yaml")
    rep = inspect_net(net, "TEST")
    r = rows_by_name(rep)
    hand = {
        "conv1": 2 * 1 * 5 * 5 * 20 * 24 * 24,     # 576,000
        "pool1": 2 * 2 * 20 * 12 * 12,             # 11,520 comparisons
        "conv2": 2 * 20 * 5 * 5 * 50 * 8 * 8,      # 3,200,000
        "pool2": 2 * 2 * 50 * 4 * 4,               # 3,200
        "ip1": 2 * 800 * 500,                      # 800,000
        "relu1": 500,
        "ip2": 2 * 500 * 10,                       # 10,000
        "prob": 5 * 10,
    }
    for name, want in hand.items():
        assert r[name].flops_per_image == want, name
    assert rep.flops_per_image == sum(hand.values()) == 4_601_270
    assert rep.params == 20 * 25 + 20 + 50 * 20 * 25 + 50 + 800 * 500 + 500 + 5010
    assert rep.activation_bytes["TEST"] == 4 * 64 * (784 + 20 * 576 + 20 * 144 + 50 * 64
                                                     + 50 * 16 + 500 + 10 + 10)
    assert rep.activation_bytes["TRAIN"] == 2 * rep.activation_bytes["TEST"]
    text = rep.format()
    assert "431,080" in text and "FLOPs per image" in text and "4,601,270" in text


def test_json_report_is_machine_readable():
    net = parse_message(CAFFENET, "NetParameter", "caffenet.yaml")
    d = json.loads(inspect_net(net).to_json())
    assert d["params"] == 60_965_224
    conv1 = next(x for x in d["layers"] if x["name"] == "conv1")
    assert conv1["top_shapes"] == [[10, 96, 55, 55]] and conv1["params"] == 34_944
    assert set(d["activation_bytes"]) == {"TRAIN", "TEST"}


def test_data_layer_shape_comes_from_the_first_record(tiny):
    net = load_net_for_tools(tiny / "net.yaml")
    rep = inspect_net(net, "TRAIN")
    r = rows_by_name(rep)
    assert r["data"].top_shapes == [(16, 1, 10, 10), (16,)]
    assert r["conv1"].top_shapes == [(16, 4, 8, 8)]
    assert any("first record" in n for n in rep.notes)
    assert rows_by_name(inspect_net(net, "TEST"))["data"].top_shapes[0] == (20, 1, 10, 10)


def test_missing_source_asks_for_shape_and_accepts_it(tmp_path):
    text = """\
layer:
  - {name: d, type: Data, top: [data, label], data_param: {source: nowhere_lmdb, batch_size: 8}}
  - {name: ip, type: InnerProduct, bottom: data, top: ip, inner_product_param: {num_output: 2}}
"""
    p = tmp_path / "n.yaml"
    p.write_text(text)
    net = load_net_for_tools(p)
    with pytest.raises(ConfigError, match=r"n\.yaml:2: layer 'd' \(Data\): data source "
                                          r"'nowhere_lmdb' not found.*--shape data=C,H,W"):
        inspect_net(net)
    rep = inspect_net(net, given={"data": (3, 4, 4)})
    assert rows_by_name(rep)["ip"].param_shapes == [(2, 48), (2,)]
    # crop_size and three mean values are enough
    p2 = tmp_path / "n2.yaml"
    p2.write_text(text.replace("data_param:", "transform_param: {crop_size: 5, mean_value: "
                                              "[1, 2, 3]}, data_param:"))
    net2 = load_net_for_tools(p2)
    assert rows_by_name(inspect_net(net2))["d"].top_shapes[0] == (8, 3, 5, 5)


NET_MIX = """\
name: mix
layer:
  - {name: data, type: Input, top: [data, aux], input_param: {shape: [{dim: [2, 6, 11, 9]},
     {dim: [2, 5]}]}}
  - {name: c1, type: Convolution, bottom: data, top: c1,
     convolution_param: {num_output: 4, kernel_h: 3, kernel_w: 2, stride: 2, pad: 1, group: 2,
                         dilation: 2}}
  - {name: p1, type: Pooling, bottom: c1, top: p1,
     pooling_param: {pool: AVE, kernel_size: 3, stride: 2, pad: 1}}
  - {name: p2, type: Pooling, bottom: c1, top: p2, pooling_param: {pool: MAX, global_pooling: true}}
  - {name: f1, type: Flatten, bottom: p1, top: f1}
  - {name: r1, type: Reshape, bottom: p2, top: r1, reshape_param: {shape: {dim: [0, -1]}}}
  - {name: cat, type: Concat, bottom: [f1, r1, aux], top: cat}
  - {name: ip, type: InnerProduct, bottom: cat, top: ip, inner_product_param: {num_output: 3}}
  - {name: s, type: Sigmoid, bottom: ip, top: s}
  - {name: t, type: TanH, bottom: ip, top: t}
  - {name: e, type: Eltwise, bottom: [s, t], top: e, eltwise_param: {operation: SUM,
     coeff: [1, -1]}}
  - {name: sm, type: Softmax, bottom: e, top: sm}
"""


def test_shape_rules_agree_with_the_layers_themselves():
    """Every rule is checked against the real layer classes through caffeish.Net."""
    param = parse_message(NET_MIX, "NetParameter", "mix.yaml")
    net = caffeish.Net(param, phase="TEST")
    rep = inspect_net(param, "TEST")
    for row in rep.rows:
        for name, shape in zip(row.tops, row.top_shapes):
            assert net.blobs[name].shape == shape, (row.name, name)
        layer = net.layer_dict[row.name]
        assert [b.shape for b in layer.blobs] == row.param_shapes, row.name
    net.close()


NET_MORE = """\
name: more
layer:
  - {name: data, type: Input, top: [data, lab, tgt],
     input_param: {shape: [{dim: [2, 4, 9, 7]}, {dim: [2]}, {dim: [2, 6]}]}}
  - {name: lrn, type: LRN, bottom: data, top: lrn, lrn_param: {local_size: 3}}
  - {name: lrnw, type: LRN, bottom: data, top: lrnw,
     lrn_param: {local_size: 3, norm_region: WITHIN_CHANNEL}}
  - {name: bn, type: BatchNorm, bottom: lrn, top: bn}
  - {name: sc, type: Scale, bottom: bn, top: sc, scale_param: {bias_term: true}}
  - {name: bi, type: Bias, bottom: sc, top: bi}
  - {name: pr, type: PReLU, bottom: bi, top: pr}
  - {name: el, type: ELU, bottom: pr, top: el}
  - {name: ab, type: AbsVal, bottom: el, top: ab}
  - {name: pw, type: Power, bottom: ab, top: pw, power_param: {power: 2}}
  - {name: de, type: Deconvolution, bottom: pw, top: de,
     convolution_param: {num_output: 6, kernel_size: 3, stride: 2, pad: 1, group: 2}}
  - {name: cr, type: Crop, bottom: [de, data], top: cr, crop_param: {axis: 2, offset: [1]}}
  - {name: sl, type: Slice, bottom: cr, top: [sl1, sl2, sl3],
     slice_param: {axis: 1, slice_point: [1, 4]}}
  - {name: sl_eq, type: Slice, bottom: cr, top: [sq1, sq2]}
  - {name: i2c, type: Im2col, bottom: data, top: i2c,
     convolution_param: {kernel_size: 3, stride: 2}}
  - {name: spp, type: SPP, bottom: data, top: spp, spp_param: {pyramid_height: 2}}
  - {name: red, type: Reduction, bottom: data, top: red, reduction_param: {axis: 1}}
  - {name: tile, type: Tile, bottom: sl2, top: tile, tile_param: {axis: 1, tiles: 3}}
  - {name: am, type: ArgMax, bottom: tgt, top: am, argmax_param: {top_k: 2}}
  - {name: am2, type: ArgMax, bottom: data, top: am2,
     argmax_param: {top_k: 2, axis: 1, out_max_val: true}}
  - {name: mvn, type: MVN, bottom: sl3, top: mvn}
  - {name: par, type: Parameter, top: par, parameter_param: {shape: {dim: [3, 2]}}}
  - {name: ip, type: InnerProduct, bottom: mvn, top: ip, inner_product_param: {num_output: 6}}
  - {name: acc, type: Accuracy, bottom: [ip, lab], top: [acc, acc_cls], accuracy_param: {top_k: 2}}
  - {name: sce, type: SigmoidCrossEntropyLoss, bottom: [ip, tgt], top: sce}
  - {name: eu, type: EuclideanLoss, bottom: [ip, tgt], top: eu}
  - {name: swl, type: SoftmaxWithLoss, bottom: [ip, lab], top: [swl, swp]}
  - {name: sil, type: Silence, bottom: [par, am, am2, tile, red, spp, i2c, sq1, sq2, lrnw, sl1]}
"""


def test_more_shape_rules_agree_with_the_layers():
    """Normalisation, neuron, structure, loss and metric layers, at TRAIN."""
    from caffeish.layers.base import LAYER_REGISTRY, layer_types
    layer_types()
    param = parse_message(NET_MORE, "NetParameter", "more.yaml")
    missing = sorted({lp.type for lp in param.layer} - set(LAYER_REGISTRY))
    if missing:
        pytest.skip(f"layer types not registered yet: {missing}")
    net = caffeish.Net(param, phase="TRAIN")
    rep = inspect_net(param, "TRAIN")
    for row in rep.rows:
        for name, shape in zip(row.tops, row.top_shapes):
            assert net.blobs[name].shape == shape, (row.name, name)
        assert [b.shape for b in net.layer_dict[row.name].blobs] == row.param_shapes, row.name
    net.close()


def test_a_type_without_a_rule_is_sized_by_its_layer_class(monkeypatch):
    monkeypatch.delitem(shape_rules.RULES, "InnerProduct")
    param = parse_message(NET_MIX, "NetParameter", "mix.yaml")
    rep = inspect_net(param)
    ip = rows_by_name(rep)["ip"]
    assert ip.top_shapes == [(2, 3)] and ip.param_shapes == [(3, 4 * 3 * 3 + 4 + 5), (3,)]
    assert ip.flops is None and rep.unknown_flops == ["ip"]
    assert "not counting 1 layer(s) without a FLOP rule: ip" in rep.format()


def test_unknown_type_and_bad_bottom_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown type 'Convolutoin' \(did you mean "
                                          r"'Convolution'\?\)"):
        inspect_net(parse_message(NET_MIX.replace("type: Convolution", "type: Convolutoin"),
                                  "NetParameter", "m.yaml"))
    with pytest.raises(ConfigError, match="unknown bottom blob 'c9'"):
        inspect_net(parse_message(NET_MIX.replace("bottom: c1, top: p1", "bottom: c9, top: p1"),
                                  "NetParameter", "m.yaml"))


@pytest.mark.parametrize("layer,words", [
    ("{name: lrn, type: LRN, top: n}", "layer 'lrn' (LRN): takes exactly 1 bottom blob(s), got 0"),
    ("{name: loss, type: SoftmaxWithLoss, bottom: x, top: l}",
     "takes exactly 2 bottom blob(s), got 1"),
    ("{name: ip, type: InnerProduct, bottom: x, inner_product_param: {num_output: 2}}",
     "takes exactly 1 top blob(s), got 0"),
], ids=["no-bottom", "one-bottom-loss", "no-top"])
def test_a_layer_with_the_wrong_blob_count_is_a_config_error(layer, words):
    """The shape rules index bottoms[0], bottoms[1]: the counts are checked first (a fuzzed
    net without LRN's bottom was an IndexError)."""
    text = ("layer:\n  - {name: x, type: Input, top: x, input_param: {shape: {dim: [2, 3, 4, 4]}}}"
            f"\n  - {layer}\n")
    with pytest.raises(ConfigError) as e:
        inspect_net(parse_message(text, "NetParameter", "t.yaml"))
    assert str(e.value).startswith("t.yaml:3: layer ") and words in str(e.value)


def test_inspect_is_fast_and_allocates_nothing_big():
    """CaffeNet with a batch of 5000 (~20 GiB of activations) is sized instantly."""
    import time
    import tracemalloc
    net = parse_message(CAFFENET.replace("dim: [10,", "dim: [5000,"), "NetParameter", "c.yaml")
    tracemalloc.start()
    t = time.perf_counter()
    rep = inspect_net(net)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rep.activation_bytes["TEST"] > 19 * 2 ** 30
    assert peak < 20 * 2 ** 20 and time.perf_counter() - t < 5
    assert np.isclose(rep.flops_per_image, inspect_net(parse_message(
        CAFFENET, "NetParameter", "c.yaml")).flops_per_image)


def test_shared_parameters_are_counted_once():
    text = """\
layer:
  - {name: d, type: Input, top: [a, b], input_param: {shape: {dim: [2, 3]}}}
  - {name: ip_a, type: InnerProduct, bottom: a, top: ya, param: [{name: w}, {name: bias}],
     inner_product_param: {num_output: 4}}
  - {name: ip_b, type: InnerProduct, bottom: b, top: yb, param: [{name: w}, {name: bias}],
     inner_product_param: {num_output: 4}}
"""
    rep = inspect_net(parse_message(text, "NetParameter", "s.yaml"))
    r = rows_by_name(rep)
    assert (r["ip_a"].params, r["ip_b"].params, r["ip_b"].shared_params) == (16, 0, 16)
    assert rep.params == 16 and "(+16 shared)" in rep.format()
