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


@njit(parallel=True, cache=True, error_model="numpy")
def lstm_unit_forward(c_prev, x, cont, c, h):
    """c = f*c_prev + i*g, h = o*tanh(c) with i,f,o = sigmoid, g = tanh of x[n] = [i|f|o|g] pre-activations, f := 0 where cont[n] == 0 else cont[n]*f; c_prev, c, h (N, D), x (N, 4D), cont (N,)."""
    num, dim = c.shape
    for n in prange(num):
        cn = cont[n]
        for d in range(dim):
            i = lstm_sigmoid_scalar(x[n, d])
            f = 0.0 if cn == 0 else cn * lstm_sigmoid_scalar(x[n, dim + d])
            o = lstm_sigmoid_scalar(x[n, 2 * dim + d])
            g = lstm_tanh_scalar(x[n, 3 * dim + d])
            cv = f * c_prev[n, d] + i * g
            c[n, d] = cv
            h[n, d] = o * lstm_tanh_scalar(cv)


@njit(parallel=True, cache=True, error_model="numpy")
def lstm_unit_backward(c_prev, x, cont, c, dc, dh, dc_prev, dx):
    """Caffe's LSTMUnit backward: from dc, dh (N, D) (diffs of c and h) write dc_prev (N, D) and dx (N, 4D) = d[i|f|o|g] pre-activations; activations recomputed from x, f includes cont as in forward."""
    num, dim = c.shape
    for n in prange(num):
        cn = cont[n]
        for d in range(dim):
            i = lstm_sigmoid_scalar(x[n, d])
            f = 0.0 if cn == 0 else cn * lstm_sigmoid_scalar(x[n, dim + d])
            o = lstm_sigmoid_scalar(x[n, 2 * dim + d])
            g = lstm_tanh_scalar(x[n, 3 * dim + d])
            tanh_c = lstm_tanh_scalar(c[n, d])
            c_term = dc[n, d] + dh[n, d] * o * (1 - tanh_c * tanh_c)
            dc_prev[n, d] = c_term * f
            dx[n, d] = c_term * g * i * (1 - i)
            dx[n, dim + d] = c_term * c_prev[n, d] * f * (1 - f)
            dx[n, 2 * dim + d] = dh[n, d] * tanh_c * o * (1 - o)
            dx[n, 3 * dim + d] = c_term * i * (1 - g * g)


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
