"""CPU kernels for the softmax and loss layers that the CUDA backend needed as separate ops
(the older ones live in elementwise.py)."""
import math

from numba import njit

__all__ = ["first_bad_label"]


@njit(cache=True)
def label_class(v, n_classes, has_ignore, ignore_label):
    """What a label value means: its class (truncated toward zero) when in [0, n_classes), -1
    when it is the ignore_label (has_ignore; that wins over a class), -2 when it is neither (not
    finite, negative, too large, fractional below 0)."""
    if math.isfinite(v):
        if has_ignore and abs(v) < 9.0e18 and int(v) == ignore_label:
            return -1
        if v > -1.0 and v < n_classes:
            return int(v)
    return -2


@njit(cache=True, error_model="numpy")
def first_bad_label(label, n_classes, has_ignore, ignore_label):
    """Flat index of the first label that is not a class in [0, n_classes) (after truncation toward zero) nor the ignore_label (when has_ignore), or -1; label flat."""
    for k in range(label.size):
        if label_class(label[k], n_classes, has_ignore, ignore_label) == -2:
            return k
    return -1
