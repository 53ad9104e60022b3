"""Vision layers on the GPU backend equal the CPU backend (Convolution, Deconvolution, Pooling,
Im2col, SPP, Crop). Tiny shapes: under NUMBA_ENABLE_CUDASIM=1 every CUDA thread is a Python
thread."""
import numpy as np
import pytest

from caffeish.backend import cuda as _cuda_backend  # noqa: F401  (fails loudly without numba.cuda)
from caffeish.testing import compare_backends

pytestmark = pytest.mark.cuda


def _x(shape, seed=0, lo=None, hi=None):
    rng = np.random.default_rng(seed)
    if lo is not None:
        return rng.uniform(lo, hi, shape)
    return rng.standard_normal(shape)


def _conv(type_="Convolution", **p):
    p.setdefault("weight_filler", {"type": "gaussian", "std": 0.3})
    p.setdefault("bias_filler", {"type": "gaussian", "std": 0.3})
    return {"name": "conv", "type": type_, "convolution_param": p}


def _pool(**p):
    return {"name": "pool", "type": "Pooling", "pooling_param": p}


def _needs(*ops):
    """Skip when another family's CUDA twins (structure_ops) are not there yet."""
    missing = [o for o in ops if not hasattr(_cuda_backend, o)]
    if missing:
        pytest.skip(f"CUDA backend lacks {missing} (structure family)")


# --- Convolution ---------------------------------------------------------------------------------
CONV = {
    "k3": (dict(num_output=3, kernel_size=3), (2, 2, 5, 5)),
    "k3s2p1": (dict(num_output=4, kernel_size=3, stride=2, pad=1), (2, 3, 5, 6)),
    "dil2": (dict(num_output=2, kernel_size=2, dilation=2, pad=1), (2, 2, 5, 5)),
    "group2": (dict(num_output=4, kernel_size=3, group=2, pad=1, stride=2), (2, 4, 5, 4)),
    "nobias-khw": (dict(num_output=3, kernel_h=2, kernel_w=3, stride_h=2, stride_w=1,
                        bias_term=False),
                   (2, 2, 5, 6)),
}


@pytest.mark.parametrize("case", list(CONV), ids=list(CONV))
def test_convolution(case):
    p, shape = CONV[case]
    compare_backends(_conv(**p), [_x(shape)], passes=2)


def test_convolution_two_bottoms_share_weights():
    compare_backends(_conv(num_output=2, kernel_size=3, pad=1, group=2),
                     [_x((2, 2, 4, 4), 1), _x((2, 2, 4, 4), 2)], n_tops=2)


@pytest.mark.parametrize("type_", ["Convolution", "Deconvolution"])
def test_convolution_chunked_batch(monkeypatch, type_):
    """A small col_budget splits the batch into GEMM chunks (device array slices)."""
    from caffeish.layers.vision import ConvolutionLayer
    monkeypatch.setattr(ConvolutionLayer, "col_budget", 2 * 18 * 9)
    compare_backends(_conv(type_, num_output=2, kernel_size=3, pad=1, group=2),
                     [_x((3, 2, 3, 3), 12)])


def test_convolution_1d():
    compare_backends(_conv(num_output=2, kernel_size=3, stride=2, pad=1), [_x((2, 3, 7))])


@pytest.mark.parametrize("geom", [(2, 2, 3, 3, 2, 2, 1, 1), (3, 3, 1, 2, 1, 0, 2, 1),
                                  (1, 2, 2, 1, 0, 1, 1, 2)], ids=["k2s3p2", "k3s1p1d2", "k12s2"])
def test_im2col_col2im_ops(geom):
    """The CUDA im2col and col2im (a gather) against the CPU kernels on odd geometries."""
    from caffeish.backend import cpu, cuda
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    x = _x((2, 2, 5, 4), 13).astype(np.float32)
    oh = (5 + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (4 + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    col = np.zeros((2 * kh * kw, 2 * oh * ow), np.float32)
    cpu.im2col_batch(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, col)
    dcol = cuda.zeros(col.shape)
    cuda.im2col_batch(cuda.to_device(x), kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dcol)
    np.testing.assert_array_equal(dcol.copy_to_host(), col)
    c = _x(col.shape, 14).astype(np.float32)
    dx = np.zeros_like(x)
    cpu.col2im_batch(c, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dx)
    ddx = cuda.zeros(x.shape)
    cuda.col2im_batch(cuda.to_device(c), kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, ddx)
    np.testing.assert_array_equal(ddx.copy_to_host(), dx)  # same summation order: bit equal


# --- Deconvolution -------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [dict(num_output=3, kernel_size=3, stride=2, pad=1),
                               dict(num_output=4, kernel_size=2, stride=2, group=2,
                                    bias_term=False),
                               dict(num_output=2, kernel_size=3, dilation=2)],
                         ids=["k3s2p1", "group2-nobias", "dil2"])
