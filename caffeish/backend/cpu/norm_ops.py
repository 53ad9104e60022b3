"""CPU kernels for the normalization layers (BatchNorm, Scale, Bias, LRN, MVN) and Embed's backward.

Layouts: BatchNorm and LRN (across channels) take ``(N, C, S)`` views (S = product of the
spatial dims), one "plane" ``(n, c, :)`` per image and channel; Scale and Bias take
``(outer, dim, inner)`` views, the parameter indexed by ``dim``; LRN within a channel takes
NCHW arrays; MVN takes ``(rows, dim)`` views, one row per normalised group. Embed's weight
gradient takes its rows' hits as a CSR index built on the host (``embed_index``, not a backend
op: both backends call it on the host copy of the small index bottom). Reductions accumulate
in float64 and store in the arrays' dtype; scalars passed in should have the arrays' dtype so
float32 stays float32. Scratch arrays are passed in by the layer (no allocation in the hot path
except small per-call partial sums).
"""
import math

import numpy as np
from numba import njit, prange

__all__ = [
    "bn_batch_stats", "bn_global_stats", "bn_update_running", "bn_normalize",
    "bn_backward", "bn_backward_global",
    "scale_forward", "scale_bias_forward", "bias_forward", "scale_param_backward",
    "bias_param_backward",
    "lrn_across_forward", "lrn_across_backward", "lrn_within_forward", "lrn_within_backward",
    "mvn_forward", "mvn_backward",
    "embed_backward",
]


# --- BatchNorm ------------------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def bn_batch_stats(x, eps, mean, var, std):
    """mean[c] = mean of x[:, c, :], var[c] = biased variance, std[c] = sqrt(var[c] + eps); x (N, C, S)."""
    n_img, chans, sp = x.shape
    planes = n_img * chans
    part = np.zeros(planes, np.float64)
    for p in prange(planes):
        n = p // chans
        c = p - n * chans
        s = 0.0
        for i in range(sp):
            s += x[n, c, i]
        part[p] = s
    m = n_img * sp
    mu = np.zeros(chans, np.float64)
    for c in range(chans):
        s = 0.0
        for n in range(n_img):
            s += part[n * chans + c]
        mu[c] = s / m
    for p in prange(planes):
        n = p // chans
        c = p - n * chans
        mc = mu[c]
        s = 0.0
        for i in range(sp):
            d = x[n, c, i] - mc
            s += d * d
        part[p] = s
    for c in range(chans):
        s = 0.0
        for n in range(n_img):
            s += part[n * chans + c]
        v = s / m
        mean[c] = mu[c]
        var[c] = v
        std[c] = math.sqrt(var[c] + eps)


@njit(cache=True)
def bn_global_stats(run_mean, run_var, run_factor, eps, mean, std):
    """f = 0 if run_factor[0] == 0 else 1 / run_factor[0]; mean[c] = f * run_mean[c], std[c] = sqrt(f * run_var[c] + eps)."""
    f0 = run_factor[0]
    f = f0 * 0 if f0 == 0 else 1 / f0
    for c in range(mean.size):
        mean[c] = f * run_mean[c]
        v = f * run_var[c]
        std[c] = math.sqrt(v + eps)


@njit(cache=True)
def bn_update_running(mean, var, maf, correction, run_mean, run_var, run_factor):
    """run_factor[0] = maf * run_factor[0] + 1; run_mean = mean + maf * run_mean; run_var = correction * var + maf * run_var."""
    run_factor[0] = run_factor[0] * maf + 1
    for c in range(mean.size):
        run_mean[c] = mean[c] + maf * run_mean[c]
        run_var[c] = correction * var[c] + maf * run_var[c]


@njit(parallel=True, cache=True, error_model="numpy")
def bn_normalize(x, mean, std, out):
    """out[n, c, i] = (x[n, c, i] - mean[c]) / std[c]; x, out (N, C, S), out may be x."""
    n_img, chans, sp = x.shape
    for p in prange(n_img * chans):
        n = p // chans
        c = p - n * chans
        mc = mean[c]
        sc = std[c]
        for i in range(sp):
            out[n, c, i] = (x[n, c, i] - mc) / sc


