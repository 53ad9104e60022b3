"""Net assembly: phases, stages, splits, in-place, loss weights, sharing, backward need, API."""
import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import parse_message
from caffeish.errors import ConfigError, ShapeError

NET = """\
name: t
layer:
  - {name: x, type: Input, top: [x, y], input_param: {shape: [{dim: [3, 4]}, {dim: [3, 2]}]}}
  - name: ip1
    type: InnerProduct
    bottom: x
    top: h
    inner_product_param: {num_output: 5, weight_filler: {type: gaussian, std: 0.5},
                          bias_filler: {type: gaussian, std: 0.5}}
  - {name: tanh, type: TanH, bottom: h, top: h}
  - name: a
    type: InnerProduct
    bottom: h
    top: a
    param: [{name: shared_w}, {name: shared_b}]
    inner_product_param: {num_output: 2, weight_filler: {type: gaussian, std: 0.5},
                          bias_filler: {type: gaussian, std: 0.5}}
  - name: b
    type: InnerProduct
    bottom: h
    top: b
    param: [{name: shared_w}, {name: shared_b}]
    inner_product_param: {num_output: 2}
  - {name: sum, type: Eltwise, bottom: [a, b, h2], top: s, eltwise_param: {coeff: [1, 0.5, 1]}}
  - {name: ip2, type: InnerProduct, bottom: h, top: h2, inner_product_param: {num_output: 2,
     weight_filler: {type: gaussian, std: 0.5}}}
  - {name: loss, type: EuclideanLoss, bottom: [s, y], top: loss, loss_weight: 2.5}
"""


def build(text, phase="TRAIN", dtype=np.float64, **kw):
    return caffeish.Net(parse_message(text, "NetParameter", "t.yaml"), phase=phase,
                        dtype=dtype, seed=7, **kw)


def fixed_net():
    text = NET.replace(
        "  - {name: sum, type: Eltwise, bottom: [a, b, h2], top: s, eltwise_param: {coeff: [1, 0.5, 1]}}\n"
        "  - {name: ip2, type: InnerProduct, bottom: h, top: h2, inner_product_param: {num_output: 2,\n"
        "     weight_filler: {type: gaussian, std: 0.5}}}\n",
        "  - {name: ip2, type: InnerProduct, bottom: h, top: h2, inner_product_param: {num_output: 2,\n"
        "     weight_filler: {type: gaussian, std: 0.5}}}\n"
        "  - {name: sum, type: Eltwise, bottom: [a, b, h2], top: s, eltwise_param: {coeff: [1, 0.5, 1]}}\n")
    net = build(text)
    rng = np.random.default_rng(0)
    net.blobs["x"].data[...] = rng.normal(size=(3, 4))
    net.blobs["y"].data[...] = rng.normal(size=(3, 2))
    return net


def test_splits_inserted_for_fan_out():
    net = fixed_net()
    splits = [n for n, l in net.layer_dict.items() if l.type == "Split"]
    assert splits == ["h_tanh_0_split"]
    assert net.top_name_vecs[net.layer_names.index("h_tanh_0_split")] == [
        "h_tanh_0_split_0", "h_tanh_0_split_1", "h_tanh_0_split_2"]


def test_shared_params_are_one_learnable_blob():
    net = fixed_net()
    assert net.params["a"][0] is net.params["b"][0]
    assert len(net.learnable_params) == 2 + 2 + 1 + 1  # ip1 w,b; shared w,b; ip2 w,b
    assert net.outputs == ["loss"]
    assert net.inputs == ["x", "y"]


def test_net_gradient_matches_finite_differences():
    net = fixed_net()
    net.clear_param_diffs()
    loss = net.forward_backward()
    assert loss == pytest.approx(2.5 * float(net.blobs["loss"].data))
    h = 1e-6
    for p in net.learnable_params:
        ana = p.diff.copy()
        flat = p.data.reshape(-1)
        for k in range(flat.size):
            x = flat[k]
            flat[k] = x + h
            fp = net.forward_loss()
            flat[k] = x - h
            fm = net.forward_loss()
            flat[k] = x
            assert ana.reshape(-1)[k] == pytest.approx((fp - fm) / (2 * h), rel=1e-5, abs=1e-7)


def test_forward_returns_views_and_param_writes_change_the_net():
    net = fixed_net()
    out = net.forward()
    assert np.shares_memory(out["loss"], net.blobs["loss"].data)
    before = float(out["loss"])
    net.params["ip2"][0].data[...] = 0
    assert float(net.forward()["loss"]) != before
    y = np.zeros((3, 2))
    net.forward(y=y)
    assert np.array_equal(net.blobs["y"].data, y)


def test_phase_stage_and_level_rules():
    text = """\
layer:
  - {name: x, type: Input, top: x, input_param: {shape: {dim: [2, 3]}}}
  - {name: tr, type: ReLU, bottom: x, top: tr, include: {phase: TRAIN}}
  - {name: te, type: ReLU, bottom: x, top: te, include: {phase: TEST}}
  - {name: st, type: ReLU, bottom: x, top: st, include: {stage: deploy}}
  - {name: nst, type: ReLU, bottom: x, top: nst, exclude: {stage: deploy}}
  - {name: lv, type: ReLU, bottom: x, top: lv, include: {min_level: 2}}
  - {name: any, type: ReLU, bottom: x, top: any, include: [{phase: TEST}, {stage: s2}]}
"""
    names = lambda n: [l for l, o in n.layer_dict.items() if o.type not in ("Input", "Split")]  # noqa: E731
    assert names(build(text, "TRAIN")) == ["tr", "nst"]
    assert names(build(text, "TEST")) == ["te", "nst", "any"]
    assert names(build(text, "TRAIN", stages=["deploy", "s2"], level=3)) == [
        "tr", "st", "lv", "any"]


