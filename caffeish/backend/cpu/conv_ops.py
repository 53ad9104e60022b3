"""Convolution on the CPU, image-parallel.

With N images and T threads, each of T workers takes N/T images and walks them a few at a time:
im2col of those images (through a zero-padded copy of them, so the copy loops need no bounds
checks) into its own column buffer (C*kh*kw x k*OH*OW, k chosen so the buffer
stays in L2 cache) and one single-threaded BLAS GEMM for them. Against one big batched GEMM over a column buffer of
the whole batch, this keeps the columns in cache and keeps both cores in BLAS's fast path; on
CIFAR10-quick's conv2 (32 -> 32 channels, 5x5, 16x16, batch 100) the forward went from 25.9 to
17.4 ms here. BLAS runs single-threaded (threads.py); concurrent multi-threaded OpenBLAS calls
oversubscribe the cores (15x slower, measured). With one thread the same walk runs on the calling
thread (CIFAR10-quick 613 -> 884 images/s against the batched path, LeNet 2,770 -> 3,631); with
fewer images than workers the batched path (one GEMM split across the workers) is used instead.

The column buffers' rows are padded when their length in bytes is a multiple of 2 KB: with a
row stride of 4 KB (CIFAR10-quick's conv1: 32x32 outputs) OpenBLAS's packing hits the same cache
sets for every row, and conv1's forward GEMM ran at 60 GFLOP/s against 88 with 64 bytes of padding
(the input-gradient GEMM 56 against 84).
"""
from __future__ import annotations

import threading

import numpy as np

from ..conv_common import Geom3D, batched_backward, batched_forward
from . import winograd
from .threads import run_blocks, workers
from .vision import channel_sum_ncp, col2im_padded_serial, im2col_padded_serial

__all__ = ["conv_forward", "conv_backward"]


_scratch = threading.local()
# a worker's column buffer for one GEMM stays under this many bytes (LeNet: 1 MB measured best
# of 256 KB - 2 MB, 19% faster than one image per GEMM; CIFAR10-quick indifferent)
_COL_BYTES = 1 << 20


def _buffer(name, shape, dtype):
    """This thread's scratch array called `name`, C-contiguous: a view of one flat buffer per
    name and dtype that grows to the largest request and is kept between calls and layers. (A
    cache keyed by shape, cleared when full, reallocated every buffer of a net with a few
    convolutions on every step: page faults and zeroing, ~2% of CIFAR10-quick's step.)"""
    dt = np.dtype(dtype)
    size = 1
    for d in shape:
        size *= int(d)
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = {}
    key = (name, dt.str)
    b = bufs.get(key)
    if b is None or b.size < size:
        b = bufs[key] = np.empty(size, dt)
    return b[:size].reshape(shape)


def _row_stride(m, itemsize):
    """Row length (elements) for an m-wide GEMM operand: m, plus 64 bytes when m * itemsize is a
    multiple of 2 KB (see the module docstring)."""
    return m + 64 // itemsize if (m * itemsize) % 2048 == 0 else m


def _padded_planes(x, geom):
    """(C, H + 2*pad_h, W + 2*pad_w): the zero-padded images the im2col / col2im work on."""
    return (x.shape[1], x.shape[2] + 2 * geom[4], x.shape[3] + 2 * geom[5])


def _columns(x, geom, rows, krows, m, pad_hw):
    """This thread's column buffer for the images x: im2col into its first krows rows (row
    stride padded, see _row_stride); a row of ones after them when rows = krows + 1 (the bias).
    Returns the (rows, m) view."""
    ld = _row_stride(m, x.dtype.itemsize)
    cbuf = _buffer("col", (rows, ld), x.dtype)
    im2col_padded_serial(x, *geom, _buffer("xpad", (x.shape[0],) + pad_hw, x.dtype), cbuf)
    if rows > krows:
        cbuf[krows, :m] = 1
    return cbuf[:, :m]