@njit(parallel=True, cache=True, error_model="numpy")
def bn_backward(dy, x, mean, std, dx):
    """dx = (dy - mean_c(dy) - y * mean_c(dy * y)) / std[c], y = (x - mean[c]) / std[c], means over (N, S) per channel; (N, C, S) arrays, dx may be dy."""
    n_img, chans, sp = x.shape
    planes = n_img * chans
    part_dy = np.zeros(planes, np.float64)
    part_dyy = np.zeros(planes, np.float64)
    for p in prange(planes):
        n = p // chans
        c = p - n * chans
        mc = mean[c]
        sc = std[c]
        s1 = 0.0
        s2 = 0.0
        for i in range(sp):
            g = dy[n, c, i]
            s1 += g
            s2 += g * ((x[n, c, i] - mc) / sc)
        part_dy[p] = s1
        part_dyy[p] = s2
    m = n_img * sp
    a = np.zeros(chans, np.float64)
    b = np.zeros(chans, np.float64)
    for c in range(chans):
        s1 = 0.0
        s2 = 0.0
        for n in range(n_img):
            s1 += part_dy[n * chans + c]
            s2 += part_dyy[n * chans + c]
        a[c] = s1 / m
        b[c] = s2 / m
    for p in prange(planes):
        n = p // chans
        c = p - n * chans
        mc = mean[c]
        sc = std[c]
        ac = a[c]
        bc = b[c]
        for i in range(sp):
            y = (x[n, c, i] - mc) / sc
            dx[n, c, i] = (dy[n, c, i] - ac - y * bc) / sc


@njit(parallel=True, cache=True, error_model="numpy")
def bn_backward_global(dy, std, dx):
    """dx[n, c, i] = dy[n, c, i] / std[c]; (N, C, S) arrays, dx may be dy."""
    n_img, chans, sp = dy.shape
    for p in prange(n_img * chans):
        n = p // chans
        c = p - n * chans
        sc = std[c]
        for i in range(sp):
            dx[n, c, i] = dy[n, c, i] / sc


# --- Scale / Bias -----------------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def scale_forward(x, gamma, out):
    """out[o, d, i] = x[o, d, i] * gamma[d]; x, out (outer, dim, inner), gamma (dim,), out may be x."""
    outer, dim, inner = x.shape
    for r in prange(outer * dim):
        o = r // dim
        d = r - o * dim
        g = gamma[d]
        for i in range(inner):
            out[o, d, i] = x[o, d, i] * g


@njit(parallel=True, cache=True, error_model="numpy")
def scale_bias_forward(x, gamma, beta, out):
    """out[o, d, i] = x[o, d, i] * gamma[d] + beta[d]; x, out (outer, dim, inner), out may be x."""
    outer, dim, inner = x.shape
    for r in prange(outer * dim):
        o = r // dim
        d = r - o * dim
        g = gamma[d]
        b = beta[d]
        for i in range(inner):
            out[o, d, i] = x[o, d, i] * g + b


@njit(parallel=True, cache=True, error_model="numpy")
def bias_forward(x, beta, out):
    """out[o, d, i] = x[o, d, i] + beta[d]; x, out (outer, dim, inner), out may be x."""
    outer, dim, inner = x.shape
    for r in prange(outer * dim):
        o = r // dim
        d = r - o * dim
        b = beta[d]
        for i in range(inner):
            out[o, d, i] = x[o, d, i] + b


@njit(parallel=True, cache=True, error_model="numpy")
def scale_param_backward(dy, x, accumulate, gdiff):
    """gdiff[d] = (gdiff[d] if accumulate else 0) + sum over o, i of dy[o, d, i] * x[o, d, i]; (outer, dim, inner) arrays."""
    outer, dim, inner = x.shape
    for d in prange(dim):
        s = 0.0
        for o in range(outer):
            for i in range(inner):
                s += dy[o, d, i] * x[o, d, i]
        if accumulate:
            gdiff[d] += s
        else:
            gdiff[d] = s


@njit(parallel=True, cache=True, error_model="numpy")
def bias_param_backward(dy, accumulate, bdiff):
    """bdiff[d] = (bdiff[d] if accumulate else 0) + sum over o, i of dy[o, d, i]; dy (outer, dim, inner)."""
    outer, dim, inner = dy.shape
    for d in prange(dim):
        s = 0.0
        for o in range(outer):
            for i in range(inner):
                s += dy[o, d, i]
        if accumulate:
            bdiff[d] += s
        else:
            bdiff[d] = s


