"""Softmax, the loss layers and Accuracy.

Losses: SoftmaxWithLoss, EuclideanLoss, SigmoidCrossEntropyLoss, HingeLoss, ContrastiveLoss,
InfogainLoss, MultinomialLogisticLoss.

Loss tops are 0-d blobs (shape ``()``, one element), as in Caffe. A loss layer's backward scales
its gradient by ``top[0].diff`` (the loss weight the net writes there).
"""
from __future__ import annotations

from pathlib import Path

from ..blob import Blob
from ..config.schema import enum_symbol as _enum_name
from ..errors import ConfigError, DataError, FormatError, ShapeError
from .base import Layer, register_layer




def _scalar(a) -> float:
    return float(a.reshape(-1)[0])


def _scratch(blob, shape, dtype):
    """A Blob of ``shape`` for a layer's intermediate results (kept when the shape is unchanged);
    kernels use its dev_data, so it lives where the active backend computes."""
    if blob is None or blob.dtype != dtype:
        return Blob(shape, dtype)
    return blob.reshape(shape)


def _first_bad_label(layer, label_blob, n_classes, has_ignore=False, ignore_label=0):
    """(flat index, value) of the first invalid label, or None; checked by a backend op, the value
    read on the host only when there is one."""
    k = layer.backend.first_bad_label(label_blob.dev_data_as(-1), int(n_classes),
                                      bool(has_ignore), int(ignore_label))
    if k < 0:
        return None
    return k, float(label_blob.data_readonly().reshape(-1)[k])


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

    def _validate_label_values(self, label_blob, channels, has_ignore, ignore_label, k=None):
        """Raise DataError for a label outside [0, C) that is not the ignore_label (``k``: the
        index of the first such label when the caller found it already, -1 for none)."""
        if k is None:
            bad = _first_bad_label(self, label_blob, channels, has_ignore, ignore_label)
        else:
            bad = None if k < 0 else (k, float(label_blob.data_readonly().reshape(-1)[k]))
        if bad is not None:
            k, value = bad
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
        return self.backend.view(a, self.outer, self.channels, self.inner)

    def forward(self, bottom, top):
        self.backend.softmax_forward(self._view(bottom[0].dev_data), self._view(top[0].dev_data))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.backend.softmax_backward(self._view(top[0].dev_diff), self._view(top[0].dev_data),
                                      self._view(bottom[0].dev_diff))


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
    ``-sum(log(max(p[label], FLT_MIN))) / normalizer``; optional top 1: the probabilities
    (sharing the layer's prob storage, as Caffe's ShareData does).

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
        self.prob = _scratch(self.prob, bottom[0].shape, self.dtype)
        if len(top) >= 2:
            top[1].reshape(bottom[0].shape)

    def _view(self, a):
        return self.backend.view(a, self.outer, self.channels, self.inner)

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
        labels = bottom[1].dev_data_as(self.outer, self.inner)
        prob = self._view(self.prob.dev_data)
        be.softmax_forward(self._view(bottom[0].dev_data), prob)
        loss, count, bad = be.softmax_loss_forward(prob, labels, self.ignore_label,
                                                   self.has_ignore)
        self._validate_label_values(bottom[1], self.channels, self.has_ignore, self.ignore_label,
                                    bad)
        self.valid_count = int(count)
        top[0].data[...] = loss / self.get_normalizer(self.valid_count)
        if len(top) >= 2 and not top[1].shares_data_with(self.prob):
            top[1].share_data(self.prob)  # as Caffe: the prob top is prob_'s storage

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        labels = bottom[1].dev_data_as(self.outer, self.inner)
        scale = _scalar(top[0].diff) / self.get_normalizer(self.valid_count)
        self.backend.softmax_loss_backward(self._view(self.prob.dev_data), labels,
                                           self.ignore_label, self.has_ignore,
                                           self.dtype.type(scale),
                                           self._view(bottom[0].dev_diff))


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
        self.diff = _scratch(getattr(self, "diff", None), (bottom[0].count,), self.dtype)

    def forward(self, bottom, top):
        ss = self.backend.euclidean_loss_forward(bottom[0].dev_data_as(-1),
                                                 bottom[1].dev_data_as(-1),
                                                 self.diff.dev_data)
        top[0].data[...] = ss / bottom[0].shape[0] / 2.0

    def backward(self, top, propagate_down, bottom):
        w = _scalar(top[0].diff)
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                alpha = self.dtype.type(sign * w / bottom[i].shape[0])
                self.backend.euclidean_loss_backward(self.diff.dev_data, alpha,
                                                     bottom[i].dev_diff_as(-1))


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
        else:
            self._per_class = _scratch(getattr(self, "_per_class", None), (self.channels,),
                                       self.dtype)

    def forward(self, bottom, top):
        self._validate_label_values(bottom[1], self.channels, self.has_ignore, self.ignore_label)
        labels = bottom[1].dev_data_as(self.outer, self.inner)
        scores = bottom[0].dev_data_as(self.outer, self.channels, self.inner)
        per_class = (top[1] if len(top) >= 2 else self._per_class).dev_data
        hits, count = self.backend.accuracy_forward(scores, labels, self.top_k, self.ignore_label,
                                                    self.has_ignore, per_class)
        top[0].data[...] = hits / count if count else 0.0

    def backward(self, top, propagate_down, bottom):
        """Accuracy is piecewise constant: any gradient asked for is zero."""
        for i, pd in enumerate(propagate_down):
            if pd:
                self.backend.fill(bottom[i].dev_diff, 0)


