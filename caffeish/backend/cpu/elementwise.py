"""CPU kernels."""
__all__ = []
