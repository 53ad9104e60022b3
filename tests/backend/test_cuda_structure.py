"""Structure layers (Split, Concat, Eltwise, Flatten, Reshape, Slice, Tile, Reduction, ArgMax,
Silence, Filter, BatchReindex, Parameter) and the structure ops: CUDA backend vs CPU backend.

Runs on numba's CUDA simulator unless the machine has an NVIDIA device (tests/conftest.py)."""
import numpy as np
import pytest

from caffeish import backend
from caffeish.backend import cpu
from caffeish.blob import Blob
from caffeish.testing import blobs_from, compare_backends, make_layer, setup_layer

pytestmark = pytest.mark.cuda


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def distinct(shape, k, seed=0):
    """k arrays whose entries never tie across arrays (MAX masks are then unambiguous)."""
    n = int(np.prod(shape))
    perm = np.random.default_rng(seed).permutation(n * k).reshape(k, *shape)
    return [p * 0.1 - n * k * 0.05 for p in perm]


@pytest.fixture
def gpu():
    backend.set_mode_gpu()
    from caffeish.backend import cuda
    yield cuda
    backend.set_mode_cpu()


# ============================================================================ ops
def test_every_cpu_structure_op_has_a_cuda_twin(gpu):
    from caffeish.backend.cpu import structure_ops
    missing = [n for n in structure_ops.__all__ if not callable(getattr(gpu, n, None))]
    assert not missing


def test_blob_copy_and_set(gpu):
    x = np.arange(7, dtype=np.float32)
    out = gpu.zeros(7)
    gpu.blob_copy(gpu.to_device(x), out)                  # device -> device
    np.testing.assert_array_equal(out.copy_to_host(), x)
    gpu.blob_copy(x[::-1].copy(), out)                   # host -> device
    np.testing.assert_array_equal(out.copy_to_host(), x[::-1])
    gpu.blob_copy(gpu.to_device(np.arange(7)), out)      # int64 -> float32 (kernel)
    np.testing.assert_array_equal(out.copy_to_host(), x)
    gpu.blob_set(np.float32(2.5), out[2:5])
    np.testing.assert_array_equal(out.copy_to_host(), [0, 1, 2.5, 2.5, 2.5, 5, 6])


def _both(op, host_args, out_index):
    """Run ``op`` on numpy copies (CPU backend) and device copies (CUDA); return both outputs."""
    from caffeish.backend import cuda
    cpu_args = [a.copy() if isinstance(a, np.ndarray) else a for a in host_args]
    getattr(cpu, op)(*cpu_args)
    dev_args = [cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in host_args]
    r = getattr(cuda, op)(*dev_args)
    return cpu_args[out_index], dev_args[out_index].copy_to_host(), r


def test_gather_sum_rows_and_scatter_add_rows_agree(gpu):
    src = rand((6, 3)).astype(np.float32)
    idx = np.array([2, 0, 2, 3, 2, 0], np.int64)
    order = np.argsort(idx, kind="stable").astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(np.bincount(idx, minlength=5))]).astype(np.int64)
    want = np.zeros((5, 3), np.float32)
    np.add.at(want, idx, src)
    for accumulate in (False, True):
        out0 = np.full((5, 3), 0.5, np.float32)
        c, g, _ = _both("gather_sum_rows", [src, order, starts, accumulate, out0], 4)
        np.testing.assert_allclose(c, want + 0.5 * accumulate, rtol=1e-6)
        np.testing.assert_allclose(g, c, rtol=1e-6)
        c, g, _ = _both("scatter_add_rows", [src, idx, accumulate, out0], 3)
        np.testing.assert_allclose(g, c, rtol=1e-6)


@pytest.mark.parametrize("integral", [False, True])
def test_float_indices(gpu, integral):
    ok = np.array([0, 3.7, 2, 4.99], np.float32)
    c, g, r = _both("float_indices", [ok, 5, integral, np.zeros(4, np.int64)], 3)
    assert r == cpu.float_indices(ok, 5, integral, np.zeros(4, np.int64))
    if r == -1:
        np.testing.assert_array_equal(g, c)
    bad = np.array([1, 2, 7, -1], np.float32)
    _, _, r = _both("float_indices", [bad, 5, integral, np.zeros(4, np.int64)], 3)
    assert r == 2


