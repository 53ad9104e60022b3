"""Split, Concat, Eltwise, Flatten, Reshape: shapes, naive forward references, gradients, errors."""
import itertools

import numpy as np
import pytest

from caffeish.errors import ConfigError, ShapeError
from caffeish.testing import (blobs_from, check_gradient_spec, forward_layer, make_layer,
                              setup_layer)


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def build(spec, arrays, dtype=np.float64):
    """make_layer + setup; returns (layer, bottom, top)."""
    layer = make_layer(spec, dtype=dtype)
    bottom = blobs_from(arrays, dtype)
    top = setup_layer(layer, bottom)
    return layer, bottom, top


def run_backward(layer, bottom, top, top_diffs, propagate_down=None, sentinel=None):
    for t, d in zip(top, top_diffs):
        t.diff[...] = d
    if sentinel is not None:
        for b in bottom:
            b.diff[...] = sentinel
    layer.backward(top, propagate_down or [True] * len(bottom), bottom)


def assert_names_layer(excinfo, name, type_name):
    msg = str(excinfo.value)
    assert f"layer '{name}' ({type_name})" in msg, msg


# ============================================================================== Split
def split_spec(n):
    return {"type": "Split", "top": [f"s{i}" for i in range(n)]}


@pytest.mark.parametrize("ntop", [1, 2, 3], ids=lambda n: f"tops{n}")
def test_split_forward_shares_bottom(ntop):
    x = rand((2, 3, 4))
    layer, bottom, top = forward_layer(split_spec(ntop), [x])
    assert len(top) == ntop
    for t in top:
        assert t.shape == (2, 3, 4)
        np.testing.assert_array_equal(t.data, x)
        assert np.shares_memory(t.data, bottom[0].data)
    diffs = [t.diff for t in top]
    for a, b in itertools.combinations(diffs, 2):
        assert not np.shares_memory(a, b)


@pytest.mark.parametrize("ntop", [1, 2, 4], ids=lambda n: f"tops{n}")
def test_split_backward_sums_top_diffs(ntop):
    x = rand((3, 5))
    layer, bottom, top = forward_layer(split_spec(ntop), [x])
    diffs = [rand((3, 5), seed=10 + i) for i in range(ntop)]
    run_backward(layer, bottom, top, diffs)
    want = np.zeros((3, 5))
    for d in diffs:
        for idx in np.ndindex(3, 5):
            want[idx] += d[idx]
    np.testing.assert_allclose(bottom[0].diff, want, rtol=1e-14)


def test_split_propagate_down_false_leaves_bottom_diff():
    layer, bottom, top = forward_layer(split_spec(2), [rand((2, 3))])
    run_backward(layer, bottom, top, [np.ones((2, 3))] * 2, [False], sentinel=7.0)
    assert np.all(bottom[0].diff == 7.0)


def test_split_follows_bottom_reshape():
    layer, bottom, top = forward_layer(split_spec(2), [rand((2, 3))])
    bottom[0].reshape((4, 1, 2))
    bottom[0].data[...] = rand((4, 1, 2), seed=3)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    for t in top:
        assert t.shape == (4, 1, 2)
        np.testing.assert_array_equal(t.data, bottom[0].data)


@pytest.mark.parametrize("ntop", [1, 2, 3], ids=lambda n: f"tops{n}")
def test_split_gradient(ntop):
    check_gradient_spec(split_spec(ntop), [rand((2, 3, 2))], stepsize=1e-2, threshold=1e-3)


def test_split_float32():
    x = rand((2, 3)).astype(np.float32)
    layer, bottom, top = forward_layer(split_spec(3), [x], dtype=np.float32)
    run_backward(layer, bottom, top, [x, 2 * x, 3 * x])
    assert bottom[0].diff.dtype == np.float32
    np.testing.assert_allclose(bottom[0].diff, 6 * x, rtol=1e-6)


