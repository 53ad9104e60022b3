"""CUDA twins of ``backend/cpu/recurrent_ops.py`` (LSTMUnit step, cont scaling).

The cell math is the CPU module's ``*_scalar`` functions compiled as device functions; their
calls to each other are rebound to the device versions. One thread per (stream, unit) element,
consecutive threads on consecutive units so the gate rows are read coalesced.
"""
import types

from numba import cuda

from ..cpu import recurrent_ops as _cpu
from .core import grid1d

__all__ = ["lstm_unit_forward", "lstm_unit_backward", "cont_scale"]


def _device(f, **calls):
    """f's Python body as a CUDA device function, with the global names in ``calls`` (other
    njit scalars it calls) bound to their device versions."""
    py = f.py_func
    glb = dict(py.__globals__)
    glb.update(calls)
    fn = types.FunctionType(py.__code__, glb, py.__name__, py.__defaults__, py.__closure__)
    return cuda.jit(device=True)(fn)


_sigmoid = _device(_cpu.lstm_sigmoid_scalar)
_tanh = _device(_cpu.lstm_tanh_scalar, lstm_sigmoid_scalar=_sigmoid)
_cell_fwd = _device(_cpu.lstm_cell_fwd_scalar, lstm_sigmoid_scalar=_sigmoid,
                    lstm_tanh_scalar=_tanh)
_cell_bwd = _device(_cpu.lstm_cell_bwd_scalar, lstm_sigmoid_scalar=_sigmoid,
                    lstm_tanh_scalar=_tanh)


@cuda.jit
def _lstm_fwd_k(c_prev, x, cont, c, h, dim, total):
    for k in range(cuda.grid(1), total, cuda.gridsize(1)):
        n = k // dim
        d = k - n * dim
        cv, hv = _cell_fwd(c_prev[n, d], x[n, d], x[n, dim + d], x[n, 2 * dim + d],
                           x[n, 3 * dim + d], cont[n])
        c[n, d] = cv
        h[n, d] = hv


@cuda.jit
def _lstm_bwd_k(c_prev, x, cont, c, dc, dh, dc_prev, dx, dim, total):
    for k in range(cuda.grid(1), total, cuda.gridsize(1)):
        n = k // dim
        d = k - n * dim
        dcp, di, df, do, dg = _cell_bwd(c_prev[n, d], x[n, d], x[n, dim + d],
                                        x[n, 2 * dim + d], x[n, 3 * dim + d], cont[n],
                                        c[n, d], dc[n, d], dh[n, d])
        dc_prev[n, d] = dcp
        dx[n, d] = di
        dx[n, dim + d] = df
        dx[n, 2 * dim + d] = do
        dx[n, 3 * dim + d] = dg


@cuda.jit
def _cont_scale_k(x, cont, out, accumulate, dim, total):
    for k in range(cuda.grid(1), total, cuda.gridsize(1)):
        n = k // dim
        d = k - n * dim
        if accumulate:
            out[n, d] += cont[n] * x[n, d]
        else:
            out[n, d] = cont[n] * x[n, d]


def lstm_unit_forward(c_prev, x, cont, c, h):
    """c, h (N, D) of one LSTM step from c_prev (N, D), x (N, 4D) = [i|f|o|g], cont (N,)."""
    num, dim = tuple(c.shape)
    total = num * dim
    if total:
        _lstm_fwd_k[grid1d(total)](c_prev, x, cont, c, h, dim, total)


def lstm_unit_backward(c_prev, x, cont, c, dc, dh, dc_prev, dx):
    """dc_prev (N, D) and dx (N, 4D) of one LSTM step from the diffs dc, dh (N, D)."""
    num, dim = tuple(c.shape)
    total = num * dim
    if total:
        _lstm_bwd_k[grid1d(total)](c_prev, x, cont, c, dc, dh, dc_prev, dx, dim, total)


def cont_scale(x, cont, out, accumulate):
    """out[n, d] (+)= cont[n] * x[n, d]; x, out (N, D), cont (N,)."""
    num, dim = tuple(out.shape)
    total = num * dim
    if total:
        _cont_scale_k[grid1d(total)](x, cont, out, bool(accumulate), dim, total)
