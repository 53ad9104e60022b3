"""CUDA kernels for Softmax, the loss layers and Accuracy (twins of the softmax/loss ops of
``backend/cpu/elementwise.py`` and of ``backend/cpu/loss_ops.py``).

Arrays arrive as device arrays in the CPU ops' shapes ((outer, C, inner) views, (N, D) rows,
flat vectors); kernels index them flat. Softmax-style kernels run one thread per column
``(o, :, i)`` (coalesced along inner), or one block per column when there are few columns of
many channels (e.g. (N, 1000, 1) classifier scores). Ops that return a Python value (a loss sum,
a count) reduce per block in shared memory (float64), then copy the per-block partials
(one per block, at most a few hundred; one per class for Accuracy) to the host in one transfer.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..cpu import elementwise as _cpu
from ..cpu import loss_ops as _cpu_loss
from .core import SIMULATED, SMALL_LAUNCHES, flat, grid1d, span

__all__ = [
    "softmax_forward", "softmax_backward", "softmax_loss_forward", "softmax_loss_backward",
    "euclidean_loss_forward", "euclidean_loss_backward", "accuracy_forward",
    "sigmoid_cross_entropy_loss_forward", "sigmoid_cross_entropy_loss_backward",
    "hinge_loss_forward", "hinge_loss_backward",
    "contrastive_loss_forward", "contrastive_loss_backward",
    "infogain_loss_forward", "infogain_loss_backward",
    "multinomial_logistic_loss_forward", "multinomial_logistic_loss_backward",
    "first_bad_label",
]

FLT_MIN = _cpu.FLT_MIN
KLOG_THRESHOLD = _cpu.KLOG_THRESHOLD

# threads per reduction block (a power of two: the shared-memory tree halves it)
_RED = 32 if SMALL_LAUNCHES else 256
# most blocks a reduction launches: bounds the partials copied back to the host
_MAX_RED_BLOCKS = 2 if SMALL_LAUNCHES else 256
# softmax switches to one block per column when columns have at least this many channels and
# there are too few columns to keep the GPU busy one thread each
BLOCK_COLUMN_MIN_CHANNELS = 64
BLOCK_COLUMN_MAX_COLUMNS = 16384
_MAX_BLOCKS = 2 if SMALL_LAUNCHES else 65535


def _device(f):
    return cuda.jit(device=True)(f.py_func)


_sigmoid = _device(_cpu.sigmoid_fwd_scalar)
_label_class = _device(_cpu_loss.label_class)
_sigmoid_ce = _device(_cpu.sigmoid_ce_scalar)


# --- reductions ----------------------------------------------------------------------------------
_scratch: dict = {}


def _partials(rows, cols=2, dtype=np.float64):
    """A cached (rows, cols) device buffer for per-block partial results (no allocation per call
    once warm; re-made when the CUDA context changes)."""
    ctx = None if SIMULATED else cuda.current_context()   # the simulator's is new each call
    key = (int(rows), int(cols), np.dtype(dtype).str)
    hit = _scratch.get(key)
    if hit is None or hit[0] is not ctx:
        hit = (ctx, cuda.device_array((int(rows), int(cols)), np.dtype(dtype)))
        _scratch[key] = hit
    return hit[1]


def _red_blocks(n):
    return max(1, min(grid1d(n)[0], _MAX_RED_BLOCKS))


def _launch_partials(kernel, n, *args, cols=2, dtype=np.float64):
    """Run ``kernel[blocks, _RED](*args, partial)`` over n items; returns the per-block partials
    (a (blocks, cols) numpy array) in one copy to the host."""
    blocks = _red_blocks(n)
    part = _partials(_MAX_RED_BLOCKS, cols, dtype)
    kernel[blocks, _RED](*args, part)
    return span(part, 0, blocks).copy_to_host()


def _launch_reduction(kernel, n, *args):
    """``_launch_partials`` summed per column (float64 numpy array of 2)."""
    return _launch_partials(kernel, n, *args).sum(axis=0)


@cuda.jit(device=True)
def _block_sum2(a, b, tid):
    """Tree-sum the shared arrays a and b (length _RED) into a[0], b[0]; ends synchronised."""
    cuda.syncthreads()
    s = _RED // 2
    while s > 0:
        if tid < s:
            a[tid] += a[tid + s]
            b[tid] += b[tid + s]
        cuda.syncthreads()
        s //= 2


@cuda.jit(device=True)
def _block_sum1(a, tid):
    """Tree-sum the shared array a (length _RED) into a[0]; ends synchronised."""
    cuda.syncthreads()
    s = _RED // 2
    while s > 0:
        if tid < s:
            a[tid] += a[tid + s]
        cuda.syncthreads()
        s //= 2


@cuda.jit(device=True)
def _block_extreme(a, tid, smallest):
    """Tree-max (tree-min when ``smallest``) of the shared array a (length _RED) into a[0];
    ends synchronised."""
    cuda.syncthreads()
    s = _RED // 2
    while s > 0:
        if tid < s:
            if (a[tid + s] < a[tid]) if smallest else (a[tid + s] > a[tid]):
                a[tid] = a[tid + s]
        cuda.syncthreads()
        s //= 2


def _dims3(x):
    outer, chans, inner = tuple(x.shape)
    return outer, chans, inner


# --- softmax over (outer, channels, inner) -------------------------------------------------------
@cuda.jit
def _softmax_fwd_col_k(x, out, outer, chans, inner):
    """One thread per column t = o*inner + i: out[o,:,i] = softmax(x[o,:,i])."""
    for t in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = t // inner
        base = o * chans * inner + (t - o * inner)
        m = x[base]
        for c in range(1, chans):
            v = x[base + c * inner]
            if v > m:
                m = v
        s = 0.0
        for c in range(chans):
            e = math.exp(x[base + c * inner] - m)
            out[base + c * inner] = e
            s += e
        for c in range(chans):
            out[base + c * inner] = out[base + c * inner] / s


@cuda.jit
def _softmax_fwd_blk_k(x, out, outer, chans, inner):
    """One block per column (block-stride over columns), threads over channels."""
    buf = cuda.shared.array(_RED, np.float64)
    tid = cuda.threadIdx.x
    for t in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
        o = t // inner
        base = o * chans * inner + (t - o * inner)
        m = -math.inf
        for c in range(tid, chans, _RED):
            v = x[base + c * inner]
            if v > m:
                m = v
        buf[tid] = m
        _block_extreme(buf, tid, False)
        m = buf[0]
        cuda.syncthreads()
        s = 0.0
        for c in range(tid, chans, _RED):
            e = math.exp(x[base + c * inner] - m)
            out[base + c * inner] = e
            s += e
        buf[tid] = s
        _block_sum1(buf, tid)
        s = buf[0]
        for c in range(tid, chans, _RED):
            out[base + c * inner] = out[base + c * inner] / s
        cuda.syncthreads()


@cuda.jit
def _softmax_bwd_col_k(top_diff, y, out, outer, chans, inner):
    for t in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = t // inner
        base = o * chans * inner + (t - o * inner)
        d = 0.0
        for c in range(chans):
            d += top_diff[base + c * inner] * y[base + c * inner]
        for c in range(chans):
            k = base + c * inner
            out[k] = (top_diff[k] - d) * y[k]


@cuda.jit
def _softmax_bwd_blk_k(top_diff, y, out, outer, chans, inner):
    buf = cuda.shared.array(_RED, np.float64)
    tid = cuda.threadIdx.x
    for t in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
        o = t // inner
        base = o * chans * inner + (t - o * inner)
        d = 0.0
        for c in range(tid, chans, _RED):
            d += top_diff[base + c * inner] * y[base + c * inner]
        buf[tid] = d
        _block_sum1(buf, tid)
        d = buf[0]
        for c in range(tid, chans, _RED):
            k = base + c * inner
            out[k] = (top_diff[k] - d) * y[k]
        cuda.syncthreads()


def _block_per_column(chans, columns):
    return chans >= BLOCK_COLUMN_MIN_CHANNELS and columns <= BLOCK_COLUMN_MAX_COLUMNS


def softmax_forward(x, out):
    """out[o,c,i] = exp(x[o,c,i] - max_c x[o,:,i]) / sum_c exp(...); (outer, C, inner);
    out may be x."""
    outer, chans, inner = _dims3(x)
    cols = outer * inner
    if cols == 0 or chans == 0:
        return
    if _block_per_column(chans, cols):
        _softmax_fwd_blk_k[min(cols, _MAX_BLOCKS), _RED](flat(x), flat(out), outer, chans, inner)
    else:
        _softmax_fwd_col_k[grid1d(cols)](flat(x), flat(out), outer, chans, inner)


def softmax_backward(top_diff, y, out):
    """out = (top_diff - sum_c top_diff * y) * y per column; (outer, C, inner); out may be
    top_diff."""
    outer, chans, inner = _dims3(y)
    cols = outer * inner
    if cols == 0 or chans == 0:
        return
    if _block_per_column(chans, cols):
        _softmax_bwd_blk_k[min(cols, _MAX_BLOCKS), _RED](flat(top_diff), flat(y), flat(out),
                                                          outer, chans, inner)
    else:
        _softmax_bwd_col_k[grid1d(cols)](flat(top_diff), flat(y), flat(out), outer, chans, inner)


# --- SoftmaxWithLoss ----------------------------------------------------------------------------
@cuda.jit
def _softmax_loss_fwd_k(prob, label, chans, inner, ncols, ignore_label, has_ignore, partial):
    """partial[block] = (loss sum, count, smallest bad label index or ncols) of the block's
    grid-stride slice of columns."""
    bl = cuda.shared.array(_RED, np.float64)
    bc = cuda.shared.array(_RED, np.float64)
    tid = cuda.threadIdx.x
    loss = 0.0
    cnt = 0.0
    bad = ncols
    for t in range(cuda.grid(1), ncols, cuda.gridsize(1)):
        lab = _label_class(label[t], chans, has_ignore, ignore_label)
        if lab == -2:
            bad = min(bad, t)
            continue
        if lab == -1:
            continue
        o = t // inner
        p = max(prob[(o * chans + lab) * inner + (t - o * inner)], FLT_MIN)
        loss -= math.log(p)
        cnt += 1.0
    bl[tid] = loss
    bc[tid] = cnt
    _block_sum2(bl, bc, tid)
    if tid == 0:
        partial[cuda.blockIdx.x, 0] = bl[0]
        partial[cuda.blockIdx.x, 1] = bc[0]
    bl[tid] = bad
    _block_extreme(bl, tid, True)
    if tid == 0:
        partial[cuda.blockIdx.x, 2] = bl[0]


def softmax_loss_forward(prob, label, ignore_label, has_ignore):
    """(sum of -log(max(prob[o, label, i], FLT_MIN)) over the columns whose label is a class,
    their count, the flat index of the first label that is neither a class nor the
    ignore_label, or -1): one launch and one read of the per-block partials."""
    outer, chans, inner = _dims3(prob)
    ncols = outer * inner
    if ncols == 0:
        return 0.0, 0, -1
    p = _launch_partials(_softmax_loss_fwd_k, ncols, flat(prob), flat(label), chans, inner,
                         ncols, int(ignore_label), bool(has_ignore), cols=3)
    bad = int(p[:, 2].min())
    return float(p[:, 0].sum()), int(round(p[:, 1].sum())), (bad if bad < ncols else -1)


@cuda.jit
def _softmax_loss_bwd_k(prob, label, chans, inner, ignore_label, has_ignore, scale, out):
    ci = chans * inner
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        o = k // ci
        r = k - o * ci
        c = r // inner
        lab = int(label[o * inner + (r - c * inner)])
        if has_ignore and lab == ignore_label:
            out[k] = 0
        elif c == lab:
            out[k] = (prob[k] - 1) * scale
        else:
            out[k] = prob[k] * scale


def softmax_loss_backward(prob, label, ignore_label, has_ignore, scale, out):
    """out = scale * (prob - onehot(label)), 0 in ignored columns; (outer, C, inner)."""
    outer, chans, inner = _dims3(prob)
    out = flat(out)
    if out.size:
        _softmax_loss_bwd_k[grid1d(out.size)](flat(prob), flat(label), chans, inner,
                                              int(ignore_label), bool(has_ignore), scale, out)


# --- EuclideanLoss -------------------------------------------------------------------------------
@cuda.jit
def _euclidean_fwd_k(a, b, diff, partial):
    bs = cuda.shared.array(_RED, np.float64)
    bz = cuda.shared.array(_RED, np.float64)
    tid = cuda.threadIdx.x
    s = 0.0
    for i in range(cuda.grid(1), diff.size, cuda.gridsize(1)):
        d = a[i] - b[i]
        diff[i] = d
        s += d * d
    bs[tid] = s
    bz[tid] = 0.0
    _block_sum2(bs, bz, tid)
    if tid == 0:
        partial[cuda.blockIdx.x, 0] = bs[0]
        partial[cuda.blockIdx.x, 1] = 0.0


def euclidean_loss_forward(a, b, diff):
    """diff = a - b; returns sum(diff^2) (float64 accumulation); flat arrays."""
    diff = flat(diff)
    if diff.size == 0:
        return 0.0
    return float(_launch_reduction(_euclidean_fwd_k, diff.size, flat(a), flat(b), diff)[0])


@cuda.jit
def _scale_copy_k(diff, alpha, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = alpha * diff[i]


def euclidean_loss_backward(diff, alpha, out):
    """out = alpha * diff; flat arrays."""
    out = flat(out)
    if out.size:
        _scale_copy_k[grid1d(out.size)](flat(diff), alpha, out)


# --- Accuracy ------------------------------------------------------------------------------------
@cuda.jit
def _accuracy_k(scores, label, chans, inner, ncols, top_k, ignore_label, has_ignore, per_class,
                partial):
    """One block per class (block-stride): its threads test the columns labelled with it."""
    bh = cuda.shared.array(_RED, np.float64)
    bn = cuda.shared.array(_RED, np.float64)
    tid = cuda.threadIdx.x
    for cls in range(cuda.blockIdx.x, chans, cuda.gridDim.x):
        hits = 0.0
        cnt = 0.0
        if not (has_ignore and cls == ignore_label):
            for t in range(tid, ncols, _RED):
                if int(label[t]) != cls:
                    continue
                o = t // inner
                base = o * chans * inner + (t - o * inner)
                true_score = scores[base + cls * inner]
                better = -1
                for c in range(chans):
                    if better >= top_k:
                        break
                    if scores[base + c * inner] >= true_score:
                        better += 1
                if better < top_k:
                    hits += 1.0
                cnt += 1.0
        bh[tid] = hits
        bn[tid] = cnt
        _block_sum2(bh, bn, tid)
        if tid == 0:
            h = bh[0]
            n = bn[0]
            per_class[cls] = h / n if n > 0 else 0.0
            partial[cls, 0] = h
            partial[cls, 1] = n
        cuda.syncthreads()


def accuracy_forward(scores, label, top_k, ignore_label, has_ignore, per_class):
    """Caffe's top-k test per column; per_class (C,) gets hits / examples per class (0 for none);
    returns (hits, count). Labels pre-validated."""
    outer, chans, inner = _dims3(scores)
    ncols = outer * inner
    if chans == 0:
        return 0, 0
    part = _partials(chans)
    _accuracy_k[min(chans, _MAX_BLOCKS), _RED](flat(scores), flat(label), chans, inner, ncols,
                                               int(top_k), int(ignore_label), bool(has_ignore),
                                               flat(per_class), part)
    s = part.copy_to_host().sum(axis=0)
    return int(round(s[0])), int(round(s[1]))


# --- SigmoidCrossEntropyLoss ------------------------------------------------------------------
@cuda.jit
def _sigmoid_ce_fwd_k(x, target, ignore_label, has_ignore, sig, partial):
    bl = cuda.shared.array(_RED, np.float64)
    bc = cuda.shared.array(_RED, np.float64)
    tid = cuda.threadIdx.x
    loss = 0.0
    cnt = 0.0
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        sig[i] = _sigmoid(v)
        t = target[i]
        if has_ignore and int(t) == ignore_label:
            continue
        loss += _sigmoid_ce(v, t)
        cnt += 1.0
    bl[tid] = loss
    bc[tid] = cnt
    _block_sum2(bl, bc, tid)
    if tid == 0:
        partial[cuda.blockIdx.x, 0] = bl[0]
        partial[cuda.blockIdx.x, 1] = bc[0]


def sigmoid_cross_entropy_loss_forward(x, target, ignore_label, has_ignore, sig):
    """sig = sigmoid(x); returns (sum of the stable cross-entropy over non-ignored elements,
    their count); flat arrays."""
    x = flat(x)
    if x.size == 0:
        return 0.0, 0
    s = _launch_reduction(_sigmoid_ce_fwd_k, x.size, x, flat(target), int(ignore_label),
                          bool(has_ignore), flat(sig))
    return float(s[0]), int(round(s[1]))


@cuda.jit
def _sigmoid_ce_bwd_k(sig, target, ignore_label, has_ignore, scale, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        t = target[i]
        if has_ignore and int(t) == ignore_label:
            out[i] = 0
        else:
            out[i] = scale * (sig[i] - t)


def sigmoid_cross_entropy_loss_backward(sig, target, ignore_label, has_ignore, scale, out):
    """out = scale * (sig - target), 0 at ignored elements; flat arrays."""
    out = flat(out)
    if out.size:
        _sigmoid_ce_bwd_k[grid1d(out.size)](flat(sig), flat(target), int(ignore_label),
                                            bool(has_ignore), scale, out)


# --- HingeLoss -----------------------------------------------------------------------------------
@cuda.jit
def _hinge_fwd_k(x, label, dim, l2, margins, partial):
    bs = cuda.shared.array(_RED, np.float64)
    bz = cuda.shared.array(_RED, np.float64)
    tid = cuda.threadIdx.x
    s = 0.0
    for k in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        n = k // dim
        v = x[k]
        if k - n * dim == int(label[n]):
            v = -v
        m = max(0, 1 + v)
        margins[k] = m
        if l2:
            s += m * m
        else:
            s += m
    bs[tid] = s
    bz[tid] = 0.0
    _block_sum2(bs, bz, tid)
    if tid == 0:
        partial[cuda.blockIdx.x, 0] = bs[0]
        partial[cuda.blockIdx.x, 1] = 0.0


def hinge_loss_forward(x, label, l2, margins):
    """margins[n,j] = max(0, 1 + s x[n,j]), s = -1 at the label; returns sum of margins
    (l2: of squares); x, margins (N, D), label (N,)."""
    num, dim = tuple(x.shape)
    if num * dim == 0:
        return 0.0
    return float(_launch_reduction(_hinge_fwd_k, num * dim, flat(x), flat(label), dim,
                                   bool(l2), flat(margins))[0])


@cuda.jit
def _hinge_bwd_k(margins, label, dim, l2, scale, out):
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n = k // dim
        m = margins[k]
        g = 2 * m if l2 else (m > 0) * 1.0
        if k - n * dim == int(label[n]):
            g = -g
        out[k] = scale * g


def hinge_loss_backward(margins, label, l2, scale, out):
    """out[n,j] = scale * s * (2 m if l2 else sign(m)), s = -1 at the label; (N, D)."""
    num, dim = tuple(margins.shape)
    out = flat(out)
    if out.size:
        _hinge_bwd_k[grid1d(out.size)](flat(margins), flat(label), dim, bool(l2), scale, out)


# --- ContrastiveLoss -----------------------------------------------------------------------------
@cuda.jit
def _contrastive_fwd_k(a, b, sim, num, chans, margin, legacy, diff, dist_sq, partial):
    """One thread per pair n: diff row, squared distance, the pair's loss term."""
    bs = cuda.shared.array(_RED, np.float64)
    bz = cuda.shared.array(_RED, np.float64)
    tid = cuda.threadIdx.x
    total = 0.0
    for n in range(cuda.grid(1), num, cuda.gridsize(1)):
        d2 = 0.0
        for c in range(chans):
            k = n * chans + c
            d = a[k] - b[k]
            diff[k] = d
            d2 += d * d
        dist_sq[n] = d2
        if int(sim[n]) != 0:
            total += d2
        elif legacy:
            total += max(margin - d2, 0.0)
        else:
            m = max(margin - math.sqrt(d2), 0.0)
            total += m * m
    bs[tid] = total
    bz[tid] = 0.0
    _block_sum2(bs, bz, tid)
    if tid == 0:
        partial[cuda.blockIdx.x, 0] = bs[0]
        partial[cuda.blockIdx.x, 1] = 0.0


