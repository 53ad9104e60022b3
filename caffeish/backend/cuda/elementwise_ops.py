"""CUDA kernels for the neuron layers (twins of the neuron ops in ``backend/cpu/elementwise.py``;
the softmax and loss twins live in ``loss_ops.py``).

Element-wise math is not written twice: the CPU module's ``*_scalar`` functions are compiled
here as device functions from their Python source (``cuda.jit(device=True)(f.py_func)``).
Kernels are grid-stride loops over flat arrays; the wrappers have the CPU ops' names and
arguments. Dropout's keep bits come from the same counter-based Philox function as on the CPU,
so both backends draw bit-identical masks from one per-forward key.
"""
import math

import numpy as np
from numba import cuda

from ..cpu import elementwise as _cpu
from .core import SIMULATED, SMALL_LAUNCHES, THREADS, block_sum, flat, grid1d

__all__ = [
    "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward", "dropout_forward", "dropout_backward",
    "prelu_forward", "prelu_backward", "prelu_slope_backward", "elu_forward", "elu_backward",
    "absval_forward", "absval_backward", "bnll_forward", "bnll_backward",
    "power_forward", "power_backward", "exp_forward", "exp_backward",
    "log_forward", "log_backward", "threshold_forward", "clip_forward", "clip_backward",
    "swish_forward", "swish_backward",
]


def _device(f):
    return cuda.jit(device=True)(f.py_func)


_relu_fwd = _device(_cpu.relu_fwd_scalar)
_relu_bwd = _device(_cpu.relu_bwd_scalar)
_sigmoid_fwd = _device(_cpu.sigmoid_fwd_scalar)
_sigmoid_bwd = _device(_cpu.sigmoid_bwd_scalar)
_tanh_fwd = _device(_cpu.tanh_fwd_scalar)
_tanh_bwd = _device(_cpu.tanh_bwd_scalar)
_dropout = _device(_cpu.dropout_scalar)
_dropout_bits = _device(_cpu.dropout_bits_scalar)
_prelu_slope_grad = _device(_cpu.prelu_slope_grad_scalar)
_elu_fwd = _device(_cpu.elu_fwd_scalar)
_elu_bwd = _device(_cpu.elu_bwd_scalar)
_absval_fwd = _device(_cpu.absval_fwd_scalar)
_absval_bwd = _device(_cpu.absval_bwd_scalar)
_bnll_fwd = _device(_cpu.bnll_fwd_scalar)
_bnll_bwd = _device(_cpu.bnll_bwd_scalar)
_power_fwd = _device(_cpu.power_fwd_scalar)
_power_bwd = _device(_cpu.power_bwd_scalar)
_exp_fwd = _device(_cpu.exp_fwd_scalar)
_exp_bwd = _device(_cpu.exp_bwd_scalar)
_log_fwd = _device(_cpu.log_fwd_scalar)
_log_bwd = _device(_cpu.log_bwd_scalar)
_threshold = _device(_cpu.threshold_scalar)
_clip_fwd = _device(_cpu.clip_fwd_scalar)
_clip_bwd = _device(_cpu.clip_bwd_scalar)
_swish_bwd = _device(_cpu.swish_bwd_scalar)