def test_crop_copy(gpu):
    x = rand((2, 4, 5)).astype(np.float32)
    xs, ts, off = (np.array(s, np.int64) for s in ((2, 4, 5), (1, 2, 3), (1, 1, 2)))
    c, g, _ = _both("crop_copy_forward", [x.ravel(), xs, off, ts, np.zeros(6, np.float32)], 4)
    np.testing.assert_array_equal(c, x[1:2, 1:3, 2:5].ravel())
    np.testing.assert_array_equal(g, c)
    td = rand(6).astype(np.float32)
    c, g, _ = _both("crop_copy_backward", [td, ts, off, xs, np.ones(40, np.float32)], 4)
    np.testing.assert_array_equal(g, c)


@pytest.mark.parametrize("dim", [5, 40], ids=["thread-per-row", "block-per-row"])
@pytest.mark.parametrize("op", [1, 2, 3])
def test_reduce_kernels(gpu, dim, op):
    x = rand((3, dim)).astype(np.float32)
    c, g, _ = _both("reduce_forward", [x, op, 0.5, np.zeros(3, np.float32)], 3)
    np.testing.assert_allclose(g, c, rtol=1e-5, atol=1e-6)


# ============================================================================ layers
@pytest.mark.parametrize("ntop", [1, 3])
def test_split(ntop):
    compare_backends({"type": "Split", "top": [f"s{i}" for i in range(ntop)]},
                     [rand((2, 3, 4))], passes=2)


def test_split_tops_share_device_storage(gpu):
    layer = make_layer({"type": "Split", "top": ["a", "b"]}, dtype=np.float32)
    bottom = blobs_from([rand((2, 3))], np.float32)
    top = setup_layer(layer, bottom)
    layer.forward(bottom, top)
    gpu.fill(bottom[0].dev_data, 4.0)             # written on the device after forward
    for t in top:
        assert t.shares_data_with(bottom[0])
        np.testing.assert_array_equal(t.data, np.full((2, 3), 4.0))


@pytest.mark.parametrize("axis,shapes", [(0, [(1, 3, 2), (2, 3, 2), (3, 3, 2)]),
                                         (1, [(2, 1, 2), (2, 3, 2)])], ids=["axis0", "axis1"])
def test_concat(axis, shapes):
    arrays = [rand(s, seed=i) for i, s in enumerate(shapes)]
    compare_backends({"type": "Concat", "concat_param": {"axis": axis}}, arrays, passes=2)
    compare_backends({"type": "Concat", "concat_param": {"axis": axis}}, arrays,
                     propagate_down=[True, False] + [True] * (len(arrays) - 2))


def test_concat_single_bottom():
    compare_backends({"type": "Concat"}, [rand((2, 3))])


@pytest.mark.parametrize("coeff", [None, [0.5, -1.0, 2.0]], ids=["plain", "coeff"])
def test_eltwise_sum(coeff):
    p = {"operation": "SUM"}
    if coeff:
        p["coeff"] = coeff
    compare_backends({"type": "Eltwise", "eltwise_param": p},
                     [rand((2, 3, 2), seed=i) for i in range(3)], passes=2)


@pytest.mark.parametrize("stable", [True, False])
@pytest.mark.parametrize("k", [2, 3])
def test_eltwise_prod(stable, k):
    compare_backends({"type": "Eltwise", "eltwise_param": {"operation": "PROD",
                                                           "stable_prod_grad": stable}},
                     [rand((2, 5), seed=i) + 3.0 for i in range(k)])


@pytest.mark.parametrize("k", [2, 3])
def test_eltwise_max(k):
    compare_backends({"type": "Eltwise", "eltwise_param": {"operation": "MAX"}},
                     distinct((2, 3, 2), k, seed=k), passes=2)


def test_eltwise_max_ties_follow_the_cpu():
    a = np.array([1.0, 2.0, 5.0, -1.0])
    b = np.array([1.0, 3.0, 5.0, -1.0])
    c = np.array([0.0, 3.0, 5.0, -1.0])
    compare_backends({"type": "Eltwise", "eltwise_param": {"operation": "MAX"}}, [a, b, c])


@pytest.mark.parametrize("p", [{}, {"axis": 2}, {"axis": 1, "end_axis": 2}])
def test_flatten(p):
    compare_backends({"type": "Flatten", "flatten_param": p}, [rand((2, 3, 2, 2))], passes=2)


