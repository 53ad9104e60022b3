"""Parameter update kernels (written once per backend; the solvers call them by name).

The kernels work in place on one parameter's arrays (any shape, C-contiguous; the fused
adaptive-rate kernels take flat 1-D arrays): ``diff`` holds the gradient on entry and the update
value (subtracted from the weights by the solver) on exit; the history arrays are the solver's
state. The fused updates are written once as ``*_scalar`` functions (njit here, compiled as CUDA
device functions by ``backend/cuda/solver_ops.py``) that take one element's gradient and history
and return the update value and the new history. Scalars should have the arrays' dtype so float32
stays float32 (``one`` is 1 in that dtype).
"""
import math

import numpy as np
from numba import njit, prange

__all__ = ["sgd_update", "l2_regularize", "l1_regularize", "sumsq", "nesterov_update",
           "adagrad_update", "rmsprop_update", "adadelta_update", "adam_update", "fused_update",
           "FUSED_RULES", "FUSED_CHUNK"]


# below this many elements a kernel runs on one thread (starting the pool costs more)
_GRAIN = 32768


@njit(cache=True, inline="always")
def _sgd_one(d, h, i, momentum, local_rate):
    v = h[i] * momentum
    v = v + local_rate * d[i]
    h[i] = v
    d[i] = v


@njit(parallel=True, cache=True)
def _sgd_kernel(d, h, momentum, local_rate):
    if d.size < _GRAIN:
        for i in range(d.size):
            _sgd_one(d, h, i, momentum, local_rate)
    else:
        for i in prange(d.size):
            _sgd_one(d, h, i, momentum, local_rate)


@njit(parallel=True, cache=True)
def _l2_kernel(d, w, decay):
    if d.size < _GRAIN:
        for i in range(d.size):
            d[i] = d[i] + decay * w[i]
    else:
        for i in prange(d.size):
            d[i] = d[i] + decay * w[i]


@njit(parallel=True, cache=True)
def _l1_kernel(d, w, decay):
    if d.size < _GRAIN:
        for i in range(d.size):
            d[i] = d[i] + decay * np.sign(w[i])
    else:
        for i in prange(d.size):
            d[i] = d[i] + decay * np.sign(w[i])


def sgd_update(diff, history, momentum, local_rate):
    """history = momentum * history + local_rate * diff; diff = history (Caffe's SGD). One pass,
    in the arrays' dtype, rounding each product and sum as numpy's three passes did."""
    t = diff.dtype.type
    _sgd_kernel(diff.reshape(-1), history.reshape(-1), t(momentum), t(local_rate))


def l2_regularize(diff, data, local_decay):
    """diff += local_decay * data"""
    _l2_kernel(diff.reshape(-1), data.reshape(-1), diff.dtype.type(local_decay))


def l1_regularize(diff, data, local_decay):
    """diff += local_decay * sign(data)"""
    _l1_kernel(diff.reshape(-1), data.reshape(-1), diff.dtype.type(local_decay))


@njit(parallel=True, cache=True)
def _sumsq_kernel(x):
    acc = 0.0
    for i in prange(x.size):
        v = np.float64(x[i])
        acc += v * v
    return acc


def sumsq(x) -> float:
    """sum of x^2 as a Python float, accumulated in float64 (gradient clipping's squared L2
    norm; the CUDA twin also accumulates in float64)."""
    return float(_sumsq_kernel(x.reshape(-1)))


# --- one element of each fused update: (gradient, history...) -> (update, new history...) ------
@njit(cache=True)
def nesterov_scalar(g, h_old, momentum, local_rate, one):
    """h = momentum * h_old + local_rate * g; update = (1 + momentum) * h - momentum * h_old"""
    h = momentum * h_old + local_rate * g
    return (one + momentum) * h - momentum * h_old, h


@njit(cache=True)
def adagrad_scalar(g, h_old, delta, local_rate):
    """h = h_old + g^2; update = local_rate * g / (sqrt(h) + delta)"""
    h = h_old + g * g
    return local_rate * (g / (math.sqrt(h) + delta)), h


@njit(cache=True)
def rmsprop_scalar(g, h_old, rms_decay, delta, local_rate, one):
    """h = rms_decay * h_old + (1 - rms_decay) * g^2; update = local_rate * g / (sqrt(h) + delta)"""
    h = (one - rms_decay) * (g * g) + rms_decay * h_old
    return local_rate * (g / (math.sqrt(h) + delta)), h


