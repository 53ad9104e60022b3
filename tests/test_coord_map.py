"""coord_map (pycaffe's): the Crop offsets that align FCN-style tops, against offsets worked out
by hand from each layer's coordinate map."""
import numpy as np
import pytest

import caffeish
from caffeish.coord_map import coord_map_from_to, crop
from caffeish.errors import ConfigError
from caffeish.net_spec import NetSpec, layers as L, params as P


def fcn(pad=100, up_kernel=4):
    """data -> conv 3x3 (pad) -> pool 2/2 -> conv 7x7 -> ReLU -> 2x deconv (kernel 4)."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 32, 32]))
    n.conv1 = L.Convolution(n.data, kernel_size=3, pad=pad, num_output=4)
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.score = L.Convolution(n.pool1, kernel_size=7, num_output=21)
    n.relu = L.ReLU(n.score, in_place=True)
    n.up = L.Deconvolution(n.relu, convolution_param=dict(num_output=21, kernel_size=up_kernel,
                                                          stride=2, bias_term=False))
    return n


def test_fcn_offset_by_hand():
    """Input u -> conv1: u + 99 -> pool: (u + 98.5) / 2 -> score: (u + 92.5) / 2 -> up:
    2 (u + 92.5) / 2 + 1.5 = u + 94; so the data's cell 0 lies over up's cell 94."""
    n = fcn()
    axis, a, b = coord_map_from_to(n.up, n.data)
    assert axis == 1
    np.testing.assert_allclose(a, [1, 1])
    np.testing.assert_allclose(b, [-94, -94])
    n.crop = crop(n.up, n.data)
    proto = n.to_proto()
    lp = proto.layer[-1]
    assert lp.type == "Crop" and lp.crop_param.axis == 2 and list(lp.crop_param.offset) == [94]
    net = caffeish.Net(proto, caffeish.TEST, seed=1)
    assert net.blobs["up"].shape == (1, 21, 220, 220)
    assert net.blobs["crop"].shape == (1, 21, 32, 32)       # 21 channels kept (axis 2)
    net.forward(data=np.random.default_rng(0).random((1, 3, 32, 32)))
    np.testing.assert_array_equal(net.blobs["crop"].data,
                                  net.blobs["up"].data[:, :, 94:126, 94:126])


def test_per_axis_strides_and_a_crop_in_the_chain():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 20, 30]))
    n.conv = L.Convolution(n.data, kernel_size=[3, 5], pad=[4, 6], num_output=2)
    n.cut = L.Crop(n.conv, n.data, crop_param=dict(axis=2, offset=[1, 2]))
    # conv: y = u + p - (k - 1) / 2 = u + (3, 4); cut: y - (1, 2) -> u + (2, 2)
    _, a, b = coord_map_from_to(n.cut, n.data)
    np.testing.assert_allclose(b, [-2, -2])
    n.again = crop(n.cut, n.data)
    assert list(n.to_proto().layer[-1].crop_param.offset) == [2]


def test_errors_say_what_cannot_line_up():
    n = fcn()
    with pytest.raises(ConfigError, match="differ in scale"):
        crop(n.pool1, n.data)
    with pytest.raises(ConfigError, match="cannot pad"):
        crop(n.data, n.up)                  # data is the smaller one
    small = fcn(pad=1)
    with pytest.raises(ConfigError, match="cannot pad"):
        crop(small.up, small.data)              # pad 1: up's cell 0 is the data's cell 5
    with pytest.raises(ConfigError, match="share no ancestor"):
        crop(fcn().up, small.data)
    m = fcn(up_kernel=3)
    with pytest.raises(ConfigError, match=r"offset \[93.5, 93.5\] is not a whole number"):
        crop(m.up, m.data)                      # a 3-wide deconvolution: u + 93.5
    with pytest.raises(ConfigError, match="no coordinate map for L.InnerProduct"):
        k = NetSpec()
        k.data = L.Input(shape=dict(dim=[1, 1, 4, 4]))
        k.ip = L.InnerProduct(k.data, num_output=2)
        crop(k.ip, k.data)
