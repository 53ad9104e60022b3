"""CUDA kernels for the vision layers (twins of ``backend/cpu/vision.py``): batched im2col /
col2im, the (N, C, P) <-> (C, N*P) layout changes, bias, and max / average / stochastic pooling.

Same arguments and index layouts as the CPU module. Each kernel is a grid-stride loop over the
elements it writes, so the backward passes (col2im, pooling) are gathers: every input cell sums
the outputs that read it, in the CPU kernels' order (col2im and max pooling agree bit for bit),
with no atomics. Images are flattened before launch; indices are computed from the shapes.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .blas import gemm
from .core import SMALL_LAUNCHES, block_sum, flat, grid1d

__all__ = [
    "im2col_batch", "col2im_batch", "ncp_to_cnp", "cnp_to_ncp", "bias_add_ncp", "channel_sum_ncp",
    "conv_weight_grad", "pool_index_to_mask", "max_pool_forward", "max_pool_backward",
    "ave_pool_forward", "ave_pool_backward",
    "stochastic_pool_forward_train", "stochastic_pool_forward_test",
    "stochastic_pool_backward_train", "stochastic_pool_backward_test",
    "depth_gather", "depth_scatter",
]

_NEG_FLT_MAX = -3.4028234663852886e38   # Caffe's initial max (-FLT_MAX)
_RED_THREADS = 32 if SMALL_LAUNCHES else 256
_MAX_RED_BLOCKS = 2 if SMALL_LAUNCHES else 4096


def _shape(a):
    return tuple(int(s) for s in a.shape)


# builtin min/max do not compile for numba 0.68's CUDA target (its *args overloads fail)
@cuda.jit(device=True, inline=True)
def _imin(a, b):
    return a if a < b else b


@cuda.jit(device=True, inline=True)
def _imax(a, b):
    return a if a > b else b


# --- im2col / col2im -----------------------------------------------------------------------------
@cuda.jit
def _im2col_k(x, chans, height, width, kh, kw, sh, sw, ph, pw, dh, dw, ohw, ow, ncols, col):
    """col[(c*kh+i)*kw+j, n*ohw + y*ow + xo] = x[n, c, y*sh-ph+i*dh, xo*sw-pw+j*dw] (0 outside)."""
    for t in range(cuda.grid(1), col.size, cuda.gridsize(1)):
        row = t // ncols
        q = t - row * ncols
        n = q // ohw
        r = q - n * ohw
        y = r // ow
        xo = r - y * ow
        ci = row // kw
        j = row - ci * kw
        c = ci // kh
        i = ci - c * kh
        hi = y * sh - ph + i * dh
        wi = xo * sw - pw + j * dw
        if hi >= 0 and hi < height and wi >= 0 and wi < width:
            col[t] = x[((n * chans + c) * height + hi) * width + wi]
        else:
            col[t] = 0


def im2col_batch(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, col):
    n_img, chans, height, width = _shape(x)
    col = flat(col)
    if col.size:
        _im2col_k[grid1d(col.size)](flat(x), chans, height, width, kh, kw, sh, sw, ph, pw, dh, dw,
                                    oh * ow, ow, n_img * oh * ow, col)


@cuda.jit
def _col2im_k(col, chans, height, width, kh, kw, sh, sw, ph, pw, dh, dw, ohw, oh, ow, ncols, dx):
    """dx[n, c, h, w] = sum over taps (i, j) (in that order) of the column entry that read it."""
    hw = height * width
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        plane = t // hw
        p = t - plane * hw
        h = p // width
        w = p - h * width
        n = plane // chans
        c = plane - n * chans
        base = c * kh * kw * ncols + n * ohw
        acc = dx.dtype.type(0)
        for i in range(kh):
            hp = h + ph - i * dh
            if hp < 0:
                break
            y = hp // sh
            if y * sh != hp or y >= oh:
                continue
            for j in range(kw):
                wp = w + pw - j * dw
                if wp < 0:
                    break
                xo = wp // sw
                if xo * sw != wp or xo >= ow:
                    continue
                acc += col[base + (i * kw + j) * ncols + y * ow + xo]
        dx[t] = acc


def col2im_batch(col, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dx):
    n_img, chans, height, width = _shape(dx)
    dx = flat(dx)
    if dx.size:
        _col2im_k[grid1d(dx.size)](flat(col), chans, height, width, kh, kw, sh, sw, ph, pw, dh,
                                   dw, oh * ow, oh, ow, n_img * oh * ow, dx)


# --- layouts, bias, weight gradient --------------------------------------------------------------
@cuda.jit
def _ncp_to_cnp_k(src, n_img, chans, plen, dst):
    """dst[c, n*P + p] = src[n, c, p] (one thread per dst element: coalesced writes)."""
    npl = n_img * plen
    for t in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        c = t // npl
        q = t - c * npl
        n = q // plen
        p = q - n * plen
        dst[t] = src[(n * chans + c) * plen + p]


def ncp_to_cnp(src, dst):
    n_img, chans, plen = _shape(src)
    dst = flat(dst)
    if dst.size:
        _ncp_to_cnp_k[grid1d(dst.size)](flat(src), n_img, chans, plen, dst)


@cuda.jit
def _cnp_to_ncp_k(src, bias, use_bias, n_img, chans, plen, dst):
    """dst[n, c, p] = src[c, n*P + p] (+ bias[c])."""
    cp = chans * plen
    for t in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        n = t // cp
        q = t - n * cp
        c = q // plen
        p = q - c * plen
        v = src[(c * n_img + n) * plen + p]
        if use_bias:
            v += bias[c]
        dst[t] = v


def cnp_to_ncp(src, bias, use_bias, dst):
    n_img, chans, plen = _shape(dst)
    dst = flat(dst)
    if dst.size:
        _cnp_to_ncp_k[grid1d(dst.size)](flat(src), flat(bias), bool(use_bias), n_img, chans, plen,
                                        dst)


@cuda.jit
def _bias_add_k(bias, chans, plen, y):
    for t in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[t] += bias[(t // plen) % chans]


def bias_add_ncp(bias, y):
    """y[n, c, p] += bias[c]; y (N,C,P)."""
    _, chans, plen = _shape(y)
    y = flat(y)
    if y.size:
        _bias_add_k[grid1d(y.size)](flat(bias), chans, plen, y)


@cuda.jit
def _channel_sum_k(dy, n_img, chans, plen, out):
    """out[c] += sum over n, p of dy[n, c, p]: one block per channel (block-stride), a float64
    shared-memory tree reduction inside the block."""
    buf = cuda.shared.array(_RED_THREADS, np.float64)
    tid = cuda.threadIdx.x
    npl = n_img * plen
    for c in range(cuda.blockIdx.x, chans, cuda.gridDim.x):
        acc = 0.0
        for q in range(tid, npl, cuda.blockDim.x):
            n = q // plen
            acc += dy[(n * chans + c) * plen + q - n * plen]
        total = block_sum(buf, tid, acc)
        if tid == 0:
            out[c] += total


def channel_sum_ncp(dy, out):
    """out[c] += sum over n, p of dy[n, c, p] (float64 accumulation); dy (N,C,P), out (C,)."""
    n_img, chans, plen = _shape(dy)
    if chans:
        _channel_sum_k[min(chans, _MAX_RED_BLOCKS), _RED_THREADS](flat(dy), n_img, chans, plen,
                                                                  flat(out))


def conv_weight_grad(col, res, wdiff):
    """wdiff += res @ col^T (one GEMM, beta=1); 2-D (K, m), (O, m), (O, K) or per group 3-D."""
    return gemm(res, col, out=wdiff, trans_b=True, beta=1.0)


@cuda.jit
def _index_to_mask_k(index, mask):
    for t in range(cuda.grid(1), mask.size, cuda.gridsize(1)):
        mask[t] = index[t]


def pool_index_to_mask(index, mask):
    """mask[...] = index as floats (Caffe's mask top of MAX pooling)."""
    m = flat(mask)
    if m.size:
        _index_to_mask_k[grid1d(m.size)](flat(index), m)
    return mask


# --- pooling ------------------------------------------------------------------------------------
@cuda.jit
def _max_pool_fwd_k(x, height, width, kh, kw, sh, sw, ph, pw, pooled_h, pooled_w, neg, top,
                    mask):
    """top = max over the window clipped to the image (first max wins), mask = its h*W+w or -1."""
    phw = pooled_h * pooled_w
    for t in range(cuda.grid(1), top.size, cuda.gridsize(1)):
        plane = t // phw
        q = t - plane * phw
        py = q // pooled_w
        px = q - py * pooled_w
        hs = py * sh - ph
        he = _imin(hs + kh, height)
        hs = _imax(hs, 0)
        ws = px * sw - pw
        we = _imin(ws + kw, width)
        ws = _imax(ws, 0)
        xb = plane * height * width
        best = neg
        arg = -1
        for h in range(hs, he):
            for w in range(ws, we):
                v = x[xb + h * width + w]
                if v > best:
                    best = v
                    arg = h * width + w
        top[t] = best
        mask[t] = arg


def max_pool_forward(x, kh, kw, sh, sw, ph, pw, top, mask):
    _, _, height, width = _shape(x)
    _, _, pooled_h, pooled_w = _shape(top)
    top = flat(top)
    if top.size:
        _max_pool_fwd_k[grid1d(top.size)](flat(x), height, width, kh, kw, sh, sw, ph, pw,
                                          pooled_h, pooled_w, top.dtype.type(_NEG_FLT_MAX), top,
                                          flat(mask))


@cuda.jit(device=True)
def _window_range(h, pad, k, s, pooled):
    """[first, last) pooled positions whose window (start p*s - pad, length k) covers cell h."""
    hp = h + pad
    p0 = 0 if hp < k else (hp - k) // s + 1
    p1 = _imin(hp // s + 1, pooled)
    return p0, p1


@cuda.jit
def _max_pool_bwd_k(top_diff, mask, height, width, kh, kw, sh, sw, ph, pw, pooled_h, pooled_w,
                    dx):
    """dx[n,c,h,w] = sum of top_diff over the windows covering (h, w) whose argmax is (h, w)."""
    hw = height * width
    phw = pooled_h * pooled_w
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        plane = t // hw
        p = t - plane * hw
        h = p // width
        w = p - h * width
        py0, py1 = _window_range(h, ph, kh, sh, pooled_h)
        px0, px1 = _window_range(w, pw, kw, sw, pooled_w)
        tb = plane * phw
        acc = dx.dtype.type(0)
        for py in range(py0, py1):
            for px in range(px0, px1):
                q = tb + py * pooled_w + px
                if mask[q] == p:
                    acc += top_diff[q]
        dx[t] = acc


def max_pool_backward(top_diff, mask, kh, kw, sh, sw, ph, pw, dx):
    _, _, height, width = _shape(dx)
    _, _, pooled_h, pooled_w = _shape(top_diff)
    dx = flat(dx)
    if dx.size:
        _max_pool_bwd_k[grid1d(dx.size)](flat(top_diff), flat(mask), height, width, kh, kw, sh,
                                          sw, ph, pw, pooled_h, pooled_w, dx)


@cuda.jit
def _ave_pool_fwd_k(x, height, width, kh, kw, sh, sw, ph, pw, pooled_h, pooled_w, top):
    """top = window sum clipped to the image / window size clipped to the padded image."""
    phw = pooled_h * pooled_w
    for t in range(cuda.grid(1), top.size, cuda.gridsize(1)):
        plane = t // phw
        q = t - plane * phw
        py = q // pooled_w
        px = q - py * pooled_w
        hs = py * sh - ph
        he = _imin(hs + kh, height + ph)
        size_h = he - hs
        hs = _imax(hs, 0)
        he = _imin(he, height)
        ws = px * sw - pw
        we = _imin(ws + kw, width + pw)
        size = size_h * (we - ws)
        ws = _imax(ws, 0)
        we = _imin(we, width)
        xb = plane * height * width
        s = 0.0
        for h in range(hs, he):
            for w in range(ws, we):
                s += x[xb + h * width + w]
        top[t] = s / size


def ave_pool_forward(x, kh, kw, sh, sw, ph, pw, top):
    _, _, height, width = _shape(x)
    _, _, pooled_h, pooled_w = _shape(top)
    top = flat(top)
    if top.size:
        _ave_pool_fwd_k[grid1d(top.size)](flat(x), height, width, kh, kw, sh, sw, ph, pw,
                                          pooled_h, pooled_w, top)


@cuda.jit
def _ave_pool_bwd_k(top_diff, height, width, kh, kw, sh, sw, ph, pw, pooled_h, pooled_w, dx):
    """dx[n,c,h,w] = sum over the windows covering (h, w) of top_diff / window size."""
    hw = height * width
    phw = pooled_h * pooled_w
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        plane = t // hw
        p = t - plane * hw
        h = p // width
        w = p - h * width
        py0, py1 = _window_range(h, ph, kh, sh, pooled_h)
        px0, px1 = _window_range(w, pw, kw, sw, pooled_w)
        tb = plane * phw
        s = 0.0
        for py in range(py0, py1):
            hs = py * sh - ph
            size_h = _imin(hs + kh, height + ph) - hs
            for px in range(px0, px1):
                ws = px * sw - pw
                size = size_h * (_imin(ws + kw, width + pw) - ws)
                s += top_diff[tb + py * pooled_w + px] / size
        dx[t] = s


def ave_pool_backward(top_diff, kh, kw, sh, sw, ph, pw, dx):
    _, _, height, width = _shape(dx)
    _, _, pooled_h, pooled_w = _shape(top_diff)
    dx = flat(dx)
    if dx.size:
        _ave_pool_bwd_k[grid1d(dx.size)](flat(top_diff), height, width, kh, kw, sh, sw, ph, pw,
                                          pooled_h, pooled_w, dx)


@cuda.jit
def _sto_fwd_train_k(x, height, width, kh, kw, sh, sw, pooled_h, pooled_w, u, top, index):
    """top = x at the first window cell whose running sum reaches u * window sum (last cell if
    none; 0 and index -1 for an empty window), index = its h*W+w; unpadded windows."""
    phw = pooled_h * pooled_w
    for t in range(cuda.grid(1), top.size, cuda.gridsize(1)):
        plane = t // phw
        q = t - plane * phw
        py = q // pooled_w
        px = q - py * pooled_w
        hs = py * sh
        he = _imin(hs + kh, height)
        ws = px * sw
        we = _imin(ws + kw, width)
        if hs >= he or ws >= we:
            index[t] = -1
            top[t] = 0
            continue
        xb = plane * height * width
        total = 0.0
        for h in range(hs, he):
            for w in range(ws, we):
                total += x[xb + h * width + w]
        thres = u[t] * total
        run = 0.0
        arg = (he - 1) * width + (we - 1)
        found = False
        for h in range(hs, he):
            if found:
                break
            for w in range(ws, we):
                run += x[xb + h * width + w]
                if run >= thres:
                    arg = h * width + w
                    found = True
                    break
        index[t] = arg
        top[t] = x[xb + arg]


def stochastic_pool_forward_train(x, kh, kw, sh, sw, u, top, index):
    _, _, height, width = _shape(x)
    _, _, pooled_h, pooled_w = _shape(top)
    top = flat(top)
    if top.size:
        _sto_fwd_train_k[grid1d(top.size)](flat(x), height, width, kh, kw, sh, sw, pooled_h,
                                           pooled_w, flat(u), top, flat(index))


@cuda.jit
def _sto_fwd_test_k(x, height, width, kh, kw, sh, sw, pooled_h, pooled_w, top):
    """top = sum(x^2) / sum(x) over the window (0 when sum(x) <= 0)."""
    phw = pooled_h * pooled_w
    for t in range(cuda.grid(1), top.size, cuda.gridsize(1)):
        plane = t // phw
        q = t - plane * phw
        py = q // pooled_w
        px = q - py * pooled_w
        hs = py * sh
        he = _imin(hs + kh, height)
        ws = px * sw
        we = _imin(ws + kw, width)
        xb = plane * height * width
        s1 = 0.0
        s2 = 0.0
        for h in range(hs, he):
            for w in range(ws, we):
                v = x[xb + h * width + w]
                s1 += v
                s2 += v * v
        top[t] = s2 / s1 if s1 > 0 else 0.0


def stochastic_pool_forward_test(x, kh, kw, sh, sw, top):
    _, _, height, width = _shape(x)
    _, _, pooled_h, pooled_w = _shape(top)
    top = flat(top)
    if top.size:
        _sto_fwd_test_k[grid1d(top.size)](flat(x), height, width, kh, kw, sh, sw, pooled_h,
                                          pooled_w, top)


@cuda.jit
def _sto_bwd_train_k(top_diff, index, height, width, kh, kw, sh, sw, pooled_h, pooled_w, dx):
    """dx[n,c,h,w] = sum of top_diff over the windows covering (h, w) that picked (h, w)."""
    hw = height * width
    phw = pooled_h * pooled_w
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        plane = t // hw
        p = t - plane * hw
        h = p // width
        w = p - h * width
        py0, py1 = _window_range(h, 0, kh, sh, pooled_h)
        px0, px1 = _window_range(w, 0, kw, sw, pooled_w)
        tb = plane * phw
        acc = dx.dtype.type(0)
        for py in range(py0, py1):
            for px in range(px0, px1):
                q = tb + py * pooled_w + px
                if index[q] == p:
                    acc += top_diff[q]
        dx[t] = acc


def stochastic_pool_backward_train(top_diff, index, kh, kw, sh, sw, dx):
    _, _, height, width = _shape(dx)
    _, _, pooled_h, pooled_w = _shape(top_diff)
    dx = flat(dx)
    if dx.size:
        _sto_bwd_train_k[grid1d(dx.size)](flat(top_diff), flat(index), height, width, kh, kw,
                                          sh, sw, pooled_h, pooled_w, dx)


@cuda.jit
def _sto_bwd_test_k(x, top_diff, height, width, kh, kw, sh, sw, pooled_h, pooled_w, dx):
    """dx[n,c,h,w] = sum over the windows covering (h, w) with S1 > 0 of
    top_diff * (2*x*S1 - S2) / S1^2 (S1, S2: the window's sums of x and x^2, recomputed)."""
    hw = height * width
    phw = pooled_h * pooled_w
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        plane = t // hw
        p = t - plane * hw
        h = p // width
        w = p - h * width
        py0, py1 = _window_range(h, 0, kh, sh, pooled_h)
        px0, px1 = _window_range(w, 0, kw, sw, pooled_w)
        xb = plane * hw
        tb = plane * phw
        xv = 2.0 * x[t]
        acc = 0.0
        for py in range(py0, py1):
            hs = py * sh
            he = _imin(hs + kh, height)
            for px in range(px0, px1):
                ws = px * sw
                we = _imin(ws + kw, width)
                s1 = 0.0
                s2 = 0.0
                for hh in range(hs, he):
                    for ww in range(ws, we):
                        v = x[xb + hh * width + ww]
                        s1 += v
                        s2 += v * v
                if s1 > 0:
                    acc += top_diff[tb + py * pooled_w + px] / (s1 * s1) * (xv * s1 - s2)
        dx[t] = acc


def stochastic_pool_backward_test(x, top_diff, kh, kw, sh, sw, dx):
    _, _, height, width = _shape(dx)
    _, _, pooled_h, pooled_w = _shape(top_diff)
    dx = flat(dx)
    if dx.size:
        _sto_bwd_test_k[grid1d(dx.size)](flat(x), flat(top_diff), height, width, kh, kw, sh, sw,
                                         pooled_h, pooled_w, dx)


# --- 3-D convolutions: the depth axis around the 2-D im2col / col2im ------------------------------
@cuda.jit
def _depth_gather_k(x, chans, depth, hw, kd, sd, pd, dd, od, xg):
    for t in range(cuda.grid(1), xg.size, cuda.gridsize(1)):
        task = t // hw
        q = t - task * hw
        z = task % kd
        r = task // kd
        c = r % chans
        r = r // chans
        o = r % od
        n = r // od
        d = o * sd - pd + z * dd
        if d < 0 or d >= depth:
            xg[t] = 0
        else:
            xg[t] = x[((n * chans + c) * depth + d) * hw + q]


def depth_gather(x, kd, sd, pd, dd, od, xg):
    """xg[n*od + o, c*kd + z] = x[n, c, o*sd - pd + z*dd] (zeros outside the volume)."""
    n_img, chans, depth, height, width = _shape(x)
    xg = flat(xg)
    if xg.size:
        _depth_gather_k[grid1d(xg.size)](flat(x), chans, depth, height * width, kd, sd, pd, dd,
                                         od, xg)


@cuda.jit
def _depth_scatter_k(xg, chans, depth, hw, kd, sd, pd, dd, od, dx):
    for t in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        plane = t // hw
        q = t - plane * hw
        d = plane % depth
        r = plane // depth
        c = r % chans
        n = r // chans
        acc = dx.dtype.type(0)
        for z in range(kd):
            num = d + pd - z * dd
            if num < 0:
                break
            o = num // sd
            if o * sd != num or o >= od:
                continue
            acc += xg[((((n * od + o) * chans + c) * kd + z) * hw) + q]
        dx[t] = acc


def depth_scatter(xg, kd, sd, pd, dd, od, dx):
    """dx[n, c, d] = sum over (o, z) with o*sd - pd + z*dd == d of xg[n*od + o, c*kd + z]."""
    n_img, chans, depth, height, width = _shape(dx)
    dx = flat(dx)
    if dx.size:
        _depth_scatter_k[grid1d(dx.size)](flat(xg), chans, depth, height * width, kd, sd, pd,
                                          dd, od, dx)