def _layout(x, w, geom, n):
    oh, ow = geom[8], geom[9]
    ohw = oh * ow
    krows = x.shape[1] * geom[0] * geom[1]
    g = w.shape[0] if w.ndim == 3 else 1
    n_out = w.shape[-2] * g
    per_image = krows * ohw * x.dtype.itemsize
    k = 1 if g > 1 else max(1, min(n, _COL_BYTES // max(per_image, 1)))
    return ohw, krows, g, n_out, k


def _use_winograd(algo, x, w, geom):
    """Winograd where eligible and every worker gets an image: its blocks are whole images,
    so with fewer images than workers it would run on one core while im2col's batched path
    splits its GEMM across all (batch 1 on 2 cores: GoogLeNet 84 against 79 ms)."""
    g = w.shape[0] if w.ndim == 3 else 1
    return (algo == "auto" and x.shape[0] >= workers()
            and winograd.eligible(x.shape, w.shape[-2] * g, geom, g))


def _pointwise(x, w, geom):
    """A 1x1 convolution without padding, ungrouped: the input planes are already the columns
    (Caffe's is_1x1 case skips im2col; stride s > 1 only needs every s-th pixel)."""
    return (geom[0] == 1 and geom[1] == 1 and geom[4] == 0 and geom[5] == 0 and w.ndim == 2
            and x.shape[0] >= workers())


def _pointwise_input(x, geom, a, b):
    """Images a..b of x as (k, C, OH*OW): a view at stride 1, a strided copy otherwise."""
    sh, sw = geom[2], geom[3]
    if sh == 1 and sw == 1:
        return x[a:b].reshape(b - a, x.shape[1], -1)
    sub = x[a:b, :, ::sh, ::sw][:, :, :geom[8], :geom[9]]
    return np.ascontiguousarray(sub).reshape(b - a, x.shape[1], -1)


def _pointwise_forward(x, w, bias, use_bias, geom, y, nw):
    n, o = x.shape[0], w.shape[0]
    y3 = y.reshape(n, o, -1)
    b3 = bias.reshape(1, o, 1) if use_bias else None

    def work(n0, n1):
        for a in range(n0, n1, 4):
            b = min(n1, a + 4)
            np.matmul(w, _pointwise_input(x, geom, a, b), out=y3[a:b])
            if b3 is not None:
                y3[a:b] += b3
    run_blocks(work, n, nw)


def _pointwise_backward(x, w, dy, wdiff, bdiff, dx, geom, nw):
    n, o = x.shape[0], w.shape[0]
    dy3 = dy.reshape(n, o, -1)
    strided = geom[2] != 1 or geom[3] != 1
    acc = x.dtype if wdiff is None else wdiff.dtype

    def work(n0, n1):
        wacc = np.zeros(w.shape, acc) if wdiff is not None else None
        bacc = np.zeros(o, np.float64) if bdiff is not None else None
        for i in range(n0, n1):
            d = dy3[i]
            if wacc is not None:
                wacc += d @ _pointwise_input(x, geom, i, i + 1)[0].T
            if bacc is not None:
                bacc += d.sum(axis=1, dtype=np.float64)
            if dx is not None:
                g = w.T @ d
                if strided:
                    dx[i] = 0
                    dx[i, :, ::geom[2], ::geom[3]][:, :geom[8], :geom[9]] = \
                        g.reshape(x.shape[1], geom[8], geom[9])
                else:
                    dx[i] = g.reshape(dx[i].shape)
        return wacc, bacc

    for wacc, bacc in run_blocks(work, n, nw):
        if wacc is not None:
            wdiff += wacc
        if bacc is not None:
            bdiff += bacc.astype(bdiff.dtype)


def _filters(x, w, geom):
    """w (O, C*kh*kw) as (O, C, kh, kw)."""
    return w.reshape(w.shape[0], x.shape[1], geom[0], geom[1])


def conv_forward(x, w, bias, use_bias, geom, col, res, y, algo="auto"):
    """y (N, O, OH, OW) = conv(x (N, C, H, W), w (O, K) or grouped (G, O/G, K/G)) + bias.
    col / res are the layer's scratch (used by the batched path). algo "auto" lets 5x5 stride-1
    convolutions with 16+ channels and 8x8+ outputs run by Winograd's F(2x2, 5x5)
    (winograd.eligible); "im2col" keeps them on im2col + GEMM. Returns whether the column
    buffer holds the whole batch's columns afterwards (backward may then skip im2col)."""
    n = x.shape[0]
    nw = workers()
    if isinstance(geom, Geom3D):
        from .. import cpu
        return batched_forward(cpu, x, w, bias, use_bias, geom, col, res, y)
    if _pointwise(x, w, geom):
        _pointwise_forward(x, w, bias, use_bias, geom, y, nw)
        return False
    if _use_winograd(algo, x, w, geom):
        b = bias if use_bias else np.zeros(w.shape[0], x.dtype)
        winograd.conv_winograd(x, winograd.filter_transform(_filters(x, w, geom), x.dtype), b,
                               y, geom[4], geom[5], _buffer, run_blocks, nw, r=geom[0])
        return False
    if nw > 1 and n < nw:
        from .. import cpu
        return batched_forward(cpu, x, w, bias, use_bias, geom, col, res, y)
    ohw, krows, g, n_out, k = _layout(x, w, geom, n)
    y3 = y.reshape(n, n_out, ohw)
    b3 = bias.reshape(1, n_out, 1) if use_bias and g > 1 else None
    # ungrouped: the bias rides in the GEMM as one more column of w against a row of ones
    fold = use_bias and g == 1
    if fold:
        w = np.concatenate([w, bias.reshape(n_out, 1).astype(w.dtype)], axis=1)
    rows = krows + fold

    pad_hw = _padded_planes(x, geom)
    direct_ok = _row_stride(ohw, x.dtype.itemsize) == ohw   # y's rows are a good GEMM output

    def work(n0, n1):
        for a in range(n0, n1, k):
            b = min(n1, a + k)
            m = (b - a) * ohw
            c = _columns(x[a:b], geom, rows, krows, m, pad_hw)
            if g > 1:
                np.matmul(w, c.reshape(g, krows // g, m), out=y3[a].reshape(g, n_out // g, m))
            elif b - a == 1 and direct_ok:
                np.matmul(w, c, out=y3[a])
            else:
                r = _buffer("res", (n_out, c.strides[0] // c.itemsize), x.dtype)[:, :m]
                np.matmul(w, c, out=r)
                np.copyto(y3[a:b], r.reshape(n_out, b - a, ohw).transpose(1, 0, 2))
            if b3 is not None:
                y3[a:b] += b3
    run_blocks(work, n, nw)
    return False


def conv_backward(x, w, dy, wdiff, bdiff, dx, geom, col, res, col_valid, algo="auto"):
    """Accumulate the weight gradient into wdiff (None: skip it, and bdiff must be None too) and
    (bdiff not None) the bias gradient into bdiff; (dx not None) overwrite dx with the input
    gradient. algo: see conv_forward; by
    Winograd, the input gradient of a 5x5 stride-1 convolution padded by p is the 5x5
    convolution of dy padded by 4 - p with the flipped, transposed filters, and the weight
    gradient is F(5x5, 2x2) on the forward's input tiles."""
    n = x.shape[0]
    nw = workers()
    if isinstance(geom, Geom3D):
        from .. import cpu
        return batched_backward(cpu, x, w, dy, wdiff, bdiff, dx, geom, col, res, col_valid)
    if _pointwise(x, w, geom):
        _pointwise_backward(x, w, dy, wdiff, bdiff, dx, geom, nw)
        return
    if _use_winograd(algo, x, w, geom):
        wino_w = winograd.wgrad_eligible(geom, x.shape[1], w.shape[0])
        wino_dx = dx is not None and winograd.dgrad_eligible(geom)
        if wino_w or wino_dx:
            dy4 = dy.reshape(n, w.shape[0], geom[8], geom[9])
            if wino_w:
                dw = winograd.conv_winograd_wgrad(x, dy4, geom[4], geom[5], _buffer,
                                                  run_blocks, nw, r=geom[0])
                wdiff += dw.reshape(wdiff.shape).astype(wdiff.dtype)
                if bdiff is not None:
                    channel_sum_ncp(dy4.reshape(n, w.shape[0], -1), bdiff)
            # what Winograd does not do, im2col does (both, in one pass over the columns)
            if not wino_w or (dx is not None and not wino_dx):
                conv_backward(x, w, dy, None if wino_w else wdiff, None if wino_w else bdiff,
                              None if wino_dx else dx, geom, col, res, col_valid, "im2col")
            if wino_dx:
                winograd.conv_winograd(
                    dy4, winograd.data_filter_transform(_filters(x, w, geom), x.dtype),
                    np.zeros(x.shape[1], x.dtype), dx, geom[0] - 1 - geom[4],
                    geom[1] - 1 - geom[5], _buffer, run_blocks, nw, r=geom[0])
            return
    if nw > 1 and n < nw:
        from .. import cpu
        return batched_backward(cpu, x, w, dy, wdiff, bdiff, dx, geom, col, res, col_valid)
    ohw, krows, g, n_out, k = _layout(x, w, geom, n)
    dy3 = dy.reshape(n, n_out, ohw)
    acc_dtype = x.dtype if wdiff is None else wdiff.dtype

    pad_hw = _padded_planes(x, geom)
    direct_ok = _row_stride(ohw, x.dtype.itemsize) == ohw   # dy's rows are a good GEMM operand

    # ungrouped: the bias gradient comes out of the weight-gradient GEMM as one more row (the
    # columns' row of ones against dY)
    fold = bdiff is not None and g == 1
    rows = krows + fold

    def work(n0, n1):
        # g == 1: accumulate dW^T (K x O) contiguously, transpose once at the end
        wacc = np.zeros((rows, n_out) if g == 1 else w.shape, acc_dtype)
        bacc = np.zeros(n_out, np.float64) if bdiff is not None and not fold else None
        for a in range(n0, n1, k):
            b = min(n1, a + k)
            m = (b - a) * ohw
            c = _columns(x[a:b], geom, rows, krows, m, pad_hw)
            ld = c.strides[0] // c.itemsize
            if b - a == 1 and direct_ok:
                d = dy3[a]
            else:
                d = _buffer("dy", (n_out, ld), x.dtype)[:, :m]
                np.copyto(d.reshape(n_out, b - a, ohw), dy3[a:b].transpose(1, 0, 2))
            if wdiff is None:
                pass
            elif g == 1:
                # dW^T += col @ dY^T: BLAS is faster with the long reduction on this side
                wt = _buffer("wt", (rows, n_out), x.dtype)
                np.matmul(c, d.T, out=wt)
                wacc += wt
            else:
                dg = d.reshape(g, n_out // g, m)
                wacc += np.matmul(dg, np.swapaxes(c.reshape(g, krows // g, m), 1, 2))
            if bacc is not None:
                bacc += d.sum(axis=1, dtype=np.float64)
            if dx is not None:
                dbuf = _buffer("dcol", (krows, ld), x.dtype)
                dc = dbuf[:, :m]
                if g == 1:
                    np.matmul(w.T, d, out=dc)
                else:
                    np.matmul(np.swapaxes(w, 1, 2), d.reshape(g, n_out // g, m),
                              out=dc.reshape(g, krows // g, m))
                col2im_padded_serial(dbuf, *geom, _buffer("xpad", (b - a,) + pad_hw, x.dtype),
                                     dx[a:b])
        return wacc, bacc

    parts = run_blocks(work, n, nw)
    if wdiff is None:
        return
    for wacc, bacc in parts:
        wdiff += wacc[:krows].T if g == 1 else wacc
        if fold:
            bdiff += wacc[krows]
        elif bacc is not None:
            bdiff += bacc.astype(bdiff.dtype)