# ============================================================================== Concat
def naive_concat(arrays, axis):
    axis = axis % arrays[0].ndim
    shape = list(arrays[0].shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    out = np.empty(shape)
    offset = 0
    for a in arrays:
        for idx in np.ndindex(*a.shape):
            j = list(idx)
            j[axis] += offset
            out[tuple(j)] = a[idx]
        offset += a.shape[axis]
    return out


CONCAT_CASES = {
    "axis0": ({"axis": 0}, [(2, 3, 4), (1, 3, 4), (3, 3, 4)], 0, (6, 3, 4)),
    "axis1-default": ({}, [(2, 3, 4), (2, 1, 4)], 1, (2, 4, 4)),
    "axis1-4d": ({"axis": 1}, [(2, 3, 2, 2), (2, 2, 2, 2), (2, 1, 2, 2)], 1, (2, 6, 2, 2)),
    "axis-1": ({"axis": -1}, [(2, 3, 4), (2, 3, 1)], 2, (2, 3, 5)),
    "concat_dim2": ({"concat_dim": 2}, [(2, 3, 4), (2, 3, 2)], 2, (2, 3, 6)),
    "concat_dim0": ({"concat_dim": 0}, [(1, 3), (2, 3)], 0, (3, 3)),
    "single": ({}, [(2, 3, 4)], 1, (2, 3, 4)),
    "empty-part": ({"axis": 1}, [(2, 0, 3), (2, 2, 3)], 1, (2, 2, 3)),
}


def concat_inputs(shapes):
    return [rand(s, seed=i) for i, s in enumerate(shapes)]


@pytest.mark.parametrize("case", list(CONCAT_CASES))
def test_concat_shape_and_forward(case):
    param, shapes, axis, want_shape = CONCAT_CASES[case]
    arrays = concat_inputs(shapes)
    layer, bottom, top = forward_layer({"type": "Concat", "concat_param": param}, arrays)
    assert top[0].shape == want_shape
    np.testing.assert_array_equal(top[0].data, naive_concat(arrays, axis))


@pytest.mark.parametrize("case", [c for c in CONCAT_CASES if c != "empty-part"])
def test_concat_gradient(case):
    param, shapes, _, _ = CONCAT_CASES[case]
    check_gradient_spec({"type": "Concat", "concat_param": param}, concat_inputs(shapes),
                        stepsize=1e-2, threshold=1e-3)


def test_concat_backward_honours_propagate_down():
    arrays = concat_inputs([(2, 2, 3), (2, 1, 3), (2, 3, 3)])
    layer, bottom, top = forward_layer({"type": "Concat"}, arrays)
    tdiff = rand(top[0].shape, seed=9)
    run_backward(layer, bottom, top, [tdiff], [True, False, True], sentinel=5.0)
    np.testing.assert_array_equal(bottom[0].diff, tdiff[:, 0:2])
    assert np.all(bottom[1].diff == 5.0)
    np.testing.assert_array_equal(bottom[2].diff, tdiff[:, 3:6])


def test_concat_float32():
    arrays = [a.astype(np.float32) for a in concat_inputs([(2, 3, 2), (2, 3, 3)])]
    layer, bottom, top = forward_layer({"type": "Concat", "concat_param": {"axis": 2}}, arrays,
                                       dtype=np.float32)
    assert top[0].data.dtype == np.float32
    np.testing.assert_array_equal(top[0].data, naive_concat(arrays, 2).astype(np.float32))


def test_concat_mismatched_shapes():
    with pytest.raises(ShapeError) as e:
        build({"type": "Concat", "name": "cat"}, [rand((2, 3, 4)), rand((2, 5, 4)),
                                                  rand((2, 1, 5))])
    assert_names_layer(e, "cat", "Concat")
    msg = str(e.value)
    assert "bottom[2]" in msg and "(2 1 5)" in msg and "(2 3 4)" in msg


def test_concat_mismatched_num_axes():
    with pytest.raises(ShapeError) as e:
        build({"type": "Concat", "name": "cat"}, [rand((2, 3, 4)), rand((2, 3))])
    assert_names_layer(e, "cat", "Concat")
    assert "bottom[1]" in str(e.value)


@pytest.mark.parametrize("param", [{"axis": 3}, {"axis": -4}, {"concat_dim": 3}],
                         ids=["axis3", "axis-4", "concat_dim3"])
def test_concat_axis_out_of_range(param):
    with pytest.raises(ConfigError) as e:
        build({"type": "Concat", "name": "cat", "concat_param": param},
              [rand((2, 3, 4)), rand((2, 3, 4))])
    assert_names_layer(e, "cat", "Concat")


def test_concat_axis_and_concat_dim_together():
    with pytest.raises(ConfigError) as e:
        build({"type": "Concat", "name": "cat", "concat_param": {"axis": 1, "concat_dim": 1}},
              [rand((2, 3)), rand((2, 3))])
    assert_names_layer(e, "cat", "Concat")
    assert "concat_dim" in str(e.value)


# ============================================================================== Eltwise
def naive_eltwise(arrays, op, coeff=None):
    out = np.empty(arrays[0].shape)
    idx_out = np.empty(arrays[0].shape, dtype=int)
    for idx in np.ndindex(*arrays[0].shape):
        vals = [a[idx] for a in arrays]
        if op == "SUM":
            c = coeff or [1.0] * len(arrays)
            out[idx] = sum(ci * v for ci, v in zip(c, vals))
        elif op == "PROD":
            p = 1.0
            for v in vals:
                p *= v
            out[idx] = p
        else:
            best, arg = vals[0], 0
            for k, v in enumerate(vals[1:], 1):
                if v > best:
                    best, arg = v, k
            out[idx] = best
            idx_out[idx] = arg
    return out, idx_out


def distinct(shape, k, seed=0):
    """k arrays whose values are all distinct and at least 0.1 apart."""
    n = int(np.prod(shape))
    vals = np.random.default_rng(seed).permutation(k * n) * 0.1 - 0.05 * k * n
    return [vals[i * n:(i + 1) * n].reshape(shape) for i in range(k)]


ELTWISE_CASES = {
    "sum": ({}, 2),
    "sum-3": ({"operation": "SUM"}, 3),
    "sum-coeff": ({"operation": "SUM", "coeff": [1.0, -2.0, 0.5]}, 3),
    "sum-coeff-2": ({"coeff": [0.25, 3.0]}, 2),
    "prod": ({"operation": "PROD"}, 2),
    "prod-3": ({"operation": "PROD"}, 3),
    "prod-3-unstable": ({"operation": "PROD", "stable_prod_grad": False}, 3),
    "max": ({"operation": "MAX"}, 2),
    "max-4": ({"operation": "MAX"}, 4),
}


def eltwise_inputs(case, k, shape=(2, 3, 2)):
    if "max" in case:
        return distinct(shape, k, seed=k)
    return [rand(shape, seed=i) for i in range(k)]


@pytest.mark.parametrize("case", list(ELTWISE_CASES))
def test_eltwise_forward(case):
    param, k = ELTWISE_CASES[case]
    arrays = eltwise_inputs(case, k)
    layer, bottom, top = forward_layer({"type": "Eltwise", "eltwise_param": param}, arrays)
    assert top[0].shape == arrays[0].shape
    op = param.get("operation", "SUM")
    want, _ = naive_eltwise(arrays, op, param.get("coeff"))
    np.testing.assert_allclose(top[0].data, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", list(ELTWISE_CASES))
def test_eltwise_gradient(case):
    param, k = ELTWISE_CASES[case]
    check_gradient_spec({"type": "Eltwise", "eltwise_param": param}, eltwise_inputs(case, k),
                        stepsize=1e-2, threshold=1e-3)


@pytest.mark.parametrize("stable", [True, False], ids=["stable", "unstable"])
@pytest.mark.parametrize("k", [2, 3], ids=lambda k: f"bottoms{k}")
def test_eltwise_prod_gradient_vs_naive(stable, k):
    arrays = [rand((3, 4), seed=i) for i in range(k)]
    param = {"operation": "PROD", "stable_prod_grad": stable}
    layer, bottom, top = forward_layer({"type": "Eltwise", "eltwise_param": param}, arrays)
    tdiff = rand((3, 4), seed=99)
    run_backward(layer, bottom, top, [tdiff])
    for i in range(k):
        want = np.empty((3, 4))
        for idx in np.ndindex(3, 4):
            p = tdiff[idx]
            for j in range(k):
                if j != i:
                    p *= arrays[j][idx]
            want[idx] = p
        np.testing.assert_allclose(bottom[i].diff, want, rtol=1e-12, atol=1e-15)


def test_eltwise_prod_stable_grad_handles_zero():
    a = np.array([[0.0, 2.0, 3.0]])
    b = np.array([[4.0, 0.0, -1.0]])
    for stable in (True, False):
        layer, bottom, top = forward_layer(
            {"type": "Eltwise", "eltwise_param": {"operation": "PROD",
                                                  "stable_prod_grad": stable}}, [a, b])
        with np.errstate(all="ignore"):
            run_backward(layer, bottom, top, [np.ones((1, 3))])
        if stable:
            np.testing.assert_array_equal(bottom[0].diff, b)
            np.testing.assert_array_equal(bottom[1].diff, a)
        else:
            # top / bottom_i: 0/0 where bottom_i is 0 (Caffe's unstable formula)
            assert np.isnan(bottom[0].diff[0, 0]) and np.isnan(bottom[1].diff[0, 1])
            np.testing.assert_array_equal(bottom[0].diff[0, 1:], b[0, 1:])


@pytest.mark.parametrize("k", [2, 3], ids=lambda k: f"bottoms{k}")
def test_eltwise_max_routes_gradient_to_argmax(k):
    arrays = distinct((2, 5), k, seed=4)
    layer, bottom, top = forward_layer({"type": "Eltwise",
                                        "eltwise_param": {"operation": "MAX"}}, arrays)
    _, arg = naive_eltwise(arrays, "MAX")
    np.testing.assert_array_equal(layer.max_idx, arg)
    tdiff = rand((2, 5), seed=8)
    run_backward(layer, bottom, top, [tdiff], sentinel=3.0)
    for i in range(k):
        np.testing.assert_array_equal(bottom[i].diff, np.where(arg == i, tdiff, 0.0))


def test_eltwise_max_ties_follow_caffe():
    """Caffe's CPU kernel: a tie between bottoms 0 and 1 goes to 1; later bottoms must be
    strictly larger to win."""
    a = np.array([1.0, 2.0, 5.0, -1.0])
    b = np.array([1.0, 3.0, 5.0, -1.0])
    c = np.array([0.0, 3.0, 5.0, -1.0])
    layer, bottom, top = forward_layer({"type": "Eltwise",
                                        "eltwise_param": {"operation": "MAX"}}, [a, b, c])
    np.testing.assert_array_equal(top[0].data, [1.0, 3.0, 5.0, -1.0])
    np.testing.assert_array_equal(layer.max_idx, [1, 1, 1, 1])
    run_backward(layer, bottom, top, [np.ones(4)])
    np.testing.assert_array_equal(bottom[0].diff, [0, 0, 0, 0])
    np.testing.assert_array_equal(bottom[1].diff, [1, 1, 1, 1])
    np.testing.assert_array_equal(bottom[2].diff, [0, 0, 0, 0])


def test_eltwise_sum_backward_scales_by_coeff_and_honours_propagate_down():
    arrays = [rand((2, 3), seed=i) for i in range(3)]
    layer, bottom, top = forward_layer(
        {"type": "Eltwise", "eltwise_param": {"coeff": [2.0, 1.0, -0.5]}}, arrays)
    tdiff = rand((2, 3), seed=5)
    run_backward(layer, bottom, top, [tdiff], [True, True, False], sentinel=4.0)
    np.testing.assert_allclose(bottom[0].diff, 2.0 * tdiff, rtol=1e-15)
    np.testing.assert_array_equal(bottom[1].diff, tdiff)
    assert np.all(bottom[2].diff == 4.0)


@pytest.mark.parametrize("op", ["SUM", "PROD", "MAX"])
def test_eltwise_float32(op):
    arrays = [a.astype(np.float32) for a in distinct((2, 3, 4), 3, seed=1)]
    param = {"operation": op}
    if op == "SUM":
        param["coeff"] = [0.5, 1.0, -1.5]
    layer, bottom, top = forward_layer({"type": "Eltwise", "eltwise_param": param}, arrays,
                                       dtype=np.float32)
    assert top[0].data.dtype == np.float32
    want, _ = naive_eltwise([a.astype(np.float64) for a in arrays], op, param.get("coeff"))
    np.testing.assert_allclose(top[0].data, want, rtol=1e-5)
    run_backward(layer, bottom, top, [np.ones((2, 3, 4), np.float32)])
    assert all(b.diff.dtype == np.float32 for b in bottom)


def test_eltwise_shape_mismatch():
    with pytest.raises(ShapeError) as e:
        build({"type": "Eltwise", "name": "sum1"}, [rand((2, 3)), rand((2, 3)), rand((3, 2))])
    assert_names_layer(e, "sum1", "Eltwise")
    assert "bottom[2]" in str(e.value) and "(3 2)" in str(e.value)


@pytest.mark.parametrize("ncoeff", [1, 3], ids=lambda n: f"coeff{n}")
def test_eltwise_bad_coeff_count(ncoeff):
    with pytest.raises(ConfigError) as e:
        build({"type": "Eltwise", "name": "sum1",
               "eltwise_param": {"coeff": [1.0] * ncoeff}}, [rand((2, 3)), rand((2, 3))])
    assert_names_layer(e, "sum1", "Eltwise")
    assert "coeff" in str(e.value)


@pytest.mark.parametrize("op", ["PROD", "MAX"])
def test_eltwise_coeff_only_with_sum(op):
    with pytest.raises(ConfigError) as e:
        build({"type": "Eltwise", "name": "e1",
               "eltwise_param": {"operation": op, "coeff": [1.0, 1.0]}},
              [rand((2, 3)), rand((2, 3))])
    assert_names_layer(e, "e1", "Eltwise")
    assert op in str(e.value)


def test_eltwise_needs_two_bottoms():
    with pytest.raises(ConfigError) as e:
        build({"type": "Eltwise", "name": "e1"}, [rand((2, 3))])
    assert_names_layer(e, "e1", "Eltwise")


# ============================================================================== Flatten
FLATTEN_CASES = {
    "default": ({}, (2, 60)),
    "axis2": ({"axis": 2}, (2, 3, 20)),
    "axis0": ({"axis": 0}, (120,)),
    "end-2": ({"end_axis": -2}, (2, 12, 5)),
    "axis-3-end-2": ({"axis": -3, "end_axis": -2}, (2, 12, 5)),
    "axis0-end1": ({"axis": 0, "end_axis": 1}, (6, 4, 5)),
    "axis-1": ({"axis": -1}, (2, 3, 4, 5)),
    "end-before-axis": ({"axis": 1, "end_axis": 0}, (2, 1, 3, 4, 5)),
}


@pytest.mark.parametrize("case", list(FLATTEN_CASES))
def test_flatten_shape_and_forward(case):
    param, want = FLATTEN_CASES[case]
    x = rand((2, 3, 4, 5))
    layer, bottom, top = forward_layer({"type": "Flatten", "flatten_param": param}, [x])
    assert top[0].shape == want
    flat_ref = [x[idx] for idx in np.ndindex(*x.shape)]
    assert [top[0].data[idx] for idx in np.ndindex(*want)] == flat_ref
    assert np.shares_memory(top[0].data, bottom[0].data)


@pytest.mark.parametrize("case", ["default", "axis2", "end-2", "axis0-end1"])
def test_flatten_gradient(case):
    param, _ = FLATTEN_CASES[case]
    check_gradient_spec({"type": "Flatten", "flatten_param": param}, [rand((2, 3, 2, 2))],
                        stepsize=1e-2, threshold=1e-3)


def test_flatten_backward_and_reshape_follow():
    layer, bottom, top = forward_layer({"type": "Flatten"}, [rand((2, 3, 2))])
    tdiff = rand((2, 6), seed=2)
    run_backward(layer, bottom, top, [tdiff])
    np.testing.assert_array_equal(bottom[0].diff, tdiff.reshape(2, 3, 2))
    bottom[0].reshape((4, 3, 2))
    bottom[0].data[...] = 1.5
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (4, 6)
    assert np.all(top[0].data == 1.5)


@pytest.mark.parametrize("param", [{"axis": 4}, {"end_axis": -5}, {"axis": 3, "end_axis": 1}],
                         ids=["axis4", "end-5", "end-before-axis-by-2"])
def test_flatten_bad_axes(param):
    with pytest.raises(ConfigError) as e:
        build({"type": "Flatten", "name": "flat", "flatten_param": param}, [rand((2, 3, 4, 5))])
    assert_names_layer(e, "flat", "Flatten")


# ============================================================================== Reshape
def reshape_spec(dims, **kw):
    return {"type": "Reshape", "name": "rs", "reshape_param": {"shape": {"dim": dims}, **kw}}


RESHAPE_CASES = {
    # caffe.proto's examples, bottom 2 x 8
    "doc-224": ((2, 8), [2, 2, 4], {}, (2, 2, 4)),
    "doc-024": ((2, 8), [0, 2, 4], {}, (2, 2, 4)),
    "doc-02m1": ((2, 8), [0, 2, -1], {}, (2, 2, 4)),
    # the doc also lists {-1 0 2} as 2x2x4, but 0 copies bottom axis 1 (8): Caffe gives 1x8x2
    "doc-m102": ((2, 8), [-1, 0, 2], {}, (1, 8, 2)),
    "doc-24-axis1": ((2, 8), [2, 4], {"axis": 1}, (2, 2, 4)),
    "doc-24-axis-2": ((2, 8), [2, 4], {"axis": -2}, (2, 2, 4)),
    "doc-128": ((2, 8), [1, 2, 8], {}, (1, 2, 8)),
    "doc-12-num1": ((2, 8), [1, 2], {"num_axes": 1}, (1, 2, 8)),
    "doc-1-num0": ((2, 8), [1], {"num_axes": 0}, (1, 2, 8)),
    "doc-1-axis1-num0": ((2, 8), [1], {"axis": 1, "num_axes": 0}, (2, 1, 8)),
    # 4-D
    "0-m1": ((2, 3, 4, 5), [0, -1], {}, (2, 60)),
    "m1": ((2, 3, 4, 5), [-1], {}, (120,)),
    "00-m1": ((2, 3, 4, 5), [0, 0, -1], {}, (2, 3, 20)),
    "axis1-num2": ((2, 3, 4, 5), [-1], {"axis": 1, "num_axes": 2}, (2, 12, 5)),
    "axis1-copy": ((2, 3, 4, 5), [0, 2, 2], {"axis": 1, "num_axes": 2}, (2, 3, 2, 2, 5)),
    "axis-1-num0": ((2, 3, 4, 5), [1], {"axis": -1, "num_axes": 0}, (2, 3, 4, 5, 1)),
    "axis2-m1": ((2, 3, 4, 5), [10, -1], {"axis": 2}, (2, 3, 10, 2)),
    "empty-shape-num0": ((2, 3), [], {"axis": 1, "num_axes": 0}, (2, 3)),
}


@pytest.mark.parametrize("case", list(RESHAPE_CASES))
def test_reshape_shape_and_forward(case):
    bshape, dims, kw, want = RESHAPE_CASES[case]
    x = rand(bshape)
    layer, bottom, top = forward_layer(reshape_spec(dims, **kw), [x])
    assert top[0].shape == want
    flat_ref = [x[idx] for idx in np.ndindex(*x.shape)]
    assert [top[0].data[idx] for idx in np.ndindex(*want)] == flat_ref
    assert np.shares_memory(top[0].data, bottom[0].data)


@pytest.mark.parametrize("case", ["doc-02m1", "doc-1-axis1-num0", "axis1-num2", "axis1-copy"])
def test_reshape_gradient(case):
    bshape, dims, kw, _ = RESHAPE_CASES[case]
    check_gradient_spec(reshape_spec(dims, **kw), [rand(bshape)], stepsize=1e-2,
                        threshold=1e-3)


def test_reshape_follows_bottom_batch_size():
    layer, bottom, top = forward_layer(reshape_spec([0, -1]), [rand((2, 3, 4))])
    assert top[0].shape == (2, 12)
    bottom[0].reshape((5, 3, 4))
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    assert top[0].shape == (5, 12)
    assert np.shares_memory(top[0].data, bottom[0].data)


def test_reshape_two_inferred_dims():
    with pytest.raises(ConfigError) as e:
        build(reshape_spec([-1, 3, -1]), [rand((2, 3, 4))])
    assert_names_layer(e, "rs", "Reshape")
    assert "-1" in str(e.value)


def test_reshape_count_mismatch():
    with pytest.raises(ShapeError) as e:
        build(reshape_spec([3, 5]), [rand((2, 8))])
    assert_names_layer(e, "rs", "Reshape")
    msg = str(e.value)
    assert "(2 8)" in msg and "(3 5)" in msg


def test_reshape_not_divisible():
    with pytest.raises(ShapeError) as e:
        build(reshape_spec([0, 5, -1]), [rand((2, 8))])
    assert_names_layer(e, "rs", "Reshape")
    assert "(2 8)" in str(e.value)


def test_reshape_copy_without_bottom_axis():
    with pytest.raises(ShapeError) as e:
        build(reshape_spec([0, 0, 0]), [rand((2, 8))])
    assert_names_layer(e, "rs", "Reshape")


@pytest.mark.parametrize("dims,kw", [([-2, 8], {}), ([16], {"axis": 3}), ([16], {"axis": -4}),
                                     ([2], {"num_axes": -2}), ([2], {"axis": 1, "num_axes": 2})],
                         ids=["dim-2", "axis3", "axis-4", "num_axes-2", "num_axes-beyond"])
def test_reshape_bad_params(dims, kw):
    with pytest.raises(ConfigError) as e:
        build(reshape_spec(dims, **kw), [rand((2, 8))])
    assert_names_layer(e, "rs", "Reshape")


# ============================================================================== in a net (YAML)
NET_YAML = """\
name: structure
force_backward: true
layer:
  - {name: data, type: Input, top: x, input_param: {shape: {dim: [2, 3, 2, 2]}}}
  - {name: flat, type: Flatten, bottom: x, top: f}
  - {name: rs, type: Reshape, bottom: x, top: r, reshape_param: {shape: {dim: [0, -1]}}}
  - name: sum
    type: Eltwise
    bottom: [f, r]
    top: s
    eltwise_param: {coeff: [2.0, -0.5]}
  - {name: cat, type: Concat, bottom: [s, f], top: c, concat_param: {axis: 0}, loss_weight: 1}
"""


def test_net_fan_out_split_reshape_yaml(tmp_path):
    from caffeish.net import Net
    path = tmp_path / "net.yaml"
    path.write_text(NET_YAML)
    net = Net(str(path), phase="TRAIN", dtype=np.float64)
    assert "Split" in [layer.type for layer in net.layers]
    assert net.blobs["r"].shape == (2, 12)
    assert net.blobs["c"].shape == (4, 12)
    x = rand((2, 3, 2, 2))
    out = net.forward(x=x)
    flat = x.reshape(2, 12)
    np.testing.assert_allclose(out["c"], np.concatenate([2.0 * flat - 0.5 * flat, flat]))
    diffs = net.backward()
    # loss = sum(c) = sum(1.5 x) + sum(x) -> d/dx = 2.5; the split adds the three paths
    np.testing.assert_allclose(diffs["x"], np.full(x.shape, 2.5))


def test_net_error_points_at_yaml_line(tmp_path):
    from caffeish.net import Net
    bad = NET_YAML.replace("dim: [0, -1]", "dim: [0, -1, -1]")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(ConfigError) as e:
        Net(str(path), phase="TRAIN")
    msg = str(e.value)
    assert "bad.yaml:" in msg and "layer 'rs' (Reshape)" in msg


def test_structure_layers_refuse_in_place():
    from caffeish.layers import layer_class
    for t in ("Split", "Concat", "Eltwise", "Flatten", "Reshape"):
        assert layer_class(t).in_place_ok is False


# ============================================================================== large blobs
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_large_blobs_take_the_parallel_path(dtype):
    """Blobs above the kernels' single-thread threshold, against plain numpy expressions."""
    shape = (4, 3, 60, 50)  # 36000 elements
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    xs = [rand(shape, seed=i).astype(dtype) for i in range(3)]
    g = rand(shape, seed=7).astype(dtype)

    layer, bottom, top = forward_layer(
        {"type": "Eltwise", "eltwise_param": {"coeff": [0.5, -1.0, 2.0]}}, xs, dtype=dtype)
    np.testing.assert_allclose(top[0].data, 0.5 * xs[0] - xs[1] + 2.0 * xs[2], rtol=rtol,
                               atol=1e-6)
    run_backward(layer, bottom, top, [g])
    np.testing.assert_allclose(bottom[2].diff, 2.0 * g, rtol=rtol)
    np.testing.assert_array_equal(bottom[1].diff, -g)

    layer, bottom, top = forward_layer({"type": "Eltwise", "eltwise_param": {
        "operation": "PROD", "stable_prod_grad": False}}, xs, dtype=dtype)
    np.testing.assert_allclose(top[0].data, xs[0] * xs[1] * xs[2], rtol=rtol)
    run_backward(layer, bottom, top, [g])
    np.testing.assert_allclose(bottom[1].diff, g * xs[0] * xs[2], rtol=1e-3 if dtype ==
                               np.float32 else 1e-9, atol=1e-4)

    layer, bottom, top = forward_layer({"type": "Eltwise", "eltwise_param": {
        "operation": "MAX"}}, xs, dtype=dtype)
    np.testing.assert_array_equal(top[0].data, np.maximum(np.maximum(xs[0], xs[1]), xs[2]))
    np.testing.assert_array_equal(layer.max_idx, np.argmax(np.stack(xs), axis=0))
    run_backward(layer, bottom, top, [g])
    np.testing.assert_array_equal(bottom[0].diff, np.where(layer.max_idx == 0, g, 0))

    layer, bottom, top = forward_layer({"type": "Concat"}, xs[:2], dtype=dtype)
    np.testing.assert_array_equal(top[0].data, np.concatenate(xs[:2], axis=1))
    gc = rand(top[0].shape, seed=8).astype(dtype)
    run_backward(layer, bottom, top, [gc])
    np.testing.assert_array_equal(bottom[1].diff, gc[:, 3:])

    layer, bottom, top = forward_layer(split_spec(3), xs[:1], dtype=dtype)
    run_backward(layer, bottom, top, xs)
    np.testing.assert_allclose(bottom[0].diff, xs[0] + xs[1] + xs[2], rtol=rtol, atol=1e-6)
