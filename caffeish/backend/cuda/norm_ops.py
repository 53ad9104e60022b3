"""CUDA kernels for the normalization layers (BatchNorm, Scale, Bias, LRN, MVN) and Embed's
backward: twins of ``backend/cpu/norm_ops.py`` with the same names, arguments and layouts.

Element-wise kernels run over the flat arrays (grid-stride loops) and recover the channel /
parameter index from the flat position. Per-channel (BatchNorm), per-parameter (Scale, Bias) and
per-row (MVN) reductions give each group one block: its threads stride over the group's
elements, accumulate in float64 and meet in a shared-memory tree; the same block then writes the
group's outputs, so no atomics and no partial-sum buffers are needed. When the groups are short
(fewer elements than a block has threads) a thread per group is used instead.
"""
import math

import numpy as np
from numba import cuda

from .core import SMALL_LAUNCHES, block_sum, flat, grid1d

__all__ = [
    "bn_batch_stats", "bn_global_stats", "bn_update_running", "bn_normalize",
    "bn_backward", "bn_backward_global",
    "scale_forward", "scale_bias_forward", "bias_forward", "scale_param_backward",
    "bias_param_backward",
    "lrn_across_forward", "lrn_across_backward", "lrn_within_forward", "lrn_within_backward",
    "mvn_forward", "mvn_backward",
    "embed_backward",
]

RED = 32 if SMALL_LAUNCHES else 256                  # threads of a reduction block (a power of two)
_MAX_GROUP_BLOCKS = 2 if SMALL_LAUNCHES else 65535   # blocks of a per-group launch (block-stride)


def _group_blocks(groups):
    return max(1, min(int(groups), _MAX_GROUP_BLOCKS))


@cuda.jit(device=True)
def _block_sum2(buf, buf2, tid, v, v2):
    """Two block sums in one tree; returns them via buf[0], buf2[0] (read before the next call)."""
    buf[tid] = v
    buf2[tid] = v2
    cuda.syncthreads()
    s = RED // 2
    while s > 0:
        if tid < s:
            buf[tid] += buf[tid + s]
            buf2[tid] += buf2[tid + s]
        cuda.syncthreads()
        s //= 2


# --- BatchNorm ------------------------------------------------------------------------------------
@cuda.jit
def _bn_stats_k(x, n_img, chans, sp, eps, mean, var, std):
    # block per channel c: x[(n * chans + c) * sp + i] over n, i; two passes (mean, then var)
    buf = cuda.shared.array(RED, np.float64)
    tid = cuda.threadIdx.x
    m = n_img * sp
    for c in range(cuda.blockIdx.x, chans, cuda.gridDim.x):
        acc = 0.0
        for j in range(tid, m, RED):
            n = j // sp
            acc += x[(n * chans + c) * sp + j - n * sp]
        mu = block_sum(buf, tid, acc) / m
        acc = 0.0
        for j in range(tid, m, RED):
            n = j // sp
            d = x[(n * chans + c) * sp + j - n * sp] - mu
            acc += d * d
        v = block_sum(buf, tid, acc) / m
        if tid == 0:
            mean[c] = mu
            var[c] = v
            std[c] = math.sqrt(var[c] + eps)


def bn_batch_stats(x, eps, mean, var, std):
    """mean[c] = mean of x[:, c, :], var[c] = biased variance, std[c] = sqrt(var[c] + eps); x (N, C, S)."""
    n_img, chans, sp = (int(d) for d in tuple(x.shape))
    if n_img * chans * sp == 0:
        return
    _bn_stats_k[_group_blocks(chans), RED](flat(x), n_img, chans, sp, eps, mean, var, std)


@cuda.jit
def _bn_global_k(run_mean, run_var, run_factor, eps, mean, std):
    f0 = run_factor[0]
    f = f0 * 0 if f0 == 0 else 1 / f0
    for c in range(cuda.grid(1), mean.size, cuda.gridsize(1)):
        mean[c] = f * run_mean[c]
        v = f * run_var[c]
        std[c] = math.sqrt(v + eps)


def bn_global_stats(run_mean, run_var, run_factor, eps, mean, std):
    """f = 0 if run_factor[0] == 0 else 1 / run_factor[0]; mean[c] = f * run_mean[c], std[c] = sqrt(f * run_var[c] + eps)."""
    _bn_global_k[grid1d(mean.size)](run_mean, run_var, run_factor, eps, mean, std)