def test_deconvolution(p):
    compare_backends(_conv("Deconvolution", **p), [_x((2, 2, 3, 3), 3)], passes=2)


# --- Pooling -------------------------------------------------------------------------------------
POOL = {
    "max-k2s2": dict(pool="MAX", kernel_size=2, stride=2),
    "max-k3s2p1": dict(pool="MAX", kernel_size=3, stride=2, pad=1),
    "max-ceil-overhang": dict(pool="MAX", kernel_size=2, stride=2),       # 5x5 -> 3x3
    "max-outside-window": dict(pool="MAX", kernel_size=1, stride=3),      # 5 -> 3, last empty
    "max-floor": dict(pool="MAX", kernel_size=3, stride=2, round_mode="FLOOR"),
    "ave-k3s2p1": dict(pool="AVE", kernel_size=3, stride=2, pad=1),
    "ave-k2s1": dict(pool="AVE", kernel_h=2, kernel_w=3, stride=1),
    "ave-ceil-overhang": dict(pool="AVE", kernel_size=2, stride=2),
    "max-global": dict(pool="MAX", global_pooling=True),
    "ave-global": dict(pool="AVE", global_pooling=True),
}


@pytest.mark.parametrize("case", list(POOL), ids=list(POOL))
def test_pooling(case):
    shape = (2, 2, 4, 6) if case in ("max-k2s2", "ave-k2s1") else (2, 3, 5, 5)
    compare_backends(_pool(**POOL[case]), [_x(shape, 4)], passes=2)


@pytest.mark.parametrize("pad", [0, 1])
def test_max_pooling_mask_top(pad):
    compare_backends(_pool(pool="MAX", kernel_size=3, stride=2, pad=pad), [_x((2, 2, 5, 6), 5)],
                     n_tops=2, passes=2)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_stochastic_pooling(phase):
    x = _x((2, 2, 5, 6), 6, 0.1, 1.0)
    x[0, 1, :3, :3] = 0.0  # windows whose sum is 0 (TEST: output 0, no gradient)
    compare_backends(_pool(pool="STOCHASTIC", kernel_size=3, stride=2), [x], phase=phase,
                     passes=2)


# --- Im2col, SPP, Crop ---------------------------------------------------------------------------
@pytest.mark.parametrize("p", [dict(kernel_size=3, stride=2, pad=1),
                               dict(kernel_h=2, kernel_w=3, dilation=2)], ids=["k3s2p1", "dil2"])
def test_im2col(p):
    compare_backends({"name": "im2col", "type": "Im2col", "convolution_param": p},
                     [_x((2, 2, 5, 6), 7)])


def test_spp_single_level():
    compare_backends({"name": "spp", "type": "SPP", "spp_param": {"pyramid_height": 1}},
                     [_x((2, 2, 5, 5), 8)])


@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_spp_pyramid(pool):
    _needs("concat_copy_in", "concat_copy_out", "eltwise_sum_add")
    compare_backends({"name": "spp", "type": "SPP",
                      "spp_param": {"pyramid_height": 2, "pool": pool}},
                     [_x((2, 2, 5, 6), 9)], passes=2)


@pytest.mark.parametrize("p,shapes", [({"axis": 2, "offset": [1, 2]}, ((2, 3, 5, 6), (1, 1, 3, 3))),
                                      ({"axis": 1, "offset": 1}, ((2, 3, 5, 5), (2, 2, 3, 4)))],
                         ids=["axis2", "axis1"])
def test_crop(p, shapes):
    _needs("crop_copy_forward", "crop_copy_backward", "blob_set")
    compare_backends({"name": "crop", "type": "Crop", "crop_param": p},
                     [_x(shapes[0], 10), _x(shapes[1], 11)])
