"""The batched convolution both backends can run: im2col over a chunk of images into the
layer's column buffer, one (grouped) GEMM for the chunk, then the NCHW reorder. The CUDA backend
always uses it; the CPU backend uses it when there are fewer images than threads, and for 3-D
convolutions (a Geom3D geometry)."""
from __future__ import annotations


class Geom3D:
    """A 3-D convolution's geometry for the batched path: the depth axis (kernel ``kd``, stride
    ``sd``, pad ``pd``, dilation ``dd``, output ``od``), the 2-D geometry of every depth slice
    (``geom2``: kh, kw, sh, sw, ph, pw, dh, dw, oh, ow) and ``vol``, the layer's scratch for the
    depth-gathered input of a chunk of images (chunk * od * C * kd * H * W values).

    im2col of a volume = depth_gather (each output depth o and kernel depth z picks one input
    plane) then the 2-D im2col over (H, W) with C * kd channels: its rows are then the 3-D rows
    (c, z, i, j) and its columns the 3-D columns (n, o, y, x)."""

    __slots__ = ("kd", "sd", "pd", "dd", "od", "geom2", "vol")

    def __init__(self, kd, sd, pd, dd, od, geom2, vol):
        self.kd, self.sd, self.pd, self.dd, self.od = kd, sd, pd, dd, od
        self.geom2 = tuple(geom2)
        self.vol = vol

    @property
    def ksize(self) -> int:
        return self.kd * self.geom2[0] * self.geom2[1]

    @property
    def osize(self) -> int:
        return self.od * self.geom2[8] * self.geom2[9]


def _sizes(geom):
    """(kernel taps, output positions) per channel and image."""
    if isinstance(geom, Geom3D):
        return geom.ksize, geom.osize
    return geom[0] * geom[1], geom[8] * geom[9]


def _gathered(be, x, g: Geom3D):
    n, c, _, h, w = tuple(x.shape)
    return be.view(be.span(g.vol, 0, n * g.od * c * g.kd * h * w), n * g.od, c * g.kd, h, w)


def im2col_any(be, x, geom, col):
    """im2col of N images (N, C, H, W) with a 2-D geometry tuple, or of N volumes (N, C, D, H, W)
    with a Geom3D, into col (C*taps, N*outputs)."""
    if isinstance(geom, Geom3D):
        xg = _gathered(be, x, geom)
        be.depth_gather(x, geom.kd, geom.sd, geom.pd, geom.dd, geom.od, xg)
        be.im2col_batch(xg, *geom.geom2, col)
    else:
        be.im2col_batch(x, *geom, col)


def col2im_any(be, col, geom, dx):
    """The adjoint of im2col_any: dx (overwritten) sums the columns' taps."""
    if isinstance(geom, Geom3D):
        xg = _gathered(be, dx, geom)
        be.col2im_batch(col, *geom.geom2, xg)
        be.depth_scatter(xg, geom.kd, geom.sd, geom.pd, geom.dd, geom.od, dx)
    else:
        be.col2im_batch(col, *geom, dx)


def _chunking(x, w, geom, col, res):
    n = tuple(x.shape)[0]
    taps, ohw = _sizes(geom)
    krows = tuple(x.shape)[1] * taps
    n_out = tuple(w.shape)[-2] * (tuple(w.shape)[0] if w.ndim == 3 else 1)
    chunk = max(1, min(n, col.size // max(krows * ohw, 1), res.size // max(n_out * ohw, 1)))
    return n, ohw, krows, n_out, chunk


def _views(be, col, res, krows, n_out, m, g):
    c = be.view(be.span(col, 0, krows * m), krows, m)
    r = be.view(be.span(res, 0, n_out * m), n_out, m)
    if g == 1:
        return c, r, c, r
    return c, r, be.view(c, g, krows // g, m), be.view(r, g, n_out // g, m)


def batched_forward(be, x, w, bias, use_bias, geom, col, res, y):
    n, ohw, krows, n_out, chunk = _chunking(x, w, geom, col, res)
    g = tuple(w.shape)[0] if w.ndim == 3 else 1
    y3 = be.view(y, n, n_out, ohw)
    for n0 in range(0, n, chunk):
        n1 = min(n, n0 + chunk)
        c, r, cg, rg = _views(be, col, res, krows, n_out, (n1 - n0) * ohw, g)
        im2col_any(be, be.span(x, n0, n1), geom, c)
        be.gemm(w, cg, out=rg)
        be.cnp_to_ncp(r, bias, use_bias, be.span(y3, n0, n1))
    return chunk >= n


def batched_backward(be, x, w, dy, wdiff, bdiff, dx, geom, col, res, col_valid):
    n, ohw, krows, n_out, chunk = _chunking(x, w, geom, col, res)
    g = tuple(w.shape)[0] if w.ndim == 3 else 1
    dy3 = be.view(dy, n, n_out, ohw)
    for n0 in range(0, n, chunk):
        n1 = min(n, n0 + chunk)
        c, r, cg, rg = _views(be, col, res, krows, n_out, (n1 - n0) * ohw, g)
        be.ncp_to_cnp(be.span(dy3, n0, n1), r)
        if bdiff is not None:
            be.channel_sum_ncp(be.span(dy3, n0, n1), bdiff)
        if wdiff is not None:       # None: the input gradient only
            if not (col_valid and chunk >= n):
                im2col_any(be, be.span(x, n0, n1), geom, c)
            be.conv_weight_grad(cg, rg, wdiff)
        if dx is not None:
            be.gemm(w, rg, out=cg, trans_a=True)
            col2im_any(be, c, geom, be.span(dx, n0, n1))