def contrastive_loss_forward(a, b, sim, margin, legacy, diff, dist_sq):
    """diff = a - b, dist_sq = row norms^2; returns the summed contrastive terms; (N, C)."""
    num, chans = tuple(a.shape)
    if num == 0:
        return 0.0
    return float(_launch_reduction(_contrastive_fwd_k, num, flat(a), flat(b), flat(sim), num,
                                   chans, float(margin), bool(legacy), flat(diff),
                                   flat(dist_sq))[0])


@cuda.jit
def _contrastive_bwd_k(diff, dist_sq, sim, chans, margin, legacy, alpha, out):
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n = k // chans
        if int(sim[n]) != 0:
            coef = alpha * 1.0
        else:
            if legacy:
                mdist = margin - dist_sq[n]
                beta = -alpha * 1.0
            else:
                d = math.sqrt(dist_sq[n])
                mdist = margin - d
                beta = -alpha * mdist / (d + 1e-4)
            coef = beta if mdist > 0 else 0.0
        out[k] = coef * diff[k]


def contrastive_loss_backward(diff, dist_sq, sim, margin, legacy, alpha, out):
    """out[n] = alpha diff[n] for similar pairs, the margin term's gradient otherwise; (N, C)."""
    num, chans = tuple(diff.shape)
    out = flat(out)
    if out.size:
        _contrastive_bwd_k[grid1d(out.size)](flat(diff), flat(dist_sq), flat(sim), chans,
                                             float(margin), bool(legacy), alpha, out)


