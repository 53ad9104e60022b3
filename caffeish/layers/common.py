"""Common (weight) layers: InnerProduct, Embed."""
from __future__ import annotations

import numpy as np

from ..backend.cpu.norm_ops import embed_index
from ..blob import Blob
from ..errors import DataError, ShapeError
from .base import Layer, register_layer


def _ones_column(layer, m):
    """Caffe's bias multiplier: an (m, 1) Blob of ones, reused while m and the dtype hold."""
    bm = getattr(layer, "_bias_multiplier", None)
    if bm is None or bm.shape[0] != m or bm.dtype != layer.dtype:
        bm = Blob((m, 1), layer.dtype, name=f"{layer.name}/bias_multiplier")
        bm.data[...] = 1
    return bm


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
            self._bias_multiplier = _ones_column(self, self.M)

    def forward(self, bottom, top):
        be = self.backend
        n = self.num_output
        x = bottom[0].dev_data_as((self.M, self.K))
        y = top[0].dev_data_as((self.M, n))
        be.gemm(x, self.blobs[0].dev_data, out=y, trans_b=not self.transpose)
        if self.bias_term:
            be.gemm(self._bias_multiplier.dev_data, self.blobs[1].dev_data_as((1, n)),
                    out=y, beta=1.0)

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        n = self.num_output
        dy = top[0].dev_diff_as((self.M, n))
        x = bottom[0].dev_data_as((self.M, self.K))
        w = self.blobs[0]
        if self.transpose:
            be.gemm(x, dy, out=w.dev_diff, trans_a=True, beta=1.0)
        else:
            be.gemm(dy, x, out=w.dev_diff, trans_a=True, beta=1.0)
        if self.bias_term:
            be.gemm(self._bias_multiplier.dev_data, dy,
                    out=self.blobs[1].dev_diff_as((1, n)), trans_a=True, beta=1.0)
        if propagate_down[0]:
            dx = bottom[0].dev_diff_as((self.M, self.K))
            be.gemm(dy, w.dev_data, out=dx, trans_b=self.transpose)


@register_layer("Embed")
class EmbedLayer(Layer):
    """A lookup table: each bottom value is an index into the rows of the weights.

    embed_param: num_output N, input_dim K (both required), bias_term (default true),
    weight_filler, bias_filler. Blobs (Caffe's order): weights (K, N), bias (N,). Bottom of any
    shape holding whole numbers in [0, K) stored as floats (anything else is a DataError naming
    the position); top shape ``bottom.shape + (N,)``, ``top[..., :] = W[index] + b``.
    Gradients go to the weights (rows accumulate over repeated indices) and the bias only; the
    indices get none (zeros when asked; Caffe refuses), and force_backward skips them.
    The indices are checked on the host (the bottom is small); forward also groups the positions
    by weight row there, so the weight gradient is a race-free per-row gather on either backend.
    """

    exact_bottoms = 1
    exact_tops = 1
    param_field = "embed_param"

    def allow_force_backward(self, bottom_index):
        return False

    def setup(self, bottom, top):
        p = self.param
        for field in ("num_output", "input_dim"):
            if not p.has(field) or int(getattr(p, field)) < 1:
                raise self.config_error(f"embed_param.{field} must be set to a positive number",
                                        field)
        self.num_output = int(p.num_output)
        self.input_dim = int(p.input_dim)
        self.bias_term = bool(p.bias_term)
        wshape = (self.input_dim, self.num_output)
        if self.blobs:
            if tuple(self.blobs[0].shape) != wshape:
                raise self.shape_error(f"incorrect weight shape: expected {wshape}, got "
                                       f"{tuple(self.blobs[0].shape)}")
            return
        self.blobs.append(self.new_param_blob(wshape, p.weight_filler))
        if self.bias_term:
            self.blobs.append(self.new_param_blob((self.num_output,), p.bias_filler))

    def reshape(self, bottom, top):
        b = bottom[0]
        if top[0] is b:
            raise self.config_error("cannot run in place")
        top[0].reshape(tuple(b.shape) + (self.num_output,))
        self.M = b.count
        # host copies written by embed_index; Blobs (following the mode) read by the kernels
        if getattr(self, "_index", None) is None or self._index[0].shape[0] != self.M:
            k1 = self.input_dim + 1
            self._index = (np.zeros(self.M, np.int64), np.zeros(self.M, np.int64),
                           np.zeros(k1, np.int64))
            self._idx, self._order, self._starts = (
                Blob(shape, np.int64, name=f"{self.name}/{what}") for shape, what in
                (((self.M,), "index"), ((self.M,), "order"), ((k1,), "starts")))
            self._rows_stale = True
        if self.bias_term:
            self._bias_multiplier = _ones_column(self, self.M)

    def forward(self, bottom, top):
        be = self.backend
        x = bottom[0].data_readonly().reshape(-1)
        idx, order, starts = self._index
        pos = embed_index(x, self.input_dim, idx, order, starts)
        if pos >= 0:
            name = self.layer_param.bottom[0] if self.layer_param.bottom else "bottom[0]"
            raise DataError(self._msg(
                f"input {x[pos]!r} at position {pos} of bottom '{name}' is not a whole number "
                f"in [0, input_dim = {self.input_dim})"))
        be.blob_copy(idx, self._idx.dev_data)                # host -> the active backend
        self._rows_stale = True                              # order, starts: uploaded by backward
        n = self.num_output
        y = top[0].dev_data_as((self.M, n))
        be.gather_rows(self.blobs[0].dev_data, self._idx.dev_data, y)
        if self.bias_term:
            be.gemm(self._bias_multiplier.dev_data, self.blobs[1].dev_data_as((1, n)),
                    out=y, beta=1.0)

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        n = self.num_output
        dy = top[0].dev_diff_as((self.M, n))
        if self._rows_stale:
            be.blob_copy(self._index[1], self._order.dev_data)
            be.blob_copy(self._index[2], self._starts.dev_data)
            self._rows_stale = False
        be.embed_backward(dy, self._order.dev_data, self._starts.dev_data, True,
                          self.blobs[0].dev_diff)
        if self.bias_term:
            be.gemm(self._bias_multiplier.dev_data, dy,
                    out=self.blobs[1].dev_diff_as((1, n)), trans_a=True, beta=1.0)
        if propagate_down[0]:
            be.blob_set(self.dtype.type(0), bottom[0].dev_diff_as(-1))
