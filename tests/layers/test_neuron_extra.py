"""PReLU, ELU, AbsVal, BNLL, Power, Exp, Log, Threshold, Clip and Swish: shapes, naive references,
gradients, in-place runs, Caffe's defaults and special cases, errors."""
import math

import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import parse_message
from caffeish.errors import ConfigError, ShapeError
from caffeish.testing import (blobs_from, check_gradient_spec, check_in_place, forward_layer,
                              make_layer, setup_layer)


def gauss(shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, shape)


def away_from(x, points, gap=0.05):
    """x with every element within ``gap`` of one of ``points`` pushed to that point +- 2 gap."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, 2 * gap, -2 * gap)
    return x


def elementwise(f, x):
    """Apply a plain-Python scalar function element by element."""
    out = np.empty(x.shape, np.float64)
    flat_x, flat_o = x.reshape(-1), out.reshape(-1)
    for i, v in enumerate(flat_x):
        flat_o[i] = f(float(v))
    return out


# --- naive references ---------------------------------------------------------------------------
def prelu_ref(x, slopes, shared):
    out = np.empty(x.shape, np.float64)
    n, c = x.shape[:2]
    for i in range(n):
        for j in range(c):
            a = slopes.reshape(-1)[0] if shared else slopes[j]
            block = x[i, j]
            out[i, j] = np.where(block > 0, block, a * block)
    return out


def elu_ref(x, alpha=1.0):
    return elementwise(lambda v: v if v > 0 else alpha * (math.exp(v) - 1.0), x)


def bnll_ref(x):
    return elementwise(lambda v: math.log(1.0 + math.exp(v)) if v < 30 else
                       v + math.log(1.0 + math.exp(-v)), x)


def power_ref(x, power=1.0, scale=1.0, shift=0.0):
    return elementwise(lambda v: (shift + scale * v) ** power, x)


def exp_ref(x, base=-1.0, scale=1.0, shift=0.0):
    b = math.e if base == -1 else base
    return elementwise(lambda v: b ** (shift + scale * v), x)


def log_ref(x, base=-1.0, scale=1.0, shift=0.0):
    b = math.e if base == -1 else base
    return elementwise(lambda v: math.log(shift + scale * v) / math.log(b), x)


def swish_ref(x, beta=1.0):
    return elementwise(lambda v: v / (1.0 + math.exp(-beta * v)), x)


def spec_of(type_name, field=None, **params):
    spec = {"type": type_name}
    if params:
        spec[field] = params
    return spec


PRELU = {"type": "PReLU"}
PRELU_SHARED = {"type": "PReLU", "prelu_param": {"channel_shared": True}}
PRELU_GAUSS = {"type": "PReLU", "prelu_param": {"filler": {"type": "gaussian", "std": 0.5}}}
ELU = {"type": "ELU"}
ELU_A = spec_of("ELU", "elu_param", alpha=0.4)
ELU_NEG = spec_of("ELU", "elu_param", alpha=-0.5)
ABSVAL = {"type": "AbsVal"}
BNLL = {"type": "BNLL"}
POWER = spec_of("Power", "power_param", power=3.0, scale=0.5, shift=2.0)
POWER_SQ = spec_of("Power", "power_param", power=2.0, scale=-1.5, shift=0.5)
POWER_FRAC = spec_of("Power", "power_param", power=0.5, scale=2.0, shift=10.0)
POWER_ID = {"type": "Power"}
EXP = {"type": "Exp"}
EXP_B2 = spec_of("Exp", "exp_param", base=2.0, scale=0.5, shift=1.0)
LOG = spec_of("Log", "log_param", shift=5.0)
LOG_B10 = spec_of("Log", "log_param", base=10.0, scale=2.0, shift=7.0)
THRESHOLD = spec_of("Threshold", "threshold_param", threshold=0.3)
CLIP = spec_of("Clip", "clip_param", min=-0.5, max=0.7)
SWISH = {"type": "Swish"}
SWISH_B = spec_of("Swish", "swish_param", beta=1.7)

ALL = [PRELU, PRELU_SHARED, ELU, ABSVAL, BNLL, POWER, EXP, LOG, THRESHOLD, CLIP, SWISH]
ALL_IDS = ["prelu", "prelu-shared", "elu", "absval", "bnll", "power", "exp", "log",
           "threshold", "clip", "swish"]


# --- shapes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ALL, ids=ALL_IDS)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 7), (2, 3, 2, 2, 2)], ids=["4d", "2d", "5d"])
def test_shapes(spec, shape):
    layer = make_layer(spec)
    top = setup_layer(layer, blobs_from([gauss(shape)]))
    assert top[0].shape == shape


@pytest.mark.parametrize("spec", [ELU, BNLL, EXP, SWISH, ABSVAL], ids=["elu", "bnll", "exp",
                                                                       "swish", "absval"])
def test_shapes_1d(spec):
    layer = make_layer(spec)
    assert setup_layer(layer, blobs_from([gauss((6,))]))[0].shape == (6,)


# --- PReLU ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,shape,blob_shape", [
    (PRELU, (2, 3, 4, 5), (3,)),
    (PRELU, (4, 6), (6,)),
    (PRELU_SHARED, (2, 3, 4, 5), ()),
    (PRELU, (2, 2, 3, 2, 2), (2,)),
], ids=["per-channel-4d", "per-channel-2d", "shared", "per-channel-5d"])
def test_prelu_blob_shape_and_default_filler(spec, shape, blob_shape):
    layer = make_layer(spec)
    setup_layer(layer, blobs_from([gauss(shape)]))
    assert len(layer.blobs) == 1
    assert layer.blobs[0].shape == blob_shape
    np.testing.assert_array_equal(layer.blobs[0].data, np.full(blob_shape, 0.25))


def test_prelu_filler_from_param():
    layer = make_layer(PRELU_GAUSS, seed=3)
    setup_layer(layer, blobs_from([gauss((2, 8, 3))]))
    slopes = layer.blobs[0].data
    assert slopes.shape == (8,) and len(np.unique(slopes)) == 8


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("spec,shape", [
    (PRELU_GAUSS, (2, 3, 4, 5)), (PRELU_GAUSS, (3, 5)), (PRELU_SHARED, (2, 3, 4)),
    (PRELU_GAUSS, (2, 2, 3, 2, 2)),
], ids=["4d", "2d", "shared-3d", "5d"])
def test_prelu_forward(spec, shape, dtype):
    x = gauss(shape, seed=1)
    x.reshape(-1)[:2] = 0.0
    layer, _, top = forward_layer(spec, [x], dtype=dtype)
    assert top[0].data.dtype == dtype
    want = prelu_ref(x.astype(dtype).astype(np.float64), layer.blobs[0].data.astype(np.float64),
                     spec is PRELU_SHARED)
    np.testing.assert_allclose(top[0].data, want, rtol=1e-6, atol=1e-7)


def test_prelu_backward_reference_and_slope_accumulation():
    x = np.array([[[-2.0, 0.0, 1.0], [3.0, -1.0, -0.5]]])  # (1, 2, 3)
    spec = {"type": "PReLU", "prelu_param": {"filler": {"type": "constant", "value": 0.1}}}
    layer, bottom, top = forward_layer(spec, [x])
    dy = np.array([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]])
    top[0].diff[...] = dy
    layer.blobs[0].diff[...] = [10.0, 20.0]
    layer.backward(top, [True], bottom)
    # gradient at x == 0 is the slope; slope diffs accumulate onto what was there.
    np.testing.assert_allclose(bottom[0].diff, [[[0.1, 0.2, 3.0], [4.0, 0.5, 0.6]]])
    np.testing.assert_allclose(layer.blobs[0].diff, [10.0 + 1.0 * -2.0 + 0.0,
                                                     20.0 + 5.0 * -1.0 + 6.0 * -0.5])


def test_prelu_no_propagate_down_still_updates_slope():
    layer, bottom, top = forward_layer(PRELU_SHARED, [gauss((2, 3, 2), seed=2)])
    top[0].diff[...] = 1.0
    bottom[0].diff[...] = 7.0
    layer.backward(top, [False], bottom)
    assert np.all(bottom[0].diff == 7.0)
    x = bottom[0].data
    assert float(layer.blobs[0].diff) == pytest.approx(float(np.sum(x * (x <= 0))))


# --- forward references --------------------------------------------------------------------------
REFS = [
    ("elu", ELU, lambda x: elu_ref(x)),
    ("elu-a0.4", ELU_A, lambda x: elu_ref(x, 0.4)),
    ("elu-neg", ELU_NEG, lambda x: elu_ref(x, -0.5)),
    ("absval", ABSVAL, np.abs),
    ("bnll", BNLL, bnll_ref),
    ("power-p3", POWER, lambda x: power_ref(x, 3.0, 0.5, 2.0)),
    ("power-sq", POWER_SQ, lambda x: power_ref(x, 2.0, -1.5, 0.5)),
    ("power-sqrt", POWER_FRAC, lambda x: power_ref(x, 0.5, 2.0, 10.0)),
    ("power-default", POWER_ID, lambda x: x),
    ("exp", EXP, lambda x: exp_ref(x)),
    ("exp-base2", EXP_B2, lambda x: exp_ref(x, 2.0, 0.5, 1.0)),
    ("log", LOG, lambda x: log_ref(x, shift=5.0)),
    ("log-base10", LOG_B10, lambda x: log_ref(x, 10.0, 2.0, 7.0)),
    # x == threshold gives 0 in either dtype (the threshold is rounded like the data)
    ("threshold", THRESHOLD, lambda x: (x > float(np.float32(0.3))).astype(np.float64)),
    ("clip", CLIP, lambda x: elementwise(lambda v: min(max(v, -0.5), 0.7), x)),
    ("swish", SWISH, lambda x: swish_ref(x)),
    ("swish-b1.7", SWISH_B, lambda x: swish_ref(x, 1.7)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,spec,ref", REFS, ids=[r[0] for r in REFS])
def test_forward_reference(name, spec, ref, dtype):
    x = gauss((2, 3, 2, 3), seed=3, scale=1.5)
    x.reshape(-1)[0] = 0.0
    x.reshape(-1)[1] = 0.3
    _, _, top = forward_layer(spec, [x], dtype=dtype)
    assert top[0].data.dtype == dtype
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, ref(x.astype(dtype).astype(np.float64)), rtol=tol,
                               atol=tol)


BACKWARD_REFS = [
    ("elu", ELU_A, lambda x, y: np.where(x > 0, 1.0, y + 0.4)),
    ("absval", ABSVAL, lambda x, y: np.sign(x)),
    ("bnll", BNLL, lambda x, y: 1.0 / (1.0 + np.exp(-x))),
    ("power", POWER, lambda x, y: 3.0 * 0.5 * (2.0 + 0.5 * x) ** 2),
    ("exp-base2", EXP_B2, lambda x, y: y * math.log(2.0) * 0.5),
    ("log-base10", LOG_B10, lambda x, y: 2.0 / ((7.0 + 2.0 * x) * math.log(10.0))),
    ("clip", CLIP, lambda x, y: ((x >= -0.5) & (x <= 0.7)).astype(np.float64)),
    ("swish-b1.7", SWISH_B, lambda x, y: 1 / (1 + np.exp(-1.7 * x))
     + 1.7 * x * np.exp(-1.7 * x) / (1 + np.exp(-1.7 * x)) ** 2),
]


@pytest.mark.parametrize("name,spec,dydx", BACKWARD_REFS, ids=[r[0] for r in BACKWARD_REFS])
def test_backward_reference(name, spec, dydx):
    x = gauss((3, 4), seed=4, scale=1.2)
    x.reshape(-1)[0] = 0.0
    dy = gauss((3, 4), seed=5)
    layer, bottom, top = forward_layer(spec, [x])
    top[0].diff[...] = dy
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, dy * dydx(x, top[0].data), rtol=1e-10, atol=1e-12)


# --- gradients -----------------------------------------------------------------------------------
GRAD = [
    ("prelu", PRELU_GAUSS, (2, 3, 2, 2), dict(kink=0.0, kink_range=0.01)),
    ("prelu-2d", PRELU_GAUSS, (3, 4), dict(kink=0.0, kink_range=0.01)),
    ("prelu-shared", PRELU_SHARED, (2, 3, 2), dict(kink=0.0, kink_range=0.01)),
    ("elu", ELU, (2, 3, 4), dict(kink=0.0, kink_range=0.01)),
    ("elu-a0.4", ELU_A, (2, 3, 4), dict(kink=0.0, kink_range=0.01)),
    ("elu-neg", ELU_NEG, (2, 3, 4), dict(kink=0.0, kink_range=0.01)),
    ("absval", ABSVAL, (2, 3, 4), dict(kink=0.0, kink_range=0.01)),
    ("bnll", BNLL, (2, 3, 4), {}),
    ("power-p3", POWER, (2, 3, 4), {}),
    ("power-sq", POWER_SQ, (2, 3, 4), {}),
    ("power-sqrt", POWER_FRAC, (2, 3, 4), {}),
    ("exp", EXP, (2, 3, 4), {}),
    ("exp-base2", EXP_B2, (2, 3, 4), {}),
    ("log", LOG, (2, 3, 4), {}),
    ("log-base10", LOG_B10, (2, 3, 4), {}),
    ("swish", SWISH, (2, 3, 4), {}),
    ("swish-b1.7", SWISH_B, (2, 3, 4), {}),
]


@pytest.mark.parametrize("name,spec,shape,kw", GRAD, ids=[g[0] for g in GRAD])
def test_gradient(name, spec, shape, kw):
    x = gauss(shape, seed=6)
    check_gradient_spec(spec, [x], stepsize=1e-3, threshold=1e-3, **kw)


def test_clip_gradient_away_from_the_bounds():
    x = away_from(gauss((2, 3, 4), seed=7), [-0.5, 0.7])
    check_gradient_spec(CLIP, [x], stepsize=1e-3, threshold=1e-3)


def test_clip_gradient_passes_at_both_bounds():
    layer, bottom, top = forward_layer(CLIP, [np.array([-0.6, -0.5, 0.0, 0.7, 0.8])])
    top[0].diff[...] = 1.0
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [0.0, 1.0, 1.0, 1.0, 0.0])


# --- in place ------------------------------------------------------------------------------------
IN_PLACE = [("prelu", PRELU_GAUSS), ("prelu-shared", PRELU_SHARED), ("elu", ELU),
            ("elu-neg", ELU_NEG), ("bnll", BNLL), ("power-p3", POWER), ("power-sq", POWER_SQ),
            ("exp-base2", EXP_B2), ("log", LOG), ("clip", CLIP), ("swish-b1.7", SWISH_B)]


@pytest.mark.parametrize("name,spec", IN_PLACE, ids=[s[0] for s in IN_PLACE])
def test_in_place(name, spec):
    check_in_place(spec, [gauss((2, 3, 2, 3), seed=8)])


def test_prelu_in_place_slope_gradient_matches():
    x = gauss((2, 3, 4), seed=9)
    grads = []
    for in_place in (False, True):
        layer = make_layer(PRELU_GAUSS)
        bottom = blobs_from([x])
        top = setup_layer(layer, bottom, in_place=in_place)
        layer.forward(bottom, top)
        top[0].diff[...] = np.linspace(-1, 1, x.size).reshape(x.shape)
        layer.backward(top, [True], bottom)
        grads.append(layer.blobs[0].diff.copy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)


def test_threshold_in_place_forward():
    x = gauss((3, 4), seed=10)
    layer = make_layer(THRESHOLD)
    bottom = blobs_from([x])
    top = setup_layer(layer, bottom, in_place=True)
    layer.forward(bottom, top)
    np.testing.assert_array_equal(bottom[0].data, (x > 0.3).astype(np.float64))


def test_absval_refuses_in_place():
    layer = make_layer(dict(ABSVAL, name="abs1"))
    with pytest.raises(ConfigError, match=r"abs1.*AbsVal.*in place"):
        setup_layer(layer, blobs_from([gauss((2, 3))]), in_place=True)
    text = """\
