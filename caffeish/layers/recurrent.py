"""Recurrent layers: RNN and LSTM over T time steps of N streams, and the single-step LSTMUnit.

Caffe builds RNN and LSTM as internal "unrolled" nets of InnerProduct / Scale / Eltwise /
LSTMUnit layers. Here the same recurrences run directly (one gemm and one fused kernel per time
step, backpropagation through the T steps of the batch), with Caffe's parameter blobs (number,
order, shapes), its cont / static-input / expose_hidden semantics and its outputs, so a Caffe
LSTM or RNN caffemodel loads and computes the same thing.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_backend
from ..blob import Blob
from ..log import logger
from .base import Layer, register_layer


def _flat(a):
    """a (numpy or device array, contiguous) as 1-D"""
    return get_backend().flat(a)


class _RecurrentLayer(Layer):
    """The shared frame of RNN and LSTM (Caffe's RecurrentLayer).

    Bottoms: x (T x N x ...), cont (T x N), optional x_static (N x ...), then with
    ``expose_hidden`` the initial hidden state blobs (1 x N x num_output each). Tops: the output
    (T x N x num_output), then with ``expose_hidden`` the hidden state blobs after step T.
    """

    param_field = "recurrent_param"
    min_bottoms = 2
    min_tops = 1
    state_names: tuple = ()

    # --- contract --------------------------------------------------------------------------
    def _n_exposed(self) -> int:
        return len(self.state_names) if self.param.expose_hidden else 0

    def check_blob_counts(self, bottom, top):
        k = self._n_exposed()
        lo = 2 + k
        names = "x, cont, [x_static]" + "".join(f", {s}" for s in self.state_names[:k])
        if not lo <= len(bottom) <= lo + 1:
            raise self.config_error(f"takes {lo} or {lo + 1} bottom blobs ({names}), got "
                                    f"{len(bottom)}")
        if len(top) != 1 + k:
            tops = "output" + "".join(f", {s[:-2]}_T" for s in self.state_names[:k])
            raise self.config_error(f"takes exactly {1 + k} top blob(s) ({tops}), got {len(top)}")

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index != 1

    def _bottom_name(self, i):
        b = self.layer_param.bottom
        return f"'{b[i]}'" if i < len(b) else f"bottom[{i}]"

    def _check_x_cont(self, bottom):
        x, cont = bottom[0], bottom[1]
        if x.num_axes < 2:
            raise self.shape_error(f"bottom[0] {self._bottom_name(0)} must have at least 2 axes "
                                   f"(#timesteps, #streams, ...), got shape {x.shape}")
        if cont.num_axes != 2 or cont.shape != x.shape[:2]:
            raise self.shape_error(
                f"bottom[1] {self._bottom_name(1)} (cont) must be T x N = {x.shape[0]} x "
                f"{x.shape[1]} (the first two axes of x), got shape {cont.shape}")

    def setup(self, bottom, top):
        p = self.param
        self.num_output = int(p.num_output)
        if self.num_output <= 0:
            raise self.config_error("recurrent_param.num_output must be positive", "num_output")
        self._check_x_cont(bottom)
        self.T = int(bottom[0].shape[0])
        self.N = int(bottom[0].shape[1])
        self.expose_hidden = bool(p.expose_hidden)
        self.static_input = len(bottom) > 2 + self._n_exposed()
        if self.static_input and (bottom[2].num_axes < 1 or bottom[2].shape[0] != self.N):
            raise self.shape_error(f"bottom[2] {self._bottom_name(2)} (x_static) must be N x ... "
                                   f"with N = {self.N} streams, got shape {bottom[2].shape}")
        self.debug_info = bool(p.debug_info)
        self._state = [self._scratch((self.N, self.num_output)) for _ in self.state_names]
        self._shape_key = None
        if not self.blobs:
            self._make_blobs(bottom[0].count_range(2),
                             bottom[2].count_range(1) if self.static_input else 0)

    def _make_blobs(self, x_dim, static_dim):
        raise NotImplementedError

    def _scratch(self, shape) -> Blob:
        """Internal storage that follows the mode (host or device), like Caffe's internal blobs."""
        return Blob(shape, self.dtype, name=f"{self.name} (internal)")

    @property
    def _w_x(self):
        return self.blobs[0]

    @property
    def _w_static(self):
        return self.blobs[2] if self.static_input else None

    def reshape(self, bottom, top):
        self._check_x_cont(bottom)
        x = bottom[0]
        if x.shape[0] != self.T:
            raise self.shape_error(f"input number of timesteps changed: the layer was set up for "
                                   f"T = {self.T}, bottom {self._bottom_name(0)} now has "
                                   f"{x.shape[0]} (shape {x.shape})")
        n = int(x.shape[1])
        x_dim = x.count_range(2)
        if x_dim != self._w_x.shape[1]:
            raise self.shape_error(
                f"input size incompatible with the weights: bottom {self._bottom_name(0)} of "
                f"shape {x.shape} gives {x_dim} inputs per step and stream (product of the dims "
                f"from axis 2), but the weight blob {self._w_x.shape} expects "
                f"{self._w_x.shape[1]}")
        if self.static_input:
            xs = bottom[2]
            if xs.num_axes < 1 or xs.shape[0] != n or \
                    xs.count_range(1) != self._w_static.shape[1]:
                raise self.shape_error(
                    f"bottom[2] {self._bottom_name(2)} (x_static) must be N x ... with N = {n} "
                    f"and {self._w_static.shape[1]} values per stream, got shape {xs.shape}")
        if n != self.N:
            # Caffe reshapes its hidden-state blobs: a smaller N keeps the first streams'
            # state, a larger one reallocates (all zeros).
            for j, s in enumerate(self._state):
                new = self._scratch((n, self.num_output))
                if n < s.shape[0]:
                    self.backend.blob_copy(_flat(s.dev_data[:n]), _flat(new.dev_data))
                self._state[j] = new
            self.N = n
        h = self.num_output
        if self.expose_hidden:
            off = 2 + int(self.static_input)
            for j, name in enumerate(self.state_names):
                b = bottom[off + j]
                if b.shape != (1, n, h):
                    raise self.shape_error(
                        f"bottom[{off + j}] {self._bottom_name(off + j)} ({name}) shape must "
                        f"match the hidden state input shape (1, {n}, {h}), got {b.shape}")
        top[0].reshape((self.T, n, self._out_dim()))
        for t in top[1:]:
            t.reshape((1, n, h))
        key = (self.T, n, self.dtype)
        if key != self._shape_key:
            self._alloc(self.T, n)
            self._shape_key = key

    def _out_dim(self):
        return self.num_output

    def _alloc(self, T, N):
        self._ones_tn = self._scratch((T * N, 1))
        self._ones_tn.data[...] = 1
        self._ones_t = self._scratch((T, 1))
        self._ones_t.data[...] = 1

    # --- hidden state ----------------------------------------------------------------------
    def _initial_states(self, bottom):
        if self.expose_hidden:
            off = 2 + int(self.static_input)
            return [bottom[off + j].dev_data[0] for j in range(len(self.state_names))]
        return [s.dev_data for s in self._state]

    def _keep_final_states(self, finals, top):
        be = self.backend
        dst = top[1:] if self.expose_hidden else self._state
        for d, f in zip(dst, finals):
            be.blob_copy(_flat(f), _flat(d.dev_data))

    def reset(self):
        """Zero the hidden state carried to the next forward (Caffe's RecurrentLayer::Reset)."""
        for s in self._state:
            self.backend.fill(s.dev_data, 0)

    def get_state(self) -> dict:
        state = super().get_state()
        if not getattr(self, "expose_hidden", True):
            state["hidden"] = [s.data_readonly().copy() for s in self._state]
        return state

    def set_state(self, state: dict):
        super().set_state(state)
        hidden = state.get("hidden")
        if hidden is not None and not self.expose_hidden:
            self._state = []
            for h in hidden:
                h = np.asarray(h)
                s = self._scratch(h.shape)
                s.data[...] = h
                self._state.append(s)
            self.N = int(self._state[0].shape[0])

    # --- shared pieces of forward / backward -------------------------------------------------
    def _input_transform(self, bottom, out, w, b):
        """out (T, N, G) = x W^T + b (+ x_static W_static^T at every step)."""
        be = self.backend
        T, N = self.T, self.N
        g = w.shape[0]
        x = bottom[0]
        o2 = be.view(out, T * N, g)
        be.gemm(x.dev_data_as(T * N, x.count // (T * N)), w.dev_data, out=o2, trans_b=True)
        be.gemm(self._ones_tn.dev_data, b.dev_data_as(1, g), out=o2, beta=1.0)
        if self.static_input:
            xs, st = bottom[2], self._static_term.dev_data
            be.gemm(xs.dev_data_as(N, xs.count // N), self._w_static.dev_data, out=st,
                    trans_b=True)
            # every step's rows += the static term: ones (T, 1) x st (1, N * G)
            be.gemm(self._ones_t.dev_data, be.view(st, 1, N * g), out=be.view(out, T, N * g),
                    beta=1.0)

    def _input_backward(self, propagate_down, bottom, d_pre, w, b):
        """Parameter and bottom gradients of the input transform, from d_pre (T, N, G)."""
        be = self.backend
        T, N = self.T, self.N
        g = w.shape[0]
        x = bottom[0]
        xd = x.count // (T * N)
        d2 = be.view(d_pre, T * N, g)
        be.gemm(d2, x.dev_data_as(T * N, xd), out=w.dev_diff, trans_a=True, beta=1.0)
        be.gemm(self._ones_tn.dev_data, d2, out=b.dev_diff_as(1, g), trans_a=True,
                beta=1.0)
        if propagate_down[0]:
            be.gemm(d2, w.dev_data, out=x.dev_diff_as(T * N, xd))
        if self.static_input:
            xs, ws = bottom[2], self._w_static
            sd = xs.count // N
            ds = self._static_term.dev_data_as(1, N * g)
            be.gemm(self._ones_t.dev_data, be.view(d_pre, T, N * g), out=ds, trans_a=True)
            ds = be.view(ds, N, g)
            be.gemm(ds, xs.dev_data_as(N, sd), out=ws.dev_diff, trans_a=True, beta=1.0)
            if propagate_down[2]:
                be.gemm(ds, ws.dev_data, out=xs.dev_diff_as(N, sd))
        # No gradient reaches cont or (as in Caffe) the exposed initial hidden states.
        for i in range(1, len(bottom)):
            if propagate_down[i] and not (i == 2 and self.static_input):
                be.fill(bottom[i].dev_diff, 0)

    def _debug(self, direction, what, arr):
        if self.debug_info:
            logger.info(f"    [{direction}] Layer {self.name} (unrolled), {what}: "
                        f"{self.backend.asum(arr) / max(arr.size, 1):.6g}")

    def _debug_params(self, direction, kind):
        if self.debug_info:
            for j, b in enumerate(self.blobs):
                arr = b.dev_data if kind == "data" else b.dev_diff
                self._debug(direction, f"param blob {j} {kind}", arr)


@register_layer("LSTM")
class LSTMLayer(_RecurrentLayer):
    """Long short-term memory over T time steps of N independent streams (Caffe's LSTMLayer).

    For t = 1..T, with H = num_output and gates in Caffe's order [i, f, o, g]::

        h_conted = cont_t * h_{t-1}
        a_t = W_xc x_t + b_c + W_xc_static x_static + W_hc h_conted        (N x 4H)
        i, f, o = sigmoid(a_i), cont_t * sigmoid(a_f), sigmoid(a_o);  g = tanh(a_g)
        c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)

    (f is exactly 0 where cont_t == 0.) Bottoms: x (T x N x ...; X = product of the dims from
    axis 2), cont (T x N; 0 starts a new sequence), optional x_static (N x ...; S values per
    stream). Top: h (T x N x H). Blobs, in Caffe's order: W_xc (4H x X), b_c (4H), W_xc_static
    (4H x S, only with a static input), W_hc (4H x H); weight_filler fills the weights,
    bias_filler b_c.

    Without ``expose_hidden``, h_0 and c_0 are the h_T and c_T of the previous forward (zeros
    at first; ``reset()`` zeroes them; a change of N keeps the first streams' state when N
    shrinks and zeroes it when N grows, as Caffe's blob reshape does); they travel with a
    snapshot. With ``expose_hidden`` they are bottoms 2 and 3 (after x_static) of shape
    1 x N x H, and tops 1 and 2 are h_T and c_T. As in Caffe, gradients stop at the batch: no
    diff reaches cont or the exposed h_0 / c_0 (their diffs are zeroed when asked for), and the
    diffs of the h_T / c_T tops are ignored. Caffe's LSTMUnit math is used exactly, including its
    f-gate derivative f * (1 - f) with f already scaled by cont (exact for 0/1 indicators).
    ``debug_info`` logs the mean absolute value of every gate input, cell and hidden state and
    of the parameters and their diffs.
    """

    state_names = ("h_0", "c_0")

    def _make_blobs(self, x_dim, static_dim):
        p = self.param
        g = 4 * self.num_output
        self.blobs.append(self.new_param_blob((g, x_dim), p.weight_filler))
        self.blobs.append(self.new_param_blob((g,), p.bias_filler))
        if self.static_input:
            self.blobs.append(self.new_param_blob((g, static_dim), p.weight_filler))
        self.blobs.append(self.new_param_blob((g, self.num_output), p.weight_filler))

    def _alloc(self, T, N):
        super()._alloc(T, N)
        H = self.num_output
        self._gates = self._scratch((T, N, 4 * H))    # data: gate inputs; diff: their gradients
        self._hc = self._scratch((T, N, H))           # cont_t * h_{t-1}
        self._c = self._scratch((T + 1, N, H))        # c_0 .. c_T
        self._d_h = self._scratch((T, N, H))
        self._dc = self._scratch((N, H))
        self._dc_prev = self._scratch((N, H))
        self._dhc = self._scratch((N, H))
        self._static_term = self._scratch((N, 4 * H))

    def forward(self, bottom, top):
        be = self.backend
        T = self.T
        w_hc = self.blobs[-1].dev_data
        self._input_transform(bottom, self._gates.dev_data, self.blobs[0], self.blobs[1])
        # per-step views, kept (be.steps): T of them per array and pass otherwise
        gates, cs, hc = (be.steps(b.dev_data) for b in (self._gates, self._c, self._hc))
        h0, c0 = self._initial_states(bottom)
        be.blob_copy(_flat(c0), _flat(cs[0]))
        cont = be.steps(bottom[1].dev_data)
        h = be.steps(top[0].dev_data)
        h_prev = h0
        for t in range(T):
            be.cont_scale(h_prev, cont[t], hc[t], False)
            be.gemm(hc[t], w_hc, out=gates[t], trans_b=True, beta=1.0)
            be.lstm_unit_forward(cs[t], gates[t], cont[t], cs[t + 1], h[t])
            h_prev = h[t]
            if self.debug_info:
                self._debug("Forward", f"blob gate_input_{t + 1} data", gates[t])
                self._debug("Forward", f"blob c_{t + 1} data", cs[t + 1])
                self._debug("Forward", f"blob h_{t + 1} data", h[t])
        self._keep_final_states([h[T - 1], cs[T]], top)
        self._debug_params("Forward", "data")

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        T, N, H = self.T, self.N, self.num_output
        w_hc = self.blobs[-1]
        w_hc_data = w_hc.dev_data
        cont = be.steps(bottom[1].dev_data)
        gates, d_gates = be.steps(self._gates.dev_data), be.steps(self._gates.dev_diff)
        cs, d_h, dhc = be.steps(self._c.dev_data), be.steps(self._d_h.dev_data), \
            self._dhc.dev_data
        be.blob_copy(_flat(top[0].dev_diff), _flat(self._d_h.dev_data))
        dc, dc_prev = self._dc.dev_data, self._dc_prev.dev_data
        be.fill(dc, 0)
        for t in range(T - 1, -1, -1):
            be.lstm_unit_backward(cs[t], gates[t], cont[t], cs[t + 1], dc, d_h[t], dc_prev,
                                  d_gates[t])
            dc, dc_prev = dc_prev, dc
            if t > 0:
                be.gemm(d_gates[t], w_hc_data, out=dhc)
                be.cont_scale(dhc, cont[t], d_h[t - 1], True)
            if self.debug_info:
                self._debug("Backward", f"blob gate_input_{t + 1} diff", d_gates[t])
        be.gemm(self._gates.dev_diff_as(T * N, 4 * H), self._hc.dev_data_as(T * N, H),
                out=w_hc.dev_diff, trans_a=True, beta=1.0)
        self._input_backward(propagate_down, bottom, self._gates.dev_diff, self.blobs[0],
                             self.blobs[1])
        self._debug_params("Backward", "diff")


@register_layer("RNN")
class RNNLayer(_RecurrentLayer):
    """Vanilla recurrent net over T time steps of N streams (Caffe's RNNLayer).

    For t = 1..T, with H = num_output::

        h_t = tanh(W_hh (cont_t * h_{t-1}) + W_xh x_t + b_h + W_xh_static x_static)
        o_t = tanh(W_ho h_t + b_o)

    Bottoms: x (T x N x ...; X = product of the dims from axis 2), cont (T x N; 0 starts a new
    sequence), optional x_static (N x ...; S values per stream). Top: o (T x N x H). Blobs, in
    Caffe's order: W_xh (H x X), b_h (H), W_xh_static (H x S, only with a static input), W_hh
    (H x H), W_ho (H x H), b_o (H); weight_filler fills the weights, bias_filler the biases.

    Without ``expose_hidden``, h_0 is the h_T of the previous forward (zeros at first;
    ``reset()`` zeroes it; carried in snapshots). With ``expose_hidden``, h_0 is the last bottom
    (1 x N x H) and h_T is top 1. As in Caffe, no gradient reaches cont or the exposed h_0, and
    the diff of the h_T top is ignored. ``debug_info`` logs the mean absolute value of every
    h_t and o_t and of the parameters and their diffs.
    """

    state_names = ("h_0",)

    def _make_blobs(self, x_dim, static_dim):
        p = self.param
        H = self.num_output
        self.blobs.append(self.new_param_blob((H, x_dim), p.weight_filler))
        self.blobs.append(self.new_param_blob((H,), p.bias_filler))
        if self.static_input:
            self.blobs.append(self.new_param_blob((H, static_dim), p.weight_filler))
        self.blobs.append(self.new_param_blob((H, H), p.weight_filler))
        self.blobs.append(self.new_param_blob((H, H), p.weight_filler))
        self.blobs.append(self.new_param_blob((H,), p.bias_filler))

    def _alloc(self, T, N):
        super()._alloc(T, N)
        H = self.num_output
        self._h = self._scratch((T, N, H))        # data: h_1 .. h_T; diff: their gradients
        self._hc = self._scratch((T, N, H))       # cont_t * h_{t-1}
        self._d_o = self._scratch((T, N, H))
        self._dhc = self._scratch((N, H))
        self._static_term = self._scratch((N, H))

    def forward(self, bottom, top):
        be = self.backend
        T, N, H = self.T, self.N, self.num_output
        w_hh, w_ho, b_o = self.blobs[-3], self.blobs[-2], self.blobs[-1]
        hs_all = self._h.dev_data
        hs, hc = be.steps(hs_all), be.steps(self._hc.dev_data)
        w_hh_data = w_hh.dev_data
        self._input_transform(bottom, hs_all, self.blobs[0], self.blobs[1])
        (h_prev,) = self._initial_states(bottom)
        cont = be.steps(bottom[1].dev_data)
        for t in range(T):
            be.cont_scale(h_prev, cont[t], hc[t], False)
            be.gemm(hc[t], w_hh_data, out=hs[t], trans_b=True, beta=1.0)
            be.tanh_forward(_flat(hs[t]), _flat(hs[t]))
            h_prev = hs[t]
            if self.debug_info:
                self._debug("Forward", f"blob h_{t + 1} data", hs[t])
        o2 = top[0].dev_data_as(T * N, H)
        be.gemm(be.view(hs_all, T * N, H), w_ho.dev_data, out=o2, trans_b=True)
        be.gemm(self._ones_tn.dev_data, b_o.dev_data_as(1, H), out=o2, beta=1.0)
        be.tanh_forward(_flat(o2), _flat(o2))
        self._debug("Forward", "blob o data", o2)
        self._keep_final_states([hs[T - 1]], top)
        self._debug_params("Forward", "data")

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        T, N, H = self.T, self.N, self.num_output
        w_hh, w_ho, b_o = self.blobs[-3], self.blobs[-2], self.blobs[-1]
        hs_all, d_h_all, dhc = self._h.dev_data, self._h.dev_diff, self._dhc.dev_data
        hs, d_h = be.steps(hs_all), be.steps(d_h_all)
        w_hh_data = w_hh.dev_data
        d_o = self._d_o.dev_data_as(T * N, H)
        be.tanh_backward(_flat(top[0].dev_diff), _flat(top[0].dev_data), _flat(d_o))
        be.gemm(d_o, be.view(hs_all, T * N, H), out=w_ho.dev_diff, trans_a=True, beta=1.0)
        be.gemm(self._ones_tn.dev_data, d_o, out=b_o.dev_diff_as(1, H), trans_a=True,
                beta=1.0)
        be.gemm(d_o, w_ho.dev_data, out=be.view(d_h_all, T * N, H))
        cont = be.steps(bottom[1].dev_data)
        for t in range(T - 1, -1, -1):
            be.tanh_backward(_flat(d_h[t]), _flat(hs[t]), _flat(d_h[t]))
            if t > 0:
                be.gemm(d_h[t], w_hh_data, out=dhc)
                be.cont_scale(dhc, cont[t], d_h[t - 1], True)
            if self.debug_info:
                self._debug("Backward", f"blob h_neuron_input_{t + 1} diff", d_h[t])
        be.gemm(be.view(d_h_all, T * N, H), self._hc.dev_data_as(T * N, H), out=w_hh.dev_diff,
                trans_a=True, beta=1.0)
        self._input_backward(propagate_down, bottom, d_h_all, self.blobs[0], self.blobs[1])
        self._debug_params("Backward", "diff")


@register_layer("LSTMUnit")
class LSTMUnitLayer(Layer):
    """One LSTM step (Caffe's LSTMUnitLayer), the cell that LSTM unrolls over time.

    Bottoms: c_prev (1 x N x D), x (1 x N x 4D: the gate pre-activations [i, f, o, g]), cont
    (1 x N). Tops: c and h (1 x N x D)::

        i, o = sigmoid(x_i), sigmoid(x_o);  f = cont * sigmoid(x_f) (exactly 0 where cont == 0)
        g = tanh(x_g);  c = f * c_prev + i * g;  h = o * tanh(c)

    tanh is computed as 2 * sigmoid(2x) - 1, as Caffe does. Backward reaches c_prev and x (both
    are computed when either is asked for, like Caffe) and never cont: cont's diff is zeroed if
    a net asks for it (Caffe aborts). The f-gate derivative is Caffe's f * (1 - f) with the
    cont-scaled f (exact for 0/1 indicators).
    """

    exact_bottoms = 3
    exact_tops = 2

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index != 2

    def setup(self, bottom, top):
        # where a net asks for only one of the c_prev / x diffs, the other goes here
        self._dc_prev_scratch = Blob((), self.dtype, name=f"{self.name} (internal)")
        self._dx_scratch = Blob((), self.dtype, name=f"{self.name} (internal)")

    def reshape(self, bottom, top):
        c_prev, x, cont = bottom
        n = c_prev.shape[1] if c_prev.num_axes >= 2 else -1
        names = ("c_prev", "x", "cont")
        for i, b in enumerate(bottom):
            axes = 2 if i == 2 else 3
            if b.num_axes != axes or b.shape[0] != 1 or b.shape[1] != n:
                want = "1 x N" if i == 2 else ("1 x N x D" if i == 0 else "1 x N x 4D")
                raise self.shape_error(
                    f"bottom[{i}] ({names[i]}) must be {want} with the N of c_prev "
                    f"(bottom[0] {c_prev.shape}), got shape {b.shape}")
        self.hidden_dim = int(c_prev.shape[2])
        if x.shape[2] != 4 * self.hidden_dim:
            raise self.shape_error(f"bottom[1] (x) must have 4 * D = {4 * self.hidden_dim} "
                                   f"gate inputs per stream (D = {self.hidden_dim} from c_prev), "
                                   f"got shape {x.shape}")
        top[0].reshape(c_prev.shape)
        top[1].reshape(c_prev.shape)
        self._dc_prev_scratch.reshape(c_prev.shape)   # reallocates only on a new shape
        self._dx_scratch.reshape(x.shape)

    def forward(self, bottom, top):
        self.backend.lstm_unit_forward(bottom[0].dev_data[0], bottom[1].dev_data[0],
                                       bottom[2].dev_data[0], top[0].dev_data[0],
                                       top[1].dev_data[0])

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        if propagate_down[2]:
            be.fill(bottom[2].dev_diff, 0)
        if not (propagate_down[0] or propagate_down[1]):
            return
        dc_prev = (bottom[0] if propagate_down[0] else self._dc_prev_scratch).dev_diff[0]
        dx = (bottom[1] if propagate_down[1] else self._dx_scratch).dev_diff[0]
        be.lstm_unit_backward(bottom[0].dev_data[0], bottom[1].dev_data[0],
                              bottom[2].dev_data[0], top[0].dev_data[0], top[0].dev_diff[0],
                              top[1].dev_diff[0], dc_prev, dx)


__all__ = ["LSTMLayer", "RNNLayer", "LSTMUnitLayer"]
