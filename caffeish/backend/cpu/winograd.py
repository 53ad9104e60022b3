"""5x5 and 3x3 stride-1 convolutions on the CPU by Winograd's minimal filtering: F(2x2, 5x5)
and F(4x4, 3x3), both on 6x6 input tiles.

Each 6x6 tile of the zero-padded input gives a 2x2 tile of the output: the tile is transformed,
V = B^T d B, the filter too, U = G g G^T, the 36 element-wise products are summed over the input
channels (36 GEMMs, (Cout x Cin) @ (Cin x tiles)) and each output tile is A^T M A. That is 36
multiplications per 4 outputs per channel pair where im2col's GEMM does 100, for the forward pass
and for the input gradient (the same kind of convolution, of the top gradient with the flipped,
transposed filters). The weight gradient is F(5x5, 2x2) on the same 6x6 input tiles (same B^T):
each against the 2x2 tile of the top gradient at its place, the products summed over every
tile of every image (36 GEMMs, (Cout x tiles) @ (tiles x Cin)), and A^T M A taken once.

3x3 filters use F(4x4, 3x3) with the same points, hence the same B^T and input transform: tiles
start every 4 pixels and give 4x4 outputs, 36 multiplications per 16 outputs where im2col does
144. Its forward pass and its input gradient (pad >= 1: the convolution of dy padded by
2 - pad) run this way, measured against im2col for one layer, batch 10, 2 threads: 1.4x (64
channels, 56x56), 1.8x (128, 28x28), 1.4x (256, 14x14). Its weight gradient is F(3x3, 4x4),
4x4 tiles of dy against the same input tiles, where that pays (big planes, few channel pairs:
wgrad_eligible).

The matrices come from the points 0, 1, -1, 2, -2 and infinity (Lavin & Gray's construction,
`winograd_matrices` builds them exactly); the transforms below are written out from them, and
the tests check them against it. In float32 the outputs differ from im2col's by a few 1e-6 of
the output's largest magnitude (im2col: a few 1e-7); `engine: CAFFE` in convolution_param asks
for im2col.

Layout, per block of k images: the row transforms of the input are computed for all th + 2
tile rows that the 6-row tiles reach, as one flat range per row parity (S = (th+2)*tw entries
per image and channel), so that those loops are long (loops of a few dozen iterations cost
numba's vectorized code more in set-up than in work: 5x, measured); the column transforms then
write the tiles only, densely: V[position, c, img*tiles + t] and M[position, o, img*tiles + t],
so the GEMMs compute nothing that is thrown away.
"""
from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
from numba import njit

# No __all__: these are conv_ops' helpers, not backend ops (those have CUDA twins).

_R = 5                  # filter size
_M = 2                  # output tile size
_N = _M + _R - 1        # input tile size, 6
_POINTS = (0, 1, -1, 2, -2)
# images go to a GEMM block together until it has this many tiles (CIFAR10-quick's conv2, 64
# tiles per image, forward: 5.6 ms with 4 images a block against 6.6 with one, 9.3 by im2col)
_MIN_TILES = 256


def winograd_matrices(m: int, r: int, points) -> tuple:
    """A^T (m x n), G (n x r) and B^T (n x n) of F(m, r), n = m + r - 1, for the n - 1 finite
    interpolation points given and infinity, as lists of lists of Fractions (exact). With them,
    y = A^T [(G g) * (B^T d)] is the correlation y_j = sum_k g_k d_(j+k), j < m."""
    n = m + r - 1
    pts = [Fraction(p) for p in points]
    if len(pts) != n - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"F({m}, {r}) needs {n - 1} distinct finite points")

    def poly(roots):        # coefficients, lowest degree first, of prod (x - root)
        c = [Fraction(1)]
        for rt in roots:
            c = [Fraction(0)] + c
            for t in range(len(c) - 1):
                c[t] -= rt * c[t + 1]
        return c

    at = [[p ** j for p in pts] + [Fraction(int(j == m - 1))] for j in range(m)]
    g = []
    for i, p in enumerate(pts):
        f = Fraction(1)
        for j, q in enumerate(pts):
            if j != i:
                f *= p - q
        g.append([p ** k / f for k in range(r)])
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    bt = []
    for i in range(n - 1):
        c = poly([q for j, q in enumerate(pts) if j != i])
        bt.append(c + [Fraction(0)] * (n - len(c)))
    bt.append(poly(pts))
    return at, g, bt