name: t
layer:
  - {name: x, type: Input, top: x, input_param: {shape: {dim: [2, 3]}}}
  - {name: abs2, type: AbsVal, bottom: x, top: x}
"""
    with pytest.raises(ConfigError, match=r"abs2.*AbsVal.*in place"):
        caffeish.Net(parse_message(text, "NetParameter", "t.yaml"), phase="TEST")


# --- Caffe's defaults and special cases ----------------------------------------------------------
def test_parameter_defaults():
    x = blobs_from([gauss((2, 3))])
    cases = {"ELU": ("alpha", 1.0), "Threshold": ("threshold", 0.0), "Swish": ("beta", 1.0)}
    for type_name, (attr, value) in cases.items():
        layer = make_layer({"type": type_name})
        setup_layer(layer, x)
        assert getattr(layer, attr) == value, type_name
    power = make_layer({"type": "Power"})
    setup_layer(power, x)
    assert (power.power, power.scale, power.shift) == (1.0, 1.0, 0.0)
    exp = make_layer({"type": "Exp"})
    setup_layer(exp, x)
    assert (exp.inner_scale, exp.outer_scale) == (1.0, 1.0)
    log = make_layer({"type": "Log"})
    setup_layer(log, x)
    assert (log.base_scale, log.scale, log.shift) == (1.0, 1.0, 0.0)
    prelu = make_layer(PRELU)
    setup_layer(prelu, blobs_from([gauss((2, 3))]))
    assert prelu.channel_shared is False


def test_default_exp_and_log_are_natural():
    x = np.array([0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(forward_layer(EXP, [x])[2][0].data, np.exp(x), rtol=1e-14)
    np.testing.assert_allclose(forward_layer({"type": "Log"}, [x])[2][0].data, np.log(x),
                               rtol=1e-14)


def test_log_of_non_positive_is_minus_inf_or_nan_like_caffe():
    with np.errstate(all="ignore"):
        _, _, top = forward_layer({"type": "Log"}, [np.array([0.0, -1.0, 1.0])])
    y = top[0].data
    assert y[0] == -np.inf and np.isnan(y[1]) and y[2] == 0.0


@pytest.mark.parametrize("params,want", [
    ({"power": 0.0, "scale": 3.0, "shift": 2.0}, 1.0),
    ({"power": 0.0, "scale": 0.0, "shift": 0.0}, 1.0),
    ({"power": 2.0, "scale": 0.0, "shift": 3.0}, 9.0),
    ({"power": -1.0, "scale": 0.0, "shift": 4.0}, 0.25),
], ids=["power0", "power0-scale0", "scale0", "scale0-neg-power"])
def test_power_ignores_input_when_power_times_scale_is_zero(params, want):
    x = gauss((2, 3), seed=11)
    layer, bottom, top = forward_layer({"type": "Power", "power_param": params}, [x])
    np.testing.assert_array_equal(top[0].data, np.full(x.shape, want))
    top[0].diff[...] = 5.0
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.zeros(x.shape))


def test_power_special_bases():
    with np.errstate(all="ignore"):
        _, _, top = forward_layer({"type": "Power", "power_param": {"power": 0.5}},
                                  [np.array([-4.0, 0.0, 4.0])])
        assert np.isnan(top[0].data[0]) and list(top[0].data[1:]) == [0.0, 2.0]
        _, _, top = forward_layer({"type": "Power", "power_param": {"power": -1.0}},
                                  [np.array([0.0, 2.0])])
        assert top[0].data[0] == np.inf and top[0].data[1] == 0.5
    # odd integer powers of negative bases are real, as with C's pow
    _, _, top = forward_layer({"type": "Power", "power_param": {"power": 3.0}},
                              [np.array([-2.0])])
    assert top[0].data[0] == -8.0


@pytest.mark.parametrize("power", [2.0, 3.0], ids=["p2", "p3"])
def test_power_gradient_at_zero_base_is_the_limit(power):
    layer, bottom, top = forward_layer(
        {"type": "Power", "power_param": {"power": power, "scale": 2.0, "shift": -1.0}},
        [np.array([0.5, 1.0])])
    top[0].diff[...] = 1.0
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, [0.0, power * 2.0])


def test_bnll_is_stable_for_large_inputs():
    x = np.array([-1000.0, -60.0, 60.0, 1000.0])
    with np.errstate(over="raise", invalid="raise"):
        layer, bottom, top = forward_layer(BNLL, [x], dtype=np.float32)
    np.testing.assert_allclose(top[0].data, [0.0, math.exp(-60.0), 60.0, 1000.0], rtol=1e-6)
    top[0].diff[...] = 1.0
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, [0.0, math.exp(-60.0), 1.0, 1.0], rtol=1e-6)


def test_exp_base_and_shift_scale():
    # y = 3^(2 + 0.5 x): outer = 3^2, inner = ln 3 * 0.5
    layer, _, top = forward_layer(spec_of("Exp", "exp_param", base=3.0, scale=0.5, shift=2.0),
                                  [np.array([0.0, 2.0, -4.0])])
    np.testing.assert_allclose(top[0].data, [9.0, 27.0, 1.0], rtol=1e-12)
    assert layer.outer_scale == pytest.approx(9.0)
    assert layer.inner_scale == pytest.approx(0.5 * math.log(3.0))


# --- Threshold has no gradient -------------------------------------------------------------------
def test_threshold_backward_raises_naming_the_layer():
    layer, bottom, top = forward_layer(dict(THRESHOLD, name="thr1"), [gauss((2, 3))])
    top[0].diff[...] = 1.0
    with pytest.raises(ConfigError, match=r"thr1.*Threshold.*no gradient"):
        layer.backward(top, [True], bottom)
    bottom[0].diff[...] = 4.0
    layer.backward(top, [False], bottom)
    assert np.all(bottom[0].diff == 4.0)


THRESH_NET = """\
name: t
force_backward: true
layer:
  - {{name: x, type: Input, top: [x, y], input_param: {{shape: [{{dim: [2, 3]}}, {{dim: [2, 4]}}]}}}}
{middle}  - {{name: thr, type: Threshold, bottom: {bottom}, top: t}}
  - {{name: loss, type: EuclideanLoss, bottom: [t, y], top: loss}}