# --- kernels: one input array -> one output array -----------------------------------------------
@cuda.jit
def _relu_forward_k(x, slope, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _relu_fwd(x[i], slope)


@cuda.jit
def _relu_backward_k(dy, x, slope, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _relu_bwd(dy[i], x[i], slope)


@cuda.jit
def _sigmoid_forward_k(x, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _sigmoid_fwd(x[i])


@cuda.jit
def _sigmoid_backward_k(dy, y, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _sigmoid_bwd(dy[i], y[i])


@cuda.jit
def _tanh_forward_k(x, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _tanh_fwd(x[i])


@cuda.jit
def _tanh_backward_k(dy, y, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _tanh_bwd(dy[i], y[i])


@cuda.jit
def _dropout_forward_k(x, key, thresh, scale, mask, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        m = np.uint8(1) if _dropout_bits(key, i) >= thresh else np.uint8(0)
        mask[i] = m
        y[i] = _dropout(x[i], m, scale)


@cuda.jit
def _dropout_backward_k(dy, mask, scale, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _dropout(dy[i], mask[i], scale)


@cuda.jit
def _prelu_forward_k(x, slope, chans, inner, div_factor, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        c = ((i // inner) % chans) // div_factor
        y[i] = _relu_fwd(x[i], slope[c])


@cuda.jit
def _prelu_backward_k(dy, x, slope, chans, inner, div_factor, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        c = ((i // inner) % chans) // div_factor
        dx[i] = _relu_bwd(dy[i], x[i], slope[c])


@cuda.jit
def _elu_forward_k(x, alpha, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _elu_fwd(x[i], alpha)


@cuda.jit
def _elu_backward_k(dy, x, y, alpha, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _elu_bwd(dy[i], x[i], y[i], alpha)


@cuda.jit
def _absval_forward_k(x, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _absval_fwd(x[i])


@cuda.jit
def _absval_backward_k(dy, x, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _absval_bwd(dy[i], x[i])


@cuda.jit
def _bnll_forward_k(x, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _bnll_fwd(x[i])


@cuda.jit
def _bnll_backward_k(dy, x, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _bnll_bwd(dy[i], x[i])


@cuda.jit
def _power_forward_k(x, power, scale, shift, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _power_fwd(x[i], power, scale, shift)


@cuda.jit
def _power_backward_k(dy, x, power, scale, shift, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _power_bwd(dy[i], x[i], power, scale, shift)


@cuda.jit
def _exp_forward_k(x, inner_scale, outer_scale, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _exp_fwd(x[i], inner_scale, outer_scale)


@cuda.jit
def _exp_backward_k(dy, y, inner_scale, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _exp_bwd(dy[i], y[i], inner_scale)


@cuda.jit
def _log_forward_k(x, scale, shift, base_scale, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _log_fwd(x[i], scale, shift, base_scale)


@cuda.jit
def _log_backward_k(dy, x, scale, shift, num_scale, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _log_bwd(dy[i], x[i], scale, shift, num_scale)


@cuda.jit
def _threshold_forward_k(x, threshold, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _threshold(x[i], threshold)


@cuda.jit
def _clip_forward_k(x, lo, hi, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _clip_fwd(x[i], lo, hi)


@cuda.jit
def _clip_backward_k(dy, x, lo, hi, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _clip_bwd(dy[i], x[i], lo, hi)


@cuda.jit
def _swish_forward_k(x, beta, sig, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        v = x[i]
        s = _sigmoid_fwd(beta * v)
        sig[i] = s
        y[i] = v * s


@cuda.jit
def _swish_backward_k(dy, y, sig, beta, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _swish_bwd(dy[i], y[i], sig[i], beta)


# --- PReLU slope gradient: per-slope block reduction, no atomics ---------------------------------
_RED_THREADS = THREADS
_MAX_PARTS = 4 if SMALL_LAUNCHES else 64


@cuda.jit
def _prelu_slope_partial_k(dy, x, chans, inner, div_factor, parts, partial):
    """Block b reduces part p = b % parts of slope g = b // parts: the elements
    n * chans * inner + g * div_factor * inner + r (n < outer, r < div_factor * inner), strided
    over the parts; partial[b] = their sum of dy * x * (x <= 0) (float64)."""
    buf = cuda.shared.array(_RED_THREADS, np.float64)
    tid = cuda.threadIdx.x
    b = cuda.blockIdx.x
    g = b // parts
    p = b - g * parts
    per_row = div_factor * inner
    row = chans * inner
    total = (dy.size // row) * per_row
    base = g * per_row
    acc = 0.0
    for j in range(p * _RED_THREADS + tid, total, parts * _RED_THREADS):
        n = j // per_row
        k = n * row + base + (j - n * per_row)
        acc += _prelu_slope_grad(dy[k], x[k])
    total = block_sum(buf, tid, acc)
    if tid == 0:
        partial[b] = total


@cuda.jit
def _prelu_slope_finish_k(partial, parts, slope_diff):
    """slope_diff[g] += sum of partial[g * parts : (g + 1) * parts], in a fixed order."""
    for g in range(cuda.grid(1), slope_diff.size, cuda.gridsize(1)):
        s = 0.0
        for p in range(parts):
            s += partial[g * parts + p]
        slope_diff[g] += s


_scratch = {}


def _partial_buffer(n):
    """A float64 device buffer of at least n items, kept per device between calls."""
    dev = 0 if SIMULATED else cuda.get_current_device().id
    buf = _scratch.get(dev)
    if buf is None or buf.size < n:
        buf = _scratch[dev] = cuda.device_array(max(n, 64), np.float64)
    return buf


# --- wrappers (the CPU ops' names and arguments) --------------------------------------------------
def relu_forward(x, slope, y):
    y = flat(y)
    _relu_forward_k[grid1d(y.size)](flat(x), slope, y)


def relu_backward(dy, x, slope, dx):
    dx = flat(dx)
    _relu_backward_k[grid1d(dx.size)](flat(dy), flat(x), slope, dx)


def sigmoid_forward(x, y):
    y = flat(y)
    _sigmoid_forward_k[grid1d(y.size)](flat(x), y)


def sigmoid_backward(dy, y, dx):
    dx = flat(dx)
    _sigmoid_backward_k[grid1d(dx.size)](flat(dy), flat(y), dx)


def tanh_forward(x, y):
    y = flat(y)
    _tanh_forward_k[grid1d(y.size)](flat(x), y)


def tanh_backward(dy, y, dx):
    dx = flat(dx)
    _tanh_backward_k[grid1d(dx.size)](flat(dy), flat(y), dx)


def dropout_forward(x, key, thresh, scale, mask, y):
    y = flat(y)
    _dropout_forward_k[grid1d(y.size)](flat(x), np.uint64(key), np.uint64(thresh), scale,
                                       flat(mask), y)


def dropout_backward(dy, mask, scale, dx):
    dx = flat(dx)
    _dropout_backward_k[grid1d(dx.size)](flat(dy), flat(mask), scale, dx)


def prelu_forward(x, slope, chans, inner, div_factor, y):
    y = flat(y)
    _prelu_forward_k[grid1d(y.size)](flat(x), flat(slope), chans, inner, div_factor, y)


def prelu_backward(dy, x, slope, chans, inner, div_factor, dx):
    dx = flat(dx)
    _prelu_backward_k[grid1d(dx.size)](flat(dy), flat(x), flat(slope), chans, inner,
                                       div_factor, dx)


def prelu_slope_backward(dy, x, chans, inner, div_factor, slope_diff):
    slope_diff = flat(slope_diff)
    dy, x = flat(dy), flat(x)
    slopes = slope_diff.size
    if dy.size == 0 or slopes == 0:
        return
    per_slope = dy.size // slopes
    parts = max(1, min(_MAX_PARTS, math.ceil(per_slope / (_RED_THREADS * 8))))
    partial = _partial_buffer(slopes * parts)
    _prelu_slope_partial_k[slopes * parts, _RED_THREADS](dy, x, chans, inner, div_factor, parts,
                                                         partial)
    _prelu_slope_finish_k[grid1d(slopes)](partial, parts, slope_diff)


def elu_forward(x, alpha, y):
    y = flat(y)
    _elu_forward_k[grid1d(y.size)](flat(x), alpha, y)


def elu_backward(dy, x, y, alpha, dx):
    dx = flat(dx)
    _elu_backward_k[grid1d(dx.size)](flat(dy), flat(x), flat(y), alpha, dx)


def absval_forward(x, y):
    y = flat(y)
    _absval_forward_k[grid1d(y.size)](flat(x), y)


def absval_backward(dy, x, dx):
    dx = flat(dx)
    _absval_backward_k[grid1d(dx.size)](flat(dy), flat(x), dx)


def bnll_forward(x, y):
    y = flat(y)
    _bnll_forward_k[grid1d(y.size)](flat(x), y)


def bnll_backward(dy, x, dx):
    dx = flat(dx)
    _bnll_backward_k[grid1d(dx.size)](flat(dy), flat(x), dx)


def power_forward(x, power, scale, shift, y):
    y = flat(y)
    _power_forward_k[grid1d(y.size)](flat(x), power, scale, shift, y)


def power_backward(dy, x, power, scale, shift, dx):
    dx = flat(dx)
    _power_backward_k[grid1d(dx.size)](flat(dy), flat(x), power, scale, shift, dx)


def exp_forward(x, inner_scale, outer_scale, y):
    y = flat(y)
    _exp_forward_k[grid1d(y.size)](flat(x), inner_scale, outer_scale, y)


def exp_backward(dy, y, inner_scale, dx):
    dx = flat(dx)
    _exp_backward_k[grid1d(dx.size)](flat(dy), flat(y), inner_scale, dx)


def log_forward(x, scale, shift, base_scale, y):
    y = flat(y)
    _log_forward_k[grid1d(y.size)](flat(x), scale, shift, base_scale, y)


def log_backward(dy, x, scale, shift, num_scale, dx):
    dx = flat(dx)
    _log_backward_k[grid1d(dx.size)](flat(dy), flat(x), scale, shift, num_scale, dx)


def threshold_forward(x, threshold, y):
    y = flat(y)
    _threshold_forward_k[grid1d(y.size)](flat(x), threshold, y)


def clip_forward(x, lo, hi, y):
    y = flat(y)
    _clip_forward_k[grid1d(y.size)](flat(x), lo, hi, y)


def clip_backward(dy, x, lo, hi, dx):
    dx = flat(dx)
    _clip_backward_k[grid1d(dx.size)](flat(dy), flat(x), lo, hi, dx)


def swish_forward(x, beta, sig, y):
    y = flat(y)
    _swish_forward_k[grid1d(y.size)](flat(x), beta, flat(sig), y)


def swish_backward(dy, y, sig, beta, dx):
    dx = flat(dx)
    _swish_backward_k[grid1d(dx.size)](flat(dy), flat(y), flat(sig), beta, dx)
