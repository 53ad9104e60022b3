"""CUDA kernels for the neuron, softmax and loss layers (twins of ``backend/cpu/elementwise.py``).

Element-wise math is not written twice: the CPU module's ``*_scalar`` functions are compiled
here as device functions from their Python source (``cuda.jit(device=True)(f.py_func)``).
"""
from numba import cuda

from ..cpu import elementwise as _cpu
from .core import flat, grid1d

__all__ = ["relu_forward", "relu_backward"]


def _device(f):
    return cuda.jit(device=True)(f.py_func)


_relu_fwd = _device(_cpu.relu_fwd_scalar)
_relu_bwd = _device(_cpu.relu_bwd_scalar)


@cuda.jit
def _relu_forward_k(x, slope, y):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] = _relu_fwd(x[i], slope)


@cuda.jit
def _relu_backward_k(dy, x, slope, dx):
    for i in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[i] = _relu_bwd(dy[i], x[i], slope)


def relu_forward(x, slope, y):
    y = flat(y)
    _relu_forward_k[grid1d(y.size)](flat(x), slope, y)


def relu_backward(dy, x, slope, dx):
    dx = flat(dx)
    _relu_backward_k[grid1d(dx.size)](flat(dy), flat(x), slope, dx)
