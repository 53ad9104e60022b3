"""Matrix products (numpy's BLAS)."""
import numpy as np

__all__ = ["gemm", "gemv", "axpy", "asum", "dot", "scal"]


def gemm(a, b, out=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out; op transposes the last two axes when asked."""
    if trans_a:
        a = np.swapaxes(a, -1, -2)
    if trans_b:
        b = np.swapaxes(b, -1, -2)
    if out is None:
        r = np.matmul(a, b)
        if alpha != 1.0:
            r *= alpha
        return r
    if beta == 0.0:
        np.matmul(a, b, out=out)
        if alpha != 1.0:
            out *= alpha
        return out
    r = np.matmul(a, b)
    if beta != 1.0:
        out *= beta
    if alpha != 1.0:
        r *= alpha
    out += r
    return out


def gemv(a, x, out=None, trans=False, alpha=1.0, beta=0.0):
    return gemm(a, x, out=out, trans_a=trans, alpha=alpha, beta=beta)


def axpy(alpha, x, y):
    """y += alpha * x"""
    if alpha == 1.0:
        y += x
    else:
        y += alpha * x
    return y


def asum(x) -> float:
    return float(np.abs(x).sum())


def dot(x, y) -> float:
    return float(np.dot(x.ravel(), y.ravel()))


def scal(alpha, x):
    x *= alpha
    return x