"""
LEARNED = ("  - {name: ip, type: InnerProduct, bottom: x, top: h, inner_product_param: "
           "{num_output: 4, weight_filler: {type: gaussian, std: 0.5}}}\n")


def test_threshold_in_a_net_only_fails_when_its_gradient_is_needed():
    # force_backward alone does not ask Threshold for the input's gradient...
    direct = THRESH_NET.format(middle="", bottom="x").replace("dim: [2, 4]", "dim: [2, 3]")
    net = caffeish.Net(parse_message(direct, "NetParameter", "t.yaml"), phase="TRAIN",
                       dtype=np.float64)
    net.forward_backward()
    # ...but a learned layer below it needs a gradient that does not exist.
    learned = THRESH_NET.format(middle=LEARNED, bottom="h")
    net = caffeish.Net(parse_message(learned, "NetParameter", "t.yaml"), phase="TRAIN",
                       dtype=np.float64)
    with pytest.raises(ConfigError, match=r"thr.*Threshold.*no gradient"):
        net.forward_backward()


# --- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("params,missing", [({}, "min"), ({"min": -1.0}, "max"),
                                            ({"max": 1.0}, "min")],
                         ids=["none", "no-max", "no-min"])
def test_clip_requires_min_and_max(params, missing):
    spec = {"type": "Clip", "name": "clip3"}
    if params:
        spec["clip_param"] = params
    with pytest.raises(ConfigError, match=rf"clip3.*Clip.*clip_param\.{missing} is required"):
        forward_layer(spec, [gauss((2, 3))])


@pytest.mark.parametrize("type_name,field,base,match", [
    ("Exp", "exp_param", 0.0, "strictly positive"),
    ("Exp", "exp_param", -2.0, "strictly positive"),
    ("Log", "log_param", -3.0, "strictly positive"),
    ("Log", "log_param", 1.0, "must not be 1"),
], ids=["exp-zero", "exp-negative", "log-negative", "log-one"])
def test_bad_base(type_name, field, base, match):
    spec = {"type": type_name, "name": "b7", field: {"base": base}}
    with pytest.raises(ConfigError, match=rf"b7.*{type_name}.*{match}"):
        forward_layer(spec, [np.ones(3)])


def test_prelu_needs_two_axes():
    with pytest.raises(ShapeError, match=r"prelu9.*PReLU.*at least 2 axes"):
        forward_layer(dict(PRELU, name="prelu9"), [np.ones(4)])


def test_prelu_channel_count_change_is_a_shape_error():
    layer, bottom, top = forward_layer(dict(PRELU, name="prelu8"), [gauss((2, 3, 4))])
    bottom[0].reshape((2, 5, 4))
    with pytest.raises(ShapeError, match=r"prelu8.*PReLU.*5 channels.*3 slopes"):
        layer.reshape(bottom, top)
    shared = make_layer(PRELU_SHARED)
    b = blobs_from([gauss((2, 3, 4))])
    t = setup_layer(shared, b)
    b[0].reshape((2, 5, 4))
    shared.reshape(b, t)
    assert t[0].shape == (2, 5, 4)