# --- helpers shared by the losses below -----------------------------------------------------------
_MODES = ("FULL", "VALID", "BATCH_SIZE", "NONE")


def _normalization(layer, default: str) -> str:
    """loss_param.normalization when set; else the legacy ``normalize`` (true: VALID, false:
    BATCH_SIZE) when set; else ``default`` (the layer's own, which may differ from the proto's)."""
    lp = layer.layer_param.loss_param
    if lp.has("normalization"):
        mode = _enum_name(lp.normalization, "LossParameter.NormalizationMode")
    elif lp.has("normalize"):
        mode = "VALID" if lp.normalize else "BATCH_SIZE"
    else:
        mode = default
    if mode not in _MODES:
        raise layer.config_error(f"unknown normalization mode {mode!r}")
    return mode


def _normalizer(mode: str, outer: int, inner: int, valid_count: int) -> float:
    """Caffe's get_normalizer: FULL outer*inner, VALID the counted positions, BATCH_SIZE outer,
    NONE 1; clamped to >= 1 so a batch with nothing counted gives 0, not NaN."""
    n = {"FULL": outer * inner, "VALID": valid_count, "BATCH_SIZE": outer, "NONE": 1}[mode]
    return float(max(1, n))


def _ignore_label(layer):
    lp = layer.layer_param.loss_param
    has = lp.has("ignore_label")
    return has, (int(lp.ignore_label) if has else 0)


def _refuse_gradient(layer, propagate_down, indices, what="label"):
    """Caffe's LOG(FATAL) for a gradient asked of an input that cannot take one."""
    for i in indices:
        if i < len(propagate_down) and propagate_down[i]:
            names = list(layer.layer_param.bottom)
            name = f" '{names[i]}'" if i < len(names) else ""
            raise layer.config_error(
                f"cannot backpropagate to its {what} input (bottom[{i}]{name}); set "
                f"propagate_down: false for it")


def _check_class_labels(layer, label_blob, n_classes, what):
    """DataError for a label that is not an integer class index in [0, n_classes)."""
    bad = _first_bad_label(layer, label_blob, n_classes)
    if bad is not None:
        k, value = bad
        raise DataError(layer._msg(f"label value {value:g} at position {k} is outside "
                                   f"[0, {n_classes}) — {what}"))


