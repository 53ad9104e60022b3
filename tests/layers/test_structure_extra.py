"""Slice, Tile, Reduction, ArgMax, Silence, Filter, BatchReindex, Parameter: shapes, naive
references, gradients, errors."""
import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import parse_message
from caffeish.errors import ConfigError, DataError, ShapeError
from caffeish.testing import (blobs_from, check_gradient, check_gradient_spec, forward_layer,
                              make_layer, setup_layer)


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def distinct(shape, seed=0, scale=0.1):
    """No ties, gaps far above a gradient-check step."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2.0) * scale


def build(spec, arrays, dtype=np.float64, n_tops=None):
    layer = make_layer(spec, dtype=dtype)
    bottom = blobs_from(arrays, dtype)
    top = setup_layer(layer, bottom, n_tops)
    return layer, bottom, top


def assert_names_layer(excinfo, name, type_name):
    msg = str(excinfo.value)
    assert f"layer '{name}' ({type_name})" in msg, msg


# ============================================================================== Slice
def slice_spec(ntop, **p):
    return {"name": "sl", "type": "Slice", "top": [f"t{i}" for i in range(ntop)],
            "slice_param": p}


SLICE_CASES = {
    "axis1-points[1,3]": (dict(slice_point=[1, 3]), 3, (2, 5, 3), 1, [1, 2, 2]),
    "axis1-equal": (dict(), 2, (2, 4, 3), 1, [2, 2]),
    "axis0-equal3": (dict(axis=0), 3, (6, 2), 0, [2, 2, 2]),
    "axis-1-point2": (dict(axis=-1, slice_point=[2]), 2, (2, 3, 5), 2, [2, 3]),
    "slice_dim2-legacy": (dict(slice_dim=2, slice_point=[1]), 2, (2, 3, 4), 2, [1, 3]),
    "axis2-of-4d": (dict(axis=2, slice_point=[1, 2]), 3, (2, 2, 4, 3), 2, [1, 1, 2]),
}


def slice_ref(x, axis, sizes):
    out, start = [], 0
    for sz in sizes:
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, start + sz)
        out.append(x[tuple(idx)].copy())
        start += sz
    return out


@pytest.mark.parametrize("case", list(SLICE_CASES), ids=list(SLICE_CASES))
def test_slice_forward_backward(case):
    p, ntop, shape, axis, sizes = SLICE_CASES[case]
    x = rand(shape)
    layer, bottom, top = forward_layer(slice_spec(ntop, **p), [x])
    want = slice_ref(x, axis, sizes)
    assert [t.shape for t in top] == [w.shape for w in want]
    for t, w in zip(top, want):
        np.testing.assert_array_equal(t.data, w)
    diffs = [rand(t.shape, seed=5 + i) for i, t in enumerate(top)]
    for t, d in zip(top, diffs):
        t.diff[...] = d
    bottom[0].diff[...] = 99.0
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.concatenate(diffs, axis=axis))


@pytest.mark.parametrize("case", ["axis1-points[1,3]", "axis0-equal3", "axis2-of-4d"])
def test_slice_gradient(case):
    p, ntop, shape, _, _ = SLICE_CASES[case]
    check_gradient_spec(slice_spec(ntop, **p), [rand(shape)])


def test_slice_single_top_shares_data():
    layer, bottom, top = forward_layer(slice_spec(1), [rand((2, 3))])
    assert np.shares_memory(top[0].data, bottom[0].data)
    top[0].diff[...] = 3.0
    layer.backward(top, [True], bottom)
    assert np.all(bottom[0].diff == 3.0)


def test_slice_follows_bottom_reshape():
    layer, bottom, top = forward_layer(slice_spec(2, slice_point=[1]), [rand((2, 3))])
    bottom[0].reshape((4, 5))
    bottom[0].data[...] = rand((4, 5), seed=2)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert [t.shape for t in top] == [(4, 1), (4, 4)]
    np.testing.assert_array_equal(top[1].data, bottom[0].data[:, 1:])


@pytest.mark.parametrize("p,ntop,shape,err,words", [
    (dict(slice_point=[1]), 3, (2, 4), ConfigError, "one fewer"),
    (dict(slice_point=[2, 2]), 3, (2, 4), ConfigError, "strictly increasing"),
    (dict(slice_point=[0]), 2, (2, 4), ConfigError, "strictly increasing"),
    (dict(slice_point=[5]), 2, (2, 4), ShapeError, "beyond"),
    (dict(), 3, (2, 4), ShapeError, "evenly divide"),
    (dict(slice_point=[1, 2, 3]), 4, (2, 3), ShapeError, "cannot slice"),
    (dict(axis=1, slice_dim=1), 2, (2, 4), ConfigError, "not both"),
    (dict(axis=3), 2, (2, 4), ConfigError, "axis"),
    (dict(slice_dim=2), 2, (2, 4), ConfigError, "slice_dim 2 is out of range"),
], ids=["points-vs-tops", "not-increasing", "zero-point", "point-beyond", "not-divisible",
        "too-many-tops", "axis-and-slice_dim", "bad-axis", "bad-slice_dim"])
def test_slice_errors(p, ntop, shape, err, words):
    with pytest.raises(err) as e:
        build(slice_spec(ntop, **p), [rand(shape)])
    assert words in str(e.value)
    assert_names_layer(e, "sl", "Slice")


# ============================================================================== Tile
def tile_spec(**p):
    return {"name": "tile", "type": "Tile", "tile_param": p}


def tile_ref(x, axis, tiles):
    outer = int(np.prod(x.shape[:axis]))
    block = x.reshape(outer, -1)
    out = np.zeros((outer, tiles * block.shape[1]))
    for o in range(outer):
        for t in range(tiles):
            for r in range(block.shape[1]):
                out[o, t * block.shape[1] + r] = block[o, r]
    shape = list(x.shape)
    shape[axis] *= tiles
    return out.reshape(shape)


TILE_CASES = {
    "axis1-t3": (dict(tiles=3), (2, 2, 3), 1),
    "axis0-t2": (dict(axis=0, tiles=2), (2, 3), 0),
    "axis-1-t4": (dict(axis=-1, tiles=4), (2, 3, 2), 2),
    "axis2-t1": (dict(axis=2, tiles=1), (2, 2, 3), 2),
}


@pytest.mark.parametrize("case", list(TILE_CASES), ids=list(TILE_CASES))
def test_tile_forward_and_gradient(case):
    p, shape, axis = TILE_CASES[case]
    x = rand(shape)
    _, _, top = forward_layer(tile_spec(**p), [x])
    want = tile_ref(x, axis, p["tiles"])
    assert top[0].shape == want.shape
    np.testing.assert_array_equal(top[0].data, want)
    check_gradient_spec(tile_spec(**p), [x])


def test_tile_backward_sums_copies():
    layer, bottom, top = forward_layer(tile_spec(tiles=3), [rand((2, 2))])
    d = rand((2, 6), seed=3)
    top[0].diff[...] = d
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, d[:, 0:2] + d[:, 2:4] + d[:, 4:6], rtol=1e-14)


@pytest.mark.parametrize("p,err,words", [
    (dict(), ConfigError, "tiles"),
    (dict(tiles=0), ConfigError, "positive"),
    (dict(tiles=2, axis=4), ConfigError, "axis"),
], ids=["no-tiles", "zero-tiles", "bad-axis"])
def test_tile_errors(p, err, words):
    with pytest.raises(err) as e:
        build(tile_spec(**p), [rand((2, 3))])
    assert words in str(e.value)
    assert_names_layer(e, "tile", "Tile")


# ============================================================================== Reduction
def red_spec(**p):
    return {"name": "red", "type": "Reduction", "reduction_param": p}


def red_ref(x, op, axis, coeff):
    axis = axis % x.ndim
    num = int(np.prod(x.shape[:axis]))
    rows = x.reshape(num, -1)
    out = np.zeros(num)
    for i in range(num):
        s = 0.0
        for v in rows[i]:
            s += {"SUM": v, "MEAN": v, "ASUM": abs(v), "SUMSQ": v * v}[op]
        if op == "MEAN":
            s /= rows.shape[1]
        out[i] = coeff * s
    return out.reshape(x.shape[:axis])


RED_CASES = [(op, axis, coeff) for op in ("SUM", "ASUM", "SUMSQ", "MEAN")
             for axis, coeff in ((0, 1.0), (1, 2.5), (-1, -0.5))]


@pytest.mark.parametrize("op,axis,coeff", RED_CASES,
                         ids=[f"{o}-axis{a}-coeff{c}" for o, a, c in RED_CASES])
def test_reduction_forward_and_gradient(op, axis, coeff):
    x = distinct((2, 3, 4), seed=1, scale=0.05) + 0.025
    spec = red_spec(operation=op, axis=axis, coeff=coeff)
    _, _, top = forward_layer(spec, [x])
    want = red_ref(x, op, axis, coeff)
    assert top[0].shape == want.shape
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12)
    check_gradient_spec(spec, [x], stepsize=1e-3, threshold=1e-5)


def test_reduction_defaults_sum_everything_to_a_scalar():
    x = rand((3, 4))
    _, _, top = forward_layer({"type": "Reduction"}, [x])
    assert top[0].shape == ()
    assert float(top[0].data) == pytest.approx(x.sum(), rel=1e-12)


def test_reduction_asum_gradient_is_zero_at_zero_and_float32():
    layer, bottom, top = forward_layer(red_spec(operation="ASUM", axis=1),
                                       [np.array([[0.0, -2.0, 3.0]])], dtype=np.float32)
    assert top[0].data.dtype == np.float32
    assert float(top[0].data[0]) == 5.0
    top[0].diff[...] = 2.0
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [[0.0, -2.0, 2.0]])


def test_reduction_bad_axis():
    with pytest.raises(ConfigError) as e:
        build(red_spec(axis=3), [rand((2, 3))])
    assert_names_layer(e, "red", "Reduction")


# ============================================================================== ArgMax
def argmax_spec(**p):
    return {"name": "am", "type": "ArgMax", "argmax_param": p}


def topk_pairs(vec, k):
    """Caffe's order: (value, index) pairs sorted descending, so ties list the larger index first."""
    pairs = sorted(((float(v), j) for j, v in enumerate(vec)), reverse=True)
    return pairs[:k]


