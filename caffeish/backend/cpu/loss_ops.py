"""CPU kernels for the softmax and loss layers that the CUDA backend needed as separate ops
(the older ones live in elementwise.py)."""
import math

from numba import njit

__all__ = ["first_bad_label"]


@njit(cache=True, error_model="numpy")
def first_bad_label(label, n_classes, has_ignore, ignore_label):
    """Flat index of the first label that is not a class in [0, n_classes) (after truncation toward zero) nor the ignore_label (when has_ignore), or -1; label flat."""
    for k in range(label.size):
        v = label[k]
        if math.isfinite(v):
            if v > -1.0 and v < n_classes:
                continue
            if has_ignore and abs(v) < 9.0e18 and int(v) == ignore_label:
                continue
        return k
    return -1