# --- InfogainLoss --------------------------------------------------------------------------------
@cuda.jit
def _infogain_fwd_k(prob, label, infogain, chans, inner, ncols, ignore_label, has_ignore,
                    partial):
    bl = cuda.shared.array(_RED, np.float64)
    bc = cuda.shared.array(_RED, np.float64)
    tid = cuda.threadIdx.x
    loss = 0.0
    cnt = 0.0
    for t in range(cuda.grid(1), ncols, cuda.gridsize(1)):
        lab = int(label[t])
        if has_ignore and lab == ignore_label:
            continue
        o = t // inner
        base = o * chans * inner + (t - o * inner)
        s = 0.0
        for c in range(chans):
            s += infogain[lab * chans + c] * math.log(max(prob[base + c * inner],
                                                          KLOG_THRESHOLD))
        loss -= s
        cnt += 1.0
    bl[tid] = loss
    bc[tid] = cnt
    _block_sum2(bl, bc, tid)
    if tid == 0:
        partial[cuda.blockIdx.x, 0] = bl[0]
        partial[cuda.blockIdx.x, 1] = bc[0]


def infogain_loss_forward(prob, label, infogain, ignore_label, has_ignore):
    """(sum over non-ignored columns of -sum_l H[lab,l] log(max(prob_l, 1e-20)), their count)."""
    outer, chans, inner = _dims3(prob)
    ncols = outer * inner
    if ncols == 0:
        return 0.0, 0
    s = _launch_reduction(_infogain_fwd_k, ncols, flat(prob), flat(label), flat(infogain),
                          chans, inner, ncols, int(ignore_label), bool(has_ignore))
    return float(s[0]), int(round(s[1]))