def argmax_ref(x, top_k, out_max_val, axis=None):
    if axis is None:
        n = x.shape[0]
        flat = x.reshape(n, -1)
        shape = [1] * max(x.ndim, 3)
        shape[0], shape[2] = n, top_k
        if out_max_val:
            shape[1] = 2
        out = np.zeros((n, 2 if out_max_val else 1, top_k))
        for i in range(n):
            for j, (v, idx) in enumerate(topk_pairs(flat[i], top_k)):
                out[i, 0, j] = idx
                if out_max_val:
                    out[i, 1, j] = v
        return out.reshape(shape)
    axis = axis % x.ndim
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros(moved.shape[:-1] + (top_k,))
    for pos in np.ndindex(*moved.shape[:-1]):
        for j, (v, idx) in enumerate(topk_pairs(moved[pos], top_k)):
            out[pos + (j,)] = v if out_max_val else idx
    return np.moveaxis(out, -1, axis)


ARGMAX_CASES = {
    "flat-k1": (dict(), (3, 4, 2), None),
    "flat-k3-2d": (dict(top_k=3), (2, 5), None),
    "flat-k2-maxval": (dict(top_k=2, out_max_val=True), (2, 3, 2, 2), None),
    "axis1-k2": (dict(axis=1, top_k=2), (2, 4, 3), 1),
    "axis1-k3-maxval": (dict(axis=1, top_k=3, out_max_val=True), (2, 4, 3), 1),
    "axis-1-k1": (dict(axis=-1), (2, 3, 5), -1),
    "axis0-k2-maxval": (dict(axis=0, top_k=2, out_max_val=True), (3, 2, 2), 0),
}


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("case", list(ARGMAX_CASES), ids=list(ARGMAX_CASES))
def test_argmax_forward(case, ties):
    p, shape, axis = ARGMAX_CASES[case]
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=shape).astype(float) if ties else distinct(shape, seed=3)
    _, _, top = forward_layer(argmax_spec(**p), [x])
    want = argmax_ref(x, p.get("top_k", 1), p.get("out_max_val", False), axis)
    assert top[0].shape == want.shape
    np.testing.assert_array_equal(top[0].data, want)


