"""CPU kernels for the neuron, softmax and loss layers.

Element-wise math is written once as ``*_scalar`` functions (numba.njit); the CUDA backend can
compile the same bodies as device functions (``cuda.jit(device=True)(f.py_func)``). The array
kernels apply them over flat (1-D, C-contiguous) arrays. Softmax-style kernels work on
``(outer, channels, inner)`` views: one "column" ``(o, :, i)`` per softmax, ``outer*inner``
columns in all. Scalars passed to kernels should have the arrays' dtype so float32 stays float32.
"""
import math

import numpy as np
from numba import njit, prange

__all__ = [
    "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward", "dropout_forward", "dropout_backward",
    "softmax_forward", "softmax_backward", "softmax_loss_forward", "softmax_loss_backward",
    "euclidean_loss_forward", "euclidean_loss_backward", "accuracy_forward",
]

# FLT_MIN: Caffe clamps probabilities to it before the log (in float and in double).
FLT_MIN = 1.1754943508222875e-38


# --- scalar math (shared with the future CUDA device functions) ---------------------------------
@njit(cache=True)
def relu_fwd_scalar(x, slope):
    """max(x, 0) + slope * min(x, 0)"""
    return max(x, 0) + slope * min(x, 0)


@njit(cache=True)
def relu_bwd_scalar(dy, x, slope):
    """dy * ((x > 0) + slope * (x <= 0))"""
    return dy * ((x > 0) + slope * (x <= 0))


@njit(cache=True)
def sigmoid_fwd_scalar(x):
    """1 / (1 + exp(-x)); exp(-x) may overflow to inf for very negative x, giving exactly 0."""
    return 1 / (1 + math.exp(-x))


@njit(cache=True)
def sigmoid_bwd_scalar(dy, y):
    """dy * y * (1 - y), y the sigmoid output"""
    return dy * y * (1 - y)


@njit(cache=True)
def tanh_fwd_scalar(x):
    """tanh(x)"""
    return math.tanh(x)


@njit(cache=True)
def tanh_bwd_scalar(dy, y):
    """dy * (1 - y^2), y the tanh output"""
    return dy * (1 - y * y)


@njit(cache=True)
def dropout_scalar(x, m, scale):
    """x * m * scale (m is 0 or 1)"""
    return x * m * scale


# --- element-wise kernels over flat arrays ------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def relu_forward(x, slope, out):
    """out[i] = max(x[i], 0) + slope * min(x[i], 0); flat arrays (out may be x)."""
    for i in prange(out.size):
        out[i] = relu_fwd_scalar(x[i], slope)


@njit(parallel=True, cache=True, error_model="numpy")
def relu_backward(top_diff, x, slope, out):
    """out[i] = top_diff[i] * ((x[i] > 0) + slope * (x[i] <= 0)); x the bottom (or in-place top) data; flat."""
    for i in prange(out.size):
        out[i] = relu_bwd_scalar(top_diff[i], x[i], slope)


@njit(parallel=True, cache=True, error_model="numpy")
def sigmoid_forward(x, out):
    """out[i] = sigmoid(x[i]); flat arrays (out may be x)."""
    for i in prange(out.size):
        out[i] = sigmoid_fwd_scalar(x[i])


@njit(parallel=True, cache=True, error_model="numpy")
def sigmoid_backward(top_diff, y, out):
    """out[i] = top_diff[i] * y[i] * (1 - y[i]); y the top data; flat arrays."""
    for i in prange(out.size):
        out[i] = sigmoid_bwd_scalar(top_diff[i], y[i])


@njit(parallel=True, cache=True, error_model="numpy")
def tanh_forward(x, out):
    """out[i] = tanh(x[i]); flat arrays (out may be x)."""
    for i in prange(out.size):
        out[i] = tanh_fwd_scalar(x[i])


@njit(parallel=True, cache=True, error_model="numpy")
def tanh_backward(top_diff, y, out):
    """out[i] = top_diff[i] * (1 - y[i]^2); y the top data; flat arrays."""
    for i in prange(out.size):
        out[i] = tanh_bwd_scalar(top_diff[i], y[i])


@njit(parallel=True, cache=True, error_model="numpy")
def dropout_forward(x, mask, scale, out):
    """out[i] = x[i] * mask[i] * scale; mask uint8 0/1; flat arrays (out may be x)."""
    for i in prange(out.size):
        out[i] = dropout_scalar(x[i], mask[i], scale)


@njit(parallel=True, cache=True, error_model="numpy")
def dropout_backward(top_diff, mask, scale, out):
    """out[i] = top_diff[i] * mask[i] * scale; mask uint8 0/1; flat arrays (out may be top_diff)."""
    for i in prange(out.size):
        out[i] = dropout_scalar(top_diff[i], mask[i], scale)


