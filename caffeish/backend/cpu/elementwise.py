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

from .loss_ops import label_class

__all__ = [
    "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward", "dropout_forward", "dropout_backward",
    "softmax_forward", "softmax_backward", "softmax_loss_forward", "softmax_loss_backward",
    "euclidean_loss_forward", "euclidean_loss_backward", "accuracy_forward",
    "prelu_forward", "prelu_backward", "prelu_slope_backward", "elu_forward", "elu_backward",
    "absval_forward", "absval_backward", "bnll_forward", "bnll_backward",
    "power_forward", "power_backward", "exp_forward", "exp_backward",
    "log_forward", "log_backward", "threshold_forward", "clip_forward", "clip_backward",
    "swish_forward", "swish_backward",
    "sigmoid_cross_entropy_loss_forward", "sigmoid_cross_entropy_loss_backward",
    "hinge_loss_forward", "hinge_loss_backward",
    "contrastive_loss_forward", "contrastive_loss_backward",
    "infogain_loss_forward", "infogain_loss_backward",
    "multinomial_logistic_loss_forward", "multinomial_logistic_loss_backward",
]

# FLT_MIN: Caffe clamps probabilities to it before the log (in float and in double).
FLT_MIN = 1.1754943508222875e-38
# kLOG_THRESHOLD: the float 1e-20 that Caffe's MultinomialLogistic/Infogain losses clamp to.
KLOG_THRESHOLD = float(np.float32(1e-20))
# kBNLL_THRESHOLD: BNLL's backward clamps x here before exp().
KBNLL_THRESHOLD = 50.0


# --- scalar math (also compiled as CUDA device functions) ---------------------------------------
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


@njit(cache=True)
def dropout_bits_scalar(key, i):
    """Philox-2x32-10 (Salmon et al., SC'11; matches Random123's test vectors): the first 32-bit
    output word for counter (i_lo, i_hi ^ key_hi) under key key_lo; key a uint64, i an int.
    Every value is a uint64 holding 32 bits, so each product fits exactly (no wrap-around:
    numba, CUDA and numpy scalars agree bit for bit)."""
    m = np.uint64(0xD256D193)
    w = np.uint64(0x9E3779B9)
    lo32 = np.uint64(0xFFFFFFFF)
    s = np.uint64(32)
    n = np.uint64(i)
    c0 = n & lo32
    c1 = ((n >> s) ^ (key >> s)) & lo32
    k = key & lo32
    for _ in range(10):
        p = m * c0
        c0 = (p >> s) ^ k ^ c1
        c1 = p & lo32
        k = (k + w) & lo32
    return c0


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
def dropout_forward(x, key, thresh, scale, mask, out):
    """mask[i] = dropout_bits_scalar(key, i) >= thresh (uint8 0/1: a counter-based draw, the
    same bits on every backend); out[i] = x[i] * mask[i] * scale; key, thresh uint64; flat
    arrays (out may be x)."""
    for i in prange(out.size):
        m = np.uint8(1) if dropout_bits_scalar(key, i) >= thresh else np.uint8(0)
        mask[i] = m
        out[i] = dropout_scalar(x[i], m, scale)


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
    """Returns (sum of -log(max(prob[o, int(label[o,i]), i], FLT_MIN)) over the columns whose label is a class, their count, the flat index of the first label that is neither a class in [0, C) nor the ignore_label, or -1); prob (outer, C, inner), label (outer, inner). The label check rides along, so the GPU twin needs no pass (and no host read) of its own."""
    outer, chans, inner = prob.shape
    n = outer * inner
    loss = 0.0
    count = 0
    bad = n
    for t in prange(n):
        o = t // inner
        i = t - o * inner
        lab = label_class(label[o, i], chans, has_ignore, ignore_label)
        if lab == -2:
            bad = min(bad, t)
        elif lab >= 0:
            p = max(prob[o, lab, i], FLT_MIN)
            loss += -math.log(p)
            count += 1
    return loss, count, (bad if bad < n else -1)


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


# --- more neuron math: scalar functions ---------------------------------------------------------
@njit(cache=True)
def prelu_slope_grad_scalar(dy, x):
    """dy * x * (x <= 0): one element's contribution to PReLU's slope gradient"""
    return dy * x * (x <= 0)


@njit(cache=True)
def elu_fwd_scalar(x, alpha):
    """max(x, 0) + alpha * (exp(min(x, 0)) - 1), the exp - 1 as expm1"""
    return max(x, 0) + alpha * math.expm1(min(x, 0))


