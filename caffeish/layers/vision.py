"""Vision layers: Convolution, Deconvolution, Im2col, Pooling, SPP and Crop, with Caffe's
semantics and defaults."""
from __future__ import annotations

import numpy as np

from ..backend.conv_common import Geom3D, col2im_any, im2col_any
from ..blob import Blob
from ..errors import ShapeError
from ..config.schema import Msg, enum_symbol as _enum_name
from .base import Layer, register_layer


class _ConvGeometry(Layer):
    """Reads convolution_param's geometry (axis, kernel, stride, pad, dilation) as Caffe's
    BaseConvolutionLayer does; shared by Convolution, Deconvolution and Im2col."""

    param_field = "convolution_param"

    # --- configuration ---------------------------------------------------------------------
    def _spatial(self, name, h_name, w_name, default, minimum):
        """A per-spatial-axis value from ``name`` (repeated) or ``h_name``/``w_name``."""
        p = self.param
        nsp = self.num_spatial
        if h_name and (p.has(h_name) or p.has(w_name)):
            if nsp != 2:
                raise self.config_error(f"{h_name} & {w_name} can only be used for 2-D "
                                        f"convolution (this one has {nsp} spatial axis)", h_name)
            if p.has(name):
                raise self.config_error(f"either {name} or {h_name}/{w_name} should be "
                                        f"specified; not both", name)
            vals = [int(getattr(p, h_name)), int(getattr(p, w_name))]
            field = h_name
        else:
            vals = [int(v) for v in getattr(p, name)]
            field = name
            if not vals:
                if default is None:
                    raise self.config_error(f"{name} (or {h_name} and {w_name}) is required")
                vals = [default] * nsp
            elif len(vals) == 1:
                vals = vals * nsp
            elif len(vals) != nsp:
                raise self.config_error(
                    f"{name} must be specified once, or once per spatial dimension ({name} "
                    f"specified {len(vals)} times; {nsp} spatial dims)", name)
        for v in vals:
            if v < minimum:
                what = {1: "must be nonzero", 0: "must not be negative"}[minimum]
                raise self.config_error(f"{field} dimensions {what}, got {vals}", field)
        return tuple(vals)

    def _read_geometry(self, bottom):
        p = self.param
        try:
            self.channel_axis = bottom[0].canonical_axis(p.axis)
        except ShapeError as e:
            raise self.config_error(str(e), "axis") from None
        self.num_spatial = bottom[0].num_axes - self.channel_axis - 1
        if self.num_spatial not in (1, 2, 3):
            raise self.config_error(
                f"supports 1, 2 or 3 spatial axes after the channel axis {self.channel_axis}; "
                f"bottom shape {bottom[0].shape} has {self.num_spatial}", "axis")
        self.kernel = self._spatial("kernel_size", "kernel_h", "kernel_w", None, 1)
        self.stride = self._spatial("stride", "stride_h", "stride_w", 1, 1)
        self.pad = self._spatial("pad", "pad_h", "pad_w", 0, 0)
        self.dilation = self._spatial("dilation", None, None, 1, 1)

    def _norm(self, v, fill):
        """Per-axis values as (H, W), (D, H, W) for 3-D, or (fill, W) for 1-D."""
        return (fill, v[0]) if self.num_spatial == 1 else tuple(v)

    def _geometry(self, out_sp):
        """The im2col geometry producing ``out_sp`` (normalized) output positions: the 2-D
        tuple (kh, kw, sh, sw, ph, pw, dh, dw, oh, ow), or for 3-D a Geom3D on the layer's
        scratch ``_vol`` (see _vol_blob)."""
        k, st = self._norm(self.kernel, 1), self._norm(self.stride, 1)
        pd, dl = self._norm(self.pad, 0), self._norm(self.dilation, 1)
        g2 = (k[-2], k[-1], st[-2], st[-1], pd[-2], pd[-1], dl[-2], dl[-1], out_sp[-2],
              out_sp[-1])
        if self.num_spatial != 3:
            return g2
        return Geom3D(k[0], st[0], pd[0], dl[0], out_sp[0], g2, self._vol.dev_data)

    def _vol_blob(self, images, chans, out_sp, in_sp):
        """3-D only: scratch for the depth-gathered input of ``images`` volumes of ``chans``
        channels and spatial size ``in_sp`` convolved to ``out_sp`` (else None)."""
        if self.num_spatial != 3:
            return None
        size = images * out_sp[0] * chans * self.kernel[0] * in_sp[1] * in_sp[2]
        return Blob((size,), self.dtype, name=f"{self.name}/vol")

    def _check_num_axes(self, shape):
        want = self.channel_axis + 1 + self.num_spatial
        if len(shape) != want:
            raise self.shape_error(f"bottom num_axes may not change: set up for {want} axes, "
                                   f"got shape {shape}")