@cuda.jit
def _infogain_bwd_k(prob, label, infogain, chans, inner, ncols, ignore_label, has_ignore, scale,
                    out):
    """One thread per column: the row sum of H once, then the column's C gradients."""
    for t in range(cuda.grid(1), ncols, cuda.gridsize(1)):
        o = t // inner
        base = o * chans * inner + (t - o * inner)
        lab = int(label[t])
        if has_ignore and lab == ignore_label:
            for c in range(chans):
                out[base + c * inner] = 0
        else:
            rs = 0.0
            for c in range(chans):
                rs += infogain[lab * chans + c]
            for c in range(chans):
                k = base + c * inner
                out[k] = scale * (prob[k] * rs - infogain[lab * chans + c])


def infogain_loss_backward(prob, label, infogain, ignore_label, has_ignore, scale, out):
    """out = scale * (prob * sum_l H[lab,l] - H[lab,:]) per column, 0 in ignored columns."""
    outer, chans, inner = _dims3(prob)
    ncols = outer * inner
    if ncols:
        _infogain_bwd_k[grid1d(ncols)](flat(prob), flat(label), flat(infogain), chans, inner,
                                       ncols, int(ignore_label), bool(has_ignore), scale,
                                       flat(out))


# --- MultinomialLogisticLoss --------------------------------------------------------------------
@cuda.jit
def _mll_fwd_k(prob, label, num, dim, partial):
    bs = cuda.shared.array(_RED, np.float64)
    bz = cuda.shared.array(_RED, np.float64)
    tid = cuda.threadIdx.x
    s = 0.0
    for n in range(cuda.grid(1), num, cuda.gridsize(1)):
        s -= math.log(max(prob[n * dim + int(label[n])], KLOG_THRESHOLD))
    bs[tid] = s
    bz[tid] = 0.0
    _block_sum2(bs, bz, tid)
    if tid == 0:
        partial[cuda.blockIdx.x, 0] = bs[0]
        partial[cuda.blockIdx.x, 1] = 0.0


