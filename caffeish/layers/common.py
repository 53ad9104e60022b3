"""Common (weight) layers: InnerProduct."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .base import Layer, register_layer


@register_layer("InnerProduct")
class InnerProductLayer(Layer):
    """Fully connected: y = x W^T + b, the bottom flattened from ``axis`` on.

    With M = product of the bottom dims before ``axis`` and K = product from ``axis`` on, the
    bottom is read as an (M, K) matrix and the top has shape ``bottom.shape[:axis] +
    (num_output,)``. Blobs (Caffe's order): weights (num_output, K) — (K, num_output) when
    ``transpose`` — and bias (num_output,) when ``bias_term``. ``axis`` may be negative.
    K is fixed by the weights: a later bottom with another K is a shape error (Caffe's "Input
    size incompatible with inner product parameters").
    """

    exact_bottoms = 1
    exact_tops = 1
    param_field = "inner_product_param"

    def _axis(self, blob):
        try:
            return blob.canonical_axis(int(self.param.axis))
        except ShapeError as e:
            raise self.shape_error(f"bad axis: {e}", "axis") from None

    def setup(self, bottom, top):
        p = self.param
        if not p.has("num_output") or int(p.num_output) < 1:
            raise self.config_error("inner_product_param.num_output must be set to a positive "
                                    "number", "num_output")
        self.num_output = int(p.num_output)
        self.bias_term = bool(p.bias_term)
        self.transpose = bool(p.transpose)
        axis = self._axis(bottom[0])
        k = bottom[0].count_range(axis)
        if self.blobs:
            return
        wshape = (k, self.num_output) if self.transpose else (self.num_output, k)
        self.blobs.append(self.new_param_blob(wshape, p.weight_filler))
        if self.bias_term:
            self.blobs.append(self.new_param_blob((self.num_output,), p.bias_filler))

    @property
    def K(self) -> int:
        w = self.blobs[0].shape
        return int(w[0] if self.transpose else w[1])

    def reshape(self, bottom, top):
        axis = self._axis(bottom[0])
        k = bottom[0].count_range(axis)
        if k != self.K:
            name = self.layer_param.bottom[0] if self.layer_param.bottom else "bottom[0]"
            raise self.shape_error(
                f"input size incompatible with the weights: bottom '{name}' of shape "
                f"{bottom[0].shape} gives K = {k} inputs per example (product of dims from "
                f"axis {axis}), but the weight blob {self.blobs[0].shape} expects K = {self.K}")
        self.M = bottom[0].count_range(0, axis)
        top[0].reshape(bottom[0].shape[:axis] + (self.num_output,))
        if self.bias_term:
            bm = getattr(self, "_bias_multiplier", None)
            if bm is None or bm.shape[0] != self.M or bm.dtype != self.dtype:
                self._bias_multiplier = np.ones((self.M, 1), self.dtype)

    def forward(self, bottom, top):
        be = self.backend
        x = bottom[0].data.reshape(self.M, self.K)
        y = top[0].data.reshape(self.M, self.num_output)
        be.gemm(x, self.blobs[0].data, out=y, trans_b=not self.transpose)
        if self.bias_term:
            be.gemm(self._bias_multiplier, self.blobs[1].data.reshape(1, self.num_output),
                    out=y, beta=1.0)

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        n = self.num_output
        dy = top[0].diff.reshape(self.M, n)
        x = bottom[0].data.reshape(self.M, self.K)
        w = self.blobs[0]
        if self.transpose:
            be.gemm(x, dy, out=w.diff, trans_a=True, beta=1.0)
        else:
            be.gemm(dy, x, out=w.diff, trans_a=True, beta=1.0)
        if self.bias_term:
            be.gemm(self._bias_multiplier, dy, out=self.blobs[1].diff.reshape(1, n),
                    trans_a=True, beta=1.0)
        if propagate_down[0]:
            dx = bottom[0].diff.reshape(self.M, self.K)
            be.gemm(dy, w.data, out=dx, trans_b=self.transpose)