@register_layer("Convolution")
class ConvolutionLayer(_ConvGeometry):
    """y = W * x + b, cross-correlation over 1, 2 or 3 spatial axes, via im2col + one GEMM per
    chunk. (3-D: Caffe's N-D convolution for volumes (N, C, D, H, W), with per-axis kernel_size,
    stride, pad and dilation; its im2col gathers the depth planes each output depth reads, then
    unrolls them with the 2-D im2col, on the CPU and the GPU alike.)

    Blobs (Caffe's order): weights (num_output, channels/group, *kernel), bias (num_output,)
    when ``bias_term``. Bottom ``(..., C, *spatial)`` with C at ``axis``; every dimension before
    ``axis`` is a batch dimension. Output size per spatial axis:
    ``floor((in + 2*pad - (dilation*(kernel-1) + 1)) / stride) + 1``.

    Several bottom/top pairs may be given; they share the weights (Caffe allows this too) and
    must all have the same shape. Groups split channels and outputs into ``group`` contiguous
    blocks, output block g seeing only input block g.

    Compute: a chunk of images is unrolled into columns ``(C*kh*kw, n*OH*OW)`` so one GEMM per
    group covers the whole chunk; chunks are as large as ``col_budget`` elements allow (one chunk
    for ordinary batches). The columns of a single-chunk forward are reused by backward. On the
    CPU, 5x5 stride-1 convolutions with 16+ channels in and out run their forward pass and input
    gradient by Winograd's F(2x2, 5x5) instead, unless ``engine: CAFFE``.
    """

    min_bottoms = 1
    min_tops = 1
    param_field = "convolution_param"
    col_budget = 1 << 25

    def setup(self, bottom, top):
        p = self.param
        if len(bottom) != len(top):
            raise self.config_error(f"needs as many tops as bottoms, got {len(bottom)} "
                                    f"bottom(s) and {len(top)} top(s)")
        self._read_geometry(bottom)

        self.channels = int(bottom[0].shape[self.channel_axis])
        self.num_output = int(p.num_output)
        self.group = int(p.group)
        if self.num_output <= 0:
            raise self.config_error("num_output must be set to a positive number", "num_output")
        if self.group <= 0:
            raise self.config_error(f"group must be positive, got {self.group}", "group")
        if self.channels % self.group:
            raise self.config_error(f"the number of input channels ({self.channels}, bottom "
                                    f"shape {bottom[0].shape}) is not a multiple of group "
                                    f"({self.group})", "group")
        if self.num_output % self.group:
            raise self.config_error(f"num_output ({self.num_output}) is not a multiple of "
                                    f"group ({self.group})", "num_output")
        self.bias_term = bool(p.bias_term)
        # engine CAFFE: im2col + GEMM always (bit-for-bit the classic path); DEFAULT / CUDNN: the
        # CPU may run 5x5 stride-1 convolutions by Winograd's F(2x2, 5x5) (backend/cpu/winograd.py)
        self.algo = "im2col" if p.engine == "CAFFE" else "auto"
        wshape = self._weight_shape()
        if self.blobs:
            want = 2 if self.bias_term else 1
            if len(self.blobs) != want:
                raise self.shape_error(f"expected {want} parameter blob(s), "
                                       f"found {len(self.blobs)}")
            if tuple(self.blobs[0].shape) != wshape:
                raise self.shape_error(f"incorrect weight shape: expected {wshape}, "
                                       f"got {tuple(self.blobs[0].shape)}")
            if self.bias_term and tuple(self.blobs[1].shape) != (self.num_output,):
                raise self.shape_error(f"incorrect bias shape: expected ({self.num_output},), "
                                       f"got {tuple(self.blobs[1].shape)}")
        else:
            self.blobs.append(self.new_param_blob(wshape, p.weight_filler))
            if self.bias_term:
                self.blobs.append(self.new_param_blob((self.num_output,), p.bias_filler))
        self._key = None
        self._col_valid = False

    def _weight_shape(self):
        return (self.num_output, self.channels // self.group) + self.kernel

    # --- shapes ------------------------------------------------------------------------------
    def reshape(self, bottom, top):
        shape = tuple(bottom[0].shape)
        ca = self.channel_axis
        self._check_num_axes(shape)
        for i, b in enumerate(bottom[1:], 1):
            if tuple(b.shape) != shape:
                raise self.shape_error(f"all bottoms must have the same shape: bottom[0] is "
                                       f"{shape}, bottom[{i}] is {tuple(b.shape)}")
        wshape = tuple(self.blobs[0].shape)
        want_c, why = self._bottom_channels(wshape)
        if shape[ca] != want_c:
            raise self.shape_error(
                f"bottom shape {shape} has {shape[ca]} channels (axis {ca}) but the weights of "
                f"shape {wshape}{why} need {want_c}")
        spatial = shape[ca + 1:]
        extent = tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel))
        out = tuple(self._output_size(d, spatial, extent, shape) for d in range(self.num_spatial))
        top_shape = shape[:ca] + (self.num_output,) + out
        for t in top:
            t.reshape(top_shape)

        num = int(np.prod(shape[:ca], dtype=np.int64)) if ca else 1
        key = (num, tuple(spatial), self.dtype)
        if key == self._key:
            return
        self._key = key
        self.num = num
        self.in_sp = self._norm(spatial, 1)
        self.out_sp = self._norm(out, 1)
        self._nobias = Blob((1,), self.dtype, name=f"{self.name}/nobias")
        self._allocate(num)

    def _bottom_channels(self, wshape):
        """(channels the weights expect, words for the message)."""
        return wshape[1] * self.group, f" with group {self.group}"

    def _output_size(self, d, spatial, extent, shape):
        o = (spatial[d] + 2 * self.pad[d] - extent[d]) // self.stride[d] + 1
        if o <= 0:
            raise self.shape_error(
                f"bottom shape {shape}: spatial size {spatial} with pad {self.pad} is "
                f"smaller than the dilated kernel extent {extent}")
        return o

    def _allocate(self, num):
        """Column and result buffers for chunks of images (reallocated on a shape change)."""
        ohw = int(np.prod(self.out_sp))
        krows = self.channels * int(np.prod(self.kernel))
        per_image = max(krows, self.num_output) * ohw
        self.chunk = int(max(1, min(num, self.col_budget // max(per_image, 1))))
        m = self.chunk * ohw
        self._col = Blob((krows * m,), self.dtype, name=f"{self.name}/col")
        self._res = Blob((self.num_output * m,), self.dtype, name=f"{self.name}/res")
        self._vol = self._vol_blob(self.chunk, self.channels, self.out_sp, self.in_sp)
        self._col_valid = False

    # --- compute -----------------------------------------------------------------------------
    def _views(self, blob_array):
        c = self.channels
        return self.backend.view(blob_array, self.num, c, *self.in_sp)

    def _geom(self):
        return self._geometry(self.out_sp)

    def _weights(self, arr):
        g = self.group
        if g == 1:
            return self.backend.view(arr, self.num_output, -1)
        return self.backend.view(arr, g, self.num_output // g, -1)

    def forward(self, bottom, top):
        be = self.backend
        geom = self._geom()
        w = self._weights(self.blobs[0].dev_data)
        bias = (self.blobs[1] if self.bias_term else self._nobias).dev_data
        col, res = self._col.dev_data, self._res.dev_data
        for b, t in zip(bottom, top):
            kept = be.conv_forward(self._views(b.dev_data), w, bias, self.bias_term, geom, col,
                                   res, t.dev_data, algo=self.algo)
        self._col_valid = len(bottom) == 1 and bool(kept)

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        geom = self._geom()
        w = self._weights(self.blobs[0].dev_data)
        wdiff = self._weights(self.blobs[0].dev_diff)
        bdiff = self.blobs[1].dev_diff if self.bias_term else None
        col, res = self._col.dev_data, self._res.dev_data
        for i, (b, t) in enumerate(zip(bottom, top)):
            dx = self._views(b.dev_diff) if propagate_down[i] else None
            be.conv_backward(self._views(b.dev_data), w, t.dev_diff, wdiff, bdiff, dx, geom, col,
                             res, self._col_valid, algo=self.algo)
            self._col_valid = False


_POOL_ENUM = "PoolingParameter.PoolMethod"


@register_layer("Pooling")
class PoolingLayer(Layer):
    """MAX / AVE / STOCHASTIC pooling over the two spatial axes of an (N, C, H, W) bottom.

    Output size (Caffe's, surprising): ``ceil((H + 2*pad - kernel) / stride) + 1`` by default
    (``round_mode: FLOOR`` floors instead); then, when any pad is non-zero and the last window
    would start at or beyond ``H + pad``, one fewer. So windows may hang over the bottom/right edge.

    MAX: the maximum over the window clipped to the image (padding never wins; ties: the first
    in row-major order wins). The argmax (``h*W + w`` within the input plane) is kept for
    backward and, with a second top, written there as floats (Caffe's mask top).
    AVE: the sum over the window clipped to the image, divided by the window size clipped to
    the *padded* image: ``(min(hs+k, H+pad) - hs) * (min(ws+k, W+pad) - ws)`` with ``hs``, ``ws``
    the unclipped window start. Padded cells count as zeros inside that divisor.
    STOCHASTIC (no padding; inputs are expected non-negative, e.g. after ReLU): at TRAIN, each
    window picks one cell with probability proportional to its value (one uniform draw per
    output from the layer's RNG); at TEST, the probability-weighted average sum(x^2)/sum(x)
    (0 when sum(x) <= 0). Backward at TRAIN routes the gradient to the picked cell; at TEST it
    is the exact gradient of sum(x^2)/sum(x) (Caffe has no TEST backward for this mode).
    ``global_pooling`` makes the kernel the whole H x W plane (pad 0, stride 1).
    When stride > kernel, CEIL rounding can leave a last window entirely outside the image;
    its output is what Caffe computes (MAX: -FLT_MAX; AVE: 0 / (possibly empty) size).
    """

    exact_bottoms = 1
    min_tops = 1
    max_tops = 2
    param_field = "pooling_param"

    def _pair(self, name, h_name, w_name):
        p = self.param
        if p.has(name) and (p.has(h_name) or p.has(w_name)):
            raise self.config_error(f"{name} is {name} OR {h_name} and {w_name}; not both", name)
        if not p.has(name) and (p.has(h_name) != p.has(w_name)):
            raise self.config_error(f"{name} is {name} OR {h_name} and {w_name} are required",
                                    h_name if p.has(h_name) else w_name)
        if p.has(h_name):
            return int(getattr(p, h_name)), int(getattr(p, w_name))
        v = int(getattr(p, name))
        return v, v

    def setup(self, bottom, top):
        p = self.param
        self.pool = _enum_name(p.pool, _POOL_ENUM)
        if self.pool not in ("MAX", "AVE", "STOCHASTIC"):
            raise self.config_error(f"unknown pooling method {self.pool!r}", "pool")
        if len(top) > 1 and self.pool != "MAX":
            raise self.config_error(f"only MAX pooling has a second (mask) top; {self.pool} "
                                    f"pooling takes exactly 1 top, got {len(top)}")
        self.global_pooling = bool(p.global_pooling)
        has_kernel = p.has("kernel_size") or p.has("kernel_h") or p.has("kernel_w")
        if self.global_pooling:
            if has_kernel:
                raise self.config_error("with global_pooling: true the filter size cannot be "
                                        "specified (kernel_size / kernel_h / kernel_w)",
                                        "global_pooling")
        else:
            if p.has("kernel_size") and (p.has("kernel_h") or p.has("kernel_w")):
                raise self.config_error("filter size is kernel_size OR kernel_h and kernel_w; "
                                        "not both", "kernel_size")
            if not p.has("kernel_size") and not (p.has("kernel_h") and p.has("kernel_w")):
                raise self.config_error("kernel_size is required (for non-square filters both "
                                        "kernel_h and kernel_w)", "kernel_size")
            if p.has("kernel_size"):
                self.kernel = (int(p.kernel_size),) * 2
            else:
                self.kernel = (int(p.kernel_h), int(p.kernel_w))
            if min(self.kernel) <= 0:
                raise self.config_error(f"filter dimensions cannot be zero, got {self.kernel}",
                                        "kernel_size")
        self.pad = self._pair("pad", "pad_h", "pad_w")
        self.stride = self._pair("stride", "stride_h", "stride_w")
        if min(self.stride) <= 0:
            raise self.config_error(f"stride must be positive, got {self.stride}", "stride")
        if min(self.pad) < 0:
            raise self.config_error(f"pad must not be negative, got {self.pad}", "pad")
        if self.global_pooling and (any(self.pad) or self.stride != (1, 1)):
            raise self.config_error("with global_pooling: true only pad = 0 and stride = 1 "
                                    f"are allowed, got pad {self.pad}, stride {self.stride}",
                                    "global_pooling")
        if any(self.pad):
            if self.pool not in ("MAX", "AVE"):
                raise self.config_error("padding is implemented only for MAX and AVE pooling",
                                        "pad")
            if not self.global_pooling and (self.pad[0] >= self.kernel[0]
                                            or self.pad[1] >= self.kernel[1]):
                raise self.config_error(f"pad {self.pad} must be smaller than the kernel "
                                        f"{self.kernel}", "pad")
        self.round_mode = _enum_name(p.round_mode, "PoolingParameter.RoundMode")
        if self.round_mode not in ("CEIL", "FLOOR"):
            raise self.config_error(f"unknown round_mode {self.round_mode!r}", "round_mode")
        self._key = None

    def _pooled(self, size, k, p, s):
        num = size + 2 * p - k
        return (-(-num // s) if self.round_mode == "CEIL" else num // s) + 1

    def reshape(self, bottom, top):
        b = bottom[0]
        if b.num_axes != 4:
            raise self.shape_error(f"input must have 4 axes (num, channels, height, width), "
                                   f"got shape {tuple(b.shape)}")
        n, c, h, w = b.shape
        if self.global_pooling:
            self.kernel = (h, w)
        (kh, kw), (ph, pw), (sh, sw) = self.kernel, self.pad, self.stride
        oh = self._pooled(h, kh, ph, sh)
        ow = self._pooled(w, kw, pw, sw)
        if ph or pw:
            if (oh - 1) * sh >= h + ph:
                oh -= 1
            if (ow - 1) * sw >= w + pw:
                ow -= 1
        if oh <= 0 or ow <= 0:
            raise self.shape_error(f"bottom shape {tuple(b.shape)} is too small for kernel "
                                   f"{self.kernel} with pad {self.pad} (output {oh}x{ow})")
        shape = (n, c, oh, ow)
        for t in top:
            t.reshape(shape)
        key = (shape, self.pool)
        if key != self._key:
            self._key = key
            self._idx = (Blob(shape, np.int32, name=f"{self.name}/index")
                         if self.pool != "AVE" else None)
            self._rand = (Blob(shape, self.dtype, name=f"{self.name}/rand")
                          if self.pool == "STOCHASTIC" and self.phase == "TRAIN" else None)

    @property
    def _index(self):
        """The argmax (MAX) or sampled cell (STOCHASTIC TRAIN) of the last forward, ``h*W + w``
        per output, on the host; None for AVE."""
        return self._idx.data if self._idx is not None else None

    def _geom(self):
        (kh, kw), (sh, sw) = self.kernel, self.stride
        return kh, kw, sh, sw

    def forward(self, bottom, top):
        be = self.backend
        x = bottom[0].dev_data
        y = top[0].dev_data
        kh, kw, sh, sw = self._geom()
        ph, pw = self.pad
        if self.pool == "MAX":
            index = self._idx.dev_data
            be.max_pool_forward(x, kh, kw, sh, sw, ph, pw, y, index)
            if len(top) > 1:
                be.pool_index_to_mask(index, top[1].dev_data)
        elif self.pool == "AVE":
            be.ave_pool_forward(x, kh, kw, sh, sw, ph, pw, y)
        elif self.phase == "TRAIN":
            # drawn on the host from the layer's RNG in both modes: same samples, exact resume
            self._rand.data[...] = self.rng.random(top[0].shape, dtype=self.dtype)
            be.stochastic_pool_forward_train(x, kh, kw, sh, sw, self._rand.dev_data, y,
                                             self._idx.dev_data)
        else:
            be.stochastic_pool_forward_test(x, kh, kw, sh, sw, y)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        be = self.backend
        dy = top[0].dev_diff
        dx = bottom[0].dev_diff
        kh, kw, sh, sw = self._geom()
        ph, pw = self.pad
        if self.pool == "MAX":
            be.max_pool_backward(dy, self._idx.dev_data, kh, kw, sh, sw, ph, pw, dx)
        elif self.pool == "AVE":
            be.ave_pool_backward(dy, kh, kw, sh, sw, ph, pw, dx)
        elif self.phase == "TRAIN":
            be.stochastic_pool_backward_train(dy, self._idx.dev_data, kh, kw, sh, sw, dx)
        else:
            be.stochastic_pool_backward_test(bottom[0].dev_data, dy, kh, kw, sh, sw, dx)


@register_layer("Deconvolution")
class DeconvolutionLayer(ConvolutionLayer):
    """Transposed convolution: the data gradient of a Convolution, used as a forward pass.

    Same convolution_param as Convolution. Blobs (Caffe's order): weights
    ``(channels, num_output/group, *kernel)`` — bottom channels first, the reverse of
    Convolution — and bias ``(num_output,)`` when ``bias_term``. Output size per spatial axis:
    ``stride*(in - 1) + dilation*(kernel - 1) + 1 - 2*pad``.

    Forward: columns ``W^T x`` (one GEMM per group) folded back with col2im, then the bias.
    Backward: the top diff is unrolled with im2col; the weight gradient is ``x cols^T`` and the
    bottom gradient ``W cols`` (a convolution of the top diff). With the ``bilinear`` filler,
    ``group = channels = num_output``, kernel 2f - f%2, stride f and pad ceil((f-1)/2) this is
    FCN's fixed bilinear upsampling by f.
    """

    def _weight_shape(self):
        return (self.channels, self.num_output // self.group) + self.kernel

    def _bottom_channels(self, wshape):
        return wshape[0], ""

    def _output_size(self, d, spatial, extent, shape):
        o = self.stride[d] * (spatial[d] - 1) + extent[d] - 2 * self.pad[d]
        if o <= 0:
            raise self.shape_error(
                f"bottom shape {shape}: spatial size {spatial} with stride {self.stride}, "
                f"dilated kernel extent {extent} and pad {self.pad} gives output size {o}")
        return o

    def _allocate(self, num):
        p_in = int(np.prod(self.in_sp))
        krows = self.num_output * int(np.prod(self.kernel))
        per_image = max(krows, self.channels) * p_in
        self.chunk = int(max(1, min(num, self.col_budget // max(per_image, 1))))
        m = self.chunk * p_in
        self._col = Blob((krows * m,), self.dtype, name=f"{self.name}/col")
        self._xc = Blob((self.channels * m,), self.dtype, name=f"{self.name}/xc")
        self._vol = self._vol_blob(self.chunk, self.num_output, self.in_sp, self.out_sp)

    def _deconv_geom(self):
        """im2col/col2im geometry of the convolution whose input is our top."""
        return self._geometry(self.in_sp)

    def _bufs(self, m):
        """Columns (K, m), bottom in channel-major layout (C, m), and their group views."""
        g = self.group
        krows = self.num_output * int(np.prod(self.kernel))
        col = self._col.dev_data[:krows * m].reshape(krows, m)
        xc = self._xc.dev_data[:self.channels * m].reshape(self.channels, m)
        if g == 1:
            return col, xc, col, xc
        return col, xc, col.reshape(g, krows // g, m), xc.reshape(g, self.channels // g, m)

    def _dweights(self, arr):
        g = self.group
        if g == 1:
            return arr.reshape(self.channels, -1)
        return arr.reshape(g, self.channels // g, -1)

    def forward(self, bottom, top):
        be = self.backend
        geom = self._deconv_geom()
        p_in = int(np.prod(self.in_sp))
        p_out = int(np.prod(self.out_sp))
        w = self._dweights(self.blobs[0].dev_data)
        for b, t in zip(bottom, top):
            x = b.dev_data_as(self.num, self.channels, p_in)
            y = t.dev_data_as(self.num, self.num_output, *self.out_sp)
            for n0 in range(0, self.num, self.chunk):
                n1 = min(self.num, n0 + self.chunk)
                col, xc, colg, xcg = self._bufs((n1 - n0) * p_in)
                be.ncp_to_cnp(x[n0:n1], xc)
                be.gemm(w, xcg, out=colg, trans_a=True)
                col2im_any(be, col, geom, y[n0:n1])
            if self.bias_term:
                be.bias_add_ncp(self.blobs[1].dev_data,
                                t.dev_data_as(self.num, self.num_output, p_out))

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        geom = self._deconv_geom()
        p_in = int(np.prod(self.in_sp))
        p_out = int(np.prod(self.out_sp))
        w = self._dweights(self.blobs[0].dev_data)
        wdiff = self._dweights(self.blobs[0].dev_diff)
        nobias = self._nobias.dev_data
        for i, (b, t) in enumerate(zip(bottom, top)):
            if self.bias_term:
                be.channel_sum_ncp(t.dev_diff_as(self.num, self.num_output, p_out),
                                   self.blobs[1].dev_diff)
            x = b.dev_data_as(self.num, self.channels, p_in)
            dy = t.dev_diff_as(self.num, self.num_output, *self.out_sp)
            dx = b.dev_diff_as(self.num, self.channels, p_in) if propagate_down[i] else None
            for n0 in range(0, self.num, self.chunk):
                n1 = min(self.num, n0 + self.chunk)
                col, xc, colg, xcg = self._bufs((n1 - n0) * p_in)
                im2col_any(be, dy[n0:n1], geom, col)
                be.ncp_to_cnp(x[n0:n1], xc)
                be.gemm(xcg, colg, out=wdiff, trans_b=True, beta=1.0)
                if dx is not None:
                    be.gemm(w, colg, out=xcg)
                    be.cnp_to_ncp(xc, nobias, False, dx[n0:n1])


@register_layer("Im2col")
class Im2colLayer(_ConvGeometry):
    """Exposes im2col: each kernel window becomes a column, as Convolution unrolls its input.

    convolution_param gives kernel, stride, pad, dilation and axis (num_output, group and the
    fillers are ignored). Bottom ``(..., C, H, W)`` -> top ``(..., C*kh*kw, OH, OW)`` with
    ``OH = floor((H + 2*pad - (dilation*(kh-1) + 1)) / stride) + 1``; channel ``(c*kh + i)*kw + j``
    of the top at ``(y, x)`` is ``bottom[c, y*stride - pad + i*dilation, x*stride - pad +
    j*dilation]`` (0 in the padding). Backward sums the top diff back (col2im).
    """

    exact_bottoms = 1
    exact_tops = 1

    def setup(self, bottom, top):
        self._read_geometry(bottom)

    def reshape(self, bottom, top):
        shape = tuple(bottom[0].shape)
        ca = self.channel_axis
        if top[0] is bottom[0]:
            raise self.config_error("cannot run in place")
        self._check_num_axes(shape)
        spatial = shape[ca + 1:]
        out = []
        for d in range(self.num_spatial):
            extent = self.dilation[d] * (self.kernel[d] - 1) + 1
            o = (spatial[d] + 2 * self.pad[d] - extent) // self.stride[d] + 1
            if o <= 0:
                raise self.shape_error(
                    f"bottom shape {shape}: spatial size {spatial} with pad {self.pad} is "
                    f"smaller than the dilated kernel extent {extent}")
            out.append(o)
        self.channels = int(shape[ca])
        krows = self.channels * int(np.prod(self.kernel))
        top[0].reshape(shape[:ca] + (krows,) + tuple(out))
        self.num = int(np.prod(shape[:ca], dtype=np.int64)) if ca else 1
        self.krows = krows
        in_sp, out_sp = self._norm(spatial, 1), self._norm(tuple(out), 1)
        if (in_sp, out_sp) != (getattr(self, "in_sp", None), getattr(self, "out_sp", None)):
            self._vol = self._vol_blob(1, self.channels, out_sp, in_sp)
        self.in_sp, self.out_sp = in_sp, out_sp

    def _geom(self):
        return self._geometry(self.out_sp)

    def forward(self, bottom, top):
        be = self.backend
        geom = self._geom()
        x = bottom[0].dev_data_as(self.num, self.channels, *self.in_sp)
        y = top[0].dev_data_as(self.num, self.krows, int(np.prod(self.out_sp)))
        for n in range(self.num):
            im2col_any(be, x[n:n + 1], geom, y[n])

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        be = self.backend
        geom = self._geom()
        dx = bottom[0].dev_diff_as(self.num, self.channels, *self.in_sp)
        dy = top[0].dev_diff_as(self.num, self.krows, int(np.prod(self.out_sp)))
        for n in range(self.num):
            col2im_any(be, dy[n], geom, dx[n:n + 1])


@register_layer("SPP")
class SPPLayer(Layer):
    """Spatial pyramid pooling: pyramid_height levels of pooling over an (N, C, H, W) bottom.

    Level l pools into about ``bins = 2^l`` bins per side with Caffe's Pooling layer and
    ``kernel = ceil(H / bins)``, ``pad = (kernel*bins - H + 1) / 2`` (integer), ``stride =
    kernel`` (likewise for W); its output size is Pooling's (ceil rounding, clipped windows).
    spp_param.pool picks MAX, AVE or STOCHASTIC (STOCHASTIC only where no level needs padding).
    With pyramid_height 1 the top is that single pooling's output ``(N, C, 1, 1)``; otherwise
    each level is flattened to ``(N, C*PH*PW)`` and the levels are concatenated along axis 1,
    level 0 first: top ``(N, C * sum over levels of PH*PW)``. As in Caffe, a bottom so small that
    a level's pad reaches its kernel size is an error.
    """

    exact_bottoms = 1
    exact_tops = 1
    param_field = "spp_param"

    def setup(self, bottom, top):
        p = self.param
        if not p.has("pyramid_height") or int(p.pyramid_height) < 1:
            raise self.config_error("spp_param.pyramid_height must be set to a positive number",
                                    "pyramid_height")
        self.height = int(p.pyramid_height)
        self.pool = _enum_name(p.pool, "SPPParameter.PoolMethod")
        if self.pool not in ("MAX", "AVE", "STOCHASTIC"):
            raise self.config_error(f"unknown pooling method {self.pool!r}", "pool")
        self._key = None

    @staticmethod
    def level_geometry(level, h, w):
        """(kernel_h, kernel_w, pad_h, pad_w) of pyramid level ``level`` (Caffe's GetPoolingParam)."""
        bins = 2 ** level
        kh = -(-h // bins)
        kw = -(-w // bins)
        return kh, kw, (kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2

    def _build(self, b):
        n, c, h, w = b.shape
        self._levels = []
        for level in range(self.height):
            kh, kw, ph, pw = self.level_geometry(level, h, w)
            if ph >= kh or pw >= kw:
                raise self.shape_error(
                    f"bottom {tuple(b.shape)} is too small for pyramid_height {self.height}: "
                    f"level {level} ({2 ** level} bins) needs kernel {kh}x{kw} with pad "
                    f"{ph}x{pw}, and pooling needs the pad smaller than the kernel")
            if (ph or pw) and self.pool == "STOCHASTIC":
                raise self.shape_error(
                    f"bottom {tuple(b.shape)}: level {level} ({2 ** level} bins) needs pad "
                    f"{ph}x{pw}, and STOCHASTIC pooling has no padding; use MAX or AVE")
            lp = Msg("LayerParameter", {
                "name": self.name, "type": "Pooling",
                "pooling_param": {"pool": self.pool, "kernel_h": kh, "kernel_w": kw,
                                  "pad_h": ph, "pad_w": pw, "stride_h": kh, "stride_w": kw}})
            layer = PoolingLayer(lp, phase=self.phase, dtype=self.dtype, rng=self.rng)
            out = Blob((), self.dtype, name=f"{self.name}/level{level}")
            layer.setup([b], [out])
            self._levels.append((layer, out))
        self._scratch = Blob((), self.dtype, name=f"{self.name}/scratch")

    def reshape(self, bottom, top):
        b = bottom[0]
        if top[0] is b:
            raise self.config_error("cannot run in place")
        if b.num_axes != 4:
            raise self.shape_error(f"input must have 4 axes (num, channels, height, width), "
                                   f"got shape {tuple(b.shape)}")
        n, c, h, w = b.shape
        if h <= 0 or w <= 0:
            raise self.shape_error(f"input height and width must be positive, got shape "
                                   f"{tuple(b.shape)}")
        key = (tuple(b.shape), self.dtype)
        if key != self._key:
            self._build(b)
            self._key = key
        if self.height == 1:
            self._levels[0][0].reshape([b], top)
            return
        total = 0
        for layer, out in self._levels:
            layer.reshape([b], [out])
            total += out.count_range(1)
        top[0].reshape((n, total))

    def forward(self, bottom, top):
        for layer, _ in self._levels:
            layer.rng = self.rng
        if self.height == 1:
            self._levels[0][0].forward(bottom, top)
            return
        be = self.backend
        n = bottom[0].shape[0]
        total = top[0].shape[1]
        out_flat = top[0].dev_data_as(top[0].count)
        offset = 0
        for layer, out in self._levels:
            layer.forward(bottom, [out])
            inner = out.count_range(1)
            be.concat_copy_in(out.dev_data_as(out.count), n, inner, total, offset, out_flat)
            offset += inner

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        if self.height == 1:
            self._levels[0][0].backward(top, propagate_down, bottom)
            return
        be = self.backend
        b = bottom[0]
        n = b.shape[0]
        total = top[0].shape[1]
        tdiff = top[0].dev_diff_as(top[0].count)
        scratch = self._scratch
        scratch.reshape(b.shape)
        scratch.share_data(b)
        one = self.dtype.type(1)
        offset = 0
        for level, (layer, out) in enumerate(self._levels):
            inner = out.count_range(1)
            be.concat_copy_out(tdiff, n, inner, total, offset, out.dev_diff_as(out.count))
            offset += inner
            if level == 0:
                layer.backward([out], [True], bottom)
            else:
                layer.backward([out], [True], [scratch])
                be.eltwise_sum_add(one, scratch.dev_diff_as(b.count),
                                   b.dev_diff_as(b.count))


@register_layer("Crop")
class CropLayer(Layer):
    """Crops bottom[0] to the shape of bottom[1] on every axis from crop_param.axis on.

    crop_param.axis (default 2; negative counts from the end); offset: none (0 everywhere), one
    value for every cropped axis, or exactly one per axis from ``axis`` to the last. Top shape:
    bottom[0]'s before ``axis``, bottom[1]'s from ``axis`` on; ``top[i] = bottom0[i + offset]``.
    Both bottoms need the same number of axes, and on every cropped axis (Caffe checks those
    only: FCN crops a 21-channel score map to its 3-channel image from axis 2)
    ``bottom0.shape[d] - offset[d] >= bottom1.shape[d]``. Backward pads the top diff with zeros;
    bottom[1] only gives a shape, so its gradient is zero.
    """

    exact_bottoms = 2
    exact_tops = 1
    param_field = "crop_param"

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0

    def reshape(self, bottom, top):
        b0, b1 = bottom
        if top[0] is b0:
            raise self.config_error("cannot run in place")
        n = b0.num_axes
        if b1.num_axes != n:
            raise self.shape_error(f"bottom[0] {tuple(b0.shape)} and bottom[1] "
                                   f"{tuple(b1.shape)} must have the same number of axes")
        p = self.param
        try:
            axis = b0.canonical_axis(int(p.axis))
        except ShapeError as e:
            raise self.config_error(f"bad crop axis: {e}", "axis") from None
        offs = [int(o) for o in p.offset]
        if len(offs) > 1 and axis + len(offs) != n:
            raise self.config_error(
                f"{len(offs)} offsets given but bottom {tuple(b0.shape)} has {n - axis} axes "
                f"from axis {axis} on; give one offset, or exactly one per cropped axis",
                "offset")
        offsets, shape = [], []
        for d in range(n):
            off, size = 0, b0.shape[d]
            if d >= axis:       # axes before `axis` keep bottom[0]'s size (Caffe checks these only)
                size = b1.shape[d]
                if len(offs) == 1:
                    off = offs[0]
                elif offs:
                    off = offs[d - axis]
                if b0.shape[d] - off < b1.shape[d]:
                    raise self.shape_error(
                        f"invalid crop parameters in dimension {d}: bottom[0] "
                        f"{tuple(b0.shape)} minus offset {off} is smaller than bottom[1] "
                        f"{tuple(b1.shape)}", "offset")
            offsets.append(off)
            shape.append(size)
        top[0].reshape(shape)
        self._offsets = np.array(offsets, np.int64)  # geometry: small host arrays, like kh, kw
        self._x_shape = np.array(b0.shape, np.int64)
        self._top_shape = np.array(shape, np.int64)

    def forward(self, bottom, top):
        self.backend.crop_copy_forward(
            bottom[0].dev_data_as(bottom[0].count), self._x_shape, self._offsets,
            self._top_shape, top[0].dev_data_as(top[0].count))

    def backward(self, top, propagate_down, bottom):
        be = self.backend
        if propagate_down[0]:
            be.crop_copy_backward(top[0].dev_diff_as(top[0].count), self._top_shape,
                                  self._offsets, self._x_shape,
                                  bottom[0].dev_diff_as(bottom[0].count))
        if propagate_down[1]:
            be.blob_set(self.dtype.type(0), bottom[1].dev_diff_as(bottom[1].count))