# --- LRN --------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def lrn_across_forward(x, size, alpha_over_size, beta, k, scale, out):
    """scale[n,c,i] = k + alpha_over_size * sum of x[n,c',i]^2 over |c'-c| <= (size-1)/2 (zero padded); out = x * scale^-beta; (N, C, S) arrays."""
    n_img, chans, sp = x.shape
    pad = (size - 1) // 2
    for p in prange(n_img * chans):
        n = p // chans
        c = p - n * chans
        lo = max(c - pad, 0)
        hi = min(c + pad + 1, chans)
        for i in range(sp):
            scale[n, c, i] = 0
        for cc in range(lo, hi):
            for i in range(sp):
                v = x[n, cc, i]
                scale[n, c, i] += v * v
        for i in range(sp):
            s = k + alpha_over_size * scale[n, c, i]
            scale[n, c, i] = s
            out[n, c, i] = x[n, c, i] * s ** -beta


@njit(parallel=True, cache=True, error_model="numpy")
def lrn_across_backward(x, scale, dy, size, cache_ratio, beta, ratio, dx):
    """dx = dy * scale^-beta - cache_ratio * x * sum over the channel window of dy * x * scale^(-beta-1); cache_ratio = 2*alpha*beta/size; (N, C, S) arrays, ratio scratch."""
    n_img, chans, sp = x.shape
    pad = (size - 1) // 2
    for p in prange(n_img * chans):
        n = p // chans
        c = p - n * chans
        for i in range(sp):
            s = scale[n, c, i]
            pw = s ** -beta
            dx[n, c, i] = pw
            ratio[n, c, i] = dy[n, c, i] * x[n, c, i] * pw / s
    for p in prange(n_img * chans):
        n = p // chans
        c = p - n * chans
        lo = max(c - pad, 0)
        hi = min(c + pad + 1, chans)
        for i in range(sp):
            acc = ratio[n, lo, i]
            for cc in range(lo + 1, hi):
                acc += ratio[n, cc, i]
            dx[n, c, i] = dy[n, c, i] * dx[n, c, i] - cache_ratio * x[n, c, i] * acc


@njit(cache=True)
def _box_sum_plane(src, p, pad, tmp, dst):
    """dst[p, h, w] = sum of src[p, h', w'] over |h'-h| <= pad, |w'-w| <= pad inside the plane; tmp scratch (P, H, W)."""
    height = src.shape[1]
    width = src.shape[2]
    for h in range(height):
        for w in range(width):
            lo = max(w - pad, 0)
            hi = min(w + pad + 1, width)
            s = src[p, h, lo]
            for ww in range(lo + 1, hi):
                s += src[p, h, ww]
            tmp[p, h, w] = s
    for h in range(height):
        lo = max(h - pad, 0)
        hi = min(h + pad + 1, height)
        for w in range(width):
            dst[p, h, w] = tmp[p, lo, w]
        for hh in range(lo + 1, hi):
            for w in range(width):
                dst[p, h, w] += tmp[p, hh, w]


@njit(parallel=True, cache=True, error_model="numpy")
def lrn_within_forward(x, size, alpha, beta, tmp, scale, out):
    """scale[p,h,w] = 1 + alpha * (sum of x^2 over the size x size window centred on (h, w), zero padded) / size^2; out = x * scale^-beta; (P, H, W) arrays (P = N*C), tmp scratch."""
    planes, height, width = x.shape
    pad = (size - 1) // 2
    pool = size * size
    for p in prange(planes):
        for h in range(height):
            for w in range(width):
                v = x[p, h, w]
                out[p, h, w] = v * v
        _box_sum_plane(out, p, pad, tmp, scale)
        for h in range(height):
            for w in range(width):
                s = 1 + alpha * (scale[p, h, w] / pool)
                scale[p, h, w] = s
                out[p, h, w] = x[p, h, w] * s ** -beta


