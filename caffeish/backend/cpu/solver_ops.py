"""Parameter update kernels (written once per backend; the solvers call them by name)."""
import numpy as np

__all__ = ["sgd_update", "l2_regularize", "l1_regularize", "sumsq"]


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
