"""CUDA twins of ``backend/cpu/solver_ops.py``: the parameter updates, weight decay and the
squared norm used by gradient clipping. One grid-stride kernel per update, fused (read gradient
and history once, write update and history once); the per-element math is the CPU module's
``*_scalar`` functions compiled as device functions."""
import numpy as np
from numba import cuda

from ..cpu import solver_ops as _cpu
from ..cpu.solver_ops import FUSED_RULES
from .blas import dot
from .core import SMALL_LAUNCHES, THREADS, flat, grid1d

__all__ = ["sgd_update", "l2_regularize", "l1_regularize", "sumsq", "nesterov_update",
           "adagrad_update", "rmsprop_update", "adadelta_update", "adam_update", "fused_update",
           "FUSED_RULES", "FUSED_CHUNK"]

FUSED_CHUNK = 4096   # elements per block-sized work item of fused_update


def _device(f):
    return cuda.jit(device=True)(f.py_func)


_nesterov = _device(_cpu.nesterov_scalar)
_adagrad = _device(_cpu.adagrad_scalar)
_rmsprop = _device(_cpu.rmsprop_scalar)
_adadelta = _device(_cpu.adadelta_scalar)
_adam = _device(_cpu.adam_scalar)


@cuda.jit
def _sgd_k(diff, history, momentum, local_rate):
    for i in range(cuda.grid(1), diff.size, cuda.gridsize(1)):
        h = momentum * history[i] + local_rate * diff[i]
        history[i] = h
        diff[i] = h


@cuda.jit
def _l2_k(diff, data, decay):
    for i in range(cuda.grid(1), diff.size, cuda.gridsize(1)):
        diff[i] += decay * data[i]


@cuda.jit
def _l1_k(diff, data, decay):
    for i in range(cuda.grid(1), diff.size, cuda.gridsize(1)):
        x = data[i]
        if x > 0:
            diff[i] += decay
        elif x < 0:
            diff[i] -= decay
        elif x != x:  # NaN weights stay visible, as with sign(NaN) on the CPU
            diff[i] += x


@cuda.jit
def _nesterov_k(diff, history, momentum, local_rate, one):
    for i in range(cuda.grid(1), diff.size, cuda.gridsize(1)):
        u, h = _nesterov(diff[i], history[i], momentum, local_rate, one)
        history[i] = h
        diff[i] = u


@cuda.jit
def _adagrad_k(diff, history, delta, local_rate):
    for i in range(cuda.grid(1), diff.size, cuda.gridsize(1)):
        u, h = _adagrad(diff[i], history[i], delta, local_rate)
        history[i] = h
        diff[i] = u


@cuda.jit
def _rmsprop_k(diff, history, rms_decay, delta, local_rate, one):
    for i in range(cuda.grid(1), diff.size, cuda.gridsize(1)):
        u, h = _rmsprop(diff[i], history[i], rms_decay, delta, local_rate, one)
        history[i] = h
        diff[i] = u


@cuda.jit
def _adadelta_k(diff, history, update_history, momentum, delta, local_rate, one):
    for i in range(cuda.grid(1), diff.size, cuda.gridsize(1)):
        u, h, hu = _adadelta(diff[i], history[i], update_history[i], momentum, delta,
                             local_rate, one)
        history[i] = h
        update_history[i] = hu
        diff[i] = u


@cuda.jit
def _adam_k(diff, m, v, beta1, beta2, eps_hat, corrected_rate, one):
    for i in range(cuda.grid(1), diff.size, cuda.gridsize(1)):
        u, mi, vi = _adam(diff[i], m[i], v[i], beta1, beta2, eps_hat, corrected_rate, one)
        m[i] = mi
        v[i] = vi
        diff[i] = u


def sgd_update(diff, history, momentum, local_rate):
    """history = momentum * history + local_rate * diff; diff = history (Caffe's SGD)."""
    diff = flat(diff)
    t = diff.dtype.type
    if diff.size:
        _sgd_k[grid1d(diff.size)](diff, flat(history), t(momentum), t(local_rate))


def l2_regularize(diff, data, local_decay):
    """diff += local_decay * data"""
    diff = flat(diff)
    if diff.size:
        _l2_k[grid1d(diff.size)](diff, flat(data), diff.dtype.type(local_decay))


def l1_regularize(diff, data, local_decay):
    """diff += local_decay * sign(data)"""
    diff = flat(diff)
    if diff.size:
        _l1_k[grid1d(diff.size)](diff, flat(data), diff.dtype.type(local_decay))


def sumsq(x) -> float:
    """sum of x^2 as a Python float (block reduction in float64, one host read)."""
    return dot(x, x)


def nesterov_update(diff, history, momentum, local_rate):
    """h' = momentum * h + local_rate * g; diff = (1 + momentum) * h' - momentum * h."""
    diff = flat(diff)
    t = diff.dtype.type
    if diff.size:
        _nesterov_k[grid1d(diff.size)](diff, flat(history), t(momentum), t(local_rate), t(1))


