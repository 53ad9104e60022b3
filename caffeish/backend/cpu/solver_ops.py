"""Parameter update kernels (written once per backend; the solvers call them by name).

The adaptive-rate kernels work in place on flat (1-D, C-contiguous) arrays of one parameter's
length: ``diff`` holds the gradient on entry and the update value (subtracted from the weights
by the solver) on exit; the history arrays are the solver's state. Scalars should have the
arrays' dtype so float32 stays float32.
"""
import math

import numpy as np
from numba import njit, prange

__all__ = ["sgd_update", "l2_regularize", "l1_regularize", "sumsq", "nesterov_update",
           "adagrad_update", "rmsprop_update", "adadelta_update", "adam_update"]


def sgd_update(diff, history, momentum, local_rate):
    """history = momentum * history + local_rate * diff; diff = history (Caffe's SGD)."""
    history *= momentum
    history += local_rate * diff
    diff[...] = history


def l2_regularize(diff, data, local_decay):
    """diff += local_decay * data"""
    diff += local_decay * data


def l1_regularize(diff, data, local_decay):
    """diff += local_decay * sign(data)"""
    diff += local_decay * np.sign(data)


def sumsq(x) -> float:
    x = x.ravel()
    return float(np.dot(x, x))


@njit(parallel=True, cache=True, error_model="numpy")
def nesterov_update(diff, history, momentum, local_rate):
    """h' = momentum * h + local_rate * g; diff = (1 + momentum) * h' - momentum * h; flat."""
    one = diff.dtype.type(1)
    for i in prange(diff.size):
        old = history[i]
        h = momentum * old + local_rate * diff[i]
        history[i] = h
        diff[i] = (one + momentum) * h - momentum * old


@njit(parallel=True, cache=True, error_model="numpy")
def adagrad_update(diff, history, delta, local_rate):
    """h += g^2; diff = local_rate * g / (sqrt(h) + delta); flat."""
    for i in prange(diff.size):
        g = diff[i]
        h = history[i] + g * g
        history[i] = h
        diff[i] = local_rate * (g / (math.sqrt(h) + delta))


@njit(parallel=True, cache=True, error_model="numpy")
def rmsprop_update(diff, history, rms_decay, delta, local_rate):
    """h = rms_decay*h + (1-rms_decay)*g^2; diff = local_rate * g / (sqrt(h) + delta); flat."""
    one = diff.dtype.type(1)
    for i in prange(diff.size):
        g = diff[i]
        h = (one - rms_decay) * (g * g) + rms_decay * history[i]
        history[i] = h
        diff[i] = local_rate * (g / (math.sqrt(h) + delta))


@njit(parallel=True, cache=True, error_model="numpy")
def adadelta_update(diff, history, update_history, momentum, delta, local_rate):
    """h = m*h + (1-m)*g^2; u = g*sqrt((hu+delta)/(h+delta)); hu = m*hu + (1-m)*u^2;
    diff = local_rate * u (h: squared gradients, hu: squared updates); flat."""
    one = diff.dtype.type(1)
    for i in prange(diff.size):
        g = diff[i]
        h = (one - momentum) * (g * g) + momentum * history[i]
        history[i] = h
        u = g * math.sqrt((delta + update_history[i]) / (delta + h))
        update_history[i] = (one - momentum) * (u * u) + momentum * update_history[i]
        diff[i] = local_rate * u


@njit(parallel=True, cache=True, error_model="numpy")
def adam_update(diff, m, v, beta1, beta2, eps_hat, corrected_rate):
    """m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; diff = corrected_rate * m / (sqrt(v) + eps_hat)
    (corrected_rate = local_rate * sqrt(1 - b2^t) / (1 - b1^t)); flat."""
    one = diff.dtype.type(1)
    for i in prange(diff.size):
        g = diff[i]
        mi = (one - beta1) * g + beta1 * m[i]
        vi = (one - beta2) * (g * g) + beta2 * v[i]
        m[i] = mi
        v[i] = vi
        diff[i] = corrected_rate * (mi / (math.sqrt(vi) + eps_hat))
