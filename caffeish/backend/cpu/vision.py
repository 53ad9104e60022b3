"""CPU kernels for the vision layers: batched im2col / col2im and max / average / stochastic pooling.

Images are NCHW C-contiguous arrays. The column layout of a batch of ``n`` images is
``col[(c*kh + i)*kw + j, img*oh*ow + y*ow + x]`` (rows: channel, kernel row, kernel column;
columns: image, output row, output column), so one GEMM covers the whole batch and the rows of
one convolution group are contiguous.
"""
import numpy as np
from numba import njit, prange

from .blas import gemm

__all__ = [
    "im2col_batch", "col2im_batch", "ncp_to_cnp", "cnp_to_ncp", "bias_add_ncp", "channel_sum_ncp",
    "conv_weight_grad", "pool_index_to_mask",
    "max_pool_forward", "max_pool_backward", "ave_pool_forward", "ave_pool_backward",
    "stochastic_pool_forward_train", "stochastic_pool_forward_test",
    "stochastic_pool_backward_train", "stochastic_pool_backward_test",
    "depth_gather", "depth_scatter",
]

# Caffe initialises max pooling with -FLT_MAX (also in double precision).
_NEG_FLT_MAX = -3.4028234663852886e38


@njit(cache=True, inline="always")
def _im2col_task(x, task, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, col):
    """One (channel, kernel row, image) task of im2col_batch: its kw rows of col, one image wide.
    col's rows are col.shape[1] long (>= N*oh*ow: a padded row stride is allowed)."""
    n_img, chans, height, width = x.shape
    ohw = oh * ow
    ncols = col.shape[1]
    cr = task // n_img
    n = task - cr * n_img
    c = cr // kh
    i = cr - c * kh
    for j in range(kw):
        rowoff = (cr * kw + j) * ncols + n * ohw
        w0 = j * dw - pw
        for y in range(oh):
            hi = y * sh - ph + i * dh
            dst = rowoff + y * ow
            if hi < 0 or hi >= height:
                for xo in range(ow):
                    col.flat[dst + xo] = 0
                continue
            src = ((n * chans + c) * height + hi) * width
            for xo in range(ow):
                wi = xo * sw + w0
                if wi >= 0 and wi < width:
                    col.flat[dst + xo] = x.flat[src + wi]
                else:
                    col.flat[dst + xo] = 0


@njit(parallel=True, cache=True, error_model="numpy")
def im2col_batch(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, col):
    """col[(c*kh+i)*kw+j, n*oh*ow + y*ow + xo] = x[n, c, y*sh-ph+i*dh, xo*sw-pw+j*dw], 0 outside; x (N,C,H,W), col (C*kh*kw, N*oh*ow), both C-contiguous (flat indexing: 4x faster than 2-D here)."""
    for task in prange(x.shape[1] * kh * x.shape[0]):
        _im2col_task(x, task, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, col)


@njit(cache=True, nogil=True, error_model="numpy")
def im2col_padded_serial(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, xp, col):
    """im2col_batch on the calling thread, releasing the GIL (for caffeish's worker pool), through
    a zero-padded copy: xp (N, C, H+2*ph, W+2*pw) is scratch. With the padding in place every
    tap is in range, so the inner loop is a plain strided copy; 1.7-2.2x faster than the
    bounds-checked loop of im2col_batch on CIFAR10-quick's and LeNet's convolutions."""
    n_img, chans, height, width = x.shape
    hp, wp = xp.shape[2], xp.shape[3]
    for p in range(n_img * chans):
        base = p * hp * wp
        for q in range(hp * wp):
            xp.flat[base + q] = 0
        for h in range(height):
            dst = base + (h + ph) * wp + pw
            src = (p * height + h) * width
            for w in range(width):
                xp.flat[dst + w] = x.flat[src + w]
    ohw = oh * ow
    ncols = col.shape[1]
    for c in range(chans):
        for i in range(kh):
            for j in range(kw):
                row = ((c * kh + i) * kw + j) * ncols
                for n in range(n_img):
                    dst0 = row + n * ohw
                    src0 = ((n * chans + c) * hp + i * dh) * wp + j * dw
                    for y in range(oh):
                        dst = dst0 + y * ow
                        src = src0 + y * sh * wp
                        if sw == 1:
                            for xo in range(ow):
                                col.flat[dst + xo] = xp.flat[src + xo]
                        else:
                            for xo in range(ow):
                                col.flat[dst + xo] = xp.flat[src + xo * sw]