@cuda.jit
def _bn_running_k(mean, var, maf, correction, run_mean, run_var, run_factor):
    i0 = cuda.grid(1)
    if i0 == 0:
        run_factor[0] = run_factor[0] * maf + 1
    for c in range(i0, mean.size, cuda.gridsize(1)):
        run_mean[c] = mean[c] + maf * run_mean[c]
        run_var[c] = correction * var[c] + maf * run_var[c]


def bn_update_running(mean, var, maf, correction, run_mean, run_var, run_factor):
    """run_factor[0] = maf * run_factor[0] + 1; run_mean = mean + maf * run_mean; run_var = correction * var + maf * run_var."""
    _bn_running_k[grid1d(mean.size)](mean, var, maf, correction, run_mean, run_var, run_factor)


@cuda.jit
def _bn_normalize_k(x, chans, sp, mean, std, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        c = (e // sp) % chans
        out[e] = (x[e] - mean[c]) / std[c]


def bn_normalize(x, mean, std, out):
    """out[n, c, i] = (x[n, c, i] - mean[c]) / std[c]; x, out (N, C, S), out may be x."""
    _, chans, sp = (int(d) for d in tuple(x.shape))
    out = flat(out)
    if out.size:
        _bn_normalize_k[grid1d(out.size)](flat(x), chans, sp, mean, std, out)


@cuda.jit
def _bn_backward_k(dy, x, n_img, chans, sp, mean, std, dx):
    # block per channel: sums of dy and dy * y over (n, i), then the same block writes dx
    buf = cuda.shared.array(RED, np.float64)
    buf2 = cuda.shared.array(RED, np.float64)
    tid = cuda.threadIdx.x
    m = n_img * sp
    for c in range(cuda.blockIdx.x, chans, cuda.gridDim.x):
        mc = mean[c]
        sc = std[c]
        s1 = 0.0
        s2 = 0.0
        for j in range(tid, m, RED):
            n = j // sp
            e = (n * chans + c) * sp + j - n * sp
            g = dy[e]
            s1 += g
            s2 += g * ((x[e] - mc) / sc)
        _block_sum2(buf, buf2, tid, s1, s2)
        a = buf[0] / m
        b = buf2[0] / m
        cuda.syncthreads()
        for j in range(tid, m, RED):
            n = j // sp
            e = (n * chans + c) * sp + j - n * sp
            y = (x[e] - mc) / sc
            dx[e] = (dy[e] - a - y * b) / sc


def bn_backward(dy, x, mean, std, dx):
    """dx = (dy - mean_c(dy) - y * mean_c(dy * y)) / std[c], y = (x - mean[c]) / std[c], means over (N, S) per channel; (N, C, S) arrays, dx may be dy."""
    n_img, chans, sp = (int(d) for d in tuple(x.shape))
    if n_img * chans * sp == 0:
        return
    _bn_backward_k[_group_blocks(chans), RED](flat(dy), flat(x), n_img, chans, sp, mean, std,
                                              flat(dx))


@cuda.jit
def _bn_backward_global_k(dy, chans, sp, std, dx):
    for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        dx[e] = dy[e] / std[(e // sp) % chans]


def bn_backward_global(dy, std, dx):
    """dx[n, c, i] = dy[n, c, i] / std[c]; (N, C, S) arrays, dx may be dy."""
    _, chans, sp = (int(d) for d in tuple(dy.shape))
    dx = flat(dx)
    if dx.size:
        _bn_backward_global_k[grid1d(dx.size)](flat(dy), chans, sp, std, dx)


# --- Scale / Bias -----------------------------------------------------------------------------------
@cuda.jit
def _scale_k(x, gamma, dim, inner, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = x[e] * gamma[(e // inner) % dim]


@cuda.jit
def _scale_bias_k(x, gamma, beta, dim, inner, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        d = (e // inner) % dim
        out[e] = x[e] * gamma[d] + beta[d]


@cuda.jit
def _bias_k(x, beta, dim, inner, out):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = x[e] + beta[(e // inner) % dim]


def _dims(a):
    """The shape as a tuple of ints (the simulator's shapes index only forwards)."""
    return tuple(int(d) for d in tuple(a.shape))


def scale_forward(x, gamma, out):
    """out[o, d, i] = x[o, d, i] * gamma[d]; x, out (outer, dim, inner), gamma (dim,), out may be x."""
    _, dim, inner = _dims(x)
    out = flat(out)
    if out.size:
        _scale_k[grid1d(out.size)](flat(x), gamma, dim, inner, out)


def scale_bias_forward(x, gamma, beta, out):
    """out[o, d, i] = x[o, d, i] * gamma[d] + beta[d]; x, out (outer, dim, inner), out may be x."""
    _, dim, inner = _dims(x)
    out = flat(out)
    if out.size:
        _scale_bias_k[grid1d(out.size)](flat(x), gamma, beta, dim, inner, out)


def bias_forward(x, beta, out):
    """out[o, d, i] = x[o, d, i] + beta[d]; x, out (outer, dim, inner), out may be x."""
    _, dim, inner = _dims(x)
    out = flat(out)
    if out.size:
        _bias_k[grid1d(out.size)](flat(x), beta, dim, inner, out)


@cuda.jit
def _param_grad_block_k(dy, x, use_x, outer, dim, inner, accumulate, g):
    # block per parameter d: sum over (o, i) of dy[o, d, i] (* x[o, d, i])
    buf = cuda.shared.array(RED, np.float64)
    tid = cuda.threadIdx.x
    m = outer * inner
    for d in range(cuda.blockIdx.x, dim, cuda.gridDim.x):
        acc = 0.0
        for j in range(tid, m, RED):
            o = j // inner
            e = (o * dim + d) * inner + j - o * inner
            if use_x:
                acc += dy[e] * x[e]
            else:
                acc += dy[e]
        s = block_sum(buf, tid, acc)
        if tid == 0:
            if accumulate:
                g[d] += s
            else:
                g[d] = s


@cuda.jit
def _param_grad_thread_k(dy, x, use_x, outer, dim, inner, accumulate, g):
    # thread per parameter d (short groups): neighbouring threads read neighbouring d
    for d in range(cuda.grid(1), dim, cuda.gridsize(1)):
        acc = 0.0
        for o in range(outer):
            base = (o * dim + d) * inner
            for i in range(inner):
                if use_x:
                    acc += dy[base + i] * x[base + i]
                else:
                    acc += dy[base + i]
        if accumulate:
            g[d] += acc
        else:
            g[d] = acc


def _param_grad(dy, x, use_x, accumulate, g):
    outer, dim, inner = _dims(dy)
    if dim == 0:
        return
    args = (flat(dy), flat(x), use_x, outer, dim, inner, bool(accumulate), g)
    if outer * inner < RED:
        _param_grad_thread_k[grid1d(dim)](*args)
    else:
        _param_grad_block_k[_group_blocks(dim), RED](*args)


def scale_param_backward(dy, x, accumulate, gdiff):
    """gdiff[d] = (gdiff[d] if accumulate else 0) + sum over o, i of dy[o, d, i] * x[o, d, i]; (outer, dim, inner) arrays."""
    _param_grad(dy, x, True, accumulate, gdiff)


def bias_param_backward(dy, accumulate, bdiff):
    """bdiff[d] = (bdiff[d] if accumulate else 0) + sum over o, i of dy[o, d, i]; dy (outer, dim, inner)."""
    _param_grad(dy, dy, False, accumulate, bdiff)


# --- LRN --------------------------------------------------------------------------------------------
@cuda.jit
def _lrn_across_fwd_k(x, chans, sp, pad, alpha_over_size, beta, k, scale, out):
    # element (n, c, i): window over channels [c - pad, c + pad] at the same (n, i)
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        c = (e // sp) % chans
        base = e - c * sp                       # (n, 0, i)
        lo = max(c - pad, 0)
        hi = min(c + pad + 1, chans)
        v = x[base + lo * sp]
        acc = v * v
        for cc in range(lo + 1, hi):
            v = x[base + cc * sp]
            acc += v * v
        s = k + alpha_over_size * acc
        scale[e] = s
        out[e] = x[e] * s ** -beta


def lrn_across_forward(x, size, alpha_over_size, beta, k, scale, out):
    """scale[n,c,i] = k + alpha_over_size * sum of x[n,c',i]^2 over |c'-c| <= (size-1)/2 (zero padded); out = x * scale^-beta; (N, C, S) arrays."""
    _, chans, sp = _dims(x)
    out = flat(out)
    if out.size:
        _lrn_across_fwd_k[grid1d(out.size)](flat(x), chans, sp, (size - 1) // 2,
                                            alpha_over_size, beta, k, flat(scale), out)


@cuda.jit
def _lrn_ratio_k(x, scale, dy, beta, ratio):
    for e in range(cuda.grid(1), ratio.size, cuda.gridsize(1)):
        s = scale[e]
        ratio[e] = dy[e] * x[e] * s ** -beta / s


@cuda.jit
def _lrn_across_bwd_k(x, scale, dy, ratio, chans, sp, pad, cache_ratio, beta, dx):
    for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        c = (e // sp) % chans
        base = e - c * sp
        lo = max(c - pad, 0)
        hi = min(c + pad + 1, chans)
        acc = ratio[base + lo * sp]
        for cc in range(lo + 1, hi):
            acc += ratio[base + cc * sp]
        dx[e] = dy[e] * scale[e] ** -beta - cache_ratio * x[e] * acc


def lrn_across_backward(x, scale, dy, size, cache_ratio, beta, ratio, dx):
    """dx = dy * scale^-beta - cache_ratio * x * sum over the channel window of dy * x * scale^(-beta-1); cache_ratio = 2*alpha*beta/size; (N, C, S) arrays, ratio scratch."""
    _, chans, sp = _dims(x)
    dx = flat(dx)
    if not dx.size:
        return
    x, scale, dy, ratio = flat(x), flat(scale), flat(dy), flat(ratio)
    _lrn_ratio_k[grid1d(dx.size)](x, scale, dy, beta, ratio)
    _lrn_across_bwd_k[grid1d(dx.size)](x, scale, dy, ratio, chans, sp, (size - 1) // 2,
                                       cache_ratio, beta, dx)


@cuda.jit
def _row_box_sum_k(src, square, width, pad, dst):
    # dst[p, h, w] = sum of src[p, h, w'] (squared when square) over |w' - w| <= pad in the row
    for e in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        w = e % width
        row = e - w
        lo = max(w - pad, 0)
        hi = min(w + pad + 1, width)
        v = src[row + lo]
        acc = v * v if square else v
        for ww in range(lo + 1, hi):
            v = src[row + ww]
            acc += v * v if square else v
        dst[e] = acc


@cuda.jit
def _lrn_within_fwd_k(x, tmp, height, width, pad, one, inv_pool, alpha, beta, scale, out):
    # column box sum of the row sums in tmp, then the normalisation
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        hw = height * width
        q = e % hw
        h = q // width
        col = e - h * width                     # (p, 0, w)
        lo = max(h - pad, 0)
        hi = min(h + pad + 1, height)
        acc = tmp[col + lo * width]
        for hh in range(lo + 1, hi):
            acc += tmp[col + hh * width]
        s = one + alpha * (acc * inv_pool)
        scale[e] = s
        out[e] = x[e] * s ** -beta


def lrn_within_forward(x, size, alpha, beta, tmp, scale, out):
    """scale[p,h,w] = 1 + alpha * (sum of x^2 over the size x size window centred on (h, w), zero padded) / size^2; out = x * scale^-beta; (P, H, W) arrays (P = N*C), tmp scratch."""
    _, height, width = _dims(x)
    out = flat(out)
    if not out.size:
        return
    pad = (size - 1) // 2
    x, tmp = flat(x), flat(tmp)
    one, inv_pool = x.dtype.type(1), x.dtype.type(1.0 / (size * size))
    _row_box_sum_k[grid1d(out.size)](x, True, width, pad, tmp)
    _lrn_within_fwd_k[grid1d(out.size)](x, tmp, height, width, pad, one, inv_pool, alpha, beta,
                                        flat(scale), out)


@cuda.jit
def _lrn_within_bwd_k(x, scale, dy, tmp, height, width, pad, coef, beta, dx):
    for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        hw = height * width
        q = e % hw
        h = q // width
        col = e - h * width
        lo = max(h - pad, 0)
        hi = min(h + pad + 1, height)
        acc = tmp[col + lo * width]
        for hh in range(lo + 1, hi):
            acc += tmp[col + hh * width]
        dx[e] = dy[e] * scale[e] ** -beta - coef * x[e] * acc


def lrn_within_backward(x, scale, dy, size, alpha, beta, ratio, tmp, dx):
    """dx = dy * scale^-beta - (2*alpha*beta/size^2) * x * window sum of dy * x * scale^(-beta-1) (window as in the forward); (P, H, W) arrays, ratio and tmp scratch."""
    _, height, width = _dims(x)
    dx = flat(dx)
    if not dx.size:
        return
    pad = (size - 1) // 2
    x, scale, dy, ratio, tmp = flat(x), flat(scale), flat(dy), flat(ratio), flat(tmp)
    coef = x.dtype.type(2.0 * float(alpha) * float(beta) / (size * size))
    _lrn_ratio_k[grid1d(dx.size)](x, scale, dy, beta, ratio)
    _row_box_sum_k[grid1d(dx.size)](ratio, False, width, pad, tmp)
    _lrn_within_bwd_k[grid1d(dx.size)](x, scale, dy, tmp, height, width, pad, coef, beta, dx)


# --- MVN --------------------------------------------------------------------------------------------
@cuda.jit
def _mvn_fwd_k(x, rows, dim, normalize_variance, eps, mean, std, out):
    # block per row r: mean (and std) by block sums, then the block writes the row
    buf = cuda.shared.array(RED, np.float64)
    tid = cuda.threadIdx.x
    for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
        base = r * dim
        acc = 0.0
        for i in range(tid, dim, RED):
            acc += x[base + i]
        mu = block_sum(buf, tid, acc) / dim
        if normalize_variance:
            acc = 0.0
            for i in range(tid, dim, RED):
                d = x[base + i] - mu
                acc += d * d
            sd = math.sqrt(block_sum(buf, tid, acc) / dim)
            if tid == 0:
                mean[r] = mu
                std[r] = sd
                std[r] += eps
            cuda.syncthreads()                  # the rounded mean and std, seen by the block
            mr = mean[r]
            sr = std[r]
            for i in range(tid, dim, RED):
                out[base + i] = (x[base + i] - mr) / sr
        else:
            if tid == 0:
                mean[r] = mu
            cuda.syncthreads()
            mr = mean[r]
            for i in range(tid, dim, RED):
                out[base + i] = x[base + i] - mr


def mvn_forward(x, normalize_variance, eps, mean, std, out):
    """out[r, :] = x[r, :] - mean[r], then / std[r] with std[r] = sqrt(biased var of row r) + eps when normalize_variance; x, out (rows, dim), out may be x."""
    rows, dim = _dims(x)
    if rows * dim == 0:
        return
    _mvn_fwd_k[_group_blocks(rows), RED](flat(x), rows, dim, bool(normalize_variance), eps,
                                         mean, std, flat(out))


@cuda.jit
def _mvn_bwd_k(dy, x, rows, dim, mean, std, normalize_variance, dx):
    buf = cuda.shared.array(RED, np.float64)
    buf2 = cuda.shared.array(RED, np.float64)
    tid = cuda.threadIdx.x
    for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
        base = r * dim
        mr = mean[r]
        if normalize_variance:
            sr = std[r]
            s1 = 0.0
            s2 = 0.0
            for i in range(tid, dim, RED):
                g = dy[base + i]
                s1 += g
                s2 += g * ((x[base + i] - mr) / sr)
            _block_sum2(buf, buf2, tid, s1, s2)
            a = buf[0] / dim
            b = buf2[0] / dim
            cuda.syncthreads()
            for i in range(tid, dim, RED):
                y = (x[base + i] - mr) / sr
                dx[base + i] = (dy[base + i] - a - y * b) / sr
        else:
            s1 = 0.0
            for i in range(tid, dim, RED):
                s1 += dy[base + i]
            a = block_sum(buf, tid, s1) / dim
            for i in range(tid, dim, RED):
                dx[base + i] = dy[base + i] - a


def mvn_backward(dy, x, mean, std, normalize_variance, dx):
    """normalize_variance: dx = (dy - mean_r(dy) - y * mean_r(dy * y)) / std[r], y = (x - mean[r]) / std[r]; else dx = dy - mean_r(dy); (rows, dim) arrays, dx may be dy."""
    rows, dim = _dims(x)
    if rows * dim == 0:
        return
    _mvn_bwd_k[_group_blocks(rows), RED](flat(dy), flat(x), rows, dim, mean, std,
                                         bool(normalize_variance), flat(dx))


# --- Embed ------------------------------------------------------------------------------------------
@cuda.jit
def _embed_bwd_k(dy, order, starts, width, accumulate, wdiff):
    # element (r, col) of the weight gradient gathers the dy rows whose index is r (CSR lists
    # built on the host), so repeated indices need no atomics; neighbouring threads read
    # neighbouring columns of the same dy row
    for e in range(cuda.grid(1), wdiff.size, cuda.gridsize(1)):
        r = e // width
        col = e - r * width
        j0 = starts[r]
        j1 = starts[r + 1]
        if j0 == j1:
            if not accumulate:
                wdiff[e] = 0
            continue
        acc = dy[order[j0] * width + col]
        if accumulate:
            acc = wdiff[e] + acc
        for j in range(j0 + 1, j1):
            acc += dy[order[j] * width + col]
        wdiff[e] = acc


def embed_backward(dy, order, starts, accumulate, wdiff):
    """wdiff[r, :] = (wdiff[r, :] if accumulate else 0) + sum of dy[order[j], :] for j in [starts[r], starts[r + 1]); dy (M, D), wdiff (K, D); one row per task (race-free gather)."""
    _, width = _dims(wdiff)
    wdiff = flat(wdiff)
    if wdiff.size:
        _embed_bwd_k[grid1d(wdiff.size)](flat(dy), order, starts, width, bool(accumulate),
                                         wdiff)
