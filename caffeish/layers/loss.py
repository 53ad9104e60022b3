"""Softmax, the loss layers (SoftmaxWithLoss, EuclideanLoss) and Accuracy.

Loss tops are 0-d blobs (shape ``()``, one element), as in Caffe. A loss layer's backward scales
its gradient by ``top[0].diff`` (the loss weight the net writes there).
"""
from __future__ import annotations

import numpy as np

from ..config.schema import enum_symbol as _enum_name
from ..errors import DataError, ShapeError
from .base import Layer, register_layer




def _scalar(a) -> float:
    return float(a.reshape(-1)[0])


class _AxisMixin:
    """outer / channels / inner split of bottom[0] around a (possibly negative) axis."""

    def _split(self, blob, axis, field_msg, field):
        try:
            ax = blob.canonical_axis(int(axis))
        except ShapeError as e:
            where = field_msg.where(field) or self.where()
            raise ShapeError(f"{where + ': ' if where else ''}{self.describe()}: bad "
                             f"{field}: {e}") from None
        return ax, blob.count_range(0, ax), int(blob.shape[ax]), blob.count_range(ax + 1)

    def _check_labels(self, label_blob, outer, inner, what="softmax axis"):
        if label_blob.count != outer * inner:
            raise self.shape_error(
                f"number of labels must match number of predictions: the scores give "
                f"{outer} x {inner} = {outer * inner} predictions ({what} {self.axis}), but the "
                f"label blob {label_blob.shape} holds {label_blob.count}; e.g. if the axis is 1 "
                f"and the scores are (N, C, H, W), the labels must be N*H*W integers in "
                f"{{0, ..., C-1}}")

    def _validate_label_values(self, labels, channels, has_ignore, ignore_label):
        """Raise DataError for a label outside [0, C) that is not the ignore_label."""
        with np.errstate(invalid="ignore"):
            lab = labels.astype(np.int64)
        bad = (lab < 0) | (lab >= channels) | ~np.isfinite(labels)
        if has_ignore:
            bad &= lab != ignore_label
        if bad.any():
            k = int(np.flatnonzero(bad.reshape(-1))[0])
            value = labels.reshape(-1)[k]
            extra = f" (ignore_label is {ignore_label})" if has_ignore else ""
            raise DataError(self._msg(
                f"label value {value:g} at position {k} is outside [0, {channels}) — the scores "
                f"have {channels} classes along axis {self.axis}{extra}"))