@njit(parallel=True, cache=True, error_model="numpy")
def lrn_within_backward(x, scale, dy, size, alpha, beta, ratio, tmp, dx):
    """dx = dy * scale^-beta - (2*alpha*beta/size^2) * x * window sum of dy * x * scale^(-beta-1) (window as in the forward); (P, H, W) arrays, ratio and tmp scratch."""
    planes, height, width = x.shape
    pad = (size - 1) // 2
    coef = 2 * alpha * beta / (size * size)
    for p in prange(planes):
        for h in range(height):
            for w in range(width):
                s = scale[p, h, w]
                pw = s ** -beta
                dx[p, h, w] = pw
                ratio[p, h, w] = dy[p, h, w] * x[p, h, w] * pw / s
        _box_sum_plane(ratio, p, pad, tmp, ratio)
        for h in range(height):
            for w in range(width):
                dx[p, h, w] = dy[p, h, w] * dx[p, h, w] - coef * x[p, h, w] * ratio[p, h, w]


# --- MVN --------------------------------------------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def mvn_forward(x, normalize_variance, eps, mean, std, out):
    """out[r, :] = x[r, :] - mean[r], then / std[r] with std[r] = sqrt(biased var of row r) + eps when normalize_variance; x, out (rows, dim), out may be x."""
    rows, dim = x.shape
    for r in prange(rows):
        s = 0.0
        for i in range(dim):
            s += x[r, i]
        mu = s / dim
        mean[r] = mu
        mr = mean[r]
        if normalize_variance:
            s = 0.0
            for i in range(dim):
                d = x[r, i] - mu
                s += d * d
            sd = math.sqrt(s / dim)
            std[r] = sd
            std[r] += eps
            sr = std[r]
            for i in range(dim):
                out[r, i] = (x[r, i] - mr) / sr
        else:
            for i in range(dim):
                out[r, i] = x[r, i] - mr


@njit(parallel=True, cache=True, error_model="numpy")
def mvn_backward(dy, x, mean, std, normalize_variance, dx):
    """normalize_variance: dx = (dy - mean_r(dy) - y * mean_r(dy * y)) / std[r], y = (x - mean[r]) / std[r]; else dx = dy - mean_r(dy); (rows, dim) arrays, dx may be dy."""
    rows, dim = x.shape
    for r in prange(rows):
        mr = mean[r]
        if normalize_variance:
            sr = std[r]
            s1 = 0.0
            s2 = 0.0
            for i in range(dim):
                g = dy[r, i]
                s1 += g
                s2 += g * ((x[r, i] - mr) / sr)
            a = s1 / dim
            b = s2 / dim
            for i in range(dim):
                y = (x[r, i] - mr) / sr
                dx[r, i] = (dy[r, i] - a - y * b) / sr
        else:
            s1 = 0.0
            for i in range(dim):
                s1 += dy[r, i]
            a = s1 / dim
            for i in range(dim):
                dx[r, i] = dy[r, i] - a


# --- Embed ------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def embed_index(x, upper, idx, order, starts):
    """Host helper: idx[m] = int(x[m]); order lists the positions m grouped by idx[m] (ascending m within a row), positions of row r at order[starts[r]:starts[r + 1]] (starts has upper + 1 entries); returns the first m with x[m] not a whole number in [0, upper), else -1."""
    for m in range(x.size):
        v = x[m]
        if not (v >= 0 and v < upper):
            return m
        k = int(v)
        if k != v:
            return m
        idx[m] = k
    for r in range(starts.size):
        starts[r] = 0
    for m in range(idx.size):
        starts[idx[m] + 1] += 1
    for r in range(1, starts.size):
        starts[r] += starts[r - 1]
    for m in range(idx.size):
        r = idx[m]
        order[starts[r]] = m
        starts[r] += 1
    for r in range(starts.size - 1, 0, -1):
        starts[r] = starts[r - 1]
    starts[0] = 0
    return -1


@njit(parallel=True, cache=True, error_model="numpy")
def embed_backward(dy, order, starts, accumulate, wdiff):
    """wdiff[r, :] = (wdiff[r, :] if accumulate else 0) + sum of dy[order[j], :] for j in [starts[r], starts[r + 1]); dy (M, D), wdiff (K, D); one row per task (race-free gather)."""
    rows, width = wdiff.shape
    for r in prange(rows):
        if not accumulate:
            for c in range(width):
                wdiff[r, c] = 0
        for j in range(starts[r], starts[r + 1]):
            m = order[j]
            for c in range(width):
                wdiff[r, c] += dy[m, c]
