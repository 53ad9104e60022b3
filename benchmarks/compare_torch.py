"""caffeish against PyTorch on Caffe's classic nets, same net, same weights, same process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_torch.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_torch.py --threads 1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        python benchmarks/compare_torch.py --nets lenet --only caffeish    # its peak RSS
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        python benchmarks/compare_torch.py --nets lenet --only torch       # PyTorch's
    python benchmarks/compare_torch.py --gpu 0      # both engines on GPU 0 (caffeish[gpu] and a
                                                    # CUDA build of PyTorch)

Nets (each built from our YAML; the data layer becomes an Input layer on synthetic data, as in
benchmarks/train_speed.py):
  lenet          configs/mnist/lenet_train_test.yaml, TRAIN step, batch 64, 1x28x28
  cifar10_quick  configs/cifar10/cifar10_quick_train_test.yaml, TRAIN step, batch 100, 3x32x32
  caffenet       models_zoo/bvlc_reference_caffenet/deploy.yaml, forward only, batch 10, 3x227x227
  googlenet      models_zoo/bvlc_googlenet/deploy.yaml, forward only, batch 10, 3x224x224
                 (not in the default list)
  resnet50       configs/resnet50/resnet50_deploy.yaml, forward only, batch 10, 3x224x224
                 (not in the default list)
  caffenet_train models_zoo/bvlc_reference_caffenet/train_val.yaml, TRAIN step, batch 16,
                 3x227x227 (not in the default list: about a minute more)

When `import torch` works, the same YAML is translated layer by layer into a PyTorch module
(Convolution -> Conv2d, Pooling -> MaxPool2d/AvgPool2d with ceil_mode and count_include_pad,
which is Caffe's output size and divisor, InnerProduct -> Linear, LRN -> LocalResponseNorm, ...)
and the caffeish net's weights are copied into it. Before any timing, both engines run the same
batch and every blob they share must agree within 1e-4 (max |difference| / max |value|), and,
for training nets, every parameter gradient within 1e-3; a mismatch stops the script.

A training step is forward + backward + SGD update with momentum 0.9 and weight decay 5e-4
(caffeish: solver.step(1); PyTorch: torch.optim.SGD with Caffe's lr_mult per parameter). The
two engines are timed interleaved in one process (caffeish run, torch run, caffeish run, ...)
after a warm-up; each figure is the median of --repeats runs of about --seconds each.

FLOP convention (GEMM work only; pooling, ReLU, LRN, softmax and the update are not counted):
a Convolution costs 2 * Cin/group * kh * kw * Cout * OH * OW per image and an InnerProduct
2 * K * N. A training step counts each such layer 3 times (forward, weight-gradient and
data-gradient products), except that the data gradient is not counted where the layer's bottom
needs none (the first convolution, whose input is data). Forward-only counts it once.

Peak RSS (ru_maxrss) belongs to a process: with both engines in one process it is their joint
peak. --only caffeish / --only torch time one engine alone (no check), so that each can be run
in its own process to read its peak RSS. --only torch does not import numba and builds no
caffeish net.

OpenMP: numba and PyTorch each bring a GNU OpenMP runtime, and `import torch` puts its
torch/lib/libgomp.so.1 in the global symbol scope, so numba's OpenMP pool, whose GOMP_* calls
bind lazily, would run on torch's runtime if its first parallel region came after that import.
That runtime reads OMP_WAIT_POLICY once, at `import torch`: imported with caffeish's PASSIVE
it cost PyTorch's LeNet step ~15% here; imported with PyTorch's default (threads spin 300,000
rounds after each region) it slowed caffeish's LeNet step by a third with no torch code running.
So this script runs one numba parallel region before importing torch (numba's calls bind to
the system libgomp, with caffeish's OMP_WAIT_POLICY=PASSIVE) and imports torch with
OMP_WAIT_POLICY as you set it (unset: PyTorch's default). Each engine then runs with the
settings it has alone; --only caffeish / --only torch runs confirm that.
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NETS = {
    "lenet": dict(path="configs/mnist/lenet_train_test.yaml", mode="train", batch=64,
                  channels=1, size=28, classes=10, label="LeNet train"),
    "cifar10_quick": dict(path="configs/cifar10/cifar10_quick_train_test.yaml", mode="train",
                          batch=100, channels=3, size=32, classes=10,
                          label="CIFAR10-quick train"),
    "caffenet": dict(path="models_zoo/bvlc_reference_caffenet/deploy.yaml", mode="forward",
                     batch=10, channels=3, size=227, classes=1000, label="CaffeNet forward"),
    "googlenet": dict(path="models_zoo/bvlc_googlenet/deploy.yaml", mode="forward",
                      batch=10, channels=3, size=224, classes=1000, label="GoogLeNet forward"),
    "resnet50": dict(path="configs/resnet50/resnet50_deploy.yaml", mode="forward", batch=10,
                     channels=3, size=224, classes=1000, label="ResNet-50 forward"),
    "caffenet_train": dict(path="models_zoo/bvlc_reference_caffenet/train_val.yaml",
                           mode="train", batch=16, channels=3, size=227, classes=1000,
                           label="CaffeNet train", check64=True),
}
# check64: five ReLU'd convolutions with max pooling deep: in float32 a few activations within
# roundoff of 0 (or of a pooling tie) fall on different sides in the two engines, and conv1's
# gradient then differs by ~1e-2 of its largest value; the same check in float64 agrees to 1e-14.
DATA_TYPES = ("Data", "ImageData", "MemoryData", "HDF5Data", "WindowData", "DummyData", "Input")
FWD_TOL, GRAD_TOL = 1e-4, 1e-3
BASE_LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4   # synthetic_solver's settings


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- the net as YAML layers, and its shapes and FLOPs -----------------------------------------
def phase_layers(path, phase):
    """The layers of the net file included in `phase`, as caffeish Msg objects."""
    from caffeish.config.schema import Msg
    from caffeish.config.yaml_loader import load_message
    from caffeish.net import filter_net
    param = load_message(str(REPO / path), "NetParameter")
    return filter_net(param, Msg("NetState", {"phase": phase, "level": 0, "stage": []}))


def _one(values, default):
    values = list(values)
    if not values:
        return default
    if len(values) > 1 and any(v != values[0] for v in values):
        return tuple(values[:2])
    return values[0]


def _hw(value):
    return tuple(value) if isinstance(value, tuple) else (value, value)


def conv_geometry(lp):
    """(kh, kw), (ph, pw), (sh, sw), (dh, dw) of a Convolution, Caffe's field rules."""
    p = lp.convolution_param
    if p.axis != 1 or len(p.kernel_size) > 2:
        raise SystemExit(f"{lp.name}: only 2-D convolutions over axis 1 are translated")
    k = (p.kernel_h, p.kernel_w) if p.has("kernel_h") else _hw(_one(p.kernel_size, None))
    pad = (p.pad_h, p.pad_w) if p.has("pad_h") else _hw(_one(p.pad, 0))
    stride = (p.stride_h, p.stride_w) if p.has("stride_h") else _hw(_one(p.stride, 1))
    dil = _hw(_one(p.dilation, 1))
    return k, pad, stride, dil


