"""Neuron layers: element-wise activations and Dropout.

ReLU, Sigmoid, TanH, Dropout, PReLU, ELU, AbsVal, BNLL, Power, Exp, Log, Threshold, Clip, Swish.
Every layer here maps one bottom to one top of the same shape. All but AbsVal may run in place
(top is bottom; Caffe's AbsVal refuses it). Backward reads whatever Caffe reads (bottom data for
ReLU, top data for Sigmoid and TanH, ...); a layer whose backward needs the bottom data x and
could not get it back from y keeps a private copy of x when it runs in place, as Caffe's PReLU
does, so an in-place run gives the same gradients as an out-of-place one.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import get_backend
from ..blob import Blob
from ..config.schema import Msg
from .base import Layer, register_layer


def _flat(a):
    return get_backend().flat(a)


class NeuronLayer(Layer):
    """One bottom, one top of the bottom's shape; in place allowed."""

    exact_bottoms = 1
    exact_tops = 1
    in_place_ok = True

    def reshape(self, bottom, top):
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)


@register_layer("ReLU")
class ReLULayer(NeuronLayer):
    """y = max(x, 0) + negative_slope * min(x, 0) (leaky when negative_slope != 0).

    Backward: dx = dy * ((x > 0) + negative_slope * (x <= 0)), read from the bottom data; in
    place the bottom data is y, which has x's sign whenever negative_slope >= 0 (as in Caffe).
    The gradient at x == 0 is negative_slope. ``engine`` is accepted and ignored.
    """

    param_field = "relu_param"

    def setup(self, bottom, top):
        self.slope = self.dtype.type(self.param.negative_slope)

    def forward(self, bottom, top):
        self.backend.relu_forward(_flat(bottom[0].dev_data), self.slope, _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.relu_backward(_flat(top[0].dev_diff), _flat(bottom[0].dev_data), self.slope,
                                   _flat(bottom[0].dev_diff))


@register_layer("Sigmoid")
class SigmoidLayer(NeuronLayer):
    """y = 1 / (1 + exp(-x)); dx = dy * y * (1 - y), from the top data.

    Caffe's CPU code writes the same function as 0.5 * tanh(x / 2) + 0.5; the exp form is
    several times faster here and saturates to exactly 0 / 1 without NaNs.
    """

    param_field = "sigmoid_param"

    def forward(self, bottom, top):
        self.backend.sigmoid_forward(_flat(bottom[0].dev_data), _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.sigmoid_backward(_flat(top[0].dev_diff), _flat(top[0].dev_data),
                                      _flat(bottom[0].dev_diff))


@register_layer("TanH")
class TanHLayer(NeuronLayer):
    """y = tanh(x); dx = dy * (1 - y^2)."""

    param_field = "tanh_param"

    def forward(self, bottom, top):
        self.backend.tanh_forward(_flat(bottom[0].dev_data), _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.tanh_backward(_flat(top[0].dev_diff), _flat(top[0].dev_data),
                                   _flat(bottom[0].dev_diff))


@register_layer("Dropout")
class DropoutLayer(NeuronLayer):
    """Inverted dropout, p = dropout_param.dropout_ratio (default 0.5, must be in [0, 1)).

    TRAIN: mask ~ Bernoulli(1 - p) per element, redrawn at every forward; y = x * mask / (1 - p),
    so the expected activation is unchanged and TEST needs no rescaling (Caffe's scaling).
    Backward uses the same mask: dx = dy * mask / (1 - p). TEST: y = x and dx = dy.
    The mask is counter-based: each forward draws one 64-bit key from the layer's RNG and the
    kernel keeps element i when Philox-2x32(key, i) >= ceil(p * 2^32), so the CPU and the GPU
    build the same mask and a resumed run (the RNG state is snapshotted) draws the same masks.
    """

    param_field = "dropout_param"

    def setup(self, bottom, top):
        ratio = float(self.param.dropout_ratio)
        if not 0.0 <= ratio < 1.0:
            raise self.config_error(f"dropout_ratio must be in [0, 1), got {ratio}",
                                    "dropout_ratio")
        self.threshold = self.dtype.type(ratio)
        self.scale = self.dtype.type(1.0 / (1.0 - float(self.threshold)))
        self.keep_prob = 1.0 - float(self.threshold)
        self.uint_thresh = np.uint64(math.ceil(float(self.threshold) * 2.0 ** 32))
        self._mask = Blob((0,), np.uint8, name=f"{self.name}.mask")

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self._mask.reshape((bottom[0].count,))

    @property
    def mask(self) -> np.ndarray:
        """The last TRAIN forward's keep mask (uint8 0/1, flat, on the host)."""
        return self._mask.data_readonly()

    def forward(self, bottom, top):
        x, y = _flat(bottom[0].dev_data), _flat(top[0].dev_data)
        if self.phase == "TRAIN":
            key = self.rng.integers(0, 2 ** 64, dtype=np.uint64, endpoint=False)
            self.backend.dropout_forward(x, key, self.uint_thresh, self.scale,
                                         self._mask.dev_data, y)
        elif top[0] is not bottom[0]:
            self.backend.blob_copy(x, y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = _flat(top[0].dev_diff), _flat(bottom[0].dev_diff)
        if self.phase == "TRAIN":
            self.backend.dropout_backward(dy, self._mask.dev_data, self.scale, dx)
        elif top[0] is not bottom[0]:
            self.backend.blob_copy(dy, dx)


class _BottomKeepingNeuron(NeuronLayer):
    """A neuron layer whose backward reads the bottom data x.

    In place (top is bottom) forward first copies x to a private buffer, as Caffe's PReLU does
    with its ``bottom_memory_``, and backward reads that copy instead of y.
    """

    _bottom_memory = None

    def keeps_bottom(self) -> bool:
        """Whether backward needs x at all (a subclass may say no for some parameters)."""
        return True

    def _save_bottom(self, bottom, top):
        if top[0] is bottom[0] and self.keeps_bottom():
            buf = self._bottom_memory
            if buf is None:
                buf = self._bottom_memory = Blob((0,), self.dtype, name=f"{self.name}.bottom")
            buf.reshape((bottom[0].count,))
            self.backend.blob_copy(_flat(bottom[0].dev_data), buf.dev_data)

    def _bottom_x(self, top, bottom):
        if top[0] is bottom[0] and self.keeps_bottom():
            return self._bottom_memory.dev_data
        return _flat(bottom[0].dev_data)


@register_layer("PReLU")
class PReLULayer(_BottomKeepingNeuron):
    """y = max(x, 0) + a_c * min(x, 0), a learned slope per channel (axis 1) or one shared.

    prelu_param: ``filler`` (default constant 0.25), ``channel_shared`` (default false).
    Bottom: N-D with at least 2 axes, channels on axis 1. Blob 0: the slopes, shape (C,), or
    shape () (one value) when channel_shared, as in Caffe.
    Backward: dx = dy * ((x > 0) + a_c * (x <= 0)) (the gradient at x == 0 is a_c);
    d a_c += sum over channel c of dy * x * (x <= 0). In place, x is kept from the forward.
    """

    param_field = "prelu_param"

    def _check_axes(self, bottom):
        if bottom[0].num_axes < 2:
            raise self.shape_error(f"the bottom needs at least 2 axes (N, C, ...), got shape "
                                   f"{bottom[0].shape}")

    def setup(self, bottom, top):
        self._check_axes(bottom)
        self.channel_shared = bool(self.param.channel_shared)
        channels = int(bottom[0].shape[1])
        if self.param.has("filler"):
            filler = self.param.filler
        else:
            filler = Msg("FillerParameter", {"type": "constant", "value": 0.25})
        self.blobs.append(self.new_param_blob(() if self.channel_shared else (channels,),
                                              filler))

    def reshape(self, bottom, top):
        self._check_axes(bottom)
        channels = int(bottom[0].shape[1])
        if not self.channel_shared and self.blobs[0].count != channels:
            raise self.shape_error(
                f"the bottom has {channels} channels (axis 1, shape {bottom[0].shape}) but the "
                f"layer has {self.blobs[0].count} slopes; set channel_shared: true for one "
                f"slope shared by all channels")
        super().reshape(bottom, top)
        self.channels = channels
        self.inner = bottom[0].count_range(2)
        self.div_factor = channels if self.channel_shared else 1

    def _layout(self):
        return self.channels, self.inner, self.div_factor

    def forward(self, bottom, top):
        self._save_bottom(bottom, top)
        self.backend.prelu_forward(_flat(bottom[0].dev_data), _flat(self.blobs[0].dev_data),
                                   *self._layout(), _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        x = self._bottom_x(top, bottom)
        dy = _flat(top[0].dev_diff)
        self.backend.prelu_slope_backward(dy, x, *self._layout(), _flat(self.blobs[0].dev_diff))
        if propagate_down[0]:
            self.backend.prelu_backward(dy, x, _flat(self.blobs[0].dev_data), *self._layout(),
                                        _flat(bottom[0].dev_diff))


@register_layer("ELU")
class ELULayer(_BottomKeepingNeuron):
    """y = x if x > 0 else alpha * (exp(x) - 1); elu_param.alpha (default 1).

    Backward: dx = dy * ((x > 0) + (alpha + y) * (x <= 0)), from the bottom and top data. In
    place with alpha >= 0, y > 0 exactly when x > 0, so y stands in for x as in Caffe; with
    alpha < 0 a copy of x is kept.
    """

    param_field = "elu_param"

    def setup(self, bottom, top):
        self.alpha = self.dtype.type(self.param.alpha)

    def keeps_bottom(self):
        return self.alpha < 0

    def forward(self, bottom, top):
        self._save_bottom(bottom, top)
        self.backend.elu_forward(_flat(bottom[0].dev_data), self.alpha, _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.elu_backward(_flat(top[0].dev_diff), self._bottom_x(top, bottom),
                                  _flat(top[0].dev_data), self.alpha, _flat(bottom[0].dev_diff))


@register_layer("AbsVal")
class AbsValLayer(NeuronLayer):
    """y = |x|; dx = dy * sign(x) with sign(0) = 0. Cannot run in place (as in Caffe)."""

    in_place_ok = False

    def reshape(self, bottom, top):
        if top[0] is bottom[0]:
            raise self.config_error("cannot run in place; give the top its own name")
        super().reshape(bottom, top)

    def forward(self, bottom, top):
        self.backend.absval_forward(_flat(bottom[0].dev_data), _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.absval_backward(_flat(top[0].dev_diff), _flat(bottom[0].dev_data),
                                     _flat(bottom[0].dev_diff))


@register_layer("BNLL")
class BNLLLayer(_BottomKeepingNeuron):
    """Binomial normal log likelihood: y = log(1 + exp(x)), computed without overflow as
    x + log1p(exp(-x)) for x > 0 and log1p(exp(x)) otherwise (Caffe's form, with log1p).

    Backward: dx = dy * e / (e + 1), e = exp(min(x, 50)) (Caffe's kBNLL_THRESHOLD).
    """

    def forward(self, bottom, top):
        self._save_bottom(bottom, top)
        self.backend.bnll_forward(_flat(bottom[0].dev_data), _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.bnll_backward(_flat(top[0].dev_diff), self._bottom_x(top, bottom),
                                   _flat(bottom[0].dev_diff))


@register_layer("Power")
class PowerLayer(_BottomKeepingNeuron):
    """y = (shift + scale * x)^power; power_param: power 1, scale 1, shift 0.

    As in Caffe, when power * scale == 0 the input is ignored: y = 1 if power == 0, else
    shift^power, and the gradient is 0. A negative base with a non-integer power gives NaN, a
    zero base with a negative power inf (C's pow).
    Backward: dx = dy * power * scale * (shift + scale * x)^(power - 1), written directly
    rather than as Caffe's power * y / (shift + scale * x); the two agree except at a zero
    base, where Caffe's quotient is 0/0 = NaN and this one is the derivative's limit.
    """

    param_field = "power_param"

    def setup(self, bottom, top):
        t = self.dtype.type
        self.power, self.scale, self.shift = (t(self.param.power), t(self.param.scale),
                                              t(self.param.shift))

    def keeps_bottom(self):
        return not (self.power == 1 or self.power * self.scale == 0)

    def forward(self, bottom, top):
        self._save_bottom(bottom, top)
        self.backend.power_forward(_flat(bottom[0].dev_data), self.power, self.scale, self.shift,
                                   _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.power_backward(_flat(top[0].dev_diff), self._bottom_x(top, bottom), self.power,
                                    self.scale, self.shift, _flat(bottom[0].dev_diff))


def _log_of_base(layer, base: float) -> float:
    """ln(base) for exp_param/log_param, base -1 meaning e; Caffe's checks as ConfigErrors."""
    if base == -1:
        return 1.0
    if not base > 0:
        raise layer.config_error(f"base must be strictly positive (or -1 for e), got {base:g}",
                                 "base")
    log_base = math.log(base)
    if not math.isfinite(log_base):
        raise layer.config_error(f"log(base) = log({base:g}) is not finite", "base")
    return log_base


@register_layer("Exp")
class ExpLayer(NeuronLayer):
    """y = base^(shift + scale * x); exp_param: base -1 (meaning e), scale 1, shift 0.

    Computed as outer * exp(inner * x) with inner = ln(base) * scale and outer = base^shift.
    base must be > 0 unless it is -1. Backward: dx = dy * y * inner, from the top data.
    """

    param_field = "exp_param"

    def setup(self, bottom, top):
        p = self.param
        base = float(p.base)
        log_base = _log_of_base(self, base)
        shift = float(p.shift)
        if shift == 0:
            outer = 1.0
        else:
            outer = math.pow(base, shift) if base != -1 else math.exp(shift)
        self.inner_scale = self.dtype.type(log_base * float(p.scale))
        self.outer_scale = self.dtype.type(outer)

    def forward(self, bottom, top):
        self.backend.exp_forward(_flat(bottom[0].dev_data), self.inner_scale, self.outer_scale,
                                 _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.exp_backward(_flat(top[0].dev_diff), _flat(top[0].dev_data), self.inner_scale,
                                  _flat(bottom[0].dev_diff))


@register_layer("Log")
class LogLayer(_BottomKeepingNeuron):
    """y = log_base(shift + scale * x); log_param: base -1 (meaning e), scale 1, shift 0.

    base must be > 0 and != 1 unless it is -1. As in Caffe, an argument of 0 gives -inf and a
    negative one NaN (no error). Backward: dx = dy * scale / (ln(base) * (shift + scale * x)).
    """

    param_field = "log_param"

    def setup(self, bottom, top):
        p = self.param
        base = float(p.base)
        log_base = _log_of_base(self, base)
        if log_base == 0:
            raise self.config_error(f"1 / log(base) = 1 / log({base:g}) is infinite; base must "
                                    f"not be 1", "base")
        t = self.dtype.type
        self.base_scale = t(1.0 / log_base)
        self.scale, self.shift = t(p.scale), t(p.shift)
        self.num_scale = t(float(p.scale) / log_base)

    def forward(self, bottom, top):
        self._save_bottom(bottom, top)
        self.backend.log_forward(_flat(bottom[0].dev_data), self.scale, self.shift, self.base_scale,
                                 _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.log_backward(_flat(top[0].dev_diff), self._bottom_x(top, bottom), self.scale,
                                  self.shift, self.num_scale, _flat(bottom[0].dev_diff))


@register_layer("Threshold")
class ThresholdLayer(NeuronLayer):
    """y = 1 if x > threshold else 0; threshold_param.threshold (default 0).

    No gradient: Caffe's backward is NOT_IMPLEMENTED. force_backward skips this layer's bottom;
    a net that really needs a gradient through it (a learned layer below, a loss above) gets a
    ConfigError at its first backward, naming the layer.
    """

    param_field = "threshold_param"

    def setup(self, bottom, top):
        self.threshold = self.dtype.type(self.param.threshold)

    def allow_force_backward(self, bottom_index):
        return False

    def forward(self, bottom, top):
        self.backend.threshold_forward(_flat(bottom[0].dev_data), self.threshold,
                                       _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            raise self.config_error(
                "has no gradient (Caffe's Threshold backward is not implemented), but the net "
                "asked for one: keep the layer off the path from learned parameters to the loss, "
                "or set propagate_down: false on it")


@register_layer("Clip")
class ClipLayer(_BottomKeepingNeuron):
    """y = max(min, min(x, max)); clip_param.min and clip_param.max are required.

    Backward: dx = dy where min <= x <= max (both ends included, as in Caffe), 0 elsewhere.
    """

    param_field = "clip_param"

    def setup(self, bottom, top):
        for field in ("min", "max"):
            if not self.param.has(field):
                raise self.config_error(f"clip_param.{field} is required", field)
        self.lo = self.dtype.type(self.param.min)
        self.hi = self.dtype.type(self.param.max)

    def forward(self, bottom, top):
        self._save_bottom(bottom, top)
        self.backend.clip_forward(_flat(bottom[0].dev_data), self.lo, self.hi,
                                  _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.clip_backward(_flat(top[0].dev_diff), self._bottom_x(top, bottom), self.lo,
                                   self.hi, _flat(bottom[0].dev_diff))


@register_layer("Swish")
class SwishLayer(NeuronLayer):
    """y = x * sigmoid(beta * x); swish_param.beta (default 1).

    Forward keeps s = sigmoid(beta * x); backward: dx = dy * (beta * y + s * (1 - beta * y)),
    from the top data and s, so it runs in place without a copy of x.
    """

    param_field = "swish_param"

    def setup(self, bottom, top):
        self.beta = self.dtype.type(self.param.beta)
        self.sig = Blob((0,), self.dtype, name=f"{self.name}.sigmoid")

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.sig.reshape((bottom[0].count,))

    def forward(self, bottom, top):
        self.backend.swish_forward(_flat(bottom[0].dev_data), self.beta, self.sig.dev_data,
                                   _flat(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.swish_backward(_flat(top[0].dev_diff), _flat(top[0].dev_data),
                                    self.sig.dev_data, self.beta, _flat(bottom[0].dev_diff))