def adagrad_update(diff, history, delta, local_rate):
    """h += g^2; diff = local_rate * g / (sqrt(h) + delta)."""
    diff = flat(diff)
    t = diff.dtype.type
    if diff.size:
        _adagrad_k[grid1d(diff.size)](diff, flat(history), t(delta), t(local_rate))


def rmsprop_update(diff, history, rms_decay, delta, local_rate):
    """h = rms_decay*h + (1-rms_decay)*g^2; diff = local_rate * g / (sqrt(h) + delta)."""
    diff = flat(diff)
    t = diff.dtype.type
    if diff.size:
        _rmsprop_k[grid1d(diff.size)](diff, flat(history), t(rms_decay), t(delta),
                                      t(local_rate), t(1))


def adadelta_update(diff, history, update_history, momentum, delta, local_rate):
    """AdaDelta: h (squared gradients) and update_history (squared updates); diff = local_rate * u."""
    diff = flat(diff)
    t = diff.dtype.type
    if diff.size:
        _adadelta_k[grid1d(diff.size)](diff, flat(history), flat(update_history), t(momentum),
                                       t(delta), t(local_rate), t(1))


def adam_update(diff, m, v, beta1, beta2, eps_hat, corrected_rate):
    """m, v moments; diff = corrected_rate * m / (sqrt(v) + eps_hat)."""
    diff = flat(diff)
    t = diff.dtype.type
    if diff.size:
        _adam_k[grid1d(diff.size)](diff, flat(m), flat(v), t(beta1), t(beta2), t(eps_hat),
                                   t(corrected_rate), t(1))


@cuda.jit(device=True)
def _fused_rule(rule, g, h1, h2, lr, a, b, c, one):
    """The CUDA twin of backend.cpu.solver_ops.fused_rule_scalar."""
    if rule == 0:
        v = h1 * a
        v = v + lr * g
        return v, v, h2
    if rule == 1:
        u, h = _nesterov(g, h1, a, lr, one)
        return u, h, h2
    if rule == 2:
        u, h = _adagrad(g, h1, a, lr)
        return u, h, h2
    if rule == 3:
        u, h = _rmsprop(g, h1, a, b, lr, one)
        return u, h, h2
    if rule == 4:
        return _adadelta(g, h1, h2, a, b, lr, one)
    return _adam(g, h1, h2, a, b, c, lr, one)


def _make_fused_kernel(dtype):
    nbtype = {np.dtype(np.float32): np.float32, np.dtype(np.float64): np.float64}[np.dtype(dtype)]

    @cuda.jit
    def kernel(rule, data, diff, h1, h2, chunks, lr_mult, decay_mult, rate, weight_decay, l1,
               scale, a, b, c, corr):
        # each block takes whole chunks (one parameter each), its threads stride inside one
        one = nbtype(1)
        two_sets = rule >= 4
        for k in range(cuda.blockIdx.x, chunks.shape[0], cuda.gridDim.x):
            lo = chunks[k, 0]
            hi = chunks[k, 1]
            s = chunks[k, 2]
            lr = nbtype(rate * lr_mult[s])
            if rule == 5:
                lr = lr * corr
            decay64 = weight_decay * decay_mult[s]
            decay = nbtype(decay64)
            for i in range(lo + cuda.threadIdx.x, hi, cuda.blockDim.x):
                g = diff[i]
                if scale != one:
                    g = g * scale
                if decay64 != 0:
                    x = data[i]
                    if l1:
                        if x > 0:
                            g += decay
                        elif x < 0:
                            g -= decay
                        elif x != x:
                            g += x
                    else:
                        g = g + decay * x
                u, n1, n2 = _fused_rule(rule, g, h1[i], h2[i], lr, a, b, c, one)
                h1[i] = n1
                if two_sets:
                    h2[i] = n2
                diff[i] = u
                data[i] = data[i] - u

    return kernel


_FUSED: dict = {}


def fused_update(rule, data, diff, h1, h2, chunks, lr_mult, decay_mult, rate, weight_decay, l1,
                 scale, a, b, c, corr):
    """See backend.cpu.solver_ops.fused_update (same arguments, device arrays); one launch for
    every parameter."""
    key = np.dtype(data.dtype)
    kernel = _FUSED.get(key)
    if kernel is None:
        kernel = _FUSED[key] = _make_fused_kernel(key)
    n = int(chunks.shape[0])
    if n == 0:
        return
    t = key.type
    blocks = min(n, 2 if SMALL_LAUNCHES else 65535)
    kernel[blocks, THREADS](int(rule), data, diff, h1, h2, chunks, lr_mult, decay_mult,
                            float(rate), float(weight_decay), bool(l1), t(scale), t(a), t(b),
                            t(c), t(corr))