def multinomial_logistic_loss_forward(prob, label):
    """sum_n -log(max(prob[n, label_n], 1e-20)); prob (N, D), label (N,)."""
    num, dim = tuple(prob.shape)
    if num == 0:
        return 0.0
    return float(_launch_reduction(_mll_fwd_k, num, flat(prob), flat(label), num, dim)[0])


@cuda.jit
def _mll_bwd_k(prob, label, dim, scale, out):
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n = k // dim
        if k - n * dim == int(label[n]):
            out[k] = scale / max(prob[k], KLOG_THRESHOLD)
        else:
            out[k] = 0


def multinomial_logistic_loss_backward(prob, label, scale, out):
    """out[n, label_n] = scale / max(prob[n, label_n], 1e-20), 0 elsewhere; (N, D)."""
    num, dim = tuple(prob.shape)
    out = flat(out)
    if out.size:
        _mll_bwd_k[grid1d(out.size)](flat(prob), flat(label), dim, scale, out)


# --- label checks --------------------------------------------------------------------------------
@cuda.jit
def _first_bad_label_k(label, n_classes, has_ignore, ignore_label, partial):
    """partial[block, 0] = the smallest bad index in the block's grid-stride slice (n if none)."""
    buf = cuda.shared.array(_RED, np.int64)
    tid = cuda.threadIdx.x
    n = label.size
    first = n
    for k in range(cuda.grid(1), n, cuda.gridsize(1)):
        if _label_class(label[k], n_classes, has_ignore, ignore_label) == -2:
            first = k
            break
    buf[tid] = first
    cuda.syncthreads()
    s = _RED // 2
    while s > 0:
        if tid < s and buf[tid + s] < buf[tid]:
            buf[tid] = buf[tid + s]
        cuda.syncthreads()
        s //= 2
    if tid == 0:
        partial[cuda.blockIdx.x, 0] = buf[0]


def first_bad_label(label, n_classes, has_ignore, ignore_label):
    """Flat index of the first label that is not a class in [0, n_classes) (after truncation
    toward zero) nor the ignore_label (when has_ignore), or -1; label flat."""
    label = flat(label)
    n = label.size
    if n == 0:
        return -1
    k = int(_launch_partials(_first_bad_label_k, n, label, int(n_classes), bool(has_ignore),
                             int(ignore_label), cols=1, dtype=np.int64).min())
    return -1 if k >= n else k