def test_argmax_ties_list_the_larger_index_first():
    x = np.array([[1.0, 5.0, 5.0, 0.0, 5.0]])
    _, _, top = forward_layer(argmax_spec(top_k=4, out_max_val=True), [x])
    np.testing.assert_array_equal(top[0].data.reshape(2, 4), [[4, 2, 1, 0], [5, 5, 5, 1]])


@pytest.mark.parametrize("case", ["flat-k2-maxval", "axis1-k3-maxval", "axis0-k2-maxval",
                                  "axis1-k2"])
def test_argmax_gradient(case):
    p, shape, _ = ARGMAX_CASES[case]
    check_gradient_spec(argmax_spec(**p), [distinct(shape, seed=4)])


def test_argmax_index_output_has_zero_gradient_and_no_force_backward():
    layer, bottom, top = forward_layer(argmax_spec(top_k=2), [distinct((2, 5))])
    top[0].diff[...] = 1.0
    bottom[0].diff[...] = 7.0
    layer.backward(top, [True], bottom)
    assert np.all(bottom[0].diff == 0)
    assert not layer.allow_force_backward(0)


def test_argmax_float32():
    x = distinct((2, 6), seed=2).astype(np.float32)
    _, _, top = forward_layer(argmax_spec(top_k=2, out_max_val=True), [x], dtype=np.float32)
    np.testing.assert_array_equal(top[0].data, argmax_ref(x.astype(float), 2, True))


