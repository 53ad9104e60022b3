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
           "adagrad_update", "rmsprop_update", "adadelta_update", "adam_update"]


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


def sumsq(x) -> float:
    """sum of x^2 as a Python float (gradient clipping's squared L2 norm)."""
    x = x.ravel()
    return float(np.dot(x, x))


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
