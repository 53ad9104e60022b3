"""3-D (N-D) Convolution, Deconvolution and Im2col, as Caffe's N-D im2col computes them: naive
float64 references, finite-difference gradients, the CUDA twins, and a 3-D net from YAML."""
import itertools

import numpy as np
import pytest

import caffeish
from caffeish.config.yaml_loader import parse_message
from caffeish.testing import (check_gradient_spec, compare_backends, forward_layer)


def conv3d_ref(x, w, b, stride, pad, dil, group=1):
    """y[n, o, od, oh, ow] = sum over c, taps of w[o, c, z, i, j] * x[n, g*C/G + c, ...]."""
    n, c, d, h, wd = x.shape
    o, cg, kd, kh, kw = w.shape
    ext = [dl * (k - 1) + 1 for dl, k in zip(dil, (kd, kh, kw))]
    out = [(s + 2 * p - e) // st + 1 for s, p, e, st in zip((d, h, wd), pad, ext, stride)]
    xp = np.zeros((n, c, d + 2 * pad[0], h + 2 * pad[1], wd + 2 * pad[2]))
    xp[:, :, pad[0]:pad[0] + d, pad[1]:pad[1] + h, pad[2]:pad[2] + wd] = x
    y = np.zeros((n, o) + tuple(out))
    og = o // group
    for g in range(group):
        for z, i, j in itertools.product(range(kd), range(kh), range(kw)):
            a0, b0, c0 = z * dil[0], i * dil[1], j * dil[2]
            patch = xp[:, g * cg:(g + 1) * cg,
                       a0:a0 + stride[0] * (out[0] - 1) + 1:stride[0],
                       b0:b0 + stride[1] * (out[1] - 1) + 1:stride[1],
                       c0:c0 + stride[2] * (out[2] - 1) + 1:stride[2]]
            y[:, g * og:(g + 1) * og] += np.einsum("ncdhw,oc->nodhw", patch,
                                                   w[g * og:(g + 1) * og, :, z, i, j])
    if b is not None:
        y += b.reshape(1, -1, 1, 1, 1)
    return y


def spec(type_="Convolution", **p):
    p.setdefault("weight_filler", {"type": "gaussian", "std": 0.5})
    p.setdefault("bias_filler", {"type": "gaussian", "std": 0.5})
    return {"type": type_, "name": "c3", "convolution_param": p}


CASES = {
    "k3": (dict(num_output=3, kernel_size=3), (2, 2, 4, 5, 5)),
    "aniso": (dict(num_output=2, kernel_size=[2, 3, 1], stride=[2, 1, 2], pad=[1, 0, 1],
                   dilation=[1, 2, 1]), (1, 3, 5, 6, 4)),
    "group": (dict(num_output=4, kernel_size=[3, 2, 2], group=2, pad=1, bias_term=False),
              (2, 4, 3, 4, 3)),
    "depth-dilation": (dict(num_output=2, kernel_size=[2, 2, 2], dilation=[2, 1, 1],
                            stride=[2, 1, 1], pad=[2, 0, 1]), (1, 2, 6, 3, 3)),
}


def _geom(p):
    def three(name, default):
        v = p.get(name, default)
        v = v if isinstance(v, list) else [v]
        return tuple(v * 3 if len(v) == 1 else v)
    return three("stride", 1), three("pad", 0), three("dilation", 1)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_conv3d_forward_vs_reference(case, dtype):
    p, shape = CASES[case]
    x = np.random.default_rng(3).standard_normal(shape)
    layer, bottom, top = forward_layer(spec(**p), [x], dtype=dtype)
    w = layer.blobs[0].data.astype(np.float64)
    assert w.ndim == 5 and w.shape[2:] == tuple(
        (p["kernel_size"] if isinstance(p["kernel_size"], list) else [p["kernel_size"]] * 3))
    b = layer.blobs[1].data.astype(np.float64) if p.get("bias_term", True) else None
    want = conv3d_ref(bottom[0].data.astype(np.float64), w, b, *_geom(p), p.get("group", 1))
    assert top[0].shape == want.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top[0].data, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_conv3d_gradient(case):
    p, shape = CASES[case]
    x = np.random.default_rng(4).standard_normal(shape)
    check_gradient_spec(spec(**p), [x], stepsize=1e-3, threshold=1e-5)


def test_deconv3d_is_the_adjoint_of_conv3d_and_its_gradient_checks():
    p = dict(num_output=2, kernel_size=[2, 3, 2], stride=[2, 1, 2], pad=[0, 1, 1],
             bias_term=False)
    x = np.random.default_rng(5).standard_normal((2, 3, 3, 4, 3))
    dec, bottom, top = forward_layer(spec("Deconvolution", **p), [x])
    w = dec.blobs[0].data                                     # (C_in=3, O=2, kd, kh, kw)
    y = np.random.default_rng(6).standard_normal(top[0].shape)
    # <deconv(x), y> = <x, conv(y)> with the same weights read as (3 outputs, 2 inputs)
    conv_y = conv3d_ref(y, w, None, *_geom(p))
    assert conv_y.shape == x.shape
    np.testing.assert_allclose(np.sum(top[0].data * y), np.sum(x * conv_y), rtol=1e-10)
    check_gradient_spec(spec("Deconvolution", **dict(p, bias_term=True)), [x], stepsize=1e-3,
                        threshold=1e-5)


def test_im2col3d_columns_and_gradient():
    p = dict(kernel_size=[2, 2, 3], stride=[1, 2, 1], pad=[1, 0, 1])
    x = np.random.default_rng(7).standard_normal((2, 2, 3, 4, 4))
    layer, bottom, top = forward_layer({"type": "Im2col", "name": "c3",
                                        "convolution_param": p}, [x])
    (kd, kh, kw), (sd, sh, sw), (pd, ph, pw) = [2, 2, 3], [1, 2, 1], [1, 0, 1]
    n, c, d, h, w = x.shape
    out = top[0].data
    assert out.shape == (2, c * kd * kh * kw, (d + 2 * pd - kd) // sd + 1,
                         (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
    for ch, z, i, j in itertools.product(range(c), range(kd), range(kh), range(kw)):
        row = ((ch * kd + z) * kh + i) * kw + j
        for od, oh, ow in itertools.product(*(range(s) for s in out.shape[2:])):
            a, b_, e = od * sd - pd + z, oh * sh - ph + i, ow * sw - pw + j
            inside = 0 <= a < d and 0 <= b_ < h and 0 <= e < w
            want = x[:, ch, a, b_, e] if inside else 0.0
            np.testing.assert_array_equal(out[:, row, od, oh, ow], want)
    check_gradient_spec({"type": "Im2col", "name": "c3", "convolution_param": p}, [x],
                        stepsize=1e-3, threshold=1e-6)


def test_kernel_h_and_w_stay_2d_only():
    from caffeish.errors import ConfigError
    from caffeish.testing import blobs_from, make_layer, setup_layer
    layer = make_layer(spec(num_output=2, kernel_h=2, kernel_w=2))
    with pytest.raises(ConfigError, match="only be used for 2-D convolution"):
        setup_layer(layer, blobs_from([np.zeros((1, 1, 3, 3, 3))]))


NET = """\
layer:
  - name: data
    type: DummyData
    top: [vol, label]
    dummy_data_param:
      shape: [{dim: [4, 1, 6, 8, 8]}, {dim: [4]}]
      data_filler: [{type: gaussian, std: 1}, {type: uniform, min: 0, max: 2.99}]
  - {name: conv1, type: Convolution, bottom: vol, top: conv1,
     convolution_param: {num_output: 4, kernel_size: 3, pad: 1, stride: [1, 2, 2],
                         weight_filler: {type: msra}}}
  - {name: relu1, type: ReLU, bottom: conv1, top: conv1}
  - {name: up, type: Deconvolution, bottom: conv1, top: up,
     convolution_param: {num_output: 2, kernel_size: [1, 2, 2], stride: [1, 2, 2],
                         weight_filler: {type: xavier}}}
  - {name: ip, type: InnerProduct, bottom: up, top: ip,
     inner_product_param: {num_output: 3, weight_filler: {type: xavier}}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label], top: loss}
"""


def test_a_3d_net_from_yaml_learns():
    """Fixed inputs: the loss of a few SGD steps falls (the 3-D layers' gradients are right)."""
    net = caffeish.Net(parse_message(NET, "NetParameter", "c3d.yaml"), caffeish.TRAIN, seed=2)
    assert net.blobs["conv1"].shape == (4, 4, 6, 4, 4)
    assert net.blobs["up"].shape == (4, 2, 6, 8, 8)
    data = net.layer_dict["data"]
    data.forward([], net.top_vecs[0])
    fixed = [t.data.copy() for t in net.top_vecs[0]]
    losses = []
    for _ in range(15):
        for t, v in zip(net.top_vecs[0], fixed):
            t.data[...] = v
        loss = net._forward_range(1, len(net.layers) - 1)
        for p in net.learnable_params:
            p.diff[...] = 0
        net.backward()
        for p in net.learnable_params:
            p.data[...] -= 0.05 * p.diff
        losses.append(loss)
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.cuda
@pytest.mark.parametrize("type_,case", [("Convolution", "aniso"), ("Convolution", "group"),
                                        ("Convolution", "depth-dilation"),
                                        ("Deconvolution", "aniso"), ("Im2col", "k3")])
def test_cuda_3d_layers_match_the_cpu(type_, case):
    p, shape = CASES[case]
    p = dict(p)
    if type_ == "Im2col":
        p = {k: v for k, v in p.items() if k in ("kernel_size", "stride", "pad", "dilation")}
        s = {"type": "Im2col", "name": "c3", "convolution_param": p}
    else:
        s = spec(type_, **p)
    x = np.random.default_rng(8).standard_normal(shape)
    compare_backends(s, [x], passes=2)


@pytest.mark.cuda
def test_cuda_depth_gather_and_scatter_match_the_cpu():
    from caffeish import backend
    from caffeish.backend import cpu
    x = np.random.default_rng(9).standard_normal((2, 3, 5, 2, 3)).astype(np.float32)
    kd, sd, pd, dd = 3, 2, 2, 1
    od = (5 + 2 * pd - (dd * (kd - 1) + 1)) // sd + 1
    want = np.empty((2 * od, 3 * kd, 2, 3), np.float32)
    cpu.depth_gather(x, kd, sd, pd, dd, od, want)
    back = np.empty_like(x)
    cpu.depth_scatter(want, kd, sd, pd, dd, od, back)
    backend.set_mode_gpu()
    try:
        from caffeish.backend import cuda
        g = cuda.zeros(want.size, np.float32)
        cuda.depth_gather(cuda.to_device(x), kd, sd, pd, dd, od, g)
        np.testing.assert_array_equal(g.copy_to_host().reshape(want.shape), want)
        dx = cuda.zeros(x.size, np.float32)
        cuda.depth_scatter(cuda.to_device(want), kd, sd, pd, dd, od, dx.reshape(x.shape))
        np.testing.assert_allclose(dx.copy_to_host().reshape(x.shape), back, rtol=1e-6)
    finally:
        backend.set_mode_cpu()