def _floats(mat) -> np.ndarray:
    return np.array([[float(v) for v in row] for row in mat])


def _on_our_tiles(m: int, r: int):
    """(A^T, G) of F(m, r) as floats, checking that its B^T is the shared 6x6 input transform:
    every transform here reads the same tiles."""
    at, g, bt = winograd_matrices(m, r, _POINTS)
    assert bt == _BT and len(bt) == _N
    return _floats(at), _floats(g)


_BT = winograd_matrices(_M, _R, _POINTS)[2]
_G = _on_our_tiles(_M, _R)[1]           # 5x5 filters: F(2x2, 5x5)
# 3x3 filters: F(4x4, 3x3), 36 multiplications per 16 outputs where im2col does 144
_G3 = _on_our_tiles(4, 3)[1]
# weight gradients: F(5x5, 2x2) against 2x2 tiles of dy, F(3x3, 4x4) against 4x4 tiles
_A5 = _on_our_tiles(_R, _M)[0].T        # (6, 5)
_AT3, _G4 = _on_our_tiles(3, 4)
_A3 = _AT3.T                            # (6, 3)


def _tile(r: int) -> int:
    """Output tile side of the F(m x m, r x r) used for r x r filters: 2 for 5x5, 4 for 3x3."""
    return _N - r + 1


def eligible(x_shape, n_out: int, geom, group: int) -> bool:
    """Whether conv_winograd (and conv_winograd_wgrad) compute this convolution, and are worth
    it: 5x5, stride 1, no dilation, one group, padding of at most 4 on each side (so that the
    input gradient is a convolution of the same kind), at least 16 channels in and out (with
    CIFAR10-quick's 3 input channels the transforms cost more than the GEMM work they save: 13
    against 3.9 ms) and outputs of at least 8x8 (LeNet's conv2, 20 -> 50 channels at 8x8, is
    about 10% faster by Winograd; below that the transforms' per-plane set-up dominates)."""
    kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = geom
    if kh != kw or kh not in (3, _R):
        return False
    return (group == 1 and sh == 1 and sw == 1 and dh == 1 and dw == 1 and 0 <= ph < kh
            and 0 <= pw < kh and oh >= 8 and ow >= 8 and x_shape[1] >= 16 and n_out >= 16)


def wgrad_eligible(geom, chans: int = 0, n_out: int = 0) -> bool:
    """For an eligible convolution: whether its weight gradient is worth F(5x5, 2x2) (5x5) or
    F(3x3, 4x4) (3x3). 5x5 needs outputs of 16x16 or more: CIFAR10-quick's conv2 (16x16) 7.2
    against 9.9 ms by im2col, its conv3 (8x8) 4.8 against 4.4 (the transforms' per-plane
    set-up). 3x3 needs big planes and few channel pairs, as the (36, O, C) products and their
    float64 sums grow with O*C: batch 10, 64 channels at 56x56 1.5x faster than im2col, 128 at
    28x28 1.1x; 256 at 14x14 and 64 at 16x16 or below, slower."""
    if geom[0] == 3:
        return (geom[8] >= WGRAD3_MIN and geom[9] >= WGRAD3_MIN
                and chans * n_out <= 128 * 128)
    return geom[0] == _R and geom[8] >= 16 and geom[9] >= 16


WGRAD3_MIN = 28