@register_layer("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLossLayer(LossLayer):
    """Cross-entropy of sigmoid(x) against targets t in [0, 1], element by element.

    Bottoms: scores x (N, ...) and targets t with the same count. Top: the loss
    ``sum(max(x, 0) - x t + log(1 + exp(-|x|))) / normalizer`` (the stable form of
    -t log p - (1 - t) log(1 - p), p = sigmoid(x)).
    loss_param.ignore_label (when set) skips elements whose int(t) equals it. Normalization:
    loss_param.normalization when set, else the legacy ``normalize`` (true VALID, false
    BATCH_SIZE), else BATCH_SIZE (N) — Caffe's default for this layer, not VALID. FULL is
    N * count/N, VALID the non-ignored count.
    Backward (to x only): dx = w (p - t) / normalizer, 0 at ignored elements.
    """

    exact_tops = 1
    param_field = "loss_param"

    def setup(self, bottom, top):
        self.has_ignore, self.ignore_label = _ignore_label(self)
        self.normalization = _normalization(self, "BATCH_SIZE")
        self.sig = None
        self.normalizer = 1.0

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise self.shape_error(f"inputs must have the same count: scores {bottom[0].shape} "
                                   f"({bottom[0].count}), targets {bottom[1].shape} "
                                   f"({bottom[1].count})")
        self.outer = int(bottom[0].shape[0])
        self.inner = bottom[0].count_range(1)
        self.sig = _scratch(self.sig, (bottom[0].count,), self.dtype)

    def forward(self, bottom, top):
        loss, count = self.backend.sigmoid_cross_entropy_loss_forward(
            bottom[0].dev_data_as(-1), bottom[1].dev_data_as(-1), self.ignore_label,
            self.has_ignore, self.sig.dev_data)
        self.normalizer = _normalizer(self.normalization, self.outer, self.inner, int(count))
        top[0].data[...] = loss / self.normalizer

    def backward(self, top, propagate_down, bottom):
        _refuse_gradient(self, propagate_down, (1,))
        if not propagate_down[0]:
            return
        scale = self.dtype.type(_scalar(top[0].diff) / self.normalizer)
        self.backend.sigmoid_cross_entropy_loss_backward(
            self.sig.dev_data, bottom[1].dev_data_as(-1), self.ignore_label,
            self.has_ignore, scale, bottom[0].dev_diff_as(-1))


@register_layer("HingeLoss")
class HingeLossLayer(LossLayer):
    """One-vs-all hinge loss: hinge_loss_param.norm L1 (default) or L2.

    Bottoms: scores x (N, ...) read as N rows of D = count/N, and N integer labels in [0, D).
    With m[n,j] = max(0, 1 + s x[n,j]), s = -1 at the true class and +1 elsewhere:
    L1 loss = sum(m) / N, L2 loss = sum(m^2) / N.
    Backward (to x only): dx[n,j] = w s * (sign(m) for L1, 2 m for L2) / N.
    """

    exact_tops = 1
    param_field = "hinge_loss_param"

    def setup(self, bottom, top):
        self.norm = _enum_name(self.param.norm, "HingeLossParameter.Norm")
        if self.norm not in ("L1", "L2"):
            raise self.config_error(f"unknown norm {self.norm!r} (L1 or L2)", "norm")
        self.margins = None

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.num = int(bottom[0].shape[0])
        self.dim = bottom[0].count_range(1)
        if bottom[1].count != self.num:
            raise self.shape_error(f"needs one label per example: scores {bottom[0].shape} give "
                                   f"{self.num} examples, labels {bottom[1].shape} hold "
                                   f"{bottom[1].count}")
        self.margins = _scratch(self.margins, (self.num, self.dim), self.dtype)

    def forward(self, bottom, top):
        _check_class_labels(self, bottom[1], self.dim,
                            f"each example has {self.dim} scores (the count per example)")
        total = self.backend.hinge_loss_forward(bottom[0].dev_data_as(self.num, self.dim),
                                                bottom[1].dev_data_as(-1),
                                                self.norm == "L2", self.margins.dev_data)
        top[0].data[...] = total / self.num

    def backward(self, top, propagate_down, bottom):
        _refuse_gradient(self, propagate_down, (1,))
        if not propagate_down[0]:
            return
        scale = self.dtype.type(_scalar(top[0].diff) / self.num)
        self.backend.hinge_loss_backward(self.margins.dev_data, bottom[1].dev_data_as(-1),
                                         self.norm == "L2", scale,
                                         bottom[0].dev_diff_as(self.num, self.dim))


@register_layer("ContrastiveLoss")
class ContrastiveLossLayer(LossLayer):
    """Siamese contrastive loss (Hadsell et al. 2006); contrastive_loss_param margin 1,
    legacy_version false.

    Bottoms: a and b (N, C) (or (N, C, 1, 1)), and N similarity labels y (similar when
    int(y) != 0). With d = |a_n - b_n|: loss = sum_n (y d^2 + (1 - y) max(margin - d, 0)^2)
    / (2N); legacy_version uses max(margin - d^2, 0) for dissimilar pairs instead.
    Backward to a and b (labels take none): similar pairs w (a - b) / N; dissimilar pairs with
    margin - d > 0 get -w (margin - d) / (d + 1e-4) (a - b) / N (legacy: -w (a - b) / N),
    others 0; b's gradient is the negative of a's. (The 1e-4 is Caffe's.)
    """

    exact_bottoms = 3
    exact_tops = 1
    param_field = "contrastive_loss_param"

    def allow_force_backward(self, bottom_index):
        return bottom_index != 2

    def setup(self, bottom, top):
        self.margin = float(self.param.margin)
        self.legacy = bool(self.param.legacy_version)

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        a, b, y = bottom
        self.num = int(a.shape[0])
        self.chans = a.count_range(1)
        if b.count_range(1) != self.chans or a.count_range(2) != 1 or b.count_range(2) != 1:
            raise self.shape_error(f"a and b must both be (N, C) or (N, C, 1, 1) with the same "
                                   f"C, got {a.shape} and {b.shape}")
        if y.num_axes == 0 or y.shape[0] != self.num or y.count != self.num:
            raise self.shape_error(f"needs one similarity label per pair: {self.num} pairs, "
                                   f"labels {y.shape}")
        self.diff = _scratch(getattr(self, "diff", None), (self.num, self.chans), self.dtype)
        self.dist_sq = _scratch(getattr(self, "dist_sq", None), (self.num,), self.dtype)

    def forward(self, bottom, top):
        total = self.backend.contrastive_loss_forward(
            bottom[0].dev_data_as(self.num, self.chans),
            bottom[1].dev_data_as(self.num, self.chans), bottom[2].dev_data_as(-1),
            self.margin, self.legacy, self.diff.dev_data, self.dist_sq.dev_data)
        top[0].data[...] = total / self.num / 2.0

    def backward(self, top, propagate_down, bottom):
        _refuse_gradient(self, propagate_down, (2,), "similarity label")
        w = _scalar(top[0].diff)
        for i, sign in ((0, 1.0), (1, -1.0)):
            if propagate_down[i]:
                alpha = self.dtype.type(sign * w / self.num)
                self.backend.contrastive_loss_backward(
                    self.diff.dev_data, self.dist_sq.dev_data, bottom[2].dev_data_as(-1),
                    self.margin, self.legacy, alpha,
                    bottom[i].dev_diff_as(self.num, self.chans))


@register_layer("InfogainLoss")
class InfogainLossLayer(_AxisMixin, LossLayer):
    """Softmax + log loss weighted by an infogain matrix H (C x C): SoftmaxWithLoss when H = I.

    Bottoms: scores x with C classes at infogain_loss_param.axis (default 1), outer*inner
    integer labels, and optionally H as a third bottom; without it H is read from
    infogain_loss_param.source (a .binaryproto, looked up in the current directory, then beside
    the net file). As in current Caffe, x are raw scores: p = softmax(x) along the axis.
    Top 0: ``-sum over positions of sum_c H[label, c] log(max(p_c, 1e-20)) / normalizer``;
    optional top 1: p (sharing the layer's prob storage). loss_param.ignore_label skips
    positions; normalization (default VALID) as in SoftmaxWithLoss; the legacy ``normalize``
    field is an error here, as in Caffe.
    Backward reaches x only: dx_c = w (p_c sum_l H[label, l] - H[label, c]) / normalizer.
    """

    min_bottoms = 2
    max_bottoms = 3
    exact_bottoms = None
    min_tops = 1
    max_tops = 2
    param_field = "infogain_loss_param"

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def setup(self, bottom, top):
        lp = self.layer_param.loss_param
        if lp.has("normalize"):
            w = lp.where("normalize") or self.where()
            raise ConfigError(f"{w + ': ' if w else ''}{self.describe()}: loss_param.normalize "
                              f"is deprecated for InfogainLoss; use normalization")
        self.has_ignore, self.ignore_label = _ignore_label(self)
        self.normalization = _normalization(self, "VALID")
        self.infogain = None
        if len(bottom) < 3:
            self.infogain = self._read_matrix()
        self.prob = None
        self.valid_count = 0

    def _read_matrix(self):
        from ..data.transformer import resolve_path
        from ..io.formats import read_binaryproto
        if not self.param.has("source"):
            raise self.config_error("the infogain matrix must be given: set "
                                    "infogain_loss_param.source or add H as a third bottom",
                                    "source")
        src = self.layer_param.src
        net_dir = Path(src[0]).resolve().parent if src and src[0] else None
        found, tried = resolve_path(self.param.source, [net_dir] if net_dir else [])
        if found is None:
            raise DataError(self._msg(f"infogain matrix {self.param.source!r} not found; tried "
                                      + ", ".join(str(t) for t in tried), "source"))
        try:
            h = read_binaryproto(found)
        except FormatError as e:
            raise FormatError(self._msg(f"infogain matrix: {e}", "source")) from None
        blob = Blob(h.shape, self.dtype, name="infogain")
        blob.data[...] = h
        return blob

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.axis, self.outer, self.channels, self.inner = self._split(
            bottom[0], self.param.axis, self.param, "axis")
        self._check_labels(bottom[1], self.outer, self.inner, what="infogain axis")
        h = bottom[2] if len(bottom) >= 3 else self.infogain
        c = self.channels
        if h.count != c * c:
            origin = "bottom[2]" if len(bottom) >= 3 else repr(self.param.source)
            raise self.shape_error(f"the infogain matrix ({origin}, shape {h.shape}) must hold "
                                   f"{c} x {c} = {c * c} values for {c} classes")
        self.prob = _scratch(self.prob, bottom[0].shape, self.dtype)
        if len(top) >= 2:
            top[1].reshape(bottom[0].shape)

    def _view(self, a):
        return self.backend.view(a, self.outer, self.channels, self.inner)

    def _matrix(self, bottom):
        h = bottom[2] if len(bottom) >= 3 else self.infogain
        return h.dev_data_as(self.channels, self.channels)

    def forward(self, bottom, top):
        be = self.backend
        self._validate_label_values(bottom[1], self.channels, self.has_ignore, self.ignore_label)
        labels = bottom[1].dev_data_as(self.outer, self.inner)
        prob = self._view(self.prob.dev_data)
        be.softmax_forward(self._view(bottom[0].dev_data), prob)
        loss, count = be.infogain_loss_forward(prob, labels, self._matrix(bottom),
                                               self.ignore_label, self.has_ignore)
        self.valid_count = int(count)
        top[0].data[...] = loss / _normalizer(self.normalization, self.outer, self.inner,
                                              self.valid_count)
        if len(top) >= 2 and not top[1].shares_data_with(self.prob):
            top[1].share_data(self.prob)  # as Caffe: the prob top is prob_'s storage

    def backward(self, top, propagate_down, bottom):
        _refuse_gradient(self, propagate_down, (1,))
        _refuse_gradient(self, propagate_down, (2,), "infogain matrix")
        if not propagate_down[0]:
            return
        scale = _scalar(top[0].diff) / _normalizer(self.normalization, self.outer, self.inner,
                                                   self.valid_count)
        self.backend.infogain_loss_backward(
            self._view(self.prob.dev_data), bottom[1].dev_data_as(self.outer, self.inner),
            self._matrix(bottom), self.ignore_label, self.has_ignore, self.dtype.type(scale),
            self._view(bottom[0].dev_diff))


@register_layer("MultinomialLogisticLoss")
class MultinomialLogisticLossLayer(LossLayer):
    """Log loss on probabilities: loss = -sum_n log(max(p[n, label_n], 1e-20)) / N.

    Bottoms: p (N, ...) read as N rows of D = count/N probabilities (e.g. a Softmax output),
    and N integer labels in [0, D). Backward (to p only): dp[n, label_n] =
    -w / (N max(p[n, label_n], 1e-20)), 0 elsewhere.
    """

    exact_tops = 1

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.num = int(bottom[0].shape[0])
        self.dim = bottom[0].count_range(1)
        if bottom[1].count != self.num:
            raise self.shape_error(f"needs one label per example: probabilities "
                                   f"{bottom[0].shape} give {self.num} examples, labels "
                                   f"{bottom[1].shape} hold {bottom[1].count}")

    def forward(self, bottom, top):
        _check_class_labels(self, bottom[1], self.dim,
                            f"each example has {self.dim} probabilities (the count per example)")
        loss = self.backend.multinomial_logistic_loss_forward(
            bottom[0].dev_data_as(self.num, self.dim), bottom[1].dev_data_as(-1))
        top[0].data[...] = loss / self.num

    def backward(self, top, propagate_down, bottom):
        _refuse_gradient(self, propagate_down, (1,))
        if not propagate_down[0]:
            return
        scale = self.dtype.type(-_scalar(top[0].diff) / self.num)
        self.backend.multinomial_logistic_loss_backward(
            bottom[0].dev_data_as(self.num, self.dim), bottom[1].dev_data_as(-1), scale,
            bottom[0].dev_diff_as(self.num, self.dim))