@pytest.mark.parametrize("p,shape,words", [
    (dict(top_k=6), (2, 5), "top_k (6)"),
    (dict(top_k=4, axis=1), (2, 3, 5), "top_k (4)"),
    (dict(top_k=0), (2, 3), "top_k must not be less than 1"),
    (dict(axis=3), (2, 3), "axis"),
], ids=["flat-k-too-big", "axis-k-too-big", "k0", "bad-axis"])
def test_argmax_errors(p, shape, words):
    with pytest.raises(ConfigError) as e:
        build(argmax_spec(**p), [rand(shape)])
    assert words in str(e.value)
    assert_names_layer(e, "am", "ArgMax")


# ============================================================================== Silence
def test_silence_has_no_tops_and_zeros_needed_diffs():
    layer, bottom, top = build({"type": "Silence"}, [rand((2, 3)), rand((4,))], n_tops=0)
    assert top == []
    layer.forward(bottom, top)
    for b in bottom:
        b.diff[...] = 5.0
    layer.backward(top, [True, False], bottom)
    assert np.all(bottom[0].diff == 0)
    assert np.all(bottom[1].diff == 5.0)


def test_silence_gradient_is_zero():
    layer, bottom, top = build({"type": "Silence"}, [rand((2, 3))], n_tops=0)
    worst = check_gradient(layer, bottom, top)
    assert worst == {"bottom[0]": 0.0}


def test_silence_rejects_tops():
    with pytest.raises(ConfigError) as e:
        build({"name": "s", "type": "Silence"}, [rand((2,))], n_tops=1)
    assert_names_layer(e, "s", "Silence")


# ============================================================================== Filter
def filter_spec(ntop):
    return {"name": "flt", "type": "Filter", "top": [f"f{i}" for i in range(ntop)]}


def filter_ref(x, sel):
    keep = [i for i in range(len(sel)) if sel[i] != 0]
    return np.array([x[i] for i in keep]).reshape((len(keep),) + x.shape[1:])


@pytest.mark.parametrize("sel", [[1, 0, 1, 1], [0, 0, 0, 2.5], [1, 1, 1, 1]],
                         ids=["some", "one-nonint", "all"])
def test_filter_forward_backward(sel):
    a, b = rand((4, 2, 3)), rand((4, 3), seed=1)
    s = np.array(sel, float).reshape(4, 1)
    layer, bottom, top = build(filter_spec(2), [a, b, s])
    assert [t.shape for t in top] == [(4, 2, 3), (4, 3)]  # setup-time reshape: all items
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    for t, x in zip(top, (a, b)):
        want = filter_ref(x, sel)
        assert t.shape == want.shape
        np.testing.assert_array_equal(t.data, want)
    diffs = [rand(t.shape, seed=7 + i) for i, t in enumerate(top)]
    for t, d in zip(top, diffs):
        t.diff[...] = d
    for bb in bottom:
        bb.diff[...] = 9.0
    layer.backward(top, [True, True, False], bottom)
    keep = [i for i in range(4) if sel[i]]
    for bb, d in zip(bottom[:2], diffs):
        want = np.zeros(bb.shape)
        for j, i in enumerate(keep):
            want[i] = d[j]
        np.testing.assert_array_equal(bb.diff, want)
    assert np.all(bottom[2].diff == 9.0)


def test_filter_nothing_selected_gives_empty_tops():
    layer, bottom, top = build(filter_spec(1), [rand((3, 2)), np.zeros(3)])
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (0, 2)
    bottom[0].diff[...] = 4.0
    layer.backward(top, [True, False], bottom)
    assert np.all(bottom[0].diff == 0)


def test_filter_gradient_and_selector_gets_none():
    a = rand((5, 2))
    sel = np.array([0, 1, 1, 0, 1.0])
    check_gradient_spec(filter_spec(1), [a, sel], check_bottom=[0])
    layer, bottom, top = forward_layer(filter_spec(1), [a, sel])
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(1)
    bottom[1].diff[...] = 3.0
    layer.backward(top, [False, True], bottom)
    assert np.all(bottom[1].diff == 0)