@njit(cache=True, inline="always")
def _col2im_plane(col, plane, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dx):
    """One (image, channel) plane of col2im_batch: overwritten with the sum of its taps (col's
    rows col.shape[1] long, >= N*oh*ow)."""
    n_img, chans, height, width = dx.shape
    ohw = oh * ow
    ncols = col.shape[1]
    hw = height * width
    n = plane // chans
    c = plane - n * chans
    pbase = plane * hw
    for p in range(hw):
        dx.flat[pbase + p] = 0
    for i in range(kh):
        for j in range(kw):
            rowoff = ((c * kh + i) * kw + j) * ncols + n * ohw
            w0 = j * dw - pw
            for y in range(oh):
                hi = y * sh - ph + i * dh
                if hi < 0 or hi >= height:
                    continue
                src = rowoff + y * ow
                dst = pbase + hi * width
                for xo in range(ow):
                    wi = xo * sw + w0
                    if wi >= 0 and wi < width:
                        dx.flat[dst + wi] += col.flat[src + xo]


@njit(parallel=True, cache=True, error_model="numpy")
def col2im_batch(col, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dx):
    """dx[n, c, h, w] = sum of col[(c*kh+i)*kw+j, n*oh*ow + y*ow + xo] over taps with y*sh-ph+i*dh == h, xo*sw-pw+j*dw == w; dx (N,C,H,W) overwritten, one (n, c) plane per thread (race-free)."""
    for plane in prange(dx.shape[0] * dx.shape[1]):
        _col2im_plane(col, plane, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dx)


@njit(cache=True, nogil=True, error_model="numpy")
def col2im_padded_serial(col, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dxp, dx):
    """col2im_batch on the calling thread, releasing the GIL, summing the taps into a zero-padded
    plane (dxp (N, C, H+2*ph, W+2*pw) is scratch) with no bounds checks, then cropping it into
    dx (overwritten); 1.5-2x faster than col2im_batch's checked loop here."""
    n_img, chans, height, width = dx.shape
    hp, wp = dxp.shape[2], dxp.shape[3]
    ohw = oh * ow
    ncols = col.shape[1]
    for plane in range(n_img * chans):
        n = plane // chans
        c = plane - n * chans
        pb = plane * hp * wp
        for q in range(hp * wp):
            dxp.flat[pb + q] = 0
        for i in range(kh):
            for j in range(kw):
                src0 = ((c * kh + i) * kw + j) * ncols + n * ohw
                dst0 = pb + i * dh * wp + j * dw
                for y in range(oh):
                    src = src0 + y * ow
                    dst = dst0 + y * sh * wp
                    if sw == 1:
                        for xo in range(ow):
                            dxp.flat[dst + xo] += col.flat[src + xo]
                    else:
                        for xo in range(ow):
                            dxp.flat[dst + xo * sw] += col.flat[src + xo]
        db = plane * height * width
        for h in range(height):
            src = pb + (h + ph) * wp + pw
            for w in range(width):
                dx.flat[db + h * width + w] = dxp.flat[src + w]


@njit(parallel=True, cache=True, error_model="numpy")
def ncp_to_cnp(src, dst):
    """dst[c, n*P + p] = src[n, c, p]; src (N,C,P), dst (C, N*P)."""
    n_img, chans, plen = src.shape
    for task in prange(n_img * chans):
        n = task // chans
        c = task - n * chans
        off = n * plen
        for p in range(plen):
            dst[c, off + p] = src[n, c, p]


