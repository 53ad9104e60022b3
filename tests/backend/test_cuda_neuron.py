"""Neuron layers on the GPU backend: each layer's forward and backward match the CPU backend
(numba's CUDA simulator in CI, the real GPU when present), out of place and in place; Dropout's
counter-based masks are bit-identical on both backends."""
import numpy as np
import pytest

from caffeish import backend
from caffeish.backend.cpu import elementwise as cpu_ew
from caffeish.testing import blobs_from, compare_backends, make_layer, setup_layer

pytestmark = pytest.mark.cuda

SHAPE = (2, 3, 2, 3)


def gauss(shape=SHAPE, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, shape)


def positive(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(0.2, 2.0, shape)


def both(spec, arrays, **kw):
    compare_backends(spec, arrays, **kw)
    compare_backends(spec, arrays, in_place=True, **kw)


@pytest.mark.parametrize("spec", [
    {"type": "Sigmoid"},
    {"type": "TanH"},
    {"type": "BNLL"},
    {"type": "ELU"},
    {"type": "ELU", "elu_param": {"alpha": -0.5}},   # keeps a copy of x in place
    {"type": "Clip", "clip_param": {"min": -0.5, "max": 0.7}},
    {"type": "Swish", "swish_param": {"beta": 1.5}},
    {"type": "Exp", "exp_param": {"base": 2.0, "scale": 0.5, "shift": 0.3}},
], ids=["sigmoid", "tanh", "bnll", "elu", "elu-neg-alpha", "clip", "swish", "exp"])
def test_neuron(spec):
    both(spec, [gauss()])


@pytest.mark.parametrize("power", [
    {"power": 2.0, "scale": 0.5, "shift": 3.0},
    {"power": 1.0, "scale": 2.0, "shift": -1.0},
    {"power": 0.5, "scale": 1.0, "shift": 0.0},     # needs x > 0
    {"power": 3.0, "scale": 0.0, "shift": 2.0},     # power * scale == 0: a constant
], ids=["square", "linear", "sqrt", "constant"])
def test_power(power):
    x = positive() if power["power"] == 0.5 else gauss()
    both({"type": "Power", "power_param": power}, [x])


@pytest.mark.parametrize("param", [{}, {"base": 10.0, "scale": 2.0, "shift": 0.5}],
                         ids=["ln", "log10"])
def test_log(param):
    both({"type": "Log", "log_param": param}, [positive()])


def test_absval():
    compare_backends({"type": "AbsVal"}, [gauss()])   # Caffe's AbsVal refuses in place


def test_threshold():
    compare_backends({"type": "Threshold", "threshold_param": {"threshold": 0.2}}, [gauss()],
                     propagate_down=[False])
    compare_backends({"type": "Threshold"}, [gauss()], propagate_down=[False], in_place=True)


@pytest.mark.parametrize("shared", [False, True], ids=["per-channel", "shared"])
def test_prelu(shared):
    spec = {"type": "PReLU", "prelu_param": {
        "channel_shared": shared, "filler": {"type": "uniform", "min": -0.5, "max": 0.5}}}
    both(spec, [gauss()], passes=2)


def test_prelu_slope_gradient_spans_several_blocks():
    # inner large enough that each slope is reduced by several blocks plus the finishing pass
    from caffeish.backend import cuda
    spec = {"type": "PReLU", "prelu_param": {"filler": {"type": "constant", "value": 0.3}}}
    n_inner = cuda.THREADS * 8 * 3 // 2 + 5
    compare_backends(spec, [gauss((2, 2, n_inner), seed=4)])


def test_prelu_2d_bottom():
    compare_backends({"type": "PReLU"}, [gauss((4, 3), seed=2)])


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
@pytest.mark.parametrize("ratio", [0.5, 0.2])
def test_dropout(phase, ratio):
    spec = {"type": "Dropout", "dropout_param": {"dropout_ratio": ratio}}
    both(spec, [gauss((4, 3, 5), seed=3)], phase=phase, passes=2)


def test_dropout_masks_are_bit_identical_and_redrawn():
    x = np.ones((6, 40))
    masks = {}
    for mode in ("cpu", "gpu"):
        backend.set_mode_gpu() if mode == "gpu" else backend.set_mode_cpu()
        try:
            layer = make_layer({"type": "Dropout", "dropout_param": {"dropout_ratio": 0.3}},
                               dtype=np.float32, seed=5)
            bottom = blobs_from([x], np.float32)
            top = setup_layer(layer, bottom)
            masks[mode] = []
            for _ in range(2):
                layer.forward(bottom, top)
                masks[mode].append(layer.mask.copy())
        finally:
            backend.set_mode_cpu()
    for a, b in zip(masks["cpu"], masks["gpu"]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(masks["cpu"][0], masks["cpu"][1])
    assert 0.5 < masks["cpu"][0].mean() < 0.9


def test_dropout_bits_match_random123_philox_test_vectors():
    # Random123's kat_vectors for philox2x32_10: (ctr0, ctr1, key) -> first output word
    for c0, c1, k, want in [(0, 0, 0, 0xff1dae59),
                            (0xffffffff, 0xffffffff, 0xffffffff, 0x2c3f628b),
                            (0x243f6a88, 0x85a308d3, 0x13198a2e, 0xdd7ce038)]:
        key = np.uint64((c1 << 32) | k)
        assert int(cpu_ew.dropout_bits_scalar(key, c0)) == want
        assert int(cpu_ew.dropout_bits_scalar.py_func(key, c0)) == want