def pool_geometry(lp, h, w):
    p = lp.pooling_param
    if p.global_pooling:
        return (h, w), (0, 0), (1, 1)
    k = (p.kernel_h, p.kernel_w) if p.has("kernel_h") else (p.kernel_size, p.kernel_size)
    pad = (p.pad_h, p.pad_w) if p.has("pad_h") else (p.pad, p.pad)
    stride = (p.stride_h, p.stride_w) if p.has("stride_h") else (p.stride, p.stride)
    return k, pad, stride


def caffe_pooled(size, k, pad, stride, ceil=True):
    """Caffe's pooled size: ceil((H + 2p - k) / s) + 1, minus one if the last window starts in
    the bottom/right padding."""
    num = size + 2 * pad - k
    out = (-(-num // stride) if ceil else num // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def analyse(layers, input_shapes):
    """Blob shapes (Caffe's rules) and GEMM FLOPs per image: (fwd, train step) for the net."""
    shapes = dict(input_shapes)
    needs_grad = set()           # blobs whose gradient the backward pass computes
    fwd = step = 0
    for lp in layers:
        t = lp.type
        if t in DATA_TYPES:
            continue
        bottoms, tops = list(lp.bottom), list(lp.top)
        shp = shapes[bottoms[0]] if bottoms else None
        grad_in = any(b in needs_grad for b in bottoms)
        flops = 0
        if t == "Convolution":
            n, c, h, w = shp
            (kh, kw), (ph, pw), (sh, sw), (dh, dw) = conv_geometry(lp)
            cp = lp.convolution_param
            oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
            ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
            out = (n, cp.num_output, oh, ow)
            flops = 2 * (c // cp.group) * kh * kw * cp.num_output * oh * ow
        elif t == "InnerProduct":
            ip = lp.inner_product_param
            k = math.prod(shp[ip.axis:])
            out = tuple(shp[:ip.axis]) + (ip.num_output,)
            flops = 2 * k * ip.num_output
        elif t == "Pooling":
            n, c, h, w = shp
            (kh, kw), (ph, pw), (sh, sw) = pool_geometry(lp, h, w)
            ceil = lp.pooling_param.round_mode != "FLOOR"
            out = (n, c, caffe_pooled(h, kh, ph, sh, ceil), caffe_pooled(w, kw, pw, sw, ceil))
        elif t in ("SoftmaxWithLoss", "EuclideanLoss"):
            out = ()
        elif t in ("Accuracy", "Silence"):
            continue
        elif t == "Concat":
            cp = lp.concat_param
            axis = cp.concat_dim if cp.has("concat_dim") else cp.axis
            out = list(shp)
            out[axis] = sum(shapes[b][axis] for b in bottoms)
            out = tuple(out)
        else:                     # element-wise / same-shape layers
            out = shp
        for tname in tops:
            shapes[tname] = out
            if grad_in or t in ("Convolution", "InnerProduct"):
                needs_grad.add(tname)
        fwd += flops
        step += flops * (3 if grad_in else 2)
    return shapes, fwd, step


# --- the PyTorch translation ------------------------------------------------------------------
def build_torch_net(layers, shapes, mode):
    import torch
    from torch import nn
    import torch.nn.functional as F

    class ChannelAffine(nn.Module):
        """Caffe's Scale over axis 1 (one factor, and a bias, per channel)."""

        def __init__(self, c, bias):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(c))
            self.bias = nn.Parameter(torch.zeros(c)) if bias else None

        def forward(self, x):
            y = x * self.weight.view(1, -1, 1, 1)
            return y + self.bias.view(1, -1, 1, 1) if self.bias is not None else y

    class CaffeNetInTorch(nn.Module):
        """Runs the Caffe layers in file order over a dict of named blobs (in-place tops too)."""

        def __init__(self):
            super().__init__()
            self.mods = nn.ModuleDict()
            self.ops = []            # (type, module key, bottoms, tops, extra)
            self.param_map = []      # (layer name, blob index, torch parameter, transpose)
            self.stats_map = []      # (BatchNorm layer name, nn.BatchNorm2d): its statistics
            self.lr_mult = {}        # id(torch parameter) -> (lr_mult, decay_mult)
            for lp in layers:
                self._add(lp)

        def _add(self, lp):
            t, name = lp.type, lp.name
            key = name.replace(".", "_")
            bottoms, tops = list(lp.bottom), list(lp.top)
            inplace = bool(bottoms) and bool(tops) and bottoms[0] == tops[0]
            extra = None
            if t in DATA_TYPES or t in ("Accuracy", "Silence"):
                return
            if t == "Split":
                self.ops.append(("Split", None, bottoms, tops, None))
                return
            if t == "Concat":
                cp = lp.concat_param
                axis = cp.concat_dim if cp.has("concat_dim") else cp.axis
                self.ops.append(("Concat", None, bottoms, tops, axis))
                return
            if t == "Convolution":
                cp = lp.convolution_param
                k, pad, stride, dil = conv_geometry(lp)
                mod = nn.Conv2d(shapes[bottoms[0]][1], cp.num_output, k, stride=stride,
                                padding=pad, dilation=dil, groups=cp.group, bias=cp.bias_term)
                self._params(lp, mod, transpose=False)
            elif t == "InnerProduct":
                ip = lp.inner_product_param
                k = math.prod(shapes[bottoms[0]][ip.axis:])
                mod = nn.Linear(k, ip.num_output, bias=ip.bias_term)
                self._params(lp, mod, transpose=ip.transpose)
                extra = ip.axis
            elif t == "Pooling":
                pp = lp.pooling_param
                n, c, h, w = shapes[bottoms[0]]
                k, pad, stride = pool_geometry(lp, h, w)
                ceil = pp.round_mode != "FLOOR"
                if pp.pool == "MAX":
                    mod = nn.MaxPool2d(k, stride, pad, ceil_mode=ceil)
                elif pp.pool == "AVE":
                    # Caffe divides by the window clipped to the padded input: that is PyTorch's
                    # count_include_pad=True divisor (windows past the padding are clipped too)
                    mod = nn.AvgPool2d(k, stride, pad, ceil_mode=ceil, count_include_pad=True)
                else:
                    raise SystemExit(f"{name}: {pp.pool} pooling has no PyTorch counterpart")
            elif t == "ReLU":
                slope = lp.relu_param.negative_slope
                mod = nn.LeakyReLU(slope, inplace=inplace) if slope else nn.ReLU(inplace=inplace)
            elif t == "Dropout":
                mod = nn.Dropout(lp.dropout_param.dropout_ratio)
            elif t == "BatchNorm":
                if not lp.batch_norm_param.use_global_stats:
                    raise SystemExit(f"{name}: BatchNorm with batch statistics is not translated")
                mod = nn.BatchNorm2d(shapes[bottoms[0]][1], eps=lp.batch_norm_param.eps,
                                     affine=False)
                mod.eval()
                self.stats_map.append((lp.name, mod))
            elif t == "Scale":
                c = shapes[bottoms[0]][1]
                mod = ChannelAffine(c, lp.scale_param.bias_term)
                self._params(lp, mod, transpose=False)
            elif t == "Eltwise":
                ep = lp.eltwise_param
                if ep.operation not in ("SUM", 1) or len(ep.coeff):
                    raise SystemExit(f"{name}: only Eltwise SUM without coefficients is "
                                     "translated")
                self.ops.append(("Eltwise", None, bottoms, tops, None))
                return
            elif t == "LRN":
                lr = lp.lrn_param
                if lr.norm_region != "ACROSS_CHANNELS":
                    raise SystemExit(f"{name}: LRN {lr.norm_region} is not translated")
                mod = nn.LocalResponseNorm(lr.local_size, lr.alpha, lr.beta, lr.k)
            elif t == "Softmax":
                mod, extra = None, lp.softmax_param.axis
            elif t == "SoftmaxWithLoss":
                lossp = lp.loss_param
                norm = lossp.normalization if lossp.has("normalization") else "VALID"
                if norm not in ("VALID", "BATCH_SIZE"):
                    raise SystemExit(f"{name}: loss normalization {norm} "
                                     "is not translated")
                mod = None
                extra = lossp.ignore_label if lossp.has("ignore_label") else -100
            else:
                raise SystemExit(f"layer '{name}' of type {t} is not translated to PyTorch")
            if mod is not None:
                self.mods[key] = mod
            self.ops.append((t, key if mod is not None else None, bottoms, tops, extra))

        def _params(self, lp, mod, transpose):
            specs = list(lp.param)
            for j, p in enumerate([mod.weight] + ([mod.bias] if mod.bias is not None else [])):
                spec = specs[j] if j < len(specs) else None
                self.lr_mult[id(p)] = ((spec.lr_mult, spec.decay_mult) if spec is not None
                                       else (1.0, 1.0))
                self.param_map.append((lp.name, j, p, transpose and j == 0))

        def forward(self, blobs):
            blobs = dict(blobs)
            for t, key, bottoms, tops, extra in self.ops:
                x = blobs[bottoms[0]]
                if t == "Split":
                    for top in tops:
                        blobs[top] = x
                    continue
                if t == "Concat":
                    blobs[tops[0]] = torch.cat([blobs[b] for b in bottoms], dim=extra)
                    continue
                if t == "Eltwise":
                    y = blobs[bottoms[0]]
                    for b in bottoms[1:]:
                        y = y + blobs[b]
                    blobs[tops[0]] = y
                    continue
                if t == "InnerProduct":
                    y = self.mods[key](x.flatten(extra))
                elif t == "Softmax":
                    y = F.softmax(x, dim=extra)
                elif t == "SoftmaxWithLoss":
                    y = F.cross_entropy(x, blobs[bottoms[1]], ignore_index=extra)
                else:
                    y = self.mods[key](x)
                blobs[tops[0]] = y
            return blobs

    net = CaffeNetInTorch()
    net.train(mode == "train")
    return net


def torch_fill(model, layers, seed):
    """Weights for --only torch: the YAML's fillers (He-normal where a deploy file has none)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    fillers = {lp.name: lp for lp in layers}
    with torch.no_grad():
        for lname, j, p, _ in model.param_map:
            lp = fillers[lname]
            if lp.type == "Scale":
                p.fill_(1.0 if j == 0 else 0.0)
                continue
            param = lp.convolution_param if lp.type == "Convolution" else lp.inner_product_param
            f = param.weight_filler if j == 0 else param.bias_filler
            fan_in = p[0].numel() if j == 0 else 1
            if not f.has("type") or (f.type == "constant" and j == 0):
                p.normal_(0, math.sqrt(2 / fan_in), generator=g) if j == 0 else p.zero_()
            elif f.type == "constant":
                p.fill_(f.value)
            elif f.type == "gaussian":
                p.normal_(f.mean, f.std, generator=g)
            elif f.type == "xavier":
                b = math.sqrt(3 / fan_in)
                p.uniform_(-b, b, generator=g)
            elif f.type == "msra":
                p.normal_(0, math.sqrt(2 / fan_in), generator=g)
            else:
                p.uniform_(f.min, f.max, generator=g)


def torch_optimizer(model):
    import torch
    groups = {}
    for p in model.parameters():
        groups.setdefault(model.lr_mult[id(p)], []).append(p)
    return torch.optim.SGD([{"params": ps, "lr": BASE_LR * lr, "weight_decay": WEIGHT_DECAY * dm}
                            for (lr, dm), ps in groups.items()],
                           lr=BASE_LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


# --- caffeish side ----------------------------------------------------------------------------
def build_caffeish(spec):
    """(net, step function(n), input arrays) for one benchmark net."""
    import numpy as np
    if spec["mode"] == "train":
        sys.path.insert(0, str(REPO / "benchmarks"))
        from train_speed import synthetic_solver
        solver = synthetic_solver(str(REPO / spec["path"]), spec["batch"], spec["channels"],
                                  spec["size"], spec["classes"])
        return solver.net, solver.step
    import caffeish
    net = caffeish.Net(str(REPO / spec["path"]), phase="TEST", seed=1)
    rng = np.random.default_rng(1)
    for lname, layer in net.layer_dict.items():   # a deploy file has no fillers
        blobs = layer.blobs
        if not blobs:
            continue
        if layer.type == "BatchNorm":             # plausible stored statistics
            blobs[0].data[...] = rng.normal(0, 0.1, blobs[0].shape)
            blobs[1].data[...] = rng.uniform(0.5, 1.5, blobs[1].shape)
            blobs[2].data[...] = 1
            continue
        if layer.type == "Scale":
            blobs[0].data[...] = rng.normal(1, 0.1, blobs[0].shape)
            for b in blobs[1:]:
                b.data[...] = rng.normal(0, 0.1, b.shape)
            continue
        w = blobs[0]                              # He-normal weights
        w.data[...] = rng.normal(0, math.sqrt(2 / (w.count // w.shape[0])), w.shape)
        for b in blobs[1:]:
            b.data[...] = rng.normal(0, 0.01, b.shape)
    name = net.inputs[0]
    batch = (spec["batch"], spec["channels"], spec["size"], spec["size"])
    if net.blobs[name].shape != batch:
        net.blobs[name].reshape(batch)
        net.reshape()
    net.blobs[name].data[...] = rng.random(batch)

    def forward(n):
        for _ in range(n):
            net.forward()
    return net, forward


def start_numba_openmp():
    """Run one numba parallel region, so that numba's OpenMP calls bind to numba's runtime."""
    import numpy as np
    from numba import njit, prange

    @njit(parallel=True)
    def touch(a):
        for i in prange(a.shape[0]):
            a[i] += 1.0
    touch(np.zeros(64))


def rel_err(a, b):
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.abs(b).max(initial=0.0)), 1e-30)
    return float(np.abs(a - b).max(initial=0.0)) / scale


def check_against_caffeish(net, model, tblobs_in, loss_name):
    """Same batch through both engines (forward, and backward when there is a loss); returns
    the worst relative differences (value, blob) of the forward blobs and of the gradients."""
    import torch
    # Dropout draws different masks in the two engines: the check runs it as the identity
    # (caffeish: its TEST behaviour; PyTorch: eval mode), the timing with real masks
    drops = [lay for lay in net.layers if lay.type == "Dropout"]
    for lay in drops:
        lay.phase = "TEST"
    tdrops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for m in tdrops:
        m.eval()
    try:
        return _check(net, model, tblobs_in, loss_name)
    finally:
        for lay in drops:
            lay.phase = "TRAIN"
        for m in tdrops:
            m.train()


def _check(net, model, tblobs_in, loss_name):
    import torch
    worst_f, where_f = 0.0, ""
    if loss_name:
        net.clear_param_diffs()
        net.forward_backward()
        model.zero_grad()
        out = model(tblobs_in)
        out[loss_name].backward()
    else:
        net.forward()
        with torch.no_grad():
            out = model(tblobs_in)
    for name, t in out.items():
        if name in net.blobs and name not in tblobs_in:
            e = rel_err(net.blobs[name].data, t.detach().cpu().numpy())
            if e > worst_f:
                worst_f, where_f = e, name
    worst_g, where_g = 0.0, ""
    if loss_name:
        for lname, j, p, tr in model.param_map:
            diff = net.params[lname][j].diff
            g = p.grad.cpu().numpy()
            e = rel_err(diff.T if tr else diff.reshape(g.shape), g)
            if e > worst_g:
                worst_g, where_g = e, f"{lname}[{j}]"
    return (worst_f, where_f), (worst_g, where_g)


def float64_twins(spec, layers, inputs, net32, model32):
    """A float64 caffeish net and PyTorch model with net32's weights and inputs (check64)."""
    import copy

    import numpy as np
    import torch
    import caffeish
    from caffeish.config.schema import Msg
    layer_msgs = []
    for lp in layers:
        if lp.type in DATA_TYPES:
            lp = Msg("LayerParameter", {
                "name": lp.name, "type": "Input", "top": list(lp.top),
                "input_param": {"shape": [{"dim": list(inputs[t])} for t in lp.top]}})
        layer_msgs.append(lp)
    net = caffeish.Net(Msg("NetParameter", {"layer": layer_msgs}), "TRAIN", dtype=np.float64)
    for name, blobs in net32.params.items():
        for a, b in zip(net.params[name], blobs):
            a.data[...] = b.data
    for n in inputs:
        net.blobs[n].data[...] = net32.blobs[n].data
    model = copy.deepcopy(model32).double()
    model.param_map = [(lname, j, dict(model.named_parameters())[pname], tr)
                       for (lname, j, p, tr), pname in zip(model32.param_map,
                                                          _param_names(model32))]
    copy_weights(net, model)
    dev = next(model.parameters()).device
    tin = {n: torch.tensor(net.blobs[n].data.copy(),
                           dtype=torch.float64 if len(s) == 4 else torch.int64, device=dev)
           for n, s in inputs.items()}
    return net, model, tin


def _param_names(model):
    ids = {id(p): name for name, p in model.named_parameters()}
    return [ids[id(p)] for _, _, p, _ in model.param_map]


def copy_weights(net, model):
    import torch
    with torch.no_grad():
        for lname, j, p, tr in model.param_map:
            a = net.params[lname][j].data
            p.copy_(torch.tensor(a.T if tr else a.reshape(tuple(p.shape))))
        for lname, mod in getattr(model, "stats_map", []):
            mean, var, factor = (b.data for b in net.layer_dict[lname].blobs)
            f = 0.0 if factor[0] == 0 else 1.0 / float(factor[0])   # Caffe's scale factor
            mod.running_mean.copy_(torch.tensor(mean * f))
            mod.running_var.copy_(torch.tensor(var * f))


# --- timing -----------------------------------------------------------------------------------
def time_run(fn, n):
    t0 = time.perf_counter()
    fn(n)
    return time.perf_counter() - t0


def iters_for(fn, seconds):
    """Warm up, then the iteration count that takes about `seconds`."""
    fn(2)
    dt = time_run(fn, 2) / 2
    return max(1, round(seconds / dt))


def gemm_peak(threads):
    """numpy (OpenBLAS) SGEMM GFLOP/s on 2048^2 matrices: the reference ceiling."""
    import numpy as np
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, a, out=c)
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        np.matmul(a, a, out=c)
        ts.append(time.perf_counter() - t0)
    return 2 * 2048 ** 3 / statistics.median(ts) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nets", default="lenet,cifar10_quick,caffenet",
                    help="comma-separated, from: " + ", ".join(NETS))
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for both engines (default: the cores available); sets "
                         "OPENBLAS_NUM_THREADS, NUMBA_NUM_THREADS, OMP_NUM_THREADS and "
                         "torch.set_num_threads")
    ap.add_argument("--only", choices=("caffeish", "torch"),
                    help="time one engine alone (no cross-check), e.g. to read its peak RSS")
    ap.add_argument("--repeats", type=int, default=9, help="timed runs per engine (median)")
    ap.add_argument("--seconds", type=float, default=0.5, help="length of one timed run")
    ap.add_argument("--no-gemm-peak", action="store_true", help="skip the SGEMM reference")
    ap.add_argument("--gpu", type=int, default=None, metavar="ID",
                    help="run both engines on this CUDA GPU (caffeish: set_mode_gpu; PyTorch: "
                         "cuda:ID); every timed run ends with a device synchronize")
    args = ap.parse_args()
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    for n in nets:
        if n not in NETS:
            ap.error(f"unknown net {n!r}; choose from {', '.join(NETS)}")
    threads = args.threads or cores()
    if args.threads:
        for var in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                    "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    user_wait = os.environ.get("OMP_WAIT_POLICY")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"note: {var}={os.environ[var]} is set; for benchmark figures run with "
                  f"`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python {sys.argv[0]} ...`")

    import caffeish  # noqa: F401  (before numpy: it sets the thread-runtime variables)
    import logging
    from caffeish.log import setup_logging
    setup_logging(level=logging.WARNING)
    use_caffeish = args.only != "torch"
    use_torch = args.only != "caffeish"
    torch = None
    if use_torch:
        if use_caffeish:
            start_numba_openmp()   # before torch: numba binds to its own OpenMP runtime
        ours = os.environ.get("OMP_WAIT_POLICY")
        if user_wait is None:
            os.environ.pop("OMP_WAIT_POLICY", None)   # PyTorch's OpenMP: its own default
        try:
            import torch
        except ImportError as e:
            if args.only == "torch":
                raise SystemExit(f"--only torch: cannot import torch ({e})")
            print(f"PyTorch not importable ({e}): timing caffeish alone")
            use_torch = False
        finally:
            if ours is not None:
                os.environ["OMP_WAIT_POLICY"] = ours
    import numpy as np
    if use_torch:
        torch.set_num_threads(threads)
    tdev = "cpu"
    sync_torch = sync_caffeish = (lambda: None)
    if args.gpu is not None:
        if use_caffeish:
            caffeish.set_mode_gpu(args.gpu)
            from caffeish import backend as _be
            sync_caffeish = _be.get_backend().synchronize
            info = _be.device_query(args.gpu)
            print(f"caffeish GPU {args.gpu}: {info['name']} (cc {info['compute_capability']}, "
                  f"{info['total_memory_mib']} MiB), GEMM: {_be.get_backend().gemm_engine()}")
        if use_torch:
            if not torch.cuda.is_available():
                raise SystemExit("--gpu: this PyTorch build sees no CUDA device "
                                 f"(torch {torch.__version__})")
            tdev = f"cuda:{args.gpu}"
            sync_torch = torch.cuda.synchronize
            print(f"torch device: {torch.cuda.get_device_name(args.gpu)}")
        args.no_gemm_peak = True
    desc = [f"{threads} thread(s) ({cores()} cores)"]
    if use_caffeish:
        import numba
        desc.append(f"numba {numba.__version__} ({numba.get_num_threads()} threads)")
        desc.append(f"numpy {np.__version__}")
        try:
            from threadpoolctl import threadpool_info
            arch = [i.get("architecture") for i in threadpool_info()
                    if i.get("internal_api") == "openblas" and "numpy" in i.get("filepath", "")]
            if arch:
                desc.append(f"OpenBLAS {arch[0]} kernels")
        except ImportError:
            pass
    if use_torch:
        desc.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    try:
        import subprocess
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "caffeish"], capture_output=True, text=True, timeout=10).stdout
        if commit:
            desc.append(f"caffeish at {commit}{' + uncommitted changes' if dirty else ''}")
    except (OSError, subprocess.SubprocessError):
        pass
    print("; ".join(desc))
    peak = None
    if use_caffeish and not args.no_gemm_peak:
        peak = gemm_peak(threads)
        print(f"numpy SGEMM 2048^3 reference: {peak:.0f} GFLOP/s")

    rows = []
    for key in nets:
        spec = NETS[key]
        phase = "TRAIN" if spec["mode"] == "train" else "TEST"
        layers = phase_layers(spec["path"], phase)
        b, c, s = spec["batch"], spec["channels"], spec["size"]
        first = next(lp for lp in layers if lp.type in DATA_TYPES)
        inputs = {first.top[0]: (b, c, s, s)}
        if len(first.top) > 1:
            inputs[first.top[1]] = (b,)
        shapes, fwd_flops, step_flops = analyse(layers, inputs)
        flops = step_flops if spec["mode"] == "train" else fwd_flops

        engines = []   # (name, fn(n))
        if use_caffeish:
            net, c_fn = build_caffeish(spec)
            for name, shp in shapes.items():
                if name in net.blobs and shp and tuple(net.blobs[name].shape) != tuple(shp):
                    raise SystemExit(f"{key}: blob {name}: caffeish shape "
                                     f"{net.blobs[name].shape}, Caffe's rule gives {shp}")
            def c_timed(n, c_fn=c_fn):
                c_fn(n)
                sync_caffeish()
            engines.append(("caffeish", c_timed))
        if use_torch:
            model = build_torch_net(layers, shapes, spec["mode"]).to(tdev)
            if use_caffeish:
                arrays = {n: net.blobs[n].data.copy() for n in inputs}
            else:
                rng = np.random.default_rng(0)
                arrays = {n: rng.random(shp) if len(shp) == 4 else
                          rng.integers(0, spec["classes"], shp) for n, shp in inputs.items()}
            tin = {n: torch.tensor(a, dtype=torch.float32 if a.ndim == 4 else torch.int64,
                                   device=tdev) for n, a in arrays.items()}
            loss_name = next((lp.top[0] for lp in reversed(layers)
                              if lp.type == "SoftmaxWithLoss"), None) \
                if spec["mode"] == "train" else None
            if use_caffeish:
                copy_weights(net, model)
                if spec.get("check64"):
                    # caffeish's float64 runs on the CPU backend (its GPU kernels are float32)
                    if args.gpu is not None:
                        caffeish.set_mode_cpu()
                    net64, model64, tin64 = float64_twins(spec, layers, inputs, net, model)
                    (ef, wf), (eg, wg) = check_against_caffeish(net64, model64, tin64,
                                                                loss_name)
                    net64.close()
                    del model64, tin64
                    if args.gpu is not None:
                        caffeish.set_mode_gpu(args.gpu)
                    how = "check (float64)"
                else:
                    (ef, wf), (eg, wg) = check_against_caffeish(net, model, tin, loss_name)
                    how = "check"
                msg = f"{key}: {how}: forward max rel. diff {ef:.1e} ({wf})"
                if spec["mode"] == "train":
                    msg += f", gradients {eg:.1e} ({wg})"
                print(msg)
                if ef > FWD_TOL or eg > GRAD_TOL:
                    raise SystemExit(f"{key}: caffeish and the PyTorch translation disagree "
                                     f"(limits {FWD_TOL:g} forward, {GRAD_TOL:g} gradients)")
            else:
                torch_fill(model, layers, seed=1)
            if spec["mode"] == "train":
                opt = torch_optimizer(model)

                def t_fn(n, model=model, opt=opt, tin=tin, loss_name=loss_name):
                    for _ in range(n):
                        opt.zero_grad(set_to_none=True)
                        model(tin)[loss_name].backward()
                        opt.step()
                    sync_torch()
            else:
                def t_fn(n, model=model, tin=tin):
                    with torch.inference_mode():
                        for _ in range(n):
                            model(tin)
                    sync_torch()
            engines.append(("torch", t_fn))

        counts = {name: iters_for(fn, args.seconds) for name, fn in engines}
        rates = {name: [] for name, _ in engines}
        for _ in range(args.repeats):           # interleaved: A, B, A, B, ...
            for name, fn in engines:
                rates[name].append(counts[name] * b / time_run(fn, counts[name]))
        med = {name: statistics.median(r) for name, r in rates.items()}
        row = dict(net=spec["label"], batch=b, mflop=flops / 1e6, rates=med)
        rows.append(row)
        parts = [f"{spec['label']} (batch {b}, {flops / 1e6:.1f} MFLOP/image)"]
        for name in med:
            gf = med[name] * flops / 1e9
            part = (f"{name} {med[name]:,.0f} images/s ({1000 * b / med[name]:.1f} ms/batch, "
                    f"{gf:.0f} GFLOP/s")
            part += f", {100 * gf / peak:.0f}% of SGEMM)" if peak else ")"
            parts.append(part)
        if len(med) == 2:
            parts.append(f"caffeish/torch {med['caffeish'] / med['torch']:.2f}x")
        print(" | ".join(parts), flush=True)
        spread = "; ".join(f"{n}: {', '.join(f'{r:.0f}' for r in rs)}" for n, rs in rates.items())
        print(f"    runs (images/s, {args.repeats} x {counts}): {spread}")

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    who = "caffeish + torch" if use_caffeish and use_torch else \
        ("caffeish" if use_caffeish else "torch") + " alone"
    print(f"peak RSS of this process ({who}, nets: {', '.join(nets)}): {rss:.0f} MiB")
    if use_caffeish and use_torch:
        print(f"\n| {threads} thread(s) | MFLOP/image | caffeish images/s | torch images/s | "
              f"caffeish/torch | caffeish GFLOP/s | torch GFLOP/s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            c, t = r["rates"]["caffeish"], r["rates"]["torch"]
            print(f"| {r['net']}, batch {r['batch']} | {r['mflop']:.1f} | {c:,.0f} | {t:,.0f} | "
                  f"{c / t:.2f}x | {c * r['mflop'] / 1e3:.0f} | {t * r['mflop'] / 1e3:.0f} |")


if __name__ == "__main__":
    main()
