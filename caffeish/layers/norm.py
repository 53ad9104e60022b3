"""Normalization layers: BatchNorm, Scale, Bias, LRN and MVN, with Caffe's semantics."""
from __future__ import annotations

from ..blob import Blob
from ..config.schema import Msg
from ..errors import ShapeError
from .base import Layer, register_layer


def _bottom_name(layer, i):
    names = layer.layer_param.bottom
    return f"bottom[{i}] '{names[i]}'" if i < len(names) else f"bottom[{i}]"


@register_layer("BatchNorm")
class BatchNormLayer(Layer):
    """y = (x - mean) / sqrt(var + eps) per channel (axis 1); **no affine part** (pair with Scale).

    The bottom is read as (N, C, S) with S the product of the dims after axis 1 (a 1-D bottom
    has C = 1). Blobs (all created as zeros, none learned): running mean sum (C,), running
    variance sum (C,) and the moving-average scale factor (1,).

    With batch statistics (the TRAIN default): mean and biased variance over (N, S) per
    channel normalise the batch, and every forward (in any phase) updates the running sums:
    factor = factor * maf + 1, mean_blob = mean_blob * maf + mean, var_blob = var_blob * maf +
    m / (m - 1) * var (m = N * S; no correction when m == 1). Backward:
    dx = (dy - mean(dy) - y * mean(dy * y)) / sqrt(var + eps).

    With global statistics (use_global_stats; the TEST default when unset): mean = mean_blob / f,
    var = var_blob / f, where 1 / f is taken as 0 when the factor is 0 (so an untrained layer
    divides x by sqrt(eps)); dx = dy / sqrt(var + eps).

    As in Caffe's LayerSetUp, the layer completes its own copy of the layer parameter with
    ``param {lr_mult: 0}`` for each blob without a ParamSpec and refuses a non-zero lr_mult,
    so the net registers the statistics with lr_mult 0 and no solver ever changes them.
    In place, a copy of the bottom is kept for the backward pass (a later in-place layer,
    typically Scale, overwrites the shared blob).
    """

    exact_bottoms = 1
    exact_tops = 1
    in_place_ok = True
    param_field = "batch_norm_param"

    def setup(self, bottom, top):
        p = self.param
        self.maf = self.dtype.type(p.moving_average_fraction)
        self.eps = self.dtype.type(p.eps)
        if p.has("use_global_stats"):
            self.use_global_stats = bool(p.use_global_stats)
        else:
            self.use_global_stats = self.phase == "TEST"
        b = bottom[0]
        if b.num_axes == 0:
            raise self.shape_error(f"needs a bottom with at least one axis, got shape {b.shape}")
        self.channels = 1 if b.num_axes == 1 else int(b.shape[1])
        if not self.blobs:
            c = self.channels
            for shape in ((c,), (c,), (1,)):
                self.blobs.append(self.new_param_blob(shape))
        self._freeze_statistics()
        self._x_copy = Blob((), self.dtype, name=f"{self.name}/x_copy")

    def _freeze_statistics(self):
        lp = self.layer_param.copy()
        specs = list(lp.param)
        for i in range(len(self.blobs)):
            if i == len(specs):
                specs.append(Msg("ParamSpec", {"lr_mult": 0.0}))
            elif float(specs[i].lr_mult) != 0.0:
                raise self.config_error(
                    f"param[{i}] has lr_mult {specs[i].lr_mult:g}, but the batch-normalization "
                    f"statistics (mean, variance, scale factor) cannot be configured as learned "
                    f"parameters; use lr_mult: 0 or leave 'param' out", "param")
        if specs:
            lp.set("param", specs)
        self.layer_param = lp

    def reshape(self, bottom, top):
        b = bottom[0]
        if b.num_axes > 1 and b.shape[1] != self.channels:
            raise self.shape_error(
                f"{_bottom_name(self, 0)} has {b.shape[1]} channels (shape {b.shape}) but the "
                f"layer was set up for {self.channels}")
        if top[0] is not b:
            top[0].reshape(b.shape)
        n = int(b.shape[0])
        nc = n * self.channels
        self._dims = (n, self.channels, b.count // nc if nc else 0)
        if getattr(self, "_mean", None) is None or self._mean.dtype != self.dtype:
            c = (self.channels,)
            self._mean = Blob(c, self.dtype, name=f"{self.name}/mean")
            self._var = Blob(c, self.dtype, name=f"{self.name}/var")
            self._std = Blob(c, self.dtype, name=f"{self.name}/std")
            self._std.data[...] = 1
        if top[0] is b and not self.use_global_stats:
            self._x_copy.reshape(self._dims)

    def forward(self, bottom, top):
        be = self.backend
        x = bottom[0].dev_data_as(self._dims)
        mean_b, var_b, factor_b = (blob.dev_data_as(-1) for blob in self.blobs)
        mean, std = self._mean.dev_data, self._std.dev_data
        if self.use_global_stats:
            be.bn_global_stats(mean_b, var_b, factor_b, self.eps, mean, std)
        else:
            var = self._var.dev_data
            be.bn_batch_stats(x, self.eps, mean, var, std)
            m = bottom[0].count // self.channels
            correction = self.dtype.type(m / (m - 1) if m > 1 else 1.0)
            be.bn_update_running(mean, var, self.maf, correction, mean_b, var_b, factor_b)
            if top[0] is bottom[0]:
                be.blob_copy(be.flat(x), self._x_copy.dev_data_as(-1))
        be.bn_normalize(x, mean, std, top[0].dev_data_as(self._dims))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        be = self.backend
        dy = top[0].dev_diff_as(self._dims)
        dx = bottom[0].dev_diff_as(self._dims)
        if self.use_global_stats:
            be.bn_backward_global(dy, self._std.dev_data, dx)
        else:
            x = self._x_copy if top[0] is bottom[0] else bottom[0]
            be.bn_backward(dy, x.dev_data_as(self._dims), self._mean.dev_data,
                           self._std.dev_data, dx)


class _BroadcastLayer(Layer):
    """Shared by Scale and Bias: an operand (a learned blob or bottom[1]) broadcast over the
    axes ``[axis, axis + operand.num_axes)`` of bottom[0]; the bottom is read as
    (outer, dim, inner) with dim the operand's count. A 0-axis (scalar) operand ignores ``axis``.
    """

    min_bottoms = 1
    max_bottoms = 2
    exact_tops = 1
    in_place_ok = True
    operand_name = "?"

    def _canonical_axis(self, blob):
        try:
            return blob.canonical_axis(int(self.param.axis))
        except ShapeError as e:
            raise self.shape_error(f"bad axis for {_bottom_name(self, 0)}: {e}", "axis") from None

    def _learned_shape(self, b0, num_axes):
        """The shape of a learned operand: bottom[0].shape[axis : axis + num_axes]."""
        axis = self._canonical_axis(b0)
        if num_axes < -1:
            raise self.config_error(f"num_axes must be >= 0, or -1 to extend to the end of "
                                    f"bottom[0], got {num_axes}", "num_axes")
        if num_axes >= 0 and b0.num_axes < axis + num_axes:
            raise self.shape_error(
                f"the {self.operand_name} blob's shape extends past {_bottom_name(self, 0)}'s "
                f"shape {b0.shape} when applied from axis {axis} with num_axes {num_axes}",
                "num_axes")
        end = None if num_axes == -1 else axis + num_axes
        return tuple(b0.shape[axis:end])

    def _broadcast_dims(self, b0, operand, what):
        """(outer, dim, inner) of bottom[0] for ``operand``; shape errors name both."""
        axis = 0 if operand.num_axes == 0 else self._canonical_axis(b0)
        k = operand.num_axes
        if b0.num_axes < axis + k or tuple(b0.shape[axis:axis + k]) != tuple(operand.shape):
            raise self.shape_error(
                f"{what} of shape {tuple(operand.shape)} does not match "
                f"{_bottom_name(self, 0)} of shape {b0.shape} from axis {axis}: it needs "
                f"bottom[0].shape[{axis}:{axis + k}] == {tuple(operand.shape)}")
        return (b0.count_range(0, axis), operand.count, b0.count_range(axis + k))

    def _operand(self, bottom):
        if len(bottom) > 1:
            return bottom[1], f"{_bottom_name(self, 1)}"
        return self.blobs[0], f"the {self.operand_name} blob"

    def _views(self, blob_array):
        return self.backend.view(blob_array, self._dims)

    def _flat(self, blob_array):
        return self.backend.flat(blob_array)


@register_layer("Scale")
class ScaleLayer(_BroadcastLayer):
    """y = x * gamma (+ beta), gamma broadcast over axes [axis, axis + num_axes) of bottom[0].

    gamma is a learned blob of shape bottom[0].shape[axis : axis + num_axes] (num_axes -1: to
    the end; 0: a scalar) filled by ``filler`` — constant 1 when unset — or, with two bottoms,
    bottom[1], whose shape must equal bottom[0].shape[axis : axis + bottom[1].num_axes]
    (num_axes is then ignored). bias_term adds a learned beta of gamma's shape filled by
    bias_filler (default constant 0), as Caffe's internal Bias layer does. Blobs: [gamma, beta]
    with one bottom, [beta] with two. Backward: dx = dy * gamma, dgamma = sum(dy * x) over the
    broadcast axes (accumulated for the learned blob, overwritten for bottom[1]),
    dbeta = sum(dy). In place a copy of the bottom is kept for dgamma, as in Caffe.
    """

    param_field = "scale_param"
    operand_name = "scale"

    def setup(self, bottom, top):
        p = self.param
        self.bias_term = bool(p.bias_term)
        b0 = bottom[0]
        if len(bottom) == 1 and not self.blobs:
            shape = self._learned_shape(b0, int(p.num_axes))
            filler = p.filler if p.has("filler") else Msg("FillerParameter",
                                                           {"type": "constant", "value": 1.0})
            self.blobs.append(self.new_param_blob(shape, filler))
        if self.bias_term and len(self.blobs) + len(bottom) < 3:
            num_axes = bottom[1].num_axes if len(bottom) > 1 else int(p.num_axes)
            self.blobs.append(self.new_param_blob(self._learned_shape(b0, num_axes),
                                                  p.bias_filler))
        self._x_copy = Blob((), self.dtype, name=f"{self.name}/x_copy")

    def reshape(self, bottom, top):
        operand, what = self._operand(bottom)
        self._dims = self._broadcast_dims(bottom[0], operand, what)
        if self.bias_term and self.blobs[-1].count != operand.count:
            raise self.shape_error(f"the bias blob of shape {self.blobs[-1].shape} does not "
                                   f"match {what} of shape {operand.shape}")
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)
        else:
            self._x_copy.reshape(self._dims)

    def forward(self, bottom, top):
        be = self.backend
        x = self._views(bottom[0].dev_data)
        operand, _ = self._operand(bottom)
        gamma = self._flat(operand.dev_data)
        if top[0] is bottom[0]:
            be.blob_copy(self._flat(x), self._flat(self._x_copy.dev_data))
        out = self._views(top[0].dev_data)
        if self.bias_term:
            be.scale_bias_forward(x, gamma, self._flat(self.blobs[-1].dev_data), out)
        else:
            be.scale_forward(x, gamma, out)

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        dy = self._views(top[0].dev_diff)
        if self.bias_term:
            be.bias_param_backward(dy, True, self._flat(self.blobs[-1].dev_diff))
        learned = len(bottom) == 1
        operand, _ = self._operand(bottom)
        if learned or propagate_down[1]:
            x = self._x_copy if top[0] is bottom[0] else bottom[0]
            be.scale_param_backward(dy, self._views(x.dev_data), learned,
                                    self._flat(operand.dev_diff))
        if propagate_down[0]:
            be.scale_forward(dy, self._flat(operand.dev_data), self._views(bottom[0].dev_diff))


