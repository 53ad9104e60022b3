"""Neuron layers: element-wise activations (ReLU, Sigmoid, TanH) and Dropout.

Every layer here maps one bottom to one top of the same shape and may run in place (top is
bottom). Backward reads whatever Caffe reads (bottom data for ReLU, top data for Sigmoid and
TanH), so an in-place run gives the same gradients as an out-of-place one.
"""
from __future__ import annotations

import numpy as np

from .base import Layer, register_layer


def _flat(a):
    return a.reshape(-1)


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
        self.backend.relu_forward(_flat(bottom[0].data), self.slope, _flat(top[0].data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.relu_backward(_flat(top[0].diff), _flat(bottom[0].data), self.slope,
                                   _flat(bottom[0].diff))


@register_layer("Sigmoid")
class SigmoidLayer(NeuronLayer):
    """y = 1 / (1 + exp(-x)); dx = dy * y * (1 - y), from the top data.

    Caffe's CPU code writes the same function as 0.5 * tanh(x / 2) + 0.5; the exp form is
    several times faster here and saturates to exactly 0 / 1 without NaNs.
    """

    param_field = "sigmoid_param"

    def forward(self, bottom, top):
        self.backend.sigmoid_forward(_flat(bottom[0].data), _flat(top[0].data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.sigmoid_backward(_flat(top[0].diff), _flat(top[0].data),
                                      _flat(bottom[0].diff))


@register_layer("TanH")
class TanHLayer(NeuronLayer):
    """y = tanh(x); dx = dy * (1 - y^2)."""

    param_field = "tanh_param"

    def forward(self, bottom, top):
        self.backend.tanh_forward(_flat(bottom[0].data), _flat(top[0].data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.tanh_backward(_flat(top[0].diff), _flat(top[0].data),
                                   _flat(bottom[0].diff))


@register_layer("Dropout")
class DropoutLayer(NeuronLayer):
    """Inverted dropout, p = dropout_param.dropout_ratio (default 0.5, must be in [0, 1)).

    TRAIN: mask ~ Bernoulli(1 - p) per element, drawn from the layer's RNG at every forward;
    y = x * mask / (1 - p), so the expected activation is unchanged and TEST needs no rescaling.
    Backward uses the same mask: dx = dy * mask / (1 - p).
    TEST: y = x and dx = dy.
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
        self._mask_bool = np.zeros(0, bool)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if self._mask_bool.size != bottom[0].count:
            self._mask_bool = np.zeros(bottom[0].count, bool)

    @property
    def mask(self) -> np.ndarray:
        """The last TRAIN forward's keep mask (uint8 0/1, flat)."""
        return self._mask_bool.view(np.uint8)

    def forward(self, bottom, top):
        x, y = _flat(bottom[0].data), _flat(top[0].data)
        if self.phase == "TRAIN":
            u = self.rng.random(x.size, dtype=np.float32)
            np.less(u, self.keep_prob, out=self._mask_bool)
            self.backend.dropout_forward(x, self.mask, self.scale, y)
        elif top[0].data is not bottom[0].data:
            self.backend.blob_copy(x, y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy, dx = _flat(top[0].diff), _flat(bottom[0].diff)
        if self.phase == "TRAIN":
            self.backend.dropout_backward(dy, self.mask, self.scale, dx)
        elif top[0].diff is not bottom[0].diff:
            self.backend.blob_copy(dy, dx)