@njit(cache=True)
def adadelta_scalar(g, h_old, hu_old, momentum, delta, local_rate, one):
    """h = m*h_old + (1-m)*g^2; u = g*sqrt((hu_old+delta)/(h+delta)); hu = m*hu_old + (1-m)*u^2;
    update = local_rate * u"""
    h = (one - momentum) * (g * g) + momentum * h_old
    u = g * math.sqrt((delta + hu_old) / (delta + h))
    hu = (one - momentum) * (u * u) + momentum * hu_old
    return local_rate * u, h, hu


@njit(cache=True)
def adam_scalar(g, m_old, v_old, beta1, beta2, eps_hat, corrected_rate, one):
    """m = b1*m_old + (1-b1)*g; v = b2*v_old + (1-b2)*g^2; update = corrected_rate * m / (sqrt(v) + eps_hat)"""
    m = (one - beta1) * g + beta1 * m_old
    v = (one - beta2) * (g * g) + beta2 * v_old
    return corrected_rate * (m / (math.sqrt(v) + eps_hat)), m, v


# --- the fused update kernels over flat arrays ---------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def nesterov_update(diff, history, momentum, local_rate):
    """h' = momentum * h + local_rate * g; diff = (1 + momentum) * h' - momentum * h; flat."""
    one = diff.dtype.type(1)
    for i in prange(diff.size):
        u, h = nesterov_scalar(diff[i], history[i], momentum, local_rate, one)
        history[i] = h
        diff[i] = u


@njit(parallel=True, cache=True, error_model="numpy")
def adagrad_update(diff, history, delta, local_rate):
    """h += g^2; diff = local_rate * g / (sqrt(h) + delta); flat."""
    for i in prange(diff.size):
        u, h = adagrad_scalar(diff[i], history[i], delta, local_rate)
        history[i] = h
        diff[i] = u


@njit(parallel=True, cache=True, error_model="numpy")
def rmsprop_update(diff, history, rms_decay, delta, local_rate):
    """h = rms_decay*h + (1-rms_decay)*g^2; diff = local_rate * g / (sqrt(h) + delta); flat."""
    one = diff.dtype.type(1)
    for i in prange(diff.size):
        u, h = rmsprop_scalar(diff[i], history[i], rms_decay, delta, local_rate, one)
        history[i] = h
        diff[i] = u


@njit(parallel=True, cache=True, error_model="numpy")
def adadelta_update(diff, history, update_history, momentum, delta, local_rate):
    """h = m*h + (1-m)*g^2; u = g*sqrt((hu+delta)/(h+delta)); hu = m*hu + (1-m)*u^2;
    diff = local_rate * u (h: squared gradients, hu: squared updates); flat."""
    one = diff.dtype.type(1)
    for i in prange(diff.size):
        u, h, hu = adadelta_scalar(diff[i], history[i], update_history[i], momentum, delta,
                                   local_rate, one)
        history[i] = h
        update_history[i] = hu
        diff[i] = u


@njit(parallel=True, cache=True, error_model="numpy")
def adam_update(diff, m, v, beta1, beta2, eps_hat, corrected_rate):
    """m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; diff = corrected_rate * m / (sqrt(v) + eps_hat)
    (corrected_rate = local_rate * sqrt(1 - b2^t) / (1 - b1^t)); flat."""
    one = diff.dtype.type(1)
    for i in prange(diff.size):
        u, mi, vi = adam_scalar(diff[i], m[i], v[i], beta1, beta2, eps_hat, corrected_rate, one)
        m[i] = mi
        v[i] = vi
        diff[i] = u


# --- every parameter in one pass: the solver's packed buffers (caffeish.param_buffers) -----------
FUSED_RULES = {"SGD": 0, "Nesterov": 1, "AdaGrad": 2, "RMSProp": 3, "AdaDelta": 4, "Adam": 5}
FUSED_CHUNK = 16384   # elements per work item of fused_update (never across two parameters)


@njit(cache=True, inline="always")
def _reg_grad(diff, data, i, scale, reg, decay):
    """diff[i] * scale (+ decay * data[i] for reg 1, + decay * sign(data[i]) for reg 2); a
    scale of 1 leaves the gradient exactly as it is."""
    g = diff[i] * scale
    if reg == 1:
        g = g + decay * data[i]
    elif reg == 2:
        g = g + decay * np.sign(data[i])
    return g


# One loop per rule, over one chunk's slices (indices from 0): written out so that each
# vectorises; a rule switch inside the loop made the pass 3-9x slower than the separate calls.
@njit(cache=True, inline="always")
def _span_sgd(w, d, h1, h2, lr, decay, scale, reg, a, b, c, one):
    for i in range(w.size):
        g = _reg_grad(d, w, i, scale, reg, decay)
        v = h1[i] * a
        v = v + lr * g
        h1[i] = v
        d[i] = v
        w[i] = w[i] - v