@pytest.mark.parametrize("arrays,ntop,err,words", [
    ([rand((3, 2)), np.ones((3, 2))], 1, ShapeError, "singletons"),
    ([rand((3, 2)), np.ones(4)], 1, ShapeError, "same 0th dimension"),
    ([rand((3, 2)), rand((3,)), np.ones(3)], 1, ConfigError, "one top per filtered bottom"),
], ids=["selector-not-singleton", "num-mismatch", "top-count"])
def test_filter_errors(arrays, ntop, err, words):
    with pytest.raises(err) as e:
        build(filter_spec(ntop), arrays)
    assert words in str(e.value)
    assert_names_layer(e, "flt", "Filter")


# ============================================================================== BatchReindex
def test_batch_reindex_forward_backward_with_repeats():
    x = rand((4, 2, 3))
    perm = np.array([3, 0, 3, 1, 1, 1.0])
    layer, bottom, top = forward_layer({"type": "BatchReindex"}, [x, perm])
    assert top[0].shape == (6, 2, 3)
    for i, p in enumerate(perm):
        np.testing.assert_array_equal(top[0].data[i], x[int(p)])
    d = rand((6, 2, 3), seed=2)
    top[0].diff[...] = d
    bottom[0].diff[...] = 5.0
    layer.backward(top, [True, False], bottom)
    want = np.zeros((4, 2, 3))
    for i, p in enumerate(perm):
        want[int(p)] += d[i]
    np.testing.assert_allclose(bottom[0].diff, want, rtol=1e-14)


@pytest.mark.parametrize("perm", [[2, 0, 1], [1, 1, 1, 0, 2], [0.0]], ids=["perm", "repeats",
                                                                          "one"])
def test_batch_reindex_gradient(perm):
    check_gradient_spec({"type": "BatchReindex"}, [rand((3, 2, 2)), np.array(perm, float)],
                        check_bottom=[0])


def test_batch_reindex_truncates_fractional_indices_like_caffe():
    x = rand((3, 2))
    _, _, top = forward_layer({"type": "BatchReindex"}, [x, np.array([2.7, 0.2])])
    np.testing.assert_array_equal(top[0].data, x[[2, 0]])


@pytest.mark.parametrize("perm", [[0, 3], [-1, 0], [np.nan]], ids=["too-big", "negative",
                                                                   "nan"])
def test_batch_reindex_bad_index_is_data_error(perm):
    layer, bottom, top = build({"name": "ri", "type": "BatchReindex"},
                               [rand((3, 2)), np.array(perm, float)])
    with pytest.raises(DataError) as e:
        layer.forward(bottom, top)
    assert_names_layer(e, "ri", "BatchReindex")
    assert "[0, 3)" in str(e.value)


def test_batch_reindex_index_must_be_1d():
    with pytest.raises(ShapeError) as e:
        build({"name": "ri", "type": "BatchReindex"}, [rand((3, 2)), np.zeros((2, 1))])
    assert_names_layer(e, "ri", "BatchReindex")


# ============================================================================== Parameter
def param_spec(dims):
    return {"name": "p", "type": "Parameter", "parameter_param": {"shape": {"dim": dims}}}


@pytest.mark.parametrize("dims", [[2, 3], [4], [1, 2, 1, 3]], ids=["2x3", "4", "1x2x1x3"])
def test_parameter_exposes_its_blob(dims):
    layer, bottom, top = build(param_spec(dims), [])
    assert bottom == [] and len(layer.blobs) == 1
    assert layer.blobs[0].shape == tuple(dims) == top[0].shape
    assert np.all(layer.blobs[0].data == 0)
    layer.blobs[0].data[...] = rand(dims)
    layer.forward(bottom, top)
    np.testing.assert_array_equal(top[0].data, layer.blobs[0].data)
    assert np.shares_memory(top[0].data, layer.blobs[0].data)


def test_parameter_backward_accumulates_and_gradient():
    layer, bottom, top = build(param_spec([2, 3]), [])
    layer.blobs[0].data[...] = rand((2, 3))
    layer.forward(bottom, top)
    top[0].diff[...] = 1.5
    layer.backward(top, [], bottom)
    layer.backward(top, [], bottom)
    assert np.all(layer.blobs[0].diff == 3.0)
    worst = check_gradient(layer, bottom, top)
    assert set(worst) == {"param[0]"}