@njit(cache=True)
def elu_bwd_scalar(dy, x, y, alpha):
    """dy * ((x > 0) + (alpha + y) * (x <= 0)), y the ELU output"""
    return dy * ((x > 0) + (alpha + y) * (x <= 0))


@njit(cache=True)
def absval_fwd_scalar(x):
    """|x|"""
    return abs(x)


@njit(cache=True)
def absval_bwd_scalar(dy, x):
    """dy * sign(x), sign(0) = 0"""
    s = 0.0
    if x > 0:
        s = 1.0
    elif x < 0:
        s = -1.0
    return dy * s


@njit(cache=True)
def bnll_fwd_scalar(x):
    """log(1 + exp(x)) as x + log1p(exp(-x)) for x > 0, log1p(exp(x)) otherwise"""
    if x > 0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@njit(cache=True)
def bnll_bwd_scalar(dy, x):
    """dy * e / (e + 1), e = exp(min(x, 50))"""
    e = math.exp(min(x, KBNLL_THRESHOLD))
    return dy * e / (e + 1)


@njit(cache=True)
def power_fwd_scalar(x, power, scale, shift):
    """(shift + scale * x)^power; when power * scale == 0: 1 if power == 0 else shift^power"""
    if power * scale == 0:
        if power == 0:
            return 1.0
        return shift ** power
    b = shift + scale * x
    if power == 1:
        return b
    return b ** power


@njit(cache=True)
def power_bwd_scalar(dy, x, power, scale, shift):
    """dy * power * scale * (shift + scale * x)^(power - 1); 0 when power * scale == 0"""
    ds = power * scale
    if ds == 0:
        return 0.0
    if power == 1:
        return dy * ds
    b = shift + scale * x
    if power == 2:
        return dy * ds * b
    return dy * ds * b ** (power - 1)


@njit(cache=True)
def exp_fwd_scalar(x, inner_scale, outer_scale):
    """outer_scale * exp(inner_scale * x)"""
    return outer_scale * math.exp(inner_scale * x)


@njit(cache=True)
def exp_bwd_scalar(dy, y, inner_scale):
    """dy * y * inner_scale, y the Exp output"""
    return dy * y * inner_scale


@njit(cache=True)
def log_fwd_scalar(x, scale, shift, base_scale):
    """log(scale * x + shift) * base_scale (-inf at 0, nan below)"""
    return math.log(scale * x + shift) * base_scale


@njit(cache=True)
def log_bwd_scalar(dy, x, scale, shift, num_scale):
    """dy * num_scale / (scale * x + shift)"""
    return dy * (num_scale / (scale * x + shift))


@njit(cache=True)
def threshold_scalar(x, t):
    """1 if x > t else 0"""
    return 1.0 if x > t else 0.0


@njit(cache=True)
def clip_fwd_scalar(x, lo, hi):
    """max(lo, min(x, hi))"""
    return max(lo, min(x, hi))


@njit(cache=True)
def clip_bwd_scalar(dy, x, lo, hi):
    """dy * (lo <= x <= hi)"""
    return dy * (x >= lo and x <= hi)


@njit(cache=True)
def swish_bwd_scalar(dy, y, s, beta):
    """dy * (beta * y + s * (1 - beta * y)), y the Swish output, s = sigmoid(beta * x)"""
    return dy * (beta * y + s * (1 - beta * y))


@njit(cache=True)
def sigmoid_ce_scalar(x, t):
    """-(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))) = max(x, 0) - x t + log1p(exp(-|x|))"""
    return max(x, 0) - x * t + math.log1p(math.exp(-abs(x)))


