"""Shape-only rules: a layer's top shapes, parameter shapes and forward FLOPs from bottom shapes.

Each rule reads the layer's LayerParameter and its bottom shapes (tuples) and returns a
:class:`LayerShapes`; nothing is allocated, so a whole ImageNet net is sized in milliseconds and
a type whose module is not written yet (or whose data is missing) can still be inspected.
The rules follow Caffe's reshape code (ceil-mode pooling with its clip, convolution's dilated
extent, InnerProduct's ``axis``...). Types without a rule are sized by their registered layer
class on unfilled blobs (see :mod:`caffeish.tools.inspect`), with FLOPs unknown.

FLOP conventions (forward pass, whole batch; a multiply-add counts 2):

- Convolution: ``2 * C/g * kh * kw * O * OH * OW`` per image (bias adds not counted);
  Deconvolution: ``2 * C * O/g * kh * kw * H * W`` per image (the input side).
- InnerProduct: ``2 * K * N`` per row (``M`` rows); Embed: 0 (a lookup).
- Pooling: ``kh * kw`` per output value (comparisons or adds); SPP the same per level.
- LRN: ``2 * local_size + 4`` per value (window sum of squares, scale, power, product).
- element-wise neurons (ReLU, Sigmoid, TanH, ...): 1 per value; Power and PReLU 2; Dropout 1
  at TRAIN and 0 at TEST.
- BatchNorm: 2 per value with global statistics, 5 when it computes batch statistics;
  Scale 1 per value (+1 with a bias), Bias 1; MVN 4.
- Eltwise: ``(B - 1)`` per value (+ ``B`` when SUM has coefficients).
- Softmax: 5 per value (max, subtract, exp, sum, divide); SoftmaxWithLoss 5 per value + 1 per
  row; EuclideanLoss 3 per value; other losses and Accuracy 1 per value of bottom[0].
- data, Split, Concat, Slice, Flatten, Reshape, Crop, Silence: 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config.schema import enum_symbol
from ..errors import ConfigError, ShapeError


@dataclass
class LayerShapes:
    tops: list            # one shape tuple per top
    params: list = field(default_factory=list)   # parameter blob shapes, Caffe's order
    flops: int | None = 0  # forward FLOPs for the batch; None when unknown
    note: str = ""


RULES: dict = {}


def rule(*types):
    def deco(fn):
        for t in types:
            RULES[t] = fn
        return fn
    return deco


def count(shape) -> int:
    return int(math.prod(shape)) if shape else 1


def _ctx(lp):
    return f"{lp.where() + ': ' if lp.where() else ''}layer '{lp.name}' ({lp.type}): "


def shape_error(lp, msg):
    return ShapeError(_ctx(lp) + msg)


def config_error(lp, msg):
    return ConfigError(_ctx(lp) + msg)


def _canon(lp, axis, ndim, what="axis"):
    if not -ndim <= axis < max(ndim, 1):
        raise config_error(lp, f"{what} {axis} is out of range for a {ndim}-axis bottom")
    return axis % ndim if ndim else 0


# --- data ----------------------------------------------------------------------------------------
def blob_shape_dims(msg) -> tuple:
    return tuple(int(d) for d in msg.dim)


@rule("Input")
def _input(lp, bottoms, phase, ctx):
    shapes = list(lp.input_param.shape)
    n = len(lp.top)
    if len(shapes) not in (1, n):
        raise config_error(lp, f"input_param.shape must be given once or once per top ({n})")
    return LayerShapes([blob_shape_dims(shapes[0 if len(shapes) == 1 else i]) for i in range(n)])


@rule("DummyData")
def _dummy(lp, bottoms, phase, ctx):
    p = lp.dummy_data_param
    n = len(lp.top)
    legacy = ("num", "channels", "height", "width")
    if any(p.has(x) for x in legacy):
        def pick(name, i):
            v = list(getattr(p, name))
            return int(v[0 if len(v) == 1 else i])
        return LayerShapes([tuple(pick(x, i) for x in legacy) for i in range(n)])
    shapes = list(p.shape)
    if len(shapes) not in (1, n):
        raise config_error(lp, f"dummy_data_param.shape must be given once or once per top ({n})")
    return LayerShapes([blob_shape_dims(shapes[0 if len(shapes) == 1 else i]) for i in range(n)])


@rule("MemoryData")
def _memory(lp, bottoms, phase, ctx):
    p = lp.memory_data_param
    shape = (int(p.batch_size), int(p.channels), int(p.height), int(p.width))
    crop = int(lp.transform_param.crop_size)
    if crop:
        shape = shape[:2] + (crop, crop)
    return LayerShapes([shape, (shape[0],)][:len(lp.top)])


@rule("Data", "ImageData", "HDF5Data", "WindowData")
def _data_source(lp, bottoms, phase, ctx):
    """Shapes of a layer that reads files: from its records when present (see inspect)."""
    tops = ctx.data_shapes(lp)
    return LayerShapes(tops[:len(lp.top)], note=ctx.data_notes.get(lp.name, ""))


# --- vision --------------------------------------------------------------------------------------
def _spatial(lp, p, name, h_name, w_name, default, nsp):
    if h_name and (p.has(h_name) or p.has(w_name)):
        return [int(getattr(p, h_name)), int(getattr(p, w_name))]
    vals = [int(v) for v in getattr(p, name)]
    if not vals:
        if default is None:
            raise config_error(lp, f"{name} (or {h_name} and {w_name}) is required")
        return [default] * nsp
    if len(vals) == 1:
        return vals * nsp
    if len(vals) != nsp:
        raise config_error(lp, f"{name} is given {len(vals)} times for {nsp} spatial axes")
    return vals


def _conv_geometry(lp, bottom):
    p = lp.convolution_param
    axis = _canon(lp, int(p.axis), len(bottom))
    nsp = len(bottom) - axis - 1
    if nsp < 1:
        raise shape_error(lp, f"bottom shape {bottom} has no spatial axis after axis {axis}")
    k = _spatial(lp, p, "kernel_size", "kernel_h", "kernel_w", None, nsp)
    s = _spatial(lp, p, "stride", "stride_h", "stride_w", 1, nsp)
    pad = _spatial(lp, p, "pad", "pad_h", "pad_w", 0, nsp)
    d = _spatial(lp, p, "dilation", None, None, 1, nsp)
    g = int(p.group)
    c = int(bottom[axis])
    o = int(p.num_output)
    if o <= 0:
        raise config_error(lp, "num_output must be set to a positive number")
    if g <= 0 or c % g or o % g:
        raise config_error(lp, f"channels ({c}) and num_output ({o}) must be multiples of "
                               f"group ({g})")
    return p, axis, k, s, pad, d, g, c, o


@rule("Convolution")
def _conv(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    p, axis, k, s, pad, d, g, c, o = _conv_geometry(lp, b)
    out = []
    for i, n in enumerate(b[axis + 1:]):
        ext = d[i] * (k[i] - 1) + 1
        v = (n + 2 * pad[i] - ext) // s[i] + 1
        if v <= 0:
            raise shape_error(lp, f"bottom shape {b} is smaller than the kernel {tuple(k)} "
                                  f"with pad {tuple(pad)}")
        out.append(v)
    top = b[:axis] + (o,) + tuple(out)
    params = [(o, c // g) + tuple(k)]
    if p.bias_term:
        params.append((o,))
    per_out = 2 * (c // g) * count(k)
    flops = per_out * count(top) * len(bottoms)
    return LayerShapes([top] * len(lp.top), params, flops)


@rule("Deconvolution")
def _deconv(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    p, axis, k, s, pad, d, g, c, o = _conv_geometry(lp, b)
    out = []
    for i, n in enumerate(b[axis + 1:]):
        ext = d[i] * (k[i] - 1) + 1
        out.append(s[i] * (n - 1) + ext - 2 * pad[i])
    top = b[:axis] + (o,) + tuple(out)
    params = [(c, o // g) + tuple(k)]
    if p.bias_term:
        params.append((o,))
    flops = 2 * (o // g) * count(k) * count(b) * len(bottoms)
    return LayerShapes([top] * len(lp.top), params, flops)


def _pool_out(size, k, pad, s, ceil):
    num = size + 2 * pad - k
    out = (-(-num // s) if ceil else num // s) + 1
    if pad and (out - 1) * s >= size + pad:
        out -= 1
    return out


@rule("Pooling")
def _pool(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    if len(b) != 4:
        raise shape_error(lp, f"input must have 4 axes, got shape {b}")
    p = lp.pooling_param
    n, c, h, w = b
    if p.global_pooling:
        kh, kw = h, w
    elif p.has("kernel_size"):
        kh = kw = int(p.kernel_size)
    elif p.has("kernel_h") and p.has("kernel_w"):
        kh, kw = int(p.kernel_h), int(p.kernel_w)
    else:
        raise config_error(lp, "kernel_size is required (or kernel_h and kernel_w)")
    ph = int(p.pad_h) if p.has("pad_h") else int(p.pad)
    pw = int(p.pad_w) if p.has("pad_w") else int(p.pad)
    sh = int(p.stride_h) if p.has("stride_h") else int(p.stride)
    sw = int(p.stride_w) if p.has("stride_w") else int(p.stride)
    ceil = enum_symbol(p.round_mode, "PoolingParameter.RoundMode") != "FLOOR"
    oh, ow = _pool_out(h, kh, ph, sh, ceil), _pool_out(w, kw, pw, sw, ceil)
    if oh <= 0 or ow <= 0:
        raise shape_error(lp, f"bottom shape {b} is too small for kernel ({kh}, {kw})")
    top = (n, c, oh, ow)
    return LayerShapes([top] * len(lp.top), [], kh * kw * count(top))


@rule("SPP")
def _spp(lp, bottoms, phase, ctx):
    n, c, h, w = tuple(bottoms[0])
    levels = int(lp.spp_param.pyramid_height)
    bins = sum(4 ** i for i in range(levels))
    return LayerShapes([(n, c * bins)], [], count((n, c, h, w)) * levels)


@rule("LRN")
def _lrn(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    if len(b) != 4:
        raise shape_error(lp, f"input must have 4 axes, got shape {b}")
    size = int(lp.lrn_param.local_size)
    if size % 2 == 0:
        raise config_error(lp, f"local_size must be odd, got {size}")
    return LayerShapes([b], [], (2 * size + 4) * count(b))


@rule("Crop")
def _crop(lp, bottoms, phase, ctx):
    a, ref = tuple(bottoms[0]), tuple(bottoms[1])
    axis = _canon(lp, int(lp.crop_param.axis), len(a))
    return LayerShapes([a[:axis] + ref[axis:]], [], 0)


@rule("Im2col")
def _im2col(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    p = lp.convolution_param
    axis = _canon(lp, int(p.axis), len(b))
    nsp = len(b) - axis - 1
    k = _spatial(lp, p, "kernel_size", "kernel_h", "kernel_w", None, nsp)
    s = _spatial(lp, p, "stride", "stride_h", "stride_w", 1, nsp)
    pad = _spatial(lp, p, "pad", "pad_h", "pad_w", 0, nsp)
    d = _spatial(lp, p, "dilation", None, None, 1, nsp)
    out = [(n + 2 * pad[i] - (d[i] * (k[i] - 1) + 1)) // s[i] + 1
           for i, n in enumerate(b[axis + 1:])]
    return LayerShapes([b[:axis] + (b[axis] * count(k),) + tuple(out)], [], 0)


# --- common --------------------------------------------------------------------------------------
@rule("InnerProduct")
def _ip(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    p = lp.inner_product_param
    axis = _canon(lp, int(p.axis), len(b))
    k, m, n = count(b[axis:]), count(b[:axis]), int(p.num_output)
    if n <= 0:
        raise config_error(lp, "num_output must be set to a positive number")
    params = [(k, n) if p.transpose else (n, k)]
    if p.bias_term:
        params.append((n,))
    return LayerShapes([b[:axis] + (n,)], params, 2 * m * k * n)


@rule("Embed")
def _embed(lp, bottoms, phase, ctx):
    p = lp.embed_param
    b = tuple(bottoms[0])
    params = [(int(p.input_dim), int(p.num_output))]
    if p.bias_term:
        params.append((int(p.num_output),))
    return LayerShapes([b + (int(p.num_output),)], params, 0)


_NEURON_COST = {"ReLU": 1, "Sigmoid": 1, "TanH": 1, "AbsVal": 1, "BNLL": 1, "ELU": 1,
                "Exp": 1, "Log": 1, "Threshold": 1, "Clip": 1, "Swish": 1, "Power": 2,
                "GELU": 1}


@rule(*_NEURON_COST)
def _neuron(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    return LayerShapes([b], [], _NEURON_COST[lp.type] * count(b))


@rule("Dropout")
def _dropout(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    return LayerShapes([b], [], count(b) if phase == "TRAIN" else 0)


@rule("PReLU")
def _prelu(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    c = 1 if lp.prelu_param.channel_shared else (b[1] if len(b) > 1 else 1)
    return LayerShapes([b], [(c,)], 2 * count(b))


# --- normalisation -------------------------------------------------------------------------------
@rule("BatchNorm")
def _bn(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    c = b[1] if len(b) > 1 else 1
    p = lp.batch_norm_param
    global_stats = bool(p.use_global_stats) if p.has("use_global_stats") else phase == "TEST"
    return LayerShapes([b], [(c,), (c,), (1,)], (2 if global_stats else 5) * count(b))


def _scale_shape(lp, p, bottoms):
    b = tuple(bottoms[0])
    if len(bottoms) > 1:
        return None
    axis = _canon(lp, int(p.axis), len(b))
    num_axes = int(p.num_axes)
    end = len(b) if num_axes == -1 else axis + num_axes
    return b[axis:end]


@rule("Scale")
def _scale(lp, bottoms, phase, ctx):
    p = lp.scale_param
    b = tuple(bottoms[0])
    shp = _scale_shape(lp, p, bottoms)
    params = [] if shp is None else [shp]
    if p.bias_term:
        params.append(shp if shp is not None else
                      tuple(bottoms[1]))
    return LayerShapes([b], params, (2 if p.bias_term else 1) * count(b))


@rule("Bias")
def _bias(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    shp = _scale_shape(lp, lp.bias_param, bottoms)
    return LayerShapes([b], [] if shp is None else [shp], count(b))


@rule("MVN")
def _mvn(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    return LayerShapes([b], [], 4 * count(b))


# --- structure -----------------------------------------------------------------------------------
@rule("Split")
def _split(lp, bottoms, phase, ctx):
    return LayerShapes([tuple(bottoms[0])] * len(lp.top), [], 0)


@rule("Silence")
def _silence(lp, bottoms, phase, ctx):
    return LayerShapes([], [], 0)


@rule("Concat")
def _concat(lp, bottoms, phase, ctx):
    p = lp.concat_param
    b0 = tuple(bottoms[0])
    axis = int(p.concat_dim) if p.has("concat_dim") else _canon(lp, int(p.axis), len(b0))
    shape = list(b0)
    for i, b in enumerate(bottoms[1:], 1):
        b = tuple(b)
        if len(b) != len(b0) or any(x != y for j, (x, y) in enumerate(zip(b, b0)) if j != axis):
            raise shape_error(lp, f"bottom[{i}] {b} does not match bottom[0] {b0} outside the "
                                  f"concat axis {axis}")
        shape[axis] += b[axis]
    return LayerShapes([tuple(shape)], [], 0)


@rule("Slice")
def _slice(lp, bottoms, phase, ctx):
    p = lp.slice_param
    b = tuple(bottoms[0])
    axis = int(p.slice_dim) if p.has("slice_dim") else _canon(lp, int(p.axis), len(b))
    n = len(lp.top)
    points = [int(x) for x in p.slice_point]
    if points:
        edges = [0] + points + [b[axis]]
        sizes = [edges[i + 1] - edges[i] for i in range(n)]
    else:
        if b[axis] % n:
            raise shape_error(lp, f"axis {axis} of {b} does not split into {n} equal parts")
        sizes = [b[axis] // n] * n
    return LayerShapes([b[:axis] + (s,) + b[axis + 1:] for s in sizes], [], 0)


@rule("Eltwise")
def _eltwise(lp, bottoms, phase, ctx):
    b0 = tuple(bottoms[0])
    for i, b in enumerate(bottoms[1:], 1):
        if tuple(b) != b0:
            raise shape_error(lp, f"bottom[{i}] has shape {tuple(b)} but bottom[0] has {b0}")
    p = lp.eltwise_param
    nb = len(bottoms)
    op = enum_symbol(p.operation, "EltwiseParameter.EltwiseOp")
    per = (nb - 1) + (nb if op == "SUM" and p.coeff else 0)
    return LayerShapes([b0], [], per * count(b0))


@rule("Flatten")
def _flatten(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    p = lp.flatten_param
    a = _canon(lp, int(p.axis), len(b))
    e = _canon(lp, int(p.end_axis), len(b), "end_axis")
    return LayerShapes([b[:a] + (count(b[a:e + 1]),) + b[e + 1:]], [], 0)


@rule("Reshape")
def _reshape(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    p = lp.reshape_param
    dims = [int(d) for d in p.shape.dim]
    n = len(b)
    start = int(p.axis)
    start = start + n + 1 if start < 0 else start
    num_axes = int(p.num_axes)
    end = n if num_axes == -1 else start + num_axes
    if not 0 <= start <= n or end > n:
        raise config_error(lp, f"axis/num_axes out of range for bottom shape {b}")
    new = []
    for i, d in enumerate(dims):
        new.append(b[start + i] if d == 0 else d)
    if new.count(-1) > 1:
        raise config_error(lp, "at most one -1 in reshape_param.shape")
    out = list(b[:start]) + new + list(b[end:])
    if -1 in out:
        known = count([x for x in out if x != -1])
        out[out.index(-1)] = count(b) // known if known else 0
    if count(out) != count(b):
        raise shape_error(lp, f"cannot reshape {b} ({count(b)} values) to {tuple(out)}")
    return LayerShapes([tuple(out)], [], 0)


@rule("Reduction")
def _reduction(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    axis = _canon(lp, int(lp.reduction_param.axis), len(b))
    return LayerShapes([b[:axis]], [], count(b))


@rule("ArgMax")
def _argmax(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    p = lp.argmax_param
    k = int(p.top_k)
    if p.has("axis"):
        axis = _canon(lp, int(p.axis), len(b))
        top = b[:axis] + (k,) + b[axis + 1:]
    else:
        top = [1] * max(len(b), 3)
        top[0], top[1], top[2] = b[0], 2 if p.out_max_val else 1, k
        top = tuple(top)
    return LayerShapes([top], [], count(b))


@rule("Tile")
def _tile(lp, bottoms, phase, ctx):
    b = list(bottoms[0])
    axis = _canon(lp, int(lp.tile_param.axis), len(b))
    b[axis] *= int(lp.tile_param.tiles)
    return LayerShapes([tuple(b)], [], 0)


@rule("Parameter")
def _parameter(lp, bottoms, phase, ctx):
    shp = blob_shape_dims(lp.parameter_param.shape)
    return LayerShapes([shp], [shp], 0)


# --- loss and metrics ----------------------------------------------------------------------------
@rule("Softmax")
def _softmax(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    return LayerShapes([b], [], 5 * count(b))


@rule("SoftmaxWithLoss")
def _softmax_loss(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    axis = _canon(lp, int(lp.softmax_param.axis), len(b))
    tops = [()] + ([b] if len(lp.top) > 1 else [])
    return LayerShapes(tops, [], 5 * count(b) + count(b[:axis]) * count(b[axis + 1:]))


@rule("EuclideanLoss")
def _euclid(lp, bottoms, phase, ctx):
    return LayerShapes([()], [], 3 * count(bottoms[0]))


@rule("SigmoidCrossEntropyLoss", "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss",
      "ContrastiveLoss")
def _loss(lp, bottoms, phase, ctx):
    return LayerShapes([()] * max(1, len(lp.top)), [], count(bottoms[0]))


@rule("Accuracy")
def _accuracy(lp, bottoms, phase, ctx):
    b = tuple(bottoms[0])
    axis = _canon(lp, int(lp.accuracy_param.axis), len(b))
    tops = [()] + ([(b[axis],)] if len(lp.top) > 1 else [])
    return LayerShapes(tops, [], count(b))


# --- loss detection ------------------------------------------------------------------------------
def is_loss_type(type_name: str) -> bool:
    """Caffe's rule: a type whose name ends in 'Loss' gets loss_weight 1 on top[0]."""
    if type_name.endswith("Loss"):
        return True
    from ..layers.base import LAYER_REGISTRY
    cls = LAYER_REGISTRY.get(type_name)
    return bool(cls is not None and cls.is_loss)


def loss_weights(lp) -> list[float]:
    if lp.loss_weight:
        return [float(w) for w in lp.loss_weight]
    return [1.0 if (j == 0 and is_loss_type(lp.type)) else 0.0 for j in range(len(lp.top))]
