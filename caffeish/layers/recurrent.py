"""Recurrent layers: RNN and LSTM over T time steps of N streams, and the single-step LSTMUnit.

Caffe builds RNN and LSTM as internal "unrolled" nets of InnerProduct / Scale / Eltwise /
LSTMUnit layers. Here the same recurrences run directly (one gemm and one fused kernel per time
step, backpropagation through the T steps of the batch), with Caffe's parameter blobs (number,
order, shapes), its cont / static-input / expose_hidden semantics and its outputs, so a Caffe
LSTM or RNN caffemodel loads and computes the same thing.
"""
from __future__ import annotations

import numpy as np

from ..log import logger
from .base import Layer, register_layer


def _flat(a):
    return a.reshape(-1)


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
        self._state = [np.zeros((self.N, self.num_output), self.dtype) for _ in self.state_names]
        self._shape_key = None
        if not self.blobs:
            self._make_blobs(bottom[0].count_range(2),
                             bottom[2].count_range(1) if self.static_input else 0)

    def _make_blobs(self, x_dim, static_dim):
        raise NotImplementedError

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
                self._state[j] = (s[:n].copy() if n < s.shape[0]
                                  else np.zeros((n, self.num_output), self.dtype))
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
        dt = self.dtype
        self._ones_tn = np.ones((T * N, 1), dt)
        self._ones_t = np.ones((T, 1), dt)

    # --- hidden state ----------------------------------------------------------------------
    def _initial_states(self, bottom):
        if self.expose_hidden:
            off = 2 + int(self.static_input)
            return [bottom[off + j].data[0] for j in range(len(self.state_names))]
        return self._state

    def _keep_final_states(self, finals, top):
        be = self.backend
        if self.expose_hidden:
            for t, f in zip(top[1:], finals):
                be.blob_copy(_flat(f), _flat(t.data))
        else:
            for s, f in zip(self._state, finals):
                be.blob_copy(_flat(f), _flat(s))

    def reset(self):
        """Zero the hidden state carried to the next forward (Caffe's RecurrentLayer::Reset)."""
        for s in self._state:
            s.fill(0)

    def get_state(self) -> dict:
        state = super().get_state()
        if not getattr(self, "expose_hidden", True):
            state["hidden"] = [s.copy() for s in self._state]
        return state

    def set_state(self, state: dict):
        super().set_state(state)
        hidden = state.get("hidden")
        if hidden is not None and not self.expose_hidden:
            self._state = [np.ascontiguousarray(h, dtype=self.dtype) for h in hidden]
            self.N = int(self._state[0].shape[0])

    # --- shared pieces of forward / backward -------------------------------------------------
    def _input_transform(self, bottom, out, w, b):
        """out (T, N, G) = x W^T + b (+ x_static W_static^T at every step)."""
        be = self.backend
        T, N = self.T, self.N
        g = out.shape[2]
        o2 = out.reshape(T * N, g)
        be.gemm(bottom[0].data.reshape(T * N, -1), w.data, out=o2, trans_b=True)
        be.gemm(self._ones_tn, b.data.reshape(1, g), out=o2, beta=1.0)
        if self.static_input:
            be.gemm(bottom[2].data.reshape(N, -1), self._w_static.data, out=self._static_term,
                    trans_b=True)
            for t in range(T):
                be.axpy(1.0, self._static_term, out[t])

    def _input_backward(self, propagate_down, bottom, d_pre, w, b):
        """Parameter and bottom gradients of the input transform, from d_pre (T, N, G)."""
        be = self.backend
        T, N = self.T, self.N
        g = d_pre.shape[2]
        d2 = d_pre.reshape(T * N, g)
        x2 = bottom[0].data.reshape(T * N, -1)
        be.gemm(d2, x2, out=w.diff, trans_a=True, beta=1.0)
        be.gemm(self._ones_tn, d2, out=b.diff.reshape(1, g), trans_a=True, beta=1.0)
        if propagate_down[0]:
            be.gemm(d2, w.data, out=bottom[0].diff.reshape(T * N, -1))
        if self.static_input:
            ds = self._static_term.reshape(1, N * g)
            be.gemm(self._ones_t, d_pre.reshape(T, N * g), out=ds, trans_a=True)
            ds = ds.reshape(N, g)
            ws = self._w_static
            be.gemm(ds, bottom[2].data.reshape(N, -1), out=ws.diff, trans_a=True, beta=1.0)
            if propagate_down[2]:
                be.gemm(ds, ws.data, out=bottom[2].diff.reshape(N, -1))
        # No gradient reaches cont or (as in Caffe) the exposed initial hidden states.
        for i in range(1, len(bottom)):
            if propagate_down[i] and not (i == 2 and self.static_input):
                bottom[i].diff.fill(0)

    def _debug(self, direction, what, arr):
        if self.debug_info:
            logger.info(f"    [{direction}] Layer {self.name} (unrolled), {what}: "
                        f"{self.backend.asum(arr) / max(arr.size, 1):.6g}")

    def _debug_params(self, direction, kind):
        if self.debug_info:
            for j, b in enumerate(self.blobs):
                arr = b.data if kind == "data" else b.diff
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
        dt, H = self.dtype, self.num_output
        self._gates = np.zeros((T, N, 4 * H), dt)
        self._hc = np.zeros((T, N, H), dt)
        self._c = np.zeros((T + 1, N, H), dt)
        self._d_gates = np.zeros((T, N, 4 * H), dt)
        self._d_h = np.zeros((T, N, H), dt)
        self._dc = np.zeros((N, H), dt)
        self._dc_prev = np.zeros((N, H), dt)
        self._dhc = np.zeros((N, H), dt)
        self._static_term = np.zeros((N, 4 * H), dt)

    def forward(self, bottom, top):
        be = self.backend
        T = self.T
        w_hc, b_c = self.blobs[-1].data, self.blobs[1]
        self._input_transform(bottom, self._gates, self.blobs[0], b_c)
        h0, c0 = self._initial_states(bottom)
        be.blob_copy(_flat(c0), _flat(self._c[0]))
        cont = bottom[1].data
        h = top[0].data
        h_prev = h0
        for t in range(T):
            be.cont_scale(h_prev, cont[t], self._hc[t], False)
            be.gemm(self._hc[t], w_hc, out=self._gates[t], trans_b=True, beta=1.0)
            be.lstm_unit_forward(self._c[t], self._gates[t], cont[t], self._c[t + 1], h[t])
            h_prev = h[t]
            if self.debug_info:
                self._debug("Forward", f"blob gate_input_{t + 1} data", self._gates[t])
                self._debug("Forward", f"blob c_{t + 1} data", self._c[t + 1])
                self._debug("Forward", f"blob h_{t + 1} data", h[t])
        self._keep_final_states([h[T - 1], self._c[T]], top)
        self._debug_params("Forward", "data")

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        T = self.T
        w_hc = self.blobs[-1]
        cont = bottom[1].data
        gates, d_gates, d_h = self._gates, self._d_gates, self._d_h
        be.blob_copy(_flat(top[0].diff), _flat(d_h))
        dc, dc_prev = self._dc, self._dc_prev
        dc.fill(0)
        for t in range(T - 1, -1, -1):
            be.lstm_unit_backward(self._c[t], gates[t], cont[t], self._c[t + 1], dc, d_h[t],
                                  dc_prev, d_gates[t])
            dc, dc_prev = dc_prev, dc
            if t > 0:
                be.gemm(d_gates[t], w_hc.data, out=self._dhc)
                be.cont_scale(self._dhc, cont[t], d_h[t - 1], True)
            if self.debug_info:
                self._debug("Backward", f"blob gate_input_{t + 1} diff", d_gates[t])
        H = self.num_output
        be.gemm(d_gates.reshape(-1, 4 * H), self._hc.reshape(-1, H), out=w_hc.diff,
                trans_a=True, beta=1.0)
        self._input_backward(propagate_down, bottom, d_gates, self.blobs[0], self.blobs[1])
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
        dt, H = self.dtype, self.num_output
        self._h = np.zeros((T, N, H), dt)
        self._hc = np.zeros((T, N, H), dt)
        self._d_h = np.zeros((T, N, H), dt)
        self._d_o = np.zeros((T, N, H), dt)
        self._dhc = np.zeros((N, H), dt)
        self._static_term = np.zeros((N, H), dt)

    def forward(self, bottom, top):
        be = self.backend
        T, N, H = self.T, self.N, self.num_output
        w_hh, w_ho, b_o = self.blobs[-3], self.blobs[-2], self.blobs[-1]
        hs = self._h
        self._input_transform(bottom, hs, self.blobs[0], self.blobs[1])
        (h_prev,) = self._initial_states(bottom)
        cont = bottom[1].data
        for t in range(T):
            be.cont_scale(h_prev, cont[t], self._hc[t], False)
            be.gemm(self._hc[t], w_hh.data, out=hs[t], trans_b=True, beta=1.0)
            be.tanh_forward(_flat(hs[t]), _flat(hs[t]))
            h_prev = hs[t]
            if self.debug_info:
                self._debug("Forward", f"blob h_{t + 1} data", hs[t])
        o2 = top[0].data.reshape(T * N, H)
        be.gemm(hs.reshape(T * N, H), w_ho.data, out=o2, trans_b=True)
        be.gemm(self._ones_tn, b_o.data.reshape(1, H), out=o2, beta=1.0)
        be.tanh_forward(_flat(o2), _flat(o2))
        self._debug("Forward", "blob o data", o2)
        self._keep_final_states([hs[T - 1]], top)
        self._debug_params("Forward", "data")

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        T, N, H = self.T, self.N, self.num_output
        w_hh, w_ho, b_o = self.blobs[-3], self.blobs[-2], self.blobs[-1]
        hs, d_h = self._h, self._d_h
        d_o = self._d_o.reshape(T * N, H)
        be.tanh_backward(_flat(top[0].diff), _flat(top[0].data), _flat(d_o))
        be.gemm(d_o, hs.reshape(T * N, H), out=w_ho.diff, trans_a=True, beta=1.0)
        be.gemm(self._ones_tn, d_o, out=b_o.diff.reshape(1, H), trans_a=True, beta=1.0)
        be.gemm(d_o, w_ho.data, out=d_h.reshape(T * N, H))
        cont = bottom[1].data
        for t in range(T - 1, -1, -1):
            be.tanh_backward(_flat(d_h[t]), _flat(hs[t]), _flat(d_h[t]))
            if t > 0:
                be.gemm(d_h[t], w_hh.data, out=self._dhc)
                be.cont_scale(self._dhc, cont[t], d_h[t - 1], True)
            if self.debug_info:
                self._debug("Backward", f"blob h_neuron_input_{t + 1} diff", d_h[t])
        be.gemm(d_h.reshape(T * N, H), self._hc.reshape(T * N, H), out=w_hh.diff,
                trans_a=True, beta=1.0)
        self._input_backward(propagate_down, bottom, d_h, self.blobs[0], self.blobs[1])
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

    def forward(self, bottom, top):
        self.backend.lstm_unit_forward(bottom[0].data[0], bottom[1].data[0], bottom[2].data[0],
                                       top[0].data[0], top[1].data[0])

    def backward(self, top, propagate_down, bottom):
        if propagate_down[2]:
            bottom[2].diff.fill(0)
        if not (propagate_down[0] or propagate_down[1]):
            return
        dc_prev = bottom[0].diff[0] if propagate_down[0] else np.empty_like(bottom[0].data[0])
        dx = bottom[1].diff[0] if propagate_down[1] else np.empty_like(bottom[1].data[0])
        self.backend.lstm_unit_backward(bottom[0].data[0], bottom[1].data[0], bottom[2].data[0],
                                        top[0].data[0], top[0].diff[0], top[1].diff[0], dc_prev,
                                        dx)


__all__ = ["LSTMLayer", "RNNLayer", "LSTMUnitLayer"]