def test_parameter_learns_in_a_net():
    text = """\
name: p
force_backward: false
layer:
  - {name: p, type: Parameter, top: w, parameter_param: {shape: {dim: [2, 3]}}}
  - {name: r, type: Reduction, bottom: w, top: loss, loss_weight: 1,
     reduction_param: {operation: SUMSQ}}
"""
    net = caffeish.Net(parse_message(text, "NetParameter", "t.yaml"), phase="TRAIN",
                       dtype=np.float64, seed=1)
    w = rand((2, 3))
    net.params["p"][0].data[...] = w
    net.clear_param_diffs()
    loss = net.forward_backward()
    assert loss == pytest.approx(float((w ** 2).sum()))
    np.testing.assert_allclose(net.params["p"][0].diff, 2 * w, rtol=1e-12)


def test_parameter_wrong_loaded_shape():
    layer = make_layer(param_spec([2, 3]))
    layer.blobs.append(layer.new_param_blob((3, 2)))
    with pytest.raises(ShapeError) as e:
        setup_layer(layer, [])
    assert_names_layer(e, "p", "Parameter")


# ============================================================================== in a net
NET = """\
name: mix
layer:
  - {name: in, type: Input, top: [data, ids, sel],
     input_param: {shape: [{dim: [2, 3, 8, 8]}, {dim: [2, 4]}, {dim: [2]}]}}
  - {name: conv, type: Convolution, bottom: data, top: c, convolution_param: {num_output: 4,
     kernel_size: 3, stride: 2, weight_filler: {type: xavier}}}
  - {name: up, type: Deconvolution, bottom: c, top: u, convolution_param: {num_output: 4,
     group: 4, kernel_size: 4, stride: 2, weight_filler: {type: bilinear}}}
  - {name: crop, type: Crop, bottom: [u, data], top: uc}
  - {name: spp, type: SPP, bottom: uc, top: s, spp_param: {pyramid_height: 2}}
  - {name: sl, type: Slice, bottom: s, top: [s1, s2], slice_param: {slice_point: [4]}}
  - {name: sil, type: Silence, bottom: s2}
  - {name: emb, type: Embed, bottom: ids, top: e, embed_param: {num_output: 4, input_dim: 10,
     weight_filler: {type: gaussian, std: 0.1}}}
  - {name: red, type: Reduction, bottom: e, top: er, reduction_param: {axis: 2, operation: MEAN}}
  - {name: tile, type: Tile, bottom: s1, top: t, tile_param: {tiles: 2}}
  - {name: flt, type: Filter, bottom: [t, sel], top: tf}
  - {name: am, type: ArgMax, bottom: s1, top: am, argmax_param: {top_k: 2}}
  - {name: loss, type: Reduction, bottom: tf, top: loss, loss_weight: 1,
     reduction_param: {operation: SUMSQ}}
  - {name: loss2, type: Reduction, bottom: er, top: loss2, loss_weight: 1,
     reduction_param: {operation: SUMSQ}}
"""


def test_new_layers_train_together_in_a_float32_net():
    net = caffeish.Net(parse_message(NET, "NetParameter", "t.yaml"), phase="TRAIN", seed=1)
    net.blobs["data"].data[...] = rand((2, 3, 8, 8))
    net.blobs["ids"].data[...] = [[1, 2, 3, 9], [0, 0, 5, 7]]
    net.blobs["sel"].data[...] = [0, 1]
    net.clear_param_diffs()
    loss = net.forward_backward()
    b = {k: v.data for k, v in net.blobs.items()}
    assert b["u"].shape == (2, 4, 8, 8) and b["s"].shape == (2, 20) and b["tf"].shape == (1, 8)
    assert net.outputs == ["am", "loss", "loss2"]
    np.testing.assert_allclose(b["tf"], np.tile(b["s1"][1:], 2), rtol=1e-6)
    np.testing.assert_array_equal(b["am"].reshape(2, 2), np.argsort(-b["s1"], axis=1)[:, :2])
    assert loss == pytest.approx(float((b["tf"].astype(float) ** 2).sum()
                                       + (b["er"].astype(float) ** 2).sum()), rel=1e-5)
    emb_w = net.params["emb"][0]
    used = [0, 1, 2, 3, 5, 7, 9]
    assert np.all(np.abs(emb_w.diff[used]).sum(axis=1) > 0)
    assert np.all(emb_w.diff[[4, 6, 8]] == 0)
    assert np.abs(net.params["conv"][0].diff).sum() > 0
    assert np.abs(net.params["up"][0].diff).sum() > 0