def dgrad_eligible(geom) -> bool:
    """For an eligible convolution: whether its input gradient is worth a Winograd convolution.
    That convolution has the input's size, padded by 4 - pad: with pad >= 2 it costs about a
    third of im2col's products, but with pad 0 (LeNet's conv2: 8x8 -> 12x12) 0.8 of them, and
    the transforms on top made it twice as slow as im2col's GEMM and col2im."""
    if geom[0] == 3:    # F(4x4, 3x3) on dy padded by 2 - pad: pad 1 keeps the input's size
        return geom[4] >= 1 and geom[5] >= 1
    return geom[4] >= 2 and geom[5] >= 2


@functools.lru_cache(maxsize=8)
def _kron(r: int, dtype) -> np.ndarray:
    """K (36, r*r) with K[6i + j, r*a + b] = G[i, a] G[j, b]: U = G w G^T for every filter at
    once is the one GEMM K @ w^T."""
    g = _G if r == _R else _G3
    return np.ascontiguousarray(np.kron(g, g), dtype=dtype)


def filter_transform(w: np.ndarray, dtype) -> np.ndarray:
    """U (36, O, C) = G w G^T for each of w's (O, C, r, r) filters (r = 5 or 3), position-major:
    one GEMM (36 x r*r) @ (r*r x O*C) that writes U in place (a layer's 256 x 256 3x3 filters:
    under 1 ms, where per-filter batched matmuls and a transpose took 12)."""
    o, c, r = w.shape[0], w.shape[1], w.shape[-1]
    u = np.empty((_N * _N, o, c), dtype)
    wf = np.asarray(w, dtype).reshape(o * c, r * r)
    np.matmul(_kron(r, np.dtype(dtype)), wf.T, out=u.reshape(_N * _N, o * c))
    return u


def data_filter_transform(w: np.ndarray, dtype) -> np.ndarray:
    """U of the convolution that gives the input gradient: the filters (O, C, r, r) transposed
    to (C, O) and turned by 180 degrees."""
    return filter_transform(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1], dtype)


