"""CPU kernels for the recurrent layers (LSTMUnit, LSTM, RNN).

One time step works on ``(N, D)`` state arrays (N streams, D hidden units) and ``(N, 4D)`` gate
arrays laid out per stream as ``[i | f | o | g]`` (Caffe's LSTMUnit order), with ``cont`` an
``(N,)`` array of sequence-continuation indicators. The element-wise math is written once as
``*_scalar`` functions so the CUDA backend can compile the same bodies as device functions.
"""
import math

from numba import njit, prange

__all__ = ["lstm_unit_forward", "lstm_unit_backward", "cont_scale"]


@njit(cache=True)
def lstm_sigmoid_scalar(x):
    """1 / (1 + exp(-x)) (Caffe's LSTMUnit sigmoid)"""
    return 1 / (1 + math.exp(-x))


@njit(cache=True)
def lstm_tanh_scalar(x):
    """2 * sigmoid(2x) - 1 (Caffe's LSTMUnit tanh, written through the sigmoid)"""
    return 2 * lstm_sigmoid_scalar(2 * x) - 1


@njit(cache=True)
def lstm_cell_fwd_scalar(c_prev, xi, xf, xo, xg, cn):
    """(c, h) of one cell from c_prev, the gate pre-activations xi, xf, xo, xg and cont cn"""
    i = lstm_sigmoid_scalar(xi)
    f = 0.0 if cn == 0 else cn * lstm_sigmoid_scalar(xf)
    o = lstm_sigmoid_scalar(xo)
    g = lstm_tanh_scalar(xg)
    cv = f * c_prev + i * g
    return cv, o * lstm_tanh_scalar(cv)


@njit(cache=True)
def lstm_cell_bwd_scalar(c_prev, xi, xf, xo, xg, cn, c, dc, dh):
    """(dc_prev, di, df, do, dg) of one cell from its inputs, its c and the diffs dc, dh"""
    i = lstm_sigmoid_scalar(xi)
    f = 0.0 if cn == 0 else cn * lstm_sigmoid_scalar(xf)
    o = lstm_sigmoid_scalar(xo)
    g = lstm_tanh_scalar(xg)
    tanh_c = lstm_tanh_scalar(c)
    c_term = dc + dh * o * (1 - tanh_c * tanh_c)
    return (c_term * f, c_term * g * i * (1 - i), c_term * c_prev * f * (1 - f),
            dh * tanh_c * o * (1 - o), c_term * i * (1 - g * g))


@njit(parallel=True, cache=True, error_model="numpy")
def lstm_unit_forward(c_prev, x, cont, c, h):
    """c = f*c_prev + i*g, h = o*tanh(c) with i,f,o = sigmoid, g = tanh of x[n] = [i|f|o|g] pre-activations, f := 0 where cont[n] == 0 else cont[n]*f; c_prev, c, h (N, D), x (N, 4D), cont (N,)."""
    num, dim = c.shape
    for n in prange(num):
        cn = cont[n]
        for d in range(dim):
            cv, hv = lstm_cell_fwd_scalar(c_prev[n, d], x[n, d], x[n, dim + d],
                                          x[n, 2 * dim + d], x[n, 3 * dim + d], cn)
            c[n, d] = cv
            h[n, d] = hv


@njit(parallel=True, cache=True, error_model="numpy")
def lstm_unit_backward(c_prev, x, cont, c, dc, dh, dc_prev, dx):
    """Caffe's LSTMUnit backward: from dc, dh (N, D) (diffs of c and h) write dc_prev (N, D) and dx (N, 4D) = d[i|f|o|g] pre-activations; activations recomputed from x, f includes cont as in forward."""
    num, dim = c.shape
    for n in prange(num):
        cn = cont[n]
        for d in range(dim):
            dcp, di, df, do, dg = lstm_cell_bwd_scalar(
                c_prev[n, d], x[n, d], x[n, dim + d], x[n, 2 * dim + d], x[n, 3 * dim + d], cn,
                c[n, d], dc[n, d], dh[n, d])
            dc_prev[n, d] = dcp
            dx[n, d] = di
            dx[n, dim + d] = df
            dx[n, 2 * dim + d] = do
            dx[n, 3 * dim + d] = dg


@njit(parallel=True, cache=True, error_model="numpy")
def cont_scale(x, cont, out, accumulate):
    """out[n, d] = cont[n] * x[n, d] (accumulate: out[n, d] += cont[n] * x[n, d]); x, out (N, D), cont (N,)."""
    num, dim = out.shape
    for n in prange(num):
        cn = cont[n]
        if accumulate:
            for d in range(dim):
                out[n, d] += cn * x[n, d]
        else:
            for d in range(dim):
                out[n, d] = cn * x[n, d]