@register_layer("Softmax")
class SoftmaxLayer(_AxisMixin, Layer):
    """y = exp(x - max) / sum(exp(x - max)) along softmax_param.axis (default 1, may be negative).

    Backward: dx = (dy - sum_c(dy * y)) * y, from the top's data and diff, so it may run in place.
    """

    exact_bottoms = 1
    exact_tops = 1
    in_place_ok = True
    param_field = "softmax_param"

    def reshape(self, bottom, top):
        self.axis, self.outer, self.channels, self.inner = self._split(
            bottom[0], self.param.axis, self.param, "axis")
        if top[0] is not bottom[0]:
            top[0].reshape(bottom[0].shape)

    def _view(self, a):
        return a.reshape(self.outer, self.channels, self.inner)

    def forward(self, bottom, top):
        self.backend.softmax_forward(self._view(bottom[0].data), self._view(top[0].data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.softmax_backward(self._view(top[0].diff), self._view(top[0].data),
                                      self._view(bottom[0].diff))


class LossLayer(Layer):
    """Caffe's LossLayer: two bottoms with the same first dimension, a 0-d loss top.

    Only the first bottom gets a gradient unless a subclass says otherwise (labels cannot be
    back-propagated to, so force_backward skips them).
    """

    is_loss = True
    exact_bottoms = 2
    min_tops = 1

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    def reshape(self, bottom, top):
        b0, b1 = bottom[0], bottom[1]
        if b0.num_axes == 0 or b1.num_axes == 0 or b0.shape[0] != b1.shape[0]:
            names = list(self.layer_param.bottom)
            if len(names) != 2:
                names = ["bottom[0]", "bottom[1]"]
            raise self.shape_error(
                f"the data and label should have the same first dimension: "
                f"'{names[0]}' is {b0.shape}, '{names[1]}' is {b1.shape}")
        top[0].reshape(())


@register_layer("SoftmaxWithLoss")
class SoftmaxWithLossLayer(_AxisMixin, LossLayer):
    """Softmax + multinomial logistic loss in one numerically stable layer.

    Bottoms: scores (..., C, ...) with C at softmax_param.axis, and labels holding outer*inner
    integer class indices (outer = dims before the axis, inner = dims after). Top 0: the loss,
    ``-sum(log(max(p[label], FLT_MIN))) / normalizer``; optional top 1: the probabilities.

    loss_param.ignore_label (when set) skips those positions in the loss, the gradient and the
    VALID count. loss_param.normalization: FULL = outer*inner, VALID (default) = non-ignored
    count, BATCH_SIZE = outer, NONE = 1; the normalizer is clamped to >= 1 (so an all-ignored
    batch gives loss 0, not NaN). The legacy ``normalize`` field, when set and ``normalization``
    is not, means VALID (true) or BATCH_SIZE (false).

    Backward reaches the scores only: dx = (p - onehot(label)) * loss_weight / normalizer.
    A label outside [0, C) that is not ignore_label is a DataError.
    """

    max_tops = 2
    param_field = "loss_param"

    def setup(self, bottom, top):
        lp = self.param
        self.has_ignore = lp.has("ignore_label")
        self.ignore_label = int(lp.ignore_label) if self.has_ignore else 0
        if not lp.has("normalization") and lp.has("normalize"):
            self.normalization = "VALID" if lp.normalize else "BATCH_SIZE"
        else:
            self.normalization = _enum_name(lp.normalization, "LossParameter.NormalizationMode")
        if self.normalization not in ("FULL", "VALID", "BATCH_SIZE", "NONE"):
            raise self.config_error(f"unknown normalization mode {self.normalization!r}",
                                    "normalization")
        self.prob = None
        self.valid_count = 0

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        sp = self.layer_param.softmax_param
        self.axis, self.outer, self.channels, self.inner = self._split(
            bottom[0], sp.axis, sp, "axis")
        self._check_labels(bottom[1], self.outer, self.inner)
        if self.prob is None or self.prob.shape != bottom[0].shape or \
                self.prob.dtype != self.dtype:
            self.prob = np.zeros(bottom[0].shape, self.dtype)
        if len(top) >= 2:
            top[1].reshape(bottom[0].shape)

    def _view(self, a):
        return a.reshape(self.outer, self.channels, self.inner)

    def get_normalizer(self, valid_count: int) -> float:
        mode = self.normalization
        if mode == "FULL":
            n = self.outer * self.inner
        elif mode == "VALID":
            n = valid_count
        elif mode == "BATCH_SIZE":
            n = self.outer
        else:
            n = 1
        return float(max(1, n))

    def forward(self, bottom, top):
        be = self.backend
        labels = bottom[1].data.reshape(self.outer, self.inner)
        self._validate_label_values(labels, self.channels, self.has_ignore, self.ignore_label)
        prob = self._view(self.prob)
        be.softmax_forward(self._view(bottom[0].data), prob)
        loss, count = be.softmax_loss_forward(prob, labels, self.ignore_label, self.has_ignore)
        self.valid_count = int(count)
        top[0].data[...] = loss / self.get_normalizer(self.valid_count)
        if len(top) >= 2:
            be.blob_copy(self.prob.reshape(-1), top[1].data.reshape(-1))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        labels = bottom[1].data.reshape(self.outer, self.inner)
        scale = _scalar(top[0].diff) / self.get_normalizer(self.valid_count)
        self.backend.softmax_loss_backward(self._view(self.prob), labels, self.ignore_label,
                                           self.has_ignore, self.dtype.type(scale),
                                           self._view(bottom[0].diff))


@register_layer("EuclideanLoss")
class EuclideanLossLayer(LossLayer):
    """loss = sum((a - b)^2) / (2 N), N = bottom[0].shape[0].

    Both bottoms need the same first dimension and the same count per example. Gradients go to
    both (b is often a target, but may be learned): da = w (a - b) / N, db = -w (a - b) / N,
    w the loss weight.
    """

    def allow_force_backward(self, bottom_index):
        return True

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count_range(1) != bottom[1].count_range(1):
            raise self.shape_error(
                f"inputs must have the same dimension: {bottom[0].shape} has "
                f"{bottom[0].count_range(1)} values per example, {bottom[1].shape} has "
                f"{bottom[1].count_range(1)}")
        diff = getattr(self, "diff", None)
        if diff is None or diff.size != bottom[0].count or diff.dtype != self.dtype:
            self.diff = np.zeros(bottom[0].count, self.dtype)

    def forward(self, bottom, top):
        ss = self.backend.euclidean_loss_forward(bottom[0].data.reshape(-1),
                                                 bottom[1].data.reshape(-1), self.diff)
        top[0].data[...] = ss / bottom[0].shape[0] / 2.0

    def backward(self, top, propagate_down, bottom):
        w = _scalar(top[0].diff)
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                alpha = self.dtype.type(sign * w / bottom[i].shape[0])
                self.backend.euclidean_loss_backward(self.diff, alpha, bottom[i].diff.reshape(-1))


@register_layer("Accuracy")
class AccuracyLayer(_AxisMixin, Layer):
    """Top-k classification accuracy (no gradient).

    Bottoms: scores with C classes at accuracy_param.axis (default 1) and outer*inner labels.
    A position counts as a hit when fewer than top_k *other* classes score >= the true class
    (Caffe's rule: ties count against the prediction). Positions whose label equals
    accuracy_param.ignore_label (when set) are skipped. Top 0 (shape ()): hits / counted
    (0 when nothing is counted). Optional top 1 (shape (C,)): per-class accuracy, 0 for a class
    with no examples.
    """

    exact_bottoms = 2
    min_tops = 1
    max_tops = 2
    param_field = "accuracy_param"

    def setup(self, bottom, top):
        p = self.param
        self.top_k = int(p.top_k)
        self.has_ignore = p.has("ignore_label")
        self.ignore_label = int(p.ignore_label) if self.has_ignore else 0

    def allow_force_backward(self, bottom_index):
        return False

    def reshape(self, bottom, top):
        self.axis, self.outer, self.channels, self.inner = self._split(
            bottom[0], self.param.axis, self.param, "axis")
        self._check_labels(bottom[1], self.outer, self.inner, what="label axis")
        if self.top_k > self.channels:
            raise self.config_error(
                f"top_k ({self.top_k}) must be less than or equal to the number of classes "
                f"({self.channels})", "top_k")
        top[0].reshape(())
        if len(top) >= 2:
            top[1].reshape((self.channels,))
        elif getattr(self, "_per_class", None) is None or \
                self._per_class.shape[0] != self.channels:
            self._per_class = np.zeros(self.channels, self.dtype)

    def forward(self, bottom, top):
        labels = bottom[1].data.reshape(self.outer, self.inner)
        self._validate_label_values(labels, self.channels, self.has_ignore, self.ignore_label)
        scores = bottom[0].data.reshape(self.outer, self.channels, self.inner)
        per_class = top[1].data if len(top) >= 2 else self._per_class
        hits, count = self.backend.accuracy_forward(scores, labels, self.top_k, self.ignore_label,
                                                    self.has_ignore, per_class)
        top[0].data[...] = hits / count if count else 0.0

    def backward(self, top, propagate_down, bottom):
        """Accuracy is piecewise constant: any gradient asked for is zero."""
        for i, pd in enumerate(propagate_down):
            if pd:
                bottom[i].diff[...] = 0
