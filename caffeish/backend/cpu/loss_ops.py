"""CPU kernels for the softmax and loss layers that the CUDA backend needed as separate ops
(the older ones live in elementwise.py)."""

__all__ = []