@njit(parallel=True, cache=True, error_model="numpy")
def cnp_to_ncp(src, bias, use_bias, dst):
    """dst[n, c, p] = src[c, n*P + p] (+ bias[c] when use_bias); src (C, N*P), dst (N,C,P)."""
    n_img, chans, plen = dst.shape
    for task in prange(n_img * chans):
        n = task // chans
        c = task - n * chans
        off = n * plen
        if use_bias:
            b = bias[c]
            for p in range(plen):
                dst[n, c, p] = src[c, off + p] + b
        else:
            for p in range(plen):
                dst[n, c, p] = src[c, off + p]


@njit(parallel=True, cache=True, error_model="numpy")
def bias_add_ncp(bias, y):
    """y[n, c, p] += bias[c]; y (N,C,P)."""
    n_img, chans, plen = y.shape
    for task in prange(n_img * chans):
        n = task // chans
        c = task - n * chans
        b = bias[c]
        for p in range(plen):
            y[n, c, p] += b


@njit(parallel=True, cache=True, error_model="numpy")
def channel_sum_ncp(dy, out):
    """out[c] += sum over n, p of dy[n, c, p] (float64 accumulation); dy (N,C,P), out (C,)."""
    n_img, chans, plen = dy.shape
    for c in prange(chans):
        s = 0.0
        for n in range(n_img):
            for p in range(plen):
                s += dy[n, c, p]
        out[c] += s


def conv_weight_grad(col, res, wdiff):
    """wdiff += res @ col^T; col (K, m), res (O, m), wdiff (O, K), or per group (G, K/G, m) etc."""
    # dW^T = col @ dY^T, then dW += its transpose: BLAS runs the long reduction over m (images
    # x output pixels) faster this way round (LeNet conv1: 1.06 -> 0.84 ms)
    wt = gemm(col, res, trans_b=True)
    wdiff += np.swapaxes(wt, -1, -2)
    return wdiff


def pool_index_to_mask(index, mask):
    """mask[...] = index as floats (Caffe's mask top of MAX pooling); same shapes."""
    mask[...] = index
    return mask


def max_pool_forward(x, kh, kw, sh, sw, ph, pw, top, mask):
    """top[n,c,py,px] = max of x[n,c] over the window clipped to the image (first max wins); mask = its h*W+w or -1; x (N,C,H,W), top/mask (N,C,PH,PW). Unpadded 2x2 and 3x3 windows (LeNet's, CIFAR's, CaffeNet's) take unrolled kernels, 4-9x faster here; anything else the general one."""
    if ph == 0 and pw == 0 and kh == kw and kh in (2, 3) and x.size:
        (_max_pool_2x2 if kh == 2 else _max_pool_3x3)(x, sh, sw, top, mask)
    else:
        _max_pool_general(x, kh, kw, sh, sw, ph, pw, top, mask)


@njit(cache=True, inline="always")
def _max_clipped(x, xb, height, width, hs, ws, k):
    """(max, argmax) over the unpadded window at (hs, ws) clipped to the image (first max wins)."""
    he = min(hs + k, height)
    we = min(ws + k, width)
    best = _NEG_FLT_MAX
    arg = -1
    for h in range(hs, he):
        row = h * width
        for w in range(ws, we):
            v = x.flat[xb + row + w]
            if v > best:
                best = v
                arg = row + w
    return best, arg


