"""Convolution on the GPU: the batched im2col + GEMM path over chunks of images (twins of
``backend/cpu/conv_ops.py``)."""
from ..conv_common import batched_backward, batched_forward

__all__ = ["conv_forward", "conv_backward"]


def conv_forward(x, w, bias, use_bias, geom, col, res, y, algo="auto"):
    """algo is the CPU's choice (Winograd or im2col); the GPU always runs im2col + GEMM."""
    from .. import cuda
    return batched_forward(cuda, x, w, bias, use_bias, geom, col, res, y)


def conv_backward(x, w, dy, wdiff, bdiff, dx, geom, col, res, col_valid, algo="auto"):
    from .. import cuda
    batched_backward(cuda, x, w, dy, wdiff, bdiff, dx, geom, col, res, col_valid)