@functools.lru_cache(maxsize=64)
def _plan(h: int, w: int, ph: int, pw: int, r: int = _R):
    """Tile geometry and the gather / scatter tables for (h, w) planes padded by (ph, pw) and
    r x r filters (output tiles of m = 2 for 5x5, 4 for 3x3; input tiles 6x6 either way)."""
    m = _tile(r)
    oh, ow = h + 2 * ph - r + 1, w + 2 * pw - r + 1
    th, tw = -(-oh // m), -(-ow // m)
    nq = th + (_N - 1) // m          # rows m*q + p (p < m) that the tiles' 6 rows reach
    s = nq * tw
    q = np.arange(nq)[:, None]
    tx = np.arange(tw)[None, :]
    # src[j, p*S + q*tw + tx]: the pixel at padded row m*q + p, padded column m*tx + j (-1:
    # a zero)
    src = np.empty((_N, m * s), np.int32)
    for p in range(m):
        sy = m * q + p - ph
        for j in range(_N):
            sx = m * tx + j - pw
            ok = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
            src[j, p * s:(p + 1) * s] = np.where(ok, sy * w + sx, -1).ravel()
    # dst[u, v, ty*tw + tx]: where output (m*ty + u, m*tx + v) goes in the plane (-1: outside)
    ty = np.arange(th)[:, None]
    dst = np.empty((m, m, th * tw), np.int32)
    for u in range(m):
        for v in range(m):
            oy, ox = m * ty + u, m * tx + v
            dst[u, v] = np.where((oy < oh) & (ox < ow), oy * ow + ox, -1).ravel()
    return oh, ow, th, tw, s, src, dst


@njit(nogil=True, cache=True, fastmath={"contract"})
def _transform_in(x, src, s, tw, v, d, r):
    """v[6b + a, c, img*S + t] = (B^T d B)[b, a] for tile t = ty*tw + tx of image img, channel c
    (x: (k, C, H, W); d: (6, mS) and r: (m, 6, C*kS + 2tw) scratch, r's tails zero; m, the
    output tile side, is r's first dimension: tiles start every m rows and columns)."""
    k, chans = x.shape[0], x.shape[1]
    mt = r.shape[0]
    f2 = x.dtype.type(2)
    f4 = x.dtype.type(4)
    f5 = x.dtype.type(5)
    z = x.dtype.type(0)
    ks = k * s
    for c in range(chans):
        for img in range(k):
            xf = x[img, c].ravel()
            for j in range(6):
                sj = src[j]
                dj = d[j]
                for u in range(mt * s):
                    i = sj[u]
                    dj[u] = xf[i] if i >= 0 else z
            # along the rows: six values per (padded row, tile column)
            o = c * ks + img * s
            for p in range(mt):
                d0 = d[0, p * s:(p + 1) * s]
                d1 = d[1, p * s:(p + 1) * s]
                d2 = d[2, p * s:(p + 1) * s]
                d3 = d[3, p * s:(p + 1) * s]
                d4 = d[4, p * s:(p + 1) * s]
                d5 = d[5, p * s:(p + 1) * s]
                o0 = r[p, 0, o:o + s]
                o1 = r[p, 1, o:o + s]
                o2 = r[p, 2, o:o + s]
                o3 = r[p, 3, o:o + s]
                o4 = r[p, 4, o:o + s]
                o5 = r[p, 5, o:o + s]
                for u in range(s):
                    a0 = d0[u]
                    a1 = d1[u]
                    a2 = d2[u]
                    a3 = d3[u]
                    a4 = d4[u]
                    a5 = d5[u]
                    o0[u] = f4 * a0 - f5 * a2 + a4
                    o1[u] = a3 + a4 - f4 * (a1 + a2)
                    o2[u] = f4 * (a1 - a2) - a3 + a4
                    o3[u] = a4 - a2 - f2 * (a1 - a3)
                    o4[u] = f2 * (a1 - a3) - a2 + a4
                    o5[u] = f4 * a1 - f5 * a3 + a5
    # down the columns: padded row m*ty + i of a tile (i < 6) is entry t + (i // m)*tw of
    # r[i % m] for its image (m = 2: even, odd, even, ... rows at t, t, t + tw, t + tw, ...);
    # v keeps the tiles only (dense: GEMMs waste nothing)
    tiles = v.shape[2] // k
    o1, o2, o3, o4, o5 = (1 // mt) * tw, (2 // mt) * tw, (3 // mt) * tw, (4 // mt) * tw, \
        (5 // mt) * tw
    for a in range(6):
        for c in range(chans):
            for img in range(k):
                ro = c * ks + img * s
                vo = img * tiles
                e0 = r[0, a, ro:ro + tiles]
                q0 = r[1 % mt, a, ro + o1:ro + o1 + tiles]
                e1 = r[2 % mt, a, ro + o2:ro + o2 + tiles]
                q1 = r[3 % mt, a, ro + o3:ro + o3 + tiles]
                e2 = r[4 % mt, a, ro + o4:ro + o4 + tiles]
                q2 = r[5 % mt, a, ro + o5:ro + o5 + tiles]
                w0 = v[a, c, vo:vo + tiles]
                w1 = v[6 + a, c, vo:vo + tiles]
                w2 = v[12 + a, c, vo:vo + tiles]
                w3 = v[18 + a, c, vo:vo + tiles]
                w4 = v[24 + a, c, vo:vo + tiles]
                w5 = v[30 + a, c, vo:vo + tiles]
                for j in range(tiles):
                    r0 = e0[j]
                    r1 = q0[j]
                    r2 = e1[j]
                    r3 = q1[j]
                    r4 = e2[j]
                    r5 = q2[j]
                    w0[j] = f4 * r0 - f5 * r2 + r4
                    w1[j] = r3 + r4 - f4 * (r1 + r2)
                    w2[j] = f4 * (r1 - r2) - r3 + r4
                    w3[j] = r4 - r2 - f2 * (r1 - r3)
                    w4[j] = f2 * (r1 - r3) - r2 + r4
                    w5[j] = f4 * r1 - f5 * r3 + r5


@njit(nogil=True, cache=True, fastmath={"contract"})
def _transform_out(m, bias, dst, y, sv, yt):
    """y[img, o, mt*ty + u, mt*tx + v] = bias[o] + (A^T M A)[u, v], M[b, a] = m[6b + a, o,
    img*tiles + t] for tile t = ty*tw + tx (m: (36, O, k*tiles); sv: (mt, 6, O*k*tiles) and
    yt: (mt, mt, O*k*tiles) scratch; mt = 2 for F(2x2, 5x5), 4 for F(4x4, 3x3), dst's first
    dimension)."""
    k, n_out = y.shape[0], y.shape[1]
    mt = dst.shape[0]
    f4 = m.dtype.type(4)
    f8 = m.dtype.type(8)
    kt = m.shape[2]
    n = n_out * kt
    tiles = dst.shape[2]
    f2 = m.dtype.type(2)
    # The column and the row passes below apply the same A^T, written out in each: one njit
    # helper for both (inlined or not) ran 1.7-2.5x slower here (its loops stopped vectorizing).
    for a in range(6):           # down the columns
        m0 = m[a].ravel()
        m1 = m[6 + a].ravel()
        m2 = m[12 + a].ravel()
        m3 = m[18 + a].ravel()
        m4 = m[24 + a].ravel()
        m5 = m[30 + a].ravel()
        s0 = sv[0, a]
        s1 = sv[1, a]
        if mt == 2:
            for j in range(n):
                b0 = m0[j]
                b1 = m1[j]
                b2 = m2[j]
                b3 = m3[j]
                b4 = m4[j]
                b5 = m5[j]
                s0[j] = b0 + b1 + b2 + b3 + b4
                s1[j] = (b1 - b2) + f2 * (b3 - b4) + b5
        else:
            s2 = sv[2, a]
            s3 = sv[3, a]
            for j in range(n):
                b0 = m0[j]
                b1 = m1[j]
                b2 = m2[j]
                b3 = m3[j]
                b4 = m4[j]
                b5 = m5[j]
                p12 = b1 + b2
                d12 = b1 - b2
                p34 = b3 + b4
                d34 = b3 - b4
                s0[j] = b0 + p12 + p34
                s1[j] = d12 + f2 * d34
                s2[j] = p12 + f4 * p34
                s3[j] = d12 + f8 * d34 + b5
    for u in range(mt):          # along the rows
        c0 = sv[u, 0]
        c1 = sv[u, 1]
        c2 = sv[u, 2]
        c3 = sv[u, 3]
        c4 = sv[u, 4]
        c5 = sv[u, 5]
        y0 = yt[u, 0]
        y1 = yt[u, 1]
        if mt == 2:
            for j in range(n):
                a0 = c0[j]
                a1 = c1[j]
                a2 = c2[j]
                a3 = c3[j]
                a4 = c4[j]
                a5 = c5[j]
                y0[j] = a0 + a1 + a2 + a3 + a4
                y1[j] = (a1 - a2) + f2 * (a3 - a4) + a5
        else:
            y2 = yt[u, 2]
            y3 = yt[u, 3]
            for j in range(n):
                a0 = c0[j]
                a1 = c1[j]
                a2 = c2[j]
                a3 = c3[j]
                a4 = c4[j]
                a5 = c5[j]
                p12 = a1 + a2
                d12 = a1 - a2
                p34 = a3 + a4
                d34 = a3 - a4
                y0[j] = a0 + p12 + p34
                y1[j] = d12 + f2 * d34
                y2[j] = p12 + f4 * p34
                y3[j] = d12 + f8 * d34 + a5
    for o in range(n_out):
        bo = bias[o]
        for img in range(k):
            yf = y[img, o].ravel()
            base = o * kt + img * tiles
            for u in range(mt):
                for vv in range(mt):
                    di = dst[u, vv]
                    src = yt[u, vv, base:base + tiles]
                    for t in range(tiles):
                        i = di[t]
                        if i >= 0:
                            yf[i] = src[t] + bo


@njit(nogil=True, cache=True, fastmath={"contract"})
def _transform_dy(dy, dst, ud, dd, e):
    """ud[6i + j, o, img*tiles + t] = (G D G^T)[i, j] of F(5x5, 2x2), D the 2x2 tile t of
    dy[img, o] (zero past its edges). dd: (4, O*k*tiles) and e: (2, 6, O*k*tiles) scratch."""
    k, n_out = dy.shape[0], dy.shape[1]
    kt = ud.shape[2]
    n = n_out * kt
    tiles = dst.shape[2]
    z = dy.dtype.type(0)
    c4 = dy.dtype.type(0.25)
    c6 = dy.dtype.type(1.0 / 6.0)
    c12 = dy.dtype.type(1.0 / 12.0)
    c24 = dy.dtype.type(1.0 / 24.0)
    for o in range(n_out):
        for img in range(k):
            yf = dy[img, o].ravel()
            base = o * kt + img * tiles
            for uv in range(4):
                di = dst[uv // 2, uv % 2]
                d = dd[uv, base:base + tiles]
                for t in range(tiles):
                    i = di[t]
                    d[t] = yf[i] if i >= 0 else z
    for v in range(2):           # down the columns: e[v, i] = sum_u G[i, u] D[u, v]
        d0 = dd[v]
        d1 = dd[2 + v]
        e0 = e[v, 0]
        e1 = e[v, 1]
        e2 = e[v, 2]
        e3 = e[v, 3]
        e4 = e[v, 4]
        e5 = e[v, 5]
        for j in range(n):
            a = d0[j]
            b = d1[j]
            e0[j] = c4 * a
            e1[j] = -c6 * (a + b)
            e2[j] = c6 * (b - a)
            e3[j] = c24 * a + c12 * b
            e4[j] = c24 * a - c12 * b
            e5[j] = b
    for i in range(6):           # along the rows: ud[6i + j] = sum_v G[j, v] e[v, i]
        ea = e[0, i]
        eb = e[1, i]
        w0 = ud[6 * i].ravel()
        w1 = ud[6 * i + 1].ravel()
        w2 = ud[6 * i + 2].ravel()
        w3 = ud[6 * i + 3].ravel()
        w4 = ud[6 * i + 4].ravel()
        w5 = ud[6 * i + 5].ravel()
        for j in range(n):
            a = ea[j]
            b = eb[j]
            w0[j] = c4 * a
            w1[j] = -c6 * (a + b)
            w2[j] = c6 * (b - a)
            w3[j] = c24 * a + c12 * b
            w4[j] = c24 * a - c12 * b
            w5[j] = b


def conv_winograd(x, u, bias, y, ph, pw, buffer, run_blocks, nw, r=_R):
    """y (N, O, OH, OW) = the r x r (5 or 3) stride-1 convolution of x (N, C, H, W) zero-padded
    by (ph, pw) whose filters' transform is u (36, O, C), plus bias (O,). The images are split into nw
    contiguous blocks, one per worker (run_blocks); a worker transforms one image (or a few
    small ones) at a time into its scratch (buffer(name, shape, dtype)), runs the 36 GEMMs on
    its single-threaded BLAS and transforms back."""
    n, c, h, w = x.shape
    o = u.shape[1]
    mt = _tile(r)
    oh, ow, th, tw, s, src, dst = _plan(h, w, ph, pw, r)
    tiles = th * tw
    k = max(1, min(n, -(-_MIN_TILES // tiles)))
    dt = x.dtype

    def work(n0, n1):
        d = buffer("wino_d", (_N, mt * s), dt)
        for a in range(n0, n1, k):
            b = min(n1, a + k)
            ks, kt = (b - a) * s, (b - a) * tiles
            rows = buffer("wino_r", (mt, 6, c * ks + 2 * tw), dt)
            rows[:, :, c * ks:] = 0
            v = buffer("wino_v", (_N * _N, c, kt), dt)
            m = buffer("wino_m", (_N * _N, o, kt), dt)
            _transform_in(x[a:b], src, s, tw, v, d, rows)
            np.matmul(u, v, out=m)
            _transform_out(m, bias, dst, y[a:b], buffer("wino_s", (mt, 6, o * kt), dt),
                           buffer("wino_y", (mt, mt, o * kt), dt))
    run_blocks(work, n, nw)


def _dy_tiles_3(dy, dst, ud):
    """ud[6i + j, o, img*tiles + t] = (G4 D G4^T)[i, j] of F(3x3, 4x4), D the 4x4 tile t of
    dy[img, o] (zero past its edges), in numpy: a gather, then two small-K GEMMs."""
    k, n_out = dy.shape[0], dy.shape[1]
    tiles = dst.shape[2]
    flat = dy.reshape(k, n_out, -1)
    zero = np.zeros((k, n_out, 1), dy.dtype)
    idx = np.where(dst < 0, flat.shape[2], dst)                       # (4, 4, tiles)
    d = np.concatenate([flat, zero], axis=2)[:, :, idx]               # (k, O, 4, 4, tiles)
    d = d.transpose(2, 3, 1, 0, 4).reshape(4, 4, n_out * k * tiles)   # (u, v, O*k*tiles)
    g = _G4.astype(dy.dtype)
    e = np.matmul(g, d.transpose(1, 0, 2))                             # (v, i, n): sum_u
    np.matmul(g, e.transpose(1, 0, 2),                                 # (i, j, n): sum_v
              out=ud.reshape(_N, _N, n_out * k * tiles))


def conv_winograd_wgrad(x, dy, ph, pw, buffer, run_blocks, nw, r=_R):
    """The weight gradient sum_n corr(x_n padded by (ph, pw), dy_n) of a 5x5 stride-1
    convolution, (O, C, 5, 5) in float64, by F(5x5, 2x2): each 6x6 input tile (the forward's
    tiles and transform) against the 2x2 tile of dy at the same place; the 36 products summed
    over all tiles of all images are 36 GEMMs (O x tiles) @ (tiles x C) per block of images,
    and A^T M A, once, gives the 5x5 filters' gradient."""
    n, c, h, w = x.shape
    o = dy.shape[1]
    mt = _tile(r)
    oh, ow, th, tw, s, src, dst = _plan(h, w, ph, pw, r)
    tiles = th * tw
    k = max(1, min(n, -(-_MIN_TILES // tiles)))
    dt = x.dtype

    def work(n0, n1):
        acc = np.zeros((_N * _N, o, c), np.float64)
        part = buffer("wino_w", (_N * _N, o, c), dt)
        d = buffer("wino_d", (_N, mt * s), dt)
        for a in range(n0, n1, k):
            b = min(n1, a + k)
            ks, kt = (b - a) * s, (b - a) * tiles
            rows = buffer("wino_r", (mt, 6, c * ks + 2 * tw), dt)
            rows[:, :, c * ks:] = 0
            v = buffer("wino_v", (_N * _N, c, kt), dt)
            ud = buffer("wino_m", (_N * _N, o, kt), dt)
            _transform_in(x[a:b], src, s, tw, v, d, rows)
            if r == _R:
                _transform_dy(dy[a:b], dst, ud, buffer("wino_dd", (4, o * kt), dt),
                              buffer("wino_e", (2, 6, o * kt), dt))
            else:
                _dy_tiles_3(dy[a:b], dst, ud)
            np.matmul(ud, v.transpose(0, 2, 1), out=part)
            acc += part
        return acc
    m = sum(run_blocks(work, n, nw)).reshape(_N, _N, o, c).transpose(2, 3, 0, 1)
    a_mat = _A5 if r == _R else _A3
    return np.matmul(np.matmul(a_mat.T, m), a_mat)
