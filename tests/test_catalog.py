"""The BVLC catalog: every layer type of Caffe's core/common set is registered, and one net per
layer family builds from YAML, runs forward and backward, and trains a step."""
import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import parse_message

# BVLC Caffe's registered types (layer_factory + REGISTER_LAYER_CLASS): all of them.
BVLC_TYPES = """AbsVal Accuracy ArgMax BNLL BatchNorm BatchReindex Bias Clip Concat ContrastiveLoss
Convolution Crop Data Deconvolution Dropout DummyData ELU Eltwise Embed EuclideanLoss Exp Filter
Flatten HDF5Data HDF5Output HingeLoss Im2col ImageData InfogainLoss InnerProduct Input LRN LSTM
LSTMUnit Log MVN MemoryData MultinomialLogisticLoss PReLU Parameter Pooling Power Python RNN ReLU
Reduction Reshape SPP Scale Sigmoid SigmoidCrossEntropyLoss Silence Slice Softmax SoftmaxWithLoss
Split Swish TanH Threshold Tile WindowData""".split()


def test_every_bvlc_type_is_registered():
    missing = sorted(set(BVLC_TYPES) - set(caffeish.layer_type_list()))
    assert missing == []


HEAD = """\
layer:
  - name: data
    type: DummyData
    top: [data, label]
    dummy_data_param:
      shape: [{dim: [4, 3, 8, 8]}, {dim: [4]}]
      data_filler: [{type: gaussian, std: 1}, {type: constant, value: 1}]
"""

FAMILIES = {
    "vision": """\
  - {name: conv, type: Convolution, bottom: data, top: conv,
     convolution_param: {num_output: 4, kernel_size: 3, pad: 1, weight_filler: {type: xavier}}}
  - {name: deconv, type: Deconvolution, bottom: conv, top: up,
     convolution_param: {num_output: 3, kernel_size: 2, stride: 2, weight_filler: {type: bilinear}}}
  - {name: crop, type: Crop, bottom: [up, data], top: cropped}
  - {name: pool, type: Pooling, bottom: cropped, top: pool, pooling_param: {pool: AVE, kernel_size: 3, stride: 2}}
  - {name: spp, type: SPP, bottom: conv, top: spp, spp_param: {pyramid_height: 2}}
  - {name: ip, type: InnerProduct, bottom: spp, top: ip, inner_product_param: {num_output: 3}}
  - {name: ip2, type: InnerProduct, bottom: pool, top: ip2, inner_product_param: {num_output: 3}}
  - {name: sum, type: Eltwise, bottom: [ip, ip2], top: score}
""",
    "neuron": """\
  - {name: prelu, type: PReLU, bottom: data, top: a}
  - {name: elu, type: ELU, bottom: a, top: b}
  - {name: swish, type: Swish, bottom: b, top: c}
  - {name: power, type: Power, bottom: c, top: d, power_param: {power: 2, shift: 1}}
  - {name: bnll, type: BNLL, bottom: d, top: e}
  - {name: ip, type: InnerProduct, bottom: e, top: score, inner_product_param: {num_output: 3}}
""",
    "norm": """\
  - {name: conv, type: Convolution, bottom: data, top: conv, convolution_param: {num_output: 4, kernel_size: 3}}
  - {name: bn, type: BatchNorm, bottom: conv, top: conv}
  - {name: scale, type: Scale, bottom: conv, top: conv, scale_param: {bias_term: true}}
  - {name: lrn, type: LRN, bottom: conv, top: lrn, lrn_param: {local_size: 3}}
  - {name: mvn, type: MVN, bottom: lrn, top: mvn}
  - {name: ip, type: InnerProduct, bottom: mvn, top: score, inner_product_param: {num_output: 3}}
""",
    "structure": """\
  - {name: slice, type: Slice, bottom: data, top: [s1, s2], slice_param: {slice_point: 1}}
  - {name: tile, type: Tile, bottom: s1, top: t, tile_param: {tiles: 2}}
  - {name: concat, type: Concat, bottom: [t, s2], top: cat}
  - {name: flat, type: Flatten, bottom: cat, top: flat}
  - {name: reshape, type: Reshape, bottom: flat, top: r, reshape_param: {shape: {dim: [0, -1, 4]}}}
  - {name: red, type: Reduction, bottom: r, top: red, reduction_param: {axis: 2, operation: MEAN}}
  - {name: ip, type: InnerProduct, bottom: red, top: score, inner_product_param: {num_output: 3}}
  - {name: argmax, type: ArgMax, bottom: score, top: am}
  - {name: silence, type: Silence, bottom: am}
""",
    "loss": """\
  - {name: ip, type: InnerProduct, bottom: data, top: score, inner_product_param: {num_output: 3}}
  - {name: sig, type: Sigmoid, bottom: score, top: p}
  - {name: hinge, type: HingeLoss, bottom: [score, label], top: hinge, loss_weight: 0.5}
  - {name: sce, type: SigmoidCrossEntropyLoss, bottom: [score, p], top: sce, propagate_down: [true, false]}
""",
    "recurrent": """\
  - {name: seq, type: Reshape, bottom: data, top: seq, reshape_param: {shape: {dim: [4, 1, -1]}}}
  - name: cont
    type: DummyData
    top: cont
    dummy_data_param: {shape: {dim: [4, 1]}, data_filler: {type: constant, value: 1}}
  - {name: lstm, type: LSTM, bottom: [seq, cont], top: h, recurrent_param: {num_output: 5,
     weight_filler: {type: uniform, min: -0.1, max: 0.1}}}
  - {name: ip, type: InnerProduct, bottom: h, top: score, inner_product_param: {num_output: 3, axis: 2}}
  - {name: flat, type: Reshape, bottom: score, top: score2, reshape_param: {shape: {dim: [4, 3]}}}
""",
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_net_per_family_trains(family):
    body = FAMILIES[family]
    tail = ""
    score = "score2" if family == "recurrent" else "score"
    if family != "loss":
        tail = f"  - {{name: loss, type: SoftmaxWithLoss, bottom: [{score}, label], top: loss}}\n"
    from caffeish.config.schema import Msg
    net_param = parse_message(HEAD + body + tail, "NetParameter", f"{family}.yaml")
    solver = caffeish.get_solver(Msg("SolverParameter", {
        "net_param": net_param, "base_lr": 0.01, "lr_policy": "fixed", "momentum": 0.9,
        "random_seed": 3, "max_iter": 10}))
    before = [p.data.copy() for p in solver.net.learnable_params]
    solver.step(2)
    assert np.isfinite(solver.smoothed_loss)
    changed = [not np.array_equal(b, p.data) for b, p in zip(before, solver.net.learnable_params)]
    assert any(changed)
