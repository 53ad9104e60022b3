"""caffeish time's per-layer FLOP and byte accounting."""
import numpy as np

import caffeish
from caffeish.config.yaml_loader import parse_message
from caffeish.timing import time_net

NET = """\
layer:
  - {name: x, type: Input, top: [x, y], input_param: {shape: [{dim: [4, 2, 9, 9]}, {dim: [4]}]}}
  - {name: conv, type: Convolution, bottom: x, top: c, convolution_param: {num_output: 3,
     kernel_size: 3, weight_filler: {type: xavier}}}
  - {name: pool, type: Pooling, bottom: c, top: p, pooling_param: {pool: MAX, kernel_size: 7}}
  - {name: ip, type: InnerProduct, bottom: p, top: s, inner_product_param: {num_output: 5}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [s, y], top: loss}
"""


def test_flops_and_bytes_per_layer():
    net = caffeish.Net(parse_message(NET, "NetParameter", "t.yaml"), phase="TRAIN")
    rep = time_net(net, iterations=1, warmup=1)
    by = {t.name: t for t in rep.layers}
    conv_fwd = 4 * 2 * 2 * 3 * 3 * 3 * 7 * 7       # N * 2 * C * kh * kw * O * OH * OW
    assert by["conv"].forward_flops == conv_fwd
    assert by["conv"].backward_flops == conv_fwd    # weight gradient only: x needs none
    ip_fwd = 4 * 2 * 3 * 5
    assert by["ip"].forward_flops == ip_fwd and by["ip"].backward_flops == 2 * ip_fwd
    assert by["pool"].forward_flops == 4 * 3 * 49
    item = np.dtype(np.float32).itemsize
    assert by["conv"].forward_bytes == (4 * 2 * 81 + 3 * 2 * 9 + 3 + 4 * 3 * 49) * item
    text = rep.format()
    assert "GFLOP/s achieved" in text and "MFLOP" in text
