"""Array plumbing on the CPU (twins of ``backend/cuda/core.py``): on the host these are plain
numpy calls, so code written against the backend runs unchanged in both modes."""
import numpy as np

__all__ = ["to_device", "to_host", "empty", "zeros", "view", "flat", "span", "steps", "fill", "synchronize"]


def to_device(host):
    return np.array(host, copy=True)


def to_host(arr, out=None):
    if out is None:
        return np.array(arr, copy=True)
    np.copyto(out, arr)
    return out


def empty(shape, dtype=np.float32):
    return np.empty(shape, np.dtype(dtype))


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, np.dtype(dtype))


def view(arr, *shape):
    """arr.reshape(shape), either spelling (``view(a, 2, 3)``, ``view(a, (2, 3))``)."""
    return arr.reshape(*shape)


def flat(arr):
    return arr.reshape(-1)


def steps(arr):
    """[arr[0], arr[1], ...]: the views along the first axis (a recurrent layer's time steps)."""
    return list(arr)


def span(arr, start, stop):
    """arr[start:stop] along the first axis."""
    return arr[start:stop]


def fill(x, value):
    x.fill(value)
    return x


def synchronize():
    """Nothing to wait for on the CPU."""