# --- softmax over (outer, channels, inner) ------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def softmax_forward(x, out):
    """out[o,c,i] = exp(x[o,c,i] - max_c x[o,:,i]) / sum_c exp(x[o,c,i] - max); x, out (outer, C, inner), out may be x."""
    outer, chans, inner = x.shape
    for t in prange(outer * inner):
        o = t // inner
        i = t - o * inner
        m = x[o, 0, i]
        for c in range(1, chans):
            v = x[o, c, i]
            if v > m:
                m = v
        s = 0.0
        for c in range(chans):
            e = math.exp(x[o, c, i] - m)
            out[o, c, i] = e
            s += e
        for c in range(chans):
            out[o, c, i] = out[o, c, i] / s


@njit(parallel=True, cache=True, error_model="numpy")
def softmax_backward(top_diff, y, out):
    """out[o,c,i] = (top_diff[o,c,i] - sum_k top_diff[o,k,i] y[o,k,i]) * y[o,c,i]; (outer, C, inner), out may be top_diff."""
    outer, chans, inner = y.shape
    for t in prange(outer * inner):
        o = t // inner
        i = t - o * inner
        d = 0.0
        for c in range(chans):
            d += top_diff[o, c, i] * y[o, c, i]
        for c in range(chans):
            out[o, c, i] = (top_diff[o, c, i] - d) * y[o, c, i]


@njit(parallel=True, cache=True, error_model="numpy")
def softmax_loss_forward(prob, label, ignore_label, has_ignore):
    """Returns (sum of -log(max(prob[o, int(label[o,i]), i], FLT_MIN)) over non-ignored columns, their count); prob (outer, C, inner), label (outer, inner), labels pre-validated."""
    outer, chans, inner = prob.shape
    loss = 0.0
    count = 0
    for t in prange(outer * inner):
        o = t // inner
        i = t - o * inner
        lab = int(label[o, i])
        if has_ignore and lab == ignore_label:
            continue
        p = max(prob[o, lab, i], FLT_MIN)
        loss += -math.log(p)
        count += 1
    return loss, count


@njit(parallel=True, cache=True, error_model="numpy")
def softmax_loss_backward(prob, label, ignore_label, has_ignore, scale, out):
    """out[o,c,i] = scale * (prob[o,c,i] - (c == int(label[o,i]))), 0 in ignored columns; prob, out (outer, C, inner), label (outer, inner)."""
    outer, chans, inner = prob.shape
    for t in prange(outer * inner):
        o = t // inner
        i = t - o * inner
        lab = int(label[o, i])
        if has_ignore and lab == ignore_label:
            for c in range(chans):
                out[o, c, i] = 0
        else:
            for c in range(chans):
                out[o, c, i] = (prob[o, c, i] - (c == lab)) * scale


# --- other losses and metrics -------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def euclidean_loss_forward(a, b, diff):
    """diff[i] = a[i] - b[i]; returns sum_i diff[i]^2 (float64 accumulation); flat arrays."""
    s = 0.0
    for i in prange(diff.size):
        d = a[i] - b[i]
        diff[i] = d
        s += d * d
    return s


@njit(parallel=True, cache=True, error_model="numpy")
def euclidean_loss_backward(diff, alpha, out):
    """out[i] = alpha * diff[i]; flat arrays."""
    for i in prange(out.size):
        out[i] = alpha * diff[i]


@njit(cache=True, error_model="numpy")
def accuracy_forward(scores, label, top_k, ignore_label, has_ignore, per_class):
    """Caffe's top-k test per column (o, i): a hit when fewer than top_k other classes score >= the true class; scores (outer, C, inner), label (outer, inner), labels pre-validated; per_class (C,) overwritten with hits / examples of each class (0 for none); returns (hits, count)."""
    outer, chans, inner = scores.shape
    class_hits = np.zeros(chans, np.int64)
    class_counts = np.zeros(chans, np.int64)
    hits = 0
    count = 0
    for o in range(outer):
        for i in range(inner):
            lab = int(label[o, i])
            if has_ignore and lab == ignore_label:
                continue
            class_counts[lab] += 1
            true_score = scores[o, lab, i]
            better = -1
            for c in range(chans):
                if better >= top_k:
                    break
                if scores[o, c, i] >= true_score:
                    better += 1
            if better < top_k:
                hits += 1
                class_hits[lab] += 1
            count += 1
    for c in range(chans):
        per_class[c] = class_hits[c] / class_counts[c] if class_counts[c] > 0 else 0
    return hits, count