def test_include_and_exclude_together_is_an_error():
    text = """\
layer:
  - {name: x, type: Input, top: x, input_param: {shape: {dim: [2]}}}
  - {name: r, type: ReLU, bottom: x, top: r, include: {phase: TRAIN}, exclude: {phase: TEST}}
"""
    with pytest.raises(ConfigError, match="t.yaml:3: layer 'r' .ReLU.: give either include"):
        build(text)


def test_backward_need_lr_mult_zero_and_propagate_down():
    text = """\
layer:
  - {name: x, type: Input, top: [x, y], input_param: {shape: [{dim: [2, 3]}, {dim: [2, 2]}]}}
  - {name: frozen, type: InnerProduct, bottom: x, top: f, param: [{lr_mult: 0}, {lr_mult: 0}],
     inner_product_param: {num_output: 3}}
  - {name: ip, type: InnerProduct, bottom: f, top: g, inner_product_param: {num_output: 2}}
  - {name: side, type: InnerProduct, bottom: f, top: unused, inner_product_param: {num_output: 2}}
  - {name: loss, type: EuclideanLoss, bottom: [g, y], top: loss, propagate_down: [true, false]}
"""
    net = build(text)
    need = dict(zip(net.layer_names, net.layer_need_backward))
    assert need["frozen"] is False  # lr_mult 0 and its input needs no gradient
    assert need["ip"] is True
    assert need["side"] is False  # output reaches no loss
    assert net.bottom_need_backward[net.layer_names.index("loss")] == [True, False]


def test_force_backward_reaches_inputs():
    text = """\
force_backward: true
layer:
  - {name: x, type: Input, top: [x, y], input_param: {shape: [{dim: [2, 3]}, {dim: [2, 3]}]}}
  - {name: loss, type: EuclideanLoss, bottom: [x, y], top: loss}
"""
    net = build(text)
    net.blobs["x"].data[...] = 1.0
    net.forward()
    diffs = net.backward()
    assert np.allclose(diffs["x"], 0.5)
    assert np.allclose(diffs["y"], -0.5)


def test_legacy_input_fields_become_an_input_layer():
    text = """\
input: data
input_dim: [1, 3, 4, 4]
layer:
  - {name: r, type: ReLU, bottom: data, top: r}
"""
    net = build(text, "TEST")
    assert net.inputs == ["data"] and net.blobs["data"].shape == (1, 3, 4, 4)


def test_too_many_param_specs():
    text = """\
layer:
  - {name: x, type: Input, top: x, input_param: {shape: {dim: [2, 3]}}}
  - {name: r, type: ReLU, bottom: x, top: r, param: [{lr_mult: 1}]}
"""
    with pytest.raises(ConfigError, match="layer 'r' .ReLU.: 1 'param' entries"):
        build(text)


def test_shared_param_shape_mismatch():
    text = """\
layer:
  - {name: x, type: Input, top: x, input_param: {shape: {dim: [2, 3]}}}
  - {name: a, type: InnerProduct, bottom: x, top: a, param: {name: w},
     inner_product_param: {num_output: 3, bias_term: false}}
  - {name: b, type: InnerProduct, bottom: x, top: b, param: {name: w},
     inner_product_param: {num_output: 4, bias_term: false}}
"""
    with pytest.raises(ShapeError, match="shared parameter 'w'"):
        build(text)


def test_no_layer_in_phase():
    text = "layer:\n  - {name: x, type: Input, top: x, include: {phase: TRAIN}, input_param: {shape: {dim: [1]}}}\n"
    with pytest.raises(ConfigError, match="no layer is included in the TEST phase"):
        build(text, "TEST")


def test_outputs_include_blobs_last_written_in_place():
    text = """\
layer:
  - {name: x, type: Input, top: x, input_param: {shape: {dim: [2, 3]}}}
  - {name: ip, type: InnerProduct, bottom: x, top: h, inner_product_param: {num_output: 2}}
  - {name: relu, type: ReLU, bottom: h, top: h}
"""
    assert build(text, "TEST").outputs == ["h"]


@pytest.mark.parametrize("layer,what", [
    ("{name: conv, type: Convolution, bottom: x, top: y, "
     "convolution_param: {num_output: 1000000000, kernel_size: 3}}", "blob 'conv[0]' of shape "
     "1000000000 x 3 x 3 x 3 would take 101 GiB"),
    ("{name: big, type: DummyData, top: y, "
     "dummy_data_param: {shape: {dim: [1000000000000, 1000000000000]}}}", "blob 'y' of shape "
     "1000000000000 x 1000000000000 would take 3.55e+09 PiB"),
], ids=["101 GiB", "beyond numpy"])
def test_a_blob_too_big_to_allocate_names_the_layer_and_its_yaml_line(layer, what):
    text = ("layer:\n  - {name: x, type: Input, top: x, input_param: {shape: {dim: [1, 3, 8, 8]}}}"
            f"\n  - {layer}\n")
    with pytest.raises(caffeish.errors.AllocationError) as e:
        build(text, dtype=np.float32)
    msg = str(e.value)
    assert msg.startswith("t.yaml:3: layer ")
    assert what in msg and "check the sizes" in msg
