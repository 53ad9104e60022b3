"""GPU backend vs CPU backend for the normalization layers (BatchNorm, Scale, Bias, LRN, MVN)
and the weight layers InnerProduct and Embed. Tiny shapes: under NUMBA_ENABLE_CUDASIM=1 every
CUDA thread is a Python thread."""
import numpy as np
import pytest

from caffeish import backend
from caffeish.testing import (blobs_from, compare_backends, make_layer, setup_layer)

pytestmark = pytest.mark.cuda


def rand(shape, seed=0, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape)


# --- BatchNorm ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (4, 2)], ids=["4d", "2d"])  # 40 > 32 threads
def test_batchnorm_train_updates_moving_averages(shape):
    spec = {"type": "BatchNorm", "batch_norm_param": {"moving_average_fraction": 0.9}}
    compare_backends(spec, [rand(shape, 1) + 0.5], passes=2)


def test_batchnorm_train_in_place():
    compare_backends({"type": "BatchNorm"}, [rand((2, 3, 2, 2), 2)], passes=2, in_place=True)


def test_batchnorm_test_phase_untrained_statistics():
    compare_backends({"type": "BatchNorm"}, [rand((2, 3, 2, 2), 3)], phase="TEST")


def _bn_with_statistics(mode, x, dy):
    """A TEST-phase BatchNorm with stored statistics, forward + backward on ``mode``."""
    (backend.set_mode_gpu if mode == "gpu" else backend.set_mode_cpu)()
    try:
        layer = make_layer({"type": "BatchNorm", "batch_norm_param": {"eps": 1e-3}},
                           phase="TEST", dtype=np.float32)
        bottom = blobs_from([x], np.float32)
        top = setup_layer(layer, bottom)
        layer.blobs[0].data[...] = [1.0, -2.0, 0.5]
        layer.blobs[1].data[...] = [4.0, 0.5, 2.0]
        layer.blobs[2].data[...] = 2.0
        layer.forward(bottom, top)
        top[0].diff[...] = dy
        layer.backward(top, [True], bottom)
        return top[0].data.copy(), bottom[0].diff.copy()
    finally:
        backend.set_mode_cpu()


def test_batchnorm_use_global_stats():
    x, dy = rand((2, 3, 2, 2), 4), rand((2, 3, 2, 2), 5)
    want = _bn_with_statistics("cpu", x, dy)
    got = _bn_with_statistics("gpu", x, dy)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


# --- Scale / Bias -----------------------------------------------------------------------------------
FILL = {"type": "uniform", "min": -1.0, "max": 1.0}


@pytest.mark.parametrize("p,shape", [
    (dict(), (2, 3, 4, 5)),                             # block per channel (40 >= 32 threads)
    (dict(bias_term=True, bias_filler=FILL), (2, 3, 2, 3)),   # thread per channel
    (dict(axis=0, num_axes=-1, bias_term=True, bias_filler=FILL), (2, 3)),   # thread per param
    (dict(axis=-2, num_axes=2), (2, 3, 2, 2)),
    (dict(num_axes=0), (2, 3, 2)),                      # scalar
], ids=["channel", "channel-bias", "all-axes-bias", "axis-2-two-axes", "scalar"])
def test_scale_learned(p, shape):
    spec = {"type": "Scale", "scale_param": dict(p, filler=FILL)}
    compare_backends(spec, [rand(shape, 6)], passes=2)


@pytest.mark.parametrize("bias_term", [False, True], ids=["nobias", "bias"])
def test_scale_two_bottoms(bias_term):
    p = {"axis": 1, "bias_term": bias_term, "bias_filler": FILL}
    compare_backends({"type": "Scale", "scale_param": p}, [rand((2, 3, 4), 7), rand((3, 4), 8)])


def test_scale_in_place():
    spec = {"type": "Scale", "scale_param": {"filler": FILL, "bias_term": True,
                                             "bias_filler": FILL}}
    compare_backends(spec, [rand((2, 3, 2, 2), 9)], in_place=True)


@pytest.mark.parametrize("bottoms", ["learned", "two"])
def test_bias(bottoms):
    if bottoms == "learned":
        spec = {"type": "Bias", "bias_param": {"filler": FILL}}
        compare_backends(spec, [rand((2, 3, 2, 3), 10)], passes=2)
    else:
        compare_backends({"type": "Bias", "bias_param": {"axis": 0}},
                         [rand((2, 3, 2), 11), rand((2, 3), 12)])


def test_bias_in_place():
    compare_backends({"type": "Bias", "bias_param": {"filler": FILL}},
                     [rand((4, 3, 3, 3), 13)], in_place=True)


# --- LRN --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [
    dict(local_size=3, alpha=0.5, beta=0.75, k=2.0),
    dict(local_size=5, alpha=1.0, beta=0.6),
    dict(norm_region="WITHIN_CHANNEL", local_size=3, alpha=0.8, beta=0.75),
], ids=["across-3", "across-5", "within-3"])
def test_lrn(p):
    compare_backends({"type": "LRN", "lrn_param": p}, [rand((2, 4, 3, 4), 14, -2, 2)])


# --- MVN --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalize_variance", [True, False], ids=["var", "novar"])
@pytest.mark.parametrize("across", [False, True], ids=["per-channel", "across"])
def test_mvn(normalize_variance, across):
    p = {"normalize_variance": normalize_variance, "across_channels": across, "eps": 1e-3}
    compare_backends({"type": "MVN", "mvn_param": p}, [rand((2, 3, 2, 3), 15)])


def test_mvn_in_place_and_long_rows():
    # 40 values per row: more than a simulated block's 32 threads
    compare_backends({"type": "MVN"}, [rand((2, 2, 5, 8), 16)], in_place=True)


# --- InnerProduct -----------------------------------------------------------------------------------
@pytest.mark.parametrize("p,shape", [
    (dict(), (2, 3, 2)),
    (dict(transpose=True), (3, 2, 2)),
    (dict(axis=2, transpose=True), (2, 2, 3)),
    (dict(axis=-1, bias_term=False), (2, 2, 3)),
], ids=["axis1", "transpose", "axis2-transpose", "axis-1-nobias"])
def test_inner_product(p, shape):
    spec = {"type": "InnerProduct",
            "inner_product_param": dict(p, num_output=3, weight_filler=FILL, bias_filler=FILL)}
    compare_backends(spec, [rand(shape, 17)], passes=2)


# --- Embed ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias_term", [True, False], ids=["bias", "nobias"])
def test_embed_repeated_indices(bias_term):
    spec = {"type": "Embed", "embed_param": {"num_output": 3, "input_dim": 5,
                                             "bias_term": bias_term,
                                             "weight_filler": FILL, "bias_filler": FILL}}
    idx = np.array([[1, 3, 1], [1, 0, 3]], dtype=float)
    compare_backends(spec, [idx], passes=2)


def test_embed_bad_index_is_a_data_error_on_the_gpu():
    from caffeish.errors import DataError
    backend.set_mode_gpu()
    try:
        layer = make_layer({"type": "Embed", "embed_param": {"num_output": 2, "input_dim": 4}},
                           dtype=np.float32)
        bottom = blobs_from([np.array([0.0, 2.5])], np.float32)
        top = setup_layer(layer, bottom)
        bottom[0].dev_data                    # the newest indices live on the device
        with pytest.raises(DataError, match="position 1"):
            layer.forward(bottom, top)
    finally:
        backend.set_mode_cpu()