@register_layer("Bias")
class BiasLayer(_BroadcastLayer):
    """y = x + b, b broadcast over axes [axis, axis + num_axes) of bottom[0] as in Scale.

    b is a learned blob (filler default constant 0) with one bottom, or bottom[1]. Backward:
    dx = dy, db = sum(dy) over the broadcast axes (accumulated for the learned blob,
    overwritten for bottom[1]). In place allowed.
    """

    param_field = "bias_param"
    operand_name = "bias"

    def setup(self, bottom, top):
        if len(bottom) == 1 and not self.blobs:
            shape = self._learned_shape(bottom[0], int(self.param.num_axes))
            self.blobs.append(self.new_param_blob(shape, self.param.filler))

    def reshape(self, bottom, top):
        operand, what = self._operand(bottom)
        self._dims = self._broadcast_dims(bottom[0], operand, what)
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        operand, _ = self._operand(bottom)
        self.backend.bias_forward(self._views(bottom[0].dev_data), self._flat(operand.dev_data),
                                  self._views(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        learned = len(bottom) == 1
        operand, _ = self._operand(bottom)
        if learned or propagate_down[1]:
            be.bias_param_backward(self._views(top[0].dev_diff), learned,
                                   self._flat(operand.dev_diff))
        if propagate_down[0] and top[0] is not bottom[0]:
            be.blob_copy(self._flat(top[0].dev_diff), self._flat(bottom[0].dev_diff))


@register_layer("LRN")
class LRNLayer(Layer):
    """Local response normalization of a 4-D (N, C, H, W) bottom; local_size n must be odd.

    ACROSS_CHANNELS: scale = k + alpha / n * sum of x^2 over the n channels centred on c (zero
    padded), y = x * scale^-beta.
    WITHIN_CHANNEL: Caffe composes it from Power, AVE Pooling (kernel n, pad (n-1)/2, stride 1)
    and Power(shift 1, scale alpha, power -beta): y = x * (1 + alpha * avg)^-beta, avg the sum
    of x^2 over the n x n window around (h, w) (zero padded) divided by n^2 everywhere, borders
    included (the padded window is always n x n). ``k`` is not used in this mode.
    Backward (both): dx = dy * scale^-beta - 2 * alpha * beta / |W| * x * sum over the window of
    dy * y / scale, with |W| = n (across) or n^2 (within). ``engine`` is accepted and ignored.
    """

    exact_bottoms = 1
    exact_tops = 1
    param_field = "lrn_param"

    def setup(self, bottom, top):
        p = self.param
        self.size = int(p.local_size)
        if self.size % 2 != 1:
            raise self.config_error(f"LRN only supports odd values for local_size, got "
                                    f"{self.size}", "local_size")
        self.alpha = self.dtype.type(p.alpha)
        self.beta = self.dtype.type(p.beta)
        self.k = self.dtype.type(p.k)
        self.across = p.norm_region == "ACROSS_CHANNELS"

    def reshape(self, bottom, top):
        b = bottom[0]
        if b.num_axes != 4:
            raise self.shape_error(f"input must have 4 axes (num, channels, height, width); "
                                   f"{_bottom_name(self, 0)} has shape {b.shape}")
        top[0].reshape(b.shape)
        n, c, h, w = b.shape
        self._view = (n, c, h * w) if self.across else (n * c, h, w)
        if getattr(self, "_scale", None) is None:
            self._scale, self._ratio, self._tmp = (
                Blob((), self.dtype, name=f"{self.name}/{what}")
                for what in ("scale", "ratio", "tmp"))
        self._scale.reshape(self._view)
        self._ratio.reshape(self._view)
        if not self.across:
            self._tmp.reshape(self._view)

    def forward(self, bottom, top):
        be = self.backend
        x = bottom[0].dev_data_as(self._view)
        out = top[0].dev_data_as(self._view)
        scale = self._scale.dev_data
        if self.across:
            be.lrn_across_forward(x, self.size, self.dtype.type(self.alpha / self.size),
                                  self.beta, self.k, scale, out)
        else:
            be.lrn_within_forward(x, self.size, self.alpha, self.beta, self._tmp.dev_data,
                                  scale, out)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        be = self.backend
        x = bottom[0].dev_data_as(self._view)
        dy = top[0].dev_diff_as(self._view)
        dx = bottom[0].dev_diff_as(self._view)
        scale, ratio = self._scale.dev_data, self._ratio.dev_data
        if self.across:
            cache_ratio = self.dtype.type(2.0 * self.alpha * self.beta / self.size)
            be.lrn_across_backward(x, scale, dy, self.size, cache_ratio, self.beta, ratio, dx)
        else:
            be.lrn_within_backward(x, scale, dy, self.size, self.alpha, self.beta, ratio,
                                   self._tmp.dev_data, dx)


@register_layer("MVN")
class MVNLayer(Layer):
    """Mean-variance normalization per (n, c) — per n when across_channels.

    y = x - mean, then y / (std + eps) when normalize_variance, std = sqrt(biased variance):
    Caffe adds eps to the standard deviation, not to the variance. Like Caffe, the top is
    shaped with the legacy 4-D accessors (num, channels, height, width): a 2-D (N, C) bottom
    gives an (N, C, 1, 1) top, and more than 4 axes is an error. Backward is Caffe's:
    dx = (dy - mean(dy) - y * mean(dy * y)) / (std + eps) (exact up to eps), or dx = dy - mean(dy)
    without variance normalization. In place works for 4-D bottoms (a copy of the bottom is
    kept for backward).
    """

    exact_bottoms = 1
    exact_tops = 1
    in_place_ok = True
    param_field = "mvn_param"

    def setup(self, bottom, top):
        p = self.param
        self.normalize_variance = bool(p.normalize_variance)
        self.across_channels = bool(p.across_channels)
        self.eps = self.dtype.type(p.eps)
        self._x_copy = Blob((), self.dtype, name=f"{self.name}/x_copy")

    def reshape(self, bottom, top):
        b = bottom[0]
        if b.num_axes > 4:
            raise self.shape_error(f"uses Caffe's legacy (num, channels, height, width) shape, so "
                                   f"{_bottom_name(self, 0)} may have at most 4 axes; got "
                                   f"{b.shape}")
        shape4 = tuple(b.shape) + (1,) * (4 - b.num_axes)
        if top[0] is b:
            if b.shape != shape4:
                raise self.shape_error(f"in place needs a 4-D bottom (Caffe reshapes the top to "
                                       f"4-D); {_bottom_name(self, 0)} has shape {b.shape}")
        else:
            top[0].reshape(shape4)
        rows = shape4[0] if self.across_channels else shape4[0] * shape4[1]
        self._view = (rows, b.count // rows if rows else 0)
        if getattr(self, "_mean", None) is None or self._mean.shape[0] != rows:
            self._mean = Blob((rows,), self.dtype, name=f"{self.name}/mean")
            self._std = Blob((rows,), self.dtype, name=f"{self.name}/std")
            self._std.data[...] = 1
        if top[0] is b:
            self._x_copy.reshape(self._view)

    def forward(self, bottom, top):
        be = self.backend
        x = bottom[0].dev_data_as(self._view)
        if top[0] is bottom[0]:
            be.blob_copy(be.flat(x), self._x_copy.dev_data_as(-1))
        be.mvn_forward(x, self.normalize_variance, self.eps, self._mean.dev_data,
                       self._std.dev_data, top[0].dev_data_as(self._view))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = self._x_copy if top[0] is bottom[0] else bottom[0]
        self.backend.mvn_backward(top[0].dev_diff_as(self._view),
                                  x.dev_data_as(self._view), self._mean.dev_data,
                                  self._std.dev_data, self.normalize_variance,
                                  bottom[0].dev_diff_as(self._view))