@njit(cache=True, inline="always")
def _span_nesterov(w, d, h1, h2, lr, decay, scale, reg, a, b, c, one):
    for i in range(w.size):
        u, h = nesterov_scalar(_reg_grad(d, w, i, scale, reg, decay), h1[i], a, lr, one)
        h1[i] = h
        d[i] = u
        w[i] = w[i] - u


@njit(cache=True, inline="always")
def _span_adagrad(w, d, h1, h2, lr, decay, scale, reg, a, b, c, one):
    for i in range(w.size):
        u, h = adagrad_scalar(_reg_grad(d, w, i, scale, reg, decay), h1[i], a, lr)
        h1[i] = h
        d[i] = u
        w[i] = w[i] - u


@njit(cache=True, inline="always")
def _span_rmsprop(w, d, h1, h2, lr, decay, scale, reg, a, b, c, one):
    for i in range(w.size):
        u, h = rmsprop_scalar(_reg_grad(d, w, i, scale, reg, decay), h1[i], a, b, lr, one)
        h1[i] = h
        d[i] = u
        w[i] = w[i] - u


@njit(cache=True, inline="always")
def _span_adadelta(w, d, h1, h2, lr, decay, scale, reg, a, b, c, one):
    for i in range(w.size):
        u, h, hu = adadelta_scalar(_reg_grad(d, w, i, scale, reg, decay), h1[i], h2[i], a, b,
                                   lr, one)
        h1[i] = h
        h2[i] = hu
        d[i] = u
        w[i] = w[i] - u


@njit(cache=True, inline="always")
def _span_adam(w, d, h1, h2, lr, decay, scale, reg, a, b, c, one):
    for i in range(w.size):
        u, m, v = adam_scalar(_reg_grad(d, w, i, scale, reg, decay), h1[i], h2[i], a, b, c, lr,
                              one)
        h1[i] = m
        h2[i] = v
        d[i] = u
        w[i] = w[i] - u


@njit(parallel=True, cache=True, error_model="numpy")
def _fused_kernel(rule, data, diff, h1, h2, chunks, lr_mult, decay_mult, rate, weight_decay, l1,
                  scale, a, b, c, corr):
    one = data.dtype.type(1)
    for k in prange(chunks.shape[0]):
        lo, hi, s = chunks[k, 0], chunks[k, 1], chunks[k, 2]
        lr = data.dtype.type(rate * lr_mult[s])
        if rule == 5:
            lr = lr * corr
        decay64 = weight_decay * decay_mult[s]
        decay = data.dtype.type(decay64)
        reg = 0 if decay64 == 0 else (2 if l1 else 1)
        w, d, m1, m2 = data[lo:hi], diff[lo:hi], h1[lo:hi], h2[lo:hi]
        if rule == 0:
            _span_sgd(w, d, m1, m2, lr, decay, scale, reg, a, b, c, one)
        elif rule == 1:
            _span_nesterov(w, d, m1, m2, lr, decay, scale, reg, a, b, c, one)
        elif rule == 2:
            _span_adagrad(w, d, m1, m2, lr, decay, scale, reg, a, b, c, one)
        elif rule == 3:
            _span_rmsprop(w, d, m1, m2, lr, decay, scale, reg, a, b, c, one)
        elif rule == 4:
            _span_adadelta(w, d, m1, m2, lr, decay, scale, reg, a, b, c, one)
        else:
            _span_adam(w, d, m1, m2, lr, decay, scale, reg, a, b, c, one)


def fused_update(rule, data, diff, h1, h2, chunks, lr_mult, decay_mult, rate, weight_decay, l1,
                 scale, a, b, c, corr):
    """Normalise, regularise, compute the update value and apply it for every parameter packed
    in the flat arrays, in one pass: g = diff * scale (+ decay * data, or decay * sign(data) when
    l1); (u, h1, h2) = rule(g, h1, h2); diff = u; data -= u, with decay = f(weight_decay *
    decay_mult[s]) and lr = f(rate * lr_mult[s]) (times ``corr`` for Adam) for the parameter s a
    chunk belongs to (f: the arrays' dtype). chunks: int64 rows (start, stop, parameter). The same
    arithmetic, in the same order, as the per-parameter calls the solver makes otherwise."""
    t = data.dtype.type
    _fused_kernel(int(rule), data, diff, h1, h2, chunks, lr_mult, decay_mult, float(rate),
                  float(weight_decay), bool(l1), t(scale), t(a), t(b), t(c), t(corr))