@njit(cache=True, inline="always")
def _inside_windows(height, width, pooled_h, pooled_w, k, sh, sw):
    """How many rows and columns of unpadded k x k windows lie wholly inside the image (the
    unrolled pooling kernels; the rest, ceil mode's overhang, are clipped)."""
    return min(pooled_h, (height - k) // sh + 1), min(pooled_w, (width - k) // sw + 1)


@njit(parallel=True, cache=True, error_model="numpy")
def _max_pool_2x2(x, sh, sw, top, mask):
    """max_pool_forward for unpadded 2x2 windows: windows inside the image unrolled, the ceil-mode
    overhang (last row / column) clipped."""
    n_img, chans, height, width = x.shape
    pooled_h, pooled_w = top.shape[2], top.shape[3]
    hw = height * width
    phw = pooled_h * pooled_w
    ph_in, pw_in = _inside_windows(height, width, pooled_h, pooled_w, 2, sh, sw)
    for plane in prange(n_img * chans):
        xb = plane * hw
        tb = plane * phw
        for py in range(pooled_h):
            o = tb + py * pooled_w
            start = 0
            if py < ph_in:
                a0 = py * sh * width
                for px in range(pw_in):
                    a = a0 + px * sw
                    i = xb + a
                    best = x.flat[i]
                    arg = a
                    v = x.flat[i + 1]
                    if v > best:
                        best = v
                        arg = a + 1
                    v = x.flat[i + width]
                    if v > best:
                        best = v
                        arg = a + width
                    v = x.flat[i + width + 1]
                    if v > best:
                        best = v
                        arg = a + width + 1
                    top.flat[o + px] = best
                    mask.flat[o + px] = arg
                start = pw_in
            for px in range(start, pooled_w):
                b, g = _max_clipped(x, xb, height, width, py * sh, px * sw, 2)
                top.flat[o + px] = b
                mask.flat[o + px] = g


@njit(parallel=True, cache=True, error_model="numpy")
def _max_pool_3x3(x, sh, sw, top, mask):
    """max_pool_forward for unpadded 3x3 windows (see _max_pool_2x2)."""
    n_img, chans, height, width = x.shape
    pooled_h, pooled_w = top.shape[2], top.shape[3]
    hw = height * width
    phw = pooled_h * pooled_w
    ph_in, pw_in = _inside_windows(height, width, pooled_h, pooled_w, 3, sh, sw)
    w2 = 2 * width
    for plane in prange(n_img * chans):
        xb = plane * hw
        tb = plane * phw
        for py in range(pooled_h):
            o = tb + py * pooled_w
            start = 0
            if py < ph_in:
                a0 = py * sh * width
                for px in range(pw_in):
                    a = a0 + px * sw
                    i = xb + a
                    best = x.flat[i]
                    arg = a
                    v = x.flat[i + 1]
                    if v > best:
                        best = v
                        arg = a + 1
                    v = x.flat[i + 2]
                    if v > best:
                        best = v
                        arg = a + 2
                    v = x.flat[i + width]
                    if v > best:
                        best = v
                        arg = a + width
                    v = x.flat[i + width + 1]
                    if v > best:
                        best = v
                        arg = a + width + 1
                    v = x.flat[i + width + 2]
                    if v > best:
                        best = v
                        arg = a + width + 2
                    v = x.flat[i + w2]
                    if v > best:
                        best = v
                        arg = a + w2
                    v = x.flat[i + w2 + 1]
                    if v > best:
                        best = v
                        arg = a + w2 + 1
                    v = x.flat[i + w2 + 2]
                    if v > best:
                        best = v
                        arg = a + w2 + 2
                    top.flat[o + px] = best
                    mask.flat[o + px] = arg
                start = pw_in
            for px in range(start, pooled_w):
                b, g = _max_clipped(x, xb, height, width, py * sh, px * sw, 3)
                top.flat[o + px] = b
                mask.flat[o + px] = g


@njit(parallel=True, cache=True, error_model="numpy")
def _max_pool_general(x, kh, kw, sh, sw, ph, pw, top, mask):
    """top[n,c,py,px] = max of x[n,c] over the window clipped to the image (first max wins); mask = its h*W+w or -1; x (N,C,H,W), top/mask (N,C,PH,PW)."""
    n_img, chans, height, width = x.shape
    pooled_h = top.shape[2]
    pooled_w = top.shape[3]
    hw = height * width
    phw = pooled_h * pooled_w
    for plane in prange(n_img * chans):
        xb = plane * hw
        tb = plane * phw
        for py in range(pooled_h):
            hs = py * sh - ph
            he = min(hs + kh, height)
            hs = max(hs, 0)
            for px in range(pooled_w):
                ws = px * sw - pw
                we = min(ws + kw, width)
                ws = max(ws, 0)
                best = _NEG_FLT_MAX
                arg = -1
                for h in range(hs, he):
                    row = xb + h * width
                    for w in range(ws, we):
                        v = x.flat[row + w]
                        if v > best:
                            best = v
                            arg = h * width + w
                top.flat[tb + py * pooled_w + px] = best
                mask.flat[tb + py * pooled_w + px] = arg


@njit(parallel=True, cache=True, error_model="numpy")
def max_pool_backward(top_diff, mask, kh, kw, sh, sw, ph, pw, dx):
    """dx[n,c] = 0, then dx[n,c].flat[mask[n,c,py,px]] += top_diff[n,c,py,px] (mask -1 skipped); one (n, c) plane per thread (race-free); dx (N,C,H,W)."""
    n_img, chans, height, width = dx.shape
    phw = top_diff.shape[2] * top_diff.shape[3]
    hw = height * width
    for plane in prange(n_img * chans):
        xb = plane * hw
        tb = plane * phw
        for p in range(hw):
            dx.flat[xb + p] = 0
        for q in range(phw):
            idx = mask.flat[tb + q]
            if idx >= 0:
                dx.flat[xb + idx] += top_diff.flat[tb + q]


def ave_pool_forward(x, kh, kw, sh, sw, ph, pw, top):
    """top[n,c,py,px] = sum of x[n,c] over the window clipped to the image / window size clipped to the padded image; x (N,C,H,W), top (N,C,PH,PW), C-contiguous. Unpadded 3x3 windows (CIFAR10-quick's) take a kernel with the inner windows unrolled; the sums are the same, in the same order."""
    if ph == 0 and pw == 0 and kh == 3 and kw == 3 and x.size:
        _ave_pool_3x3_forward(x, sh, sw, top)
    else:
        _ave_pool_general_forward(x, kh, kw, sh, sw, ph, pw, top)


def ave_pool_backward(top_diff, kh, kw, sh, sw, ph, pw, dx):
    """dx[n,c,h,w] = sum over windows covering (h,w) of top_diff / window size clipped to the padded image; dx (N,C,H,W) overwritten. One (n, c) plane per thread, each window adding its share to its cells (race-free within the plane; 3x faster here than gathering each cell's windows). Unpadded 3x3 windows unrolled, as in ave_pool_forward."""
    if ph == 0 and pw == 0 and kh == 3 and kw == 3 and dx.size:
        _ave_pool_3x3_backward(top_diff, sh, sw, dx)
    else:
        _ave_pool_general_backward(top_diff, kh, kw, sh, sw, ph, pw, dx)


@njit(cache=True, inline="always")
def _ave_window(py, px, kh, kw, sh, sw, ph, pw, height, width):
    """Window (py, px) clipped to the image, (hs, he, ws, we), and its size clipped to the padded
    image (Caffe's divisor)."""
    hs = py * sh - ph
    he = min(hs + kh, height + ph)
    ws = px * sw - pw
    we = min(ws + kw, width + pw)
    size = (he - hs) * (we - ws)
    return max(hs, 0), min(he, height), max(ws, 0), min(we, width), size


@njit(cache=True, inline="always")
def _ave_sum(x, xb, width, hs, he, ws, we):
    s = 0.0
    for h in range(hs, he):
        row = xb + h * width
        for w in range(ws, we):
            s += x.flat[row + w]
    return s


@njit(cache=True, inline="always")
def _ave_spread(dx, xb, width, hs, he, ws, we, v):
    for h in range(hs, he):
        row = xb + h * width
        for w in range(ws, we):
            dx.flat[row + w] += v


@njit(parallel=True, cache=True, error_model="numpy")
def _ave_pool_general_forward(x, kh, kw, sh, sw, ph, pw, top):
    n_img, chans, height, width = x.shape
    pooled_h = top.shape[2]
    pooled_w = top.shape[3]
    hw = height * width
    phw = pooled_h * pooled_w
    for plane in prange(n_img * chans):
        xb = plane * hw
        tb = plane * phw
        for py in range(pooled_h):
            for px in range(pooled_w):
                hs, he, ws, we, size = _ave_window(py, px, kh, kw, sh, sw, ph, pw, height, width)
                top.flat[tb + py * pooled_w + px] = _ave_sum(x, xb, width, hs, he, ws, we) / size


@njit(parallel=True, cache=True, error_model="numpy")
def _ave_pool_3x3_forward(x, sh, sw, top):
    """_ave_pool_general_forward for unpadded 3x3 windows: inner windows summed unrolled (same
    order), the ceil-mode overhang clipped."""
    n_img, chans, height, width = x.shape
    pooled_h = top.shape[2]
    pooled_w = top.shape[3]
    hw = height * width
    phw = pooled_h * pooled_w
    ph_in, pw_in = _inside_windows(height, width, pooled_h, pooled_w, 3, sh, sw)
    w2 = 2 * width
    for plane in prange(n_img * chans):
        xb = plane * hw
        tb = plane * phw
        for py in range(pooled_h):
            o = tb + py * pooled_w
            start = 0
            if py < ph_in:
                a0 = xb + py * sh * width
                for px in range(pw_in):
                    i = a0 + px * sw
                    s = 0.0
                    s += x.flat[i]
                    s += x.flat[i + 1]
                    s += x.flat[i + 2]
                    s += x.flat[i + width]
                    s += x.flat[i + width + 1]
                    s += x.flat[i + width + 2]
                    s += x.flat[i + w2]
                    s += x.flat[i + w2 + 1]
                    s += x.flat[i + w2 + 2]
                    top.flat[o + px] = s / 9
                start = pw_in
            for px in range(start, pooled_w):
                hs, he, ws, we, size = _ave_window(py, px, 3, 3, sh, sw, 0, 0, height, width)
                top.flat[o + px] = _ave_sum(x, xb, width, hs, he, ws, we) / size


@njit(parallel=True, cache=True, error_model="numpy")
def _ave_pool_general_backward(top_diff, kh, kw, sh, sw, ph, pw, dx):
    n_img, chans, height, width = dx.shape
    pooled_h = top_diff.shape[2]
    pooled_w = top_diff.shape[3]
    hw = height * width
    phw = pooled_h * pooled_w
    for plane in prange(n_img * chans):
        xb = plane * hw
        tb = plane * phw
        for p in range(hw):
            dx.flat[xb + p] = 0
        for py in range(pooled_h):
            for px in range(pooled_w):
                hs, he, ws, we, size = _ave_window(py, px, kh, kw, sh, sw, ph, pw, height, width)
                _ave_spread(dx, xb, width, hs, he, ws, we,
                            top_diff.flat[tb + py * pooled_w + px] / size)


@njit(parallel=True, cache=True, error_model="numpy")
def _ave_pool_3x3_backward(top_diff, sh, sw, dx):
    """_ave_pool_general_backward for unpadded 3x3 windows, inner windows unrolled (same order)."""
    n_img, chans, height, width = dx.shape
    pooled_h = top_diff.shape[2]
    pooled_w = top_diff.shape[3]
    hw = height * width
    phw = pooled_h * pooled_w
    ph_in, pw_in = _inside_windows(height, width, pooled_h, pooled_w, 3, sh, sw)
    w2 = 2 * width
    for plane in prange(n_img * chans):
        xb = plane * hw
        tb = plane * phw
        for p in range(hw):
            dx.flat[xb + p] = 0
        for py in range(pooled_h):
            o = tb + py * pooled_w
            start = 0
            if py < ph_in:
                a0 = xb + py * sh * width
                for px in range(pw_in):
                    i = a0 + px * sw
                    v = top_diff.flat[o + px] / 9
                    dx.flat[i] += v
                    dx.flat[i + 1] += v
                    dx.flat[i + 2] += v
                    dx.flat[i + width] += v
                    dx.flat[i + width + 1] += v
                    dx.flat[i + width + 2] += v
                    dx.flat[i + w2] += v
                    dx.flat[i + w2 + 1] += v
                    dx.flat[i + w2 + 2] += v
                start = pw_in
            for px in range(start, pooled_w):
                hs, he, ws, we, size = _ave_window(py, px, 3, 3, sh, sw, 0, 0, height, width)
                _ave_spread(dx, xb, width, hs, he, ws, we, top_diff.flat[o + px] / size)


@njit(parallel=True, cache=True, error_model="numpy")
def stochastic_pool_forward_train(x, kh, kw, sh, sw, u, top, index):
    """top = x at the first window cell whose running sum reaches u*window_sum (last cell if none; 0 and index -1 for an empty window), index = its h*W+w; windows unpadded, clipped to the image; x (N,C,H,W), u/top/index (N,C,PH,PW)."""
    n_img, chans, height, width = x.shape
    pooled_h = top.shape[2]
    pooled_w = top.shape[3]
    for plane in prange(n_img * chans):
        n = plane // chans
        c = plane - n * chans
        for py in range(pooled_h):
            hs = py * sh
            he = min(hs + kh, height)
            for px in range(pooled_w):
                ws = px * sw
                we = min(ws + kw, width)
                if hs >= he or ws >= we:
                    index[n, c, py, px] = -1
                    top[n, c, py, px] = 0
                    continue
                total = 0.0
                for h in range(hs, he):
                    for w in range(ws, we):
                        total += x[n, c, h, w]
                thres = u[n, c, py, px] * total
                run = 0.0
                arg = (he - 1) * width + (we - 1)
                found = False
                for h in range(hs, he):
                    if found:
                        break
                    for w in range(ws, we):
                        run += x[n, c, h, w]
                        if run >= thres:
                            arg = h * width + w
                            found = True
                            break
                index[n, c, py, px] = arg
                top[n, c, py, px] = x[n, c, arg // width, arg % width]


@njit(parallel=True, cache=True, error_model="numpy")
def stochastic_pool_forward_test(x, kh, kw, sh, sw, top):
    """top = sum(x^2)/sum(x) over the window (0 when sum(x) <= 0); windows unpadded, clipped to the image; x (N,C,H,W), top (N,C,PH,PW)."""
    n_img, chans, height, width = x.shape
    pooled_h = top.shape[2]
    pooled_w = top.shape[3]
    for plane in prange(n_img * chans):
        n = plane // chans
        c = plane - n * chans
        for py in range(pooled_h):
            hs = py * sh
            he = min(hs + kh, height)
            for px in range(pooled_w):
                ws = px * sw
                we = min(ws + kw, width)
                s1 = 0.0
                s2 = 0.0
                for h in range(hs, he):
                    for w in range(ws, we):
                        v = x[n, c, h, w]
                        s1 += v
                        s2 += v * v
                top[n, c, py, px] = s2 / s1 if s1 > 0 else 0.0


@njit(parallel=True, cache=True, error_model="numpy")
def stochastic_pool_backward_train(top_diff, index, kh, kw, sh, sw, dx):
    """dx[n,c] = 0, then dx[n,c].flat[index[n,c,py,px]] += top_diff[n,c,py,px] (index -1 skipped); one (n, c) plane per thread (race-free); dx (N,C,H,W)."""
    n_img, chans, height, width = dx.shape
    pooled_h = top_diff.shape[2]
    pooled_w = top_diff.shape[3]
    for plane in prange(n_img * chans):
        n = plane // chans
        c = plane - n * chans
        for h in range(height):
            for w in range(width):
                dx[n, c, h, w] = 0
        for py in range(pooled_h):
            for px in range(pooled_w):
                idx = index[n, c, py, px]
                if idx >= 0:
                    dx[n, c, idx // width, idx % width] += top_diff[n, c, py, px]


@njit(parallel=True, cache=True, error_model="numpy")
def stochastic_pool_backward_test(x, top_diff, kh, kw, sh, sw, dx):
    """dx = gradient of top = sum(x^2)/sum(x) per window: (2*x*S1 - S2)/S1^2 * top_diff summed over windows with S1 > 0 (per-plane scatter; dx overwritten)."""
    n_img, chans, height, width = x.shape
    pooled_h = top_diff.shape[2]
    pooled_w = top_diff.shape[3]
    for plane in prange(n_img * chans):
        n = plane // chans
        c = plane - n * chans
        for h in range(height):
            for w in range(width):
                dx[n, c, h, w] = 0
        for py in range(pooled_h):
            hs = py * sh
            he = min(hs + kh, height)
            for px in range(pooled_w):
                ws = px * sw
                we = min(ws + kw, width)
                s1 = 0.0
                s2 = 0.0
                for h in range(hs, he):
                    for w in range(ws, we):
                        v = x[n, c, h, w]
                        s1 += v
                        s2 += v * v
                if s1 > 0:
                    g = top_diff[n, c, py, px] / (s1 * s1)
                    for h in range(hs, he):
                        for w in range(ws, we):
                            dx[n, c, h, w] += g * (2.0 * x[n, c, h, w] * s1 - s2)


# --- 3-D convolutions: the depth axis around the 2-D im2col / col2im ------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def depth_gather(x, kd, sd, pd, dd, od, xg):
    """xg[n*od + o, c*kd + z] = x[n, c, o*sd - pd + z*dd] (an H x W plane; zeros where that depth
    is outside the volume). x (N, C, D, H, W), xg (N*od, C*kd, H, W), both C-contiguous. The
    2-D im2col of xg is the 3-D im2col of x: rows ((c*kd + z)*kh + i)*kw + j, columns
    ((n*od + o)*oh + y)*ow + xo."""
    n_img, chans, depth, height, width = x.shape
    hw = height * width
    for task in prange(n_img * od * chans * kd):
        z = task % kd
        t = task // kd
        c = t % chans
        t = t // chans
        o = t % od
        n = t // od
        d = o * sd - pd + z * dd
        dst = task * hw
        if d < 0 or d >= depth:
            for q in range(hw):
                xg.flat[dst + q] = 0
        else:
            src = ((n * chans + c) * depth + d) * hw
            for q in range(hw):
                xg.flat[dst + q] = x.flat[src + q]


@njit(parallel=True, cache=True, error_model="numpy")
def depth_scatter(xg, kd, sd, pd, dd, od, dx):
    """The adjoint of depth_gather: dx[n, c, d] = the sum, over (o, z) with o*sd - pd + z*dd == d
    (z ascending), of xg[n*od + o, c*kd + z]; dx (N, C, D, H, W) overwritten, one plane per
    task (race-free)."""
    n_img, chans, depth, height, width = dx.shape
    hw = height * width
    for task in prange(n_img * chans * depth):
        d = task % depth
        t = task // depth
        c = t % chans
        n = t // chans
        dst = task * hw
        for q in range(hw):
            dx.flat[dst + q] = 0
        for z in range(kd):
            num = d + pd - z * dd
            if num < 0:
                break
            o = num // sd
            if o * sd != num or o >= od:
                continue
            src = (((n * od + o) * chans + c) * kd + z) * hw
            for q in range(hw):
                dx.flat[dst + q] += xg.flat[src + q]