def test_reshape():
    compare_backends({"type": "Reshape", "reshape_param": {"shape": {"dim": [0, -1, 2]}}},
                     [rand((2, 3, 4))], passes=2)


@pytest.mark.parametrize("axis,points,ntop", [(0, [1, 3], 3), (1, [], 2), (1, [1], 2),
                                              (1, [], 1)],
                         ids=["axis0-points", "axis1-even", "axis1-point", "single-top"])
def test_slice(axis, points, ntop):
    p = {"axis": axis}
    if points:
        p["slice_point"] = points
    compare_backends({"type": "Slice", "slice_param": p, "top": [f"t{i}" for i in range(ntop)]},
                     [rand((4, 4, 3))], passes=2)


@pytest.mark.parametrize("axis,tiles", [(1, 3), (0, 2), (-1, 2)])
def test_tile(axis, tiles):
    compare_backends({"type": "Tile", "tile_param": {"axis": axis, "tiles": tiles}},
                     [rand((2, 3, 2))], passes=2)


@pytest.mark.parametrize("op", ["SUM", "ASUM", "SUMSQ", "MEAN"])
@pytest.mark.parametrize("axis,coeff", [(0, 1.0), (1, 0.5), (2, -2.0)])
def test_reduction(op, axis, coeff):
    compare_backends({"type": "Reduction", "reduction_param": {"operation": op, "axis": axis,
                                                               "coeff": coeff}},
                     [rand((2, 3, 2))], passes=2)


def test_reduction_long_rows():
    # rows of 48 take the block-per-row kernel
    compare_backends({"type": "Reduction", "reduction_param": {"operation": "SUMSQ",
                                                               "axis": 1}},
                     [rand((2, 3, 4, 4))])


_ARGMAX = {
    "flat-k1": (dict(), (2, 3, 2)),
    "flat-k2-maxval": (dict(top_k=2, out_max_val=True), (2, 3, 2)),
    "axis1-k2": (dict(axis=1, top_k=2), (2, 4, 3)),
    "axis1-k3-maxval": (dict(axis=1, top_k=3, out_max_val=True), (2, 4, 3)),
    "axis0-k2-maxval": (dict(axis=0, top_k=2, out_max_val=True), (3, 2, 2)),
    "axis-last-k1-maxval": (dict(axis=-1, out_max_val=True), (2, 5)),
}


@pytest.mark.parametrize("name", list(_ARGMAX))
def test_argmax(name):
    p, shape = _ARGMAX[name]
    x = rand(shape, seed=3)
    x.reshape(-1)[:4] = 0.5   # a few ties: larger index first on both backends
    compare_backends({"type": "ArgMax", "argmax_param": p}, [x], passes=2)


def test_silence():
    compare_backends({"type": "Silence"}, [rand((2, 3)), rand((4,))], n_tops=0)


@pytest.mark.parametrize("sel", [[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]],
                         ids=["three", "none", "one"])
def test_filter(sel):
    arrays = [rand((4, 3, 2)), rand((4, 2), seed=1), np.array(sel, np.float64)]
    # passes=2: the first reshape keeps every item (Caffe), later reshapes read the selector
    compare_backends({"type": "Filter", "top": ["a", "b"]}, arrays, passes=2,
                     propagate_down=[True, True, False])


def test_batch_reindex_repeats_and_skips():
    perm = np.array([2, 0, 2, 4.7, 2, 0])  # item 1 and 3 skipped, 2 repeated (truncation of 4.7)
    compare_backends({"type": "BatchReindex"}, [rand((5, 2, 3)), perm], passes=2,
                     propagate_down=[True, False])


def test_parameter():
    compare_backends({"type": "Parameter", "parameter_param": {"shape": {"dim": [2, 3]}}}, [],
                     passes=2)


def test_parameter_top_shares_device_storage(gpu):
    layer = make_layer({"type": "Parameter", "parameter_param": {"shape": {"dim": [2, 3]}}},
                       dtype=np.float32)
    top = setup_layer(layer, [])
    layer.forward([], top)
    gpu.fill(layer.blobs[0].dev_data, 1.5)
    np.testing.assert_array_equal(top[0].data, np.full((2, 3), 1.5))
    assert isinstance(layer.blobs[0], Blob)