# --- more neuron kernels over flat arrays -------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def prelu_forward(x, slope, chans, inner, div_factor, out):
    """out[i] = max(x[i], 0) + slope[c] * min(x[i], 0), c = ((i // inner) % chans) // div_factor; flat arrays (out may be x)."""
    for i in prange(out.size):
        c = ((i // inner) % chans) // div_factor
        out[i] = relu_fwd_scalar(x[i], slope[c])


@njit(parallel=True, cache=True, error_model="numpy")
def prelu_backward(top_diff, x, slope, chans, inner, div_factor, out):
    """out[i] = top_diff[i] * ((x[i] > 0) + slope[c] * (x[i] <= 0)), c as in prelu_forward; flat arrays (out may be top_diff)."""
    for i in prange(out.size):
        c = ((i // inner) % chans) // div_factor
        out[i] = relu_bwd_scalar(top_diff[i], x[i], slope[c])


@njit(parallel=True, cache=True, error_model="numpy")
def prelu_slope_backward(top_diff, x, chans, inner, div_factor, slope_diff):
    """slope_diff[c] += sum of top_diff[i] * x[i] * (x[i] <= 0) over i with ((i // inner) % chans) // div_factor == c; flat arrays."""
    rows = x.size // inner
    partial = np.empty(rows, np.float64)
    for r in prange(rows):
        s = 0.0
        base = r * inner
        for k in range(inner):
            s += prelu_slope_grad_scalar(top_diff[base + k], x[base + k])
        partial[r] = s
    for r in range(rows):
        slope_diff[(r % chans) // div_factor] += partial[r]


@njit(parallel=True, cache=True, error_model="numpy")
def elu_forward(x, alpha, out):
    """out[i] = max(x[i], 0) + alpha * (exp(min(x[i], 0)) - 1); flat arrays (out may be x)."""
    for i in prange(out.size):
        out[i] = elu_fwd_scalar(x[i], alpha)


@njit(parallel=True, cache=True, error_model="numpy")
def elu_backward(top_diff, x, y, alpha, out):
    """out[i] = top_diff[i] * ((x[i] > 0) + (alpha + y[i]) * (x[i] <= 0)); x bottom data, y top data; flat."""
    for i in prange(out.size):
        out[i] = elu_bwd_scalar(top_diff[i], x[i], y[i], alpha)


@njit(parallel=True, cache=True, error_model="numpy")
def absval_forward(x, out):
    """out[i] = |x[i]|; flat arrays."""
    for i in prange(out.size):
        out[i] = absval_fwd_scalar(x[i])


@njit(parallel=True, cache=True, error_model="numpy")
def absval_backward(top_diff, x, out):
    """out[i] = top_diff[i] * sign(x[i]), sign(0) = 0; flat arrays."""
    for i in prange(out.size):
        out[i] = absval_bwd_scalar(top_diff[i], x[i])


@njit(parallel=True, cache=True, error_model="numpy")
def bnll_forward(x, out):
    """out[i] = log(1 + exp(x[i])), overflow-free; flat arrays (out may be x)."""
    for i in prange(out.size):
        out[i] = bnll_fwd_scalar(x[i])


@njit(parallel=True, cache=True, error_model="numpy")
def bnll_backward(top_diff, x, out):
    """out[i] = top_diff[i] * sigmoid(min(x[i], 50)); x the bottom data; flat arrays."""
    for i in prange(out.size):
        out[i] = bnll_bwd_scalar(top_diff[i], x[i])


@njit(parallel=True, cache=True, error_model="numpy")
def power_forward(x, power, scale, shift, out):
    """out[i] = (shift + scale * x[i])^power (a constant when power * scale == 0); flat arrays (out may be x)."""
    for i in prange(out.size):
        out[i] = power_fwd_scalar(x[i], power, scale, shift)


@njit(parallel=True, cache=True, error_model="numpy")
def power_backward(top_diff, x, power, scale, shift, out):
    """out[i] = top_diff[i] * power * scale * (shift + scale * x[i])^(power - 1); x the bottom data; flat."""
    for i in prange(out.size):
        out[i] = power_bwd_scalar(top_diff[i], x[i], power, scale, shift)


@njit(parallel=True, cache=True, error_model="numpy")
def exp_forward(x, inner_scale, outer_scale, out):
    """out[i] = outer_scale * exp(inner_scale * x[i]); flat arrays (out may be x)."""
    for i in prange(out.size):
        out[i] = exp_fwd_scalar(x[i], inner_scale, outer_scale)


@njit(parallel=True, cache=True, error_model="numpy")
def exp_backward(top_diff, y, inner_scale, out):
    """out[i] = top_diff[i] * y[i] * inner_scale; y the top data; flat arrays."""
    for i in prange(out.size):
        out[i] = exp_bwd_scalar(top_diff[i], y[i], inner_scale)


@njit(parallel=True, cache=True, error_model="numpy")
def log_forward(x, scale, shift, base_scale, out):
    """out[i] = log(scale * x[i] + shift) * base_scale; flat arrays (out may be x)."""
    for i in prange(out.size):
        out[i] = log_fwd_scalar(x[i], scale, shift, base_scale)


@njit(parallel=True, cache=True, error_model="numpy")
def log_backward(top_diff, x, scale, shift, num_scale, out):
    """out[i] = top_diff[i] * num_scale / (scale * x[i] + shift); x the bottom data; flat arrays."""
    for i in prange(out.size):
        out[i] = log_bwd_scalar(top_diff[i], x[i], scale, shift, num_scale)


@njit(parallel=True, cache=True, error_model="numpy")
def threshold_forward(x, threshold, out):
    """out[i] = 1 if x[i] > threshold else 0; flat arrays (out may be x)."""
    for i in prange(out.size):
        out[i] = threshold_scalar(x[i], threshold)


@njit(parallel=True, cache=True, error_model="numpy")
def clip_forward(x, lo, hi, out):
    """out[i] = max(lo, min(x[i], hi)); flat arrays (out may be x)."""
    for i in prange(out.size):
        out[i] = clip_fwd_scalar(x[i], lo, hi)


@njit(parallel=True, cache=True, error_model="numpy")
def clip_backward(top_diff, x, lo, hi, out):
    """out[i] = top_diff[i] * (lo <= x[i] <= hi); x the bottom data; flat arrays."""
    for i in prange(out.size):
        out[i] = clip_bwd_scalar(top_diff[i], x[i], lo, hi)


@njit(parallel=True, cache=True, error_model="numpy")
def swish_forward(x, beta, sig, out):
    """sig[i] = sigmoid(beta * x[i]); out[i] = x[i] * sig[i]; flat arrays (out may be x)."""
    for i in prange(out.size):
        v = x[i]
        s = sigmoid_fwd_scalar(beta * v)
        sig[i] = s
        out[i] = v * s


@njit(parallel=True, cache=True, error_model="numpy")
def swish_backward(top_diff, y, sig, beta, out):
    """out[i] = top_diff[i] * (beta * y[i] + sig[i] * (1 - beta * y[i])); y the top data; flat."""
    for i in prange(out.size):
        out[i] = swish_bwd_scalar(top_diff[i], y[i], sig[i], beta)


# --- more losses --------------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def sigmoid_cross_entropy_loss_forward(x, target, ignore_label, has_ignore, sig):
    """sig[i] = sigmoid(x[i]); returns (sum of max(x,0) - x t + log1p(exp(-|x|)) over i with int(target[i]) != ignore_label, that count); flat arrays."""
    loss = 0.0
    count = 0
    for i in prange(x.size):
        v = x[i]
        sig[i] = sigmoid_fwd_scalar(v)
        t = target[i]
        if has_ignore and int(t) == ignore_label:
            continue
        loss += sigmoid_ce_scalar(v, t)
        count += 1
    return loss, count


@njit(parallel=True, cache=True, error_model="numpy")
def sigmoid_cross_entropy_loss_backward(sig, target, ignore_label, has_ignore, scale, out):
    """out[i] = scale * (sig[i] - target[i]), 0 where int(target[i]) == ignore_label; flat arrays."""
    for i in prange(out.size):
        t = target[i]
        if has_ignore and int(t) == ignore_label:
            out[i] = 0
        else:
            out[i] = scale * (sig[i] - t)


@njit(parallel=True, cache=True, error_model="numpy")
def hinge_loss_forward(x, label, l2, margins):
    """margins[n,j] = max(0, 1 + s x[n,j]), s = -1 at j == int(label[n]) else 1; returns the sum of margins (l2: of squares); x, margins (N, D), label (N,)."""
    num, dim = x.shape
    total = 0.0
    for n in prange(num):
        lab = int(label[n])
        s = 0.0
        for j in range(dim):
            v = x[n, j]
            if j == lab:
                v = -v
            m = max(0, 1 + v)
            margins[n, j] = m
            if l2:
                s += m * m
            else:
                s += m
        total += s
    return total


@njit(parallel=True, cache=True, error_model="numpy")
def hinge_loss_backward(margins, label, l2, scale, out):
    """out[n,j] = scale * s * (2 margins[n,j] if l2 else sign(margins[n,j])), s = -1 at j == int(label[n]) else 1; (N, D)."""
    num, dim = margins.shape
    for n in prange(num):
        lab = int(label[n])
        for j in range(dim):
            m = margins[n, j]
            g = 2 * m if l2 else (m > 0) * 1.0
            if j == lab:
                g = -g
            out[n, j] = scale * g


@njit(parallel=True, cache=True, error_model="numpy")
def contrastive_loss_forward(a, b, sim, margin, legacy, diff, dist_sq):
    """diff = a - b, dist_sq[n] = |diff[n]|^2; returns sum_n (d2 if int(sim[n]) else legacy ? max(margin - d2, 0) : max(margin - sqrt(d2), 0)^2); a, b, diff (N, C), sim, dist_sq (N,)."""
    num, chans = a.shape
    total = 0.0
    for n in prange(num):
        d2 = 0.0
        for c in range(chans):
            d = a[n, c] - b[n, c]
            diff[n, c] = d
            d2 += d * d
        dist_sq[n] = d2
        if int(sim[n]) != 0:
            total += d2
        elif legacy:
            total += max(margin - d2, 0.0)
        else:
            m = max(margin - math.sqrt(d2), 0.0)
            total += m * m
    return total


@njit(parallel=True, cache=True, error_model="numpy")
def contrastive_loss_backward(diff, dist_sq, sim, margin, legacy, alpha, out):
    """out[n] = alpha diff[n] for similar pairs; else beta diff[n] when mdist > 0 (legacy: mdist = margin - d2, beta = -alpha; else mdist = margin - d, beta = -alpha mdist / (d + 1e-4)), 0 otherwise; (N, C)."""
    num, chans = diff.shape
    for n in prange(num):
        if int(sim[n]) != 0:
            coef = alpha
        else:
            if legacy:
                mdist = margin - dist_sq[n]
                beta = -alpha
            else:
                d = math.sqrt(dist_sq[n])
                mdist = margin - d
                beta = -alpha * mdist / (d + 1e-4)
            coef = beta if mdist > 0 else 0.0
        for c in range(chans):
            out[n, c] = coef * diff[n, c]


@njit(parallel=True, cache=True, error_model="numpy")
def infogain_loss_forward(prob, label, infogain, ignore_label, has_ignore):
    """Returns (sum over non-ignored (o,i) of -sum_l H[lab,l] log(max(prob[o,l,i], 1e-20)), their count); prob (outer, C, inner), label (outer, inner), H (C, C)."""
    outer, chans, inner = prob.shape
    loss = 0.0
    count = 0
    for t in prange(outer * inner):
        o = t // inner
        i = t - o * inner
        lab = int(label[o, i])
        if has_ignore and lab == ignore_label:
            continue
        s = 0.0
        for c in range(chans):
            s += infogain[lab, c] * math.log(max(prob[o, c, i], KLOG_THRESHOLD))
        loss += -s
        count += 1
    return loss, count


@njit(parallel=True, cache=True, error_model="numpy")
def infogain_loss_backward(prob, label, infogain, ignore_label, has_ignore, scale, out):
    """out[o,c,i] = scale * (prob[o,c,i] * sum_l H[lab,l] - H[lab,c]), lab = int(label[o,i]); 0 in ignored columns; prob, out (outer, C, inner)."""
    outer, chans, inner = prob.shape
    for t in prange(outer * inner):
        o = t // inner
        i = t - o * inner
        lab = int(label[o, i])
        if has_ignore and lab == ignore_label:
            for c in range(chans):
                out[o, c, i] = 0
        else:
            rs = 0.0
            for c in range(chans):
                rs += infogain[lab, c]
            for c in range(chans):
                out[o, c, i] = scale * (prob[o, c, i] * rs - infogain[lab, c])


@njit(parallel=True, cache=True, error_model="numpy")
def multinomial_logistic_loss_forward(prob, label):
    """Returns sum_n -log(max(prob[n, int(label[n])], 1e-20)); prob (N, D), label (N,), labels pre-validated."""
    num = prob.shape[0]
    loss = 0.0
    for n in prange(num):
        loss += -math.log(max(prob[n, int(label[n])], KLOG_THRESHOLD))
    return loss


@njit(parallel=True, cache=True, error_model="numpy")
def multinomial_logistic_loss_backward(prob, label, scale, out):
    """out[n,j] = scale / max(prob[n,j], 1e-20) at j == int(label[n]), 0 elsewhere; prob, out (N, D)."""
    num, dim = prob.shape
    for n in prange(num):
        lab = int(label[n])
        for j in range(dim):
            out[n, j] = 0
        out[n, lab] = scale / max(prob[n, lab], KLOG_THRESHOLD)
