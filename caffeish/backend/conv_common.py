"""The batched convolution both backends can run: im2col over a chunk of images into the
layer's column buffer, one (grouped) GEMM for the chunk, then the NCHW reorder. The CUDA backend
always uses it; the CPU backend uses it when there are fewer images than threads."""
from __future__ import annotations


def _chunking(x, w, geom, col, res):
    n = tuple(x.shape)[0]
    kh, kw, oh, ow = geom[0], geom[1], geom[8], geom[9]
    ohw = oh * ow
    krows = tuple(x.shape)[1] * kh * kw
    n_out = tuple(w.shape)[-2] * (tuple(w.shape)[0] if w.ndim == 3 else 1)
    chunk = max(1, min(n, col.size // max(krows * ohw, 1), res.size // max(n_out * ohw, 1)))
    return n, ohw, krows, n_out, chunk


def _views(col, res, krows, n_out, m, g):
    c = col[:krows * m].reshape(krows, m)
    r = res[:n_out * m].reshape(n_out, m)
    if g == 1:
        return c, r, c, r
    return c, r, c.reshape(g, krows // g, m), r.reshape(g, n_out // g, m)


def batched_forward(be, x, w, bias, use_bias, geom, col, res, y):
    n, ohw, krows, n_out, chunk = _chunking(x, w, geom, col, res)
    g = tuple(w.shape)[0] if w.ndim == 3 else 1
    y3 = y.reshape(n, n_out, ohw)
    for n0 in range(0, n, chunk):
        n1 = min(n, n0 + chunk)
        c, r, cg, rg = _views(col, res, krows, n_out, (n1 - n0) * ohw, g)
        be.im2col_batch(x[n0:n1], *geom, c)
        be.gemm(w, cg, out=rg)
        be.cnp_to_ncp(r, bias, use_bias, y3[n0:n1])
    return chunk >= n


def batched_backward(be, x, w, dy, wdiff, bdiff, dx, geom, col, res, col_valid):
    n, ohw, krows, n_out, chunk = _chunking(x, w, geom, col, res)
    g = tuple(w.shape)[0] if w.ndim == 3 else 1
    dy3 = dy.reshape(n, n_out, ohw)
    for n0 in range(0, n, chunk):
        n1 = min(n, n0 + chunk)
        c, r, cg, rg = _views(col, res, krows, n_out, (n1 - n0) * ohw, g)
        be.ncp_to_cnp(dy3[n0:n1], r)
        if bdiff is not None:
            be.channel_sum_ncp(dy3[n0:n1], bdiff)
        if wdiff is not None:       # None: the input gradient only
            if not (col_valid and chunk >= n):
                be.im2col_batch(x[n0:n1], *geom, c)
            be.conv_weight_grad(cg, rg, wdiff)
        if dx is not None:
            be.gemm(w, rg, out=cg, trans_a=True)
            be.col2im_batch(c, *geom, dx[n0:n1])
