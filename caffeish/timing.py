"""Per-layer forward/backward timing (``caffeish time``) with FLOPs, bytes moved and rates.

FLOPs come from the shape rules of :mod:`caffeish.tools.shapes` (forward; a multiply-add is 2).
Backward counts twice the forward for layers with weights whose bottom needs a gradient (the
weight-gradient and input-gradient products), once when only one of them is computed, and once
the forward for every other layer. Bytes moved are the minimum traffic: forward reads its
bottoms and parameters and writes its tops; backward reads the top diffs, bottoms and
parameters and writes the bottom diffs and parameter diffs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class LayerTime:
    name: str
    type: str
    forward_ms: float
    backward_ms: float
    forward_flops: int | None = None
    backward_flops: int | None = None
    forward_bytes: int = 0
    backward_bytes: int = 0

    @property
    def total_ms(self):
        return self.forward_ms + self.backward_ms


def _rate(amount, ms, unit):
    if amount is None or ms <= 0:
        return "-"
    return f"{amount / (ms * 1e-3) / unit:.1f}"


@dataclass
class TimeReport:
    iterations: int
    layers: list = field(default_factory=list)  # LayerTime
    forward_ms: float = 0.0
    backward_ms: float = 0.0
    batch: int = 0

    @property
    def total_ms(self):
        return self.forward_ms + self.backward_ms

    def format(self) -> str:
        lines = [f"Average time per layer ({self.iterations} iterations, slowest first):",
                 f"{'layer':<22}{'type':<16}{'fwd ms':>9}{'bwd ms':>9}{'share':>7}"
                 f"{'MFLOP':>10}{'GFLOP/s':>9}{'MB':>8}{'GB/s':>7}"]
        total = self.total_ms or 1.0
        for t in sorted(self.layers, key=lambda r: -r.total_ms):
            flops = None if t.forward_flops is None else t.forward_flops + (t.backward_flops or 0)
            nbytes = t.forward_bytes + t.backward_bytes
            lines.append(
                f"{t.name:<22.22}{t.type:<16.16}{t.forward_ms:>9.3f}{t.backward_ms:>9.3f}"
                f"{100 * t.total_ms / total:>6.1f}%"
                f"{'-' if flops is None else f'{flops / 1e6:.1f}':>10}"
                f"{_rate(flops, t.total_ms, 1e9):>9}{nbytes / 1e6:>8.1f}"
                f"{_rate(nbytes, t.total_ms, 1e9):>7}")
        lines.append(f"Average Forward pass: {self.forward_ms:.3f} ms.")
        lines.append(f"Average Backward pass: {self.backward_ms:.3f} ms.")
        lines.append(f"Average Forward-Backward: {self.total_ms:.3f} ms.")
        known = [t for t in self.layers if t.forward_flops is not None]
        flops = sum(t.forward_flops + (t.backward_flops or 0) for t in known)
        if self.total_ms:
            lines.append(f"Total: {flops / 1e6:.1f} MFLOP per step, "
                         f"{flops / (self.total_ms * 1e-3) / 1e9:.1f} GFLOP/s achieved")
        if self.batch and self.total_ms:
            lines.append(f"Throughput: {1000.0 * self.batch / self.total_ms:.0f} images/s "
                         f"(batch {self.batch})")
        return "\n".join(lines)


def _layer_costs(net, i):
    """(forward FLOPs or None, backward FLOPs or None, forward bytes, backward bytes)."""
    from .tools.shapes import RULES
    layer = net.layers[i]
    bottoms, tops = net.bottom_vecs[i], net.top_vecs[i]
    item = net.dtype.itemsize
    fwd_flops = None
    fn = RULES.get(layer.type)
    if fn is not None:
        try:
            fwd_flops = fn(layer.layer_param, [b.shape for b in bottoms], net.phase, "").flops
        except Exception:  # a rule that cannot size this configuration: FLOPs unknown
            fwd_flops = None
    params = sum(p.count for p in layer.blobs)
    b_in = sum(b.count for b in bottoms)
    t_out = sum(t.count for t in tops)
    fwd_bytes = (b_in + params + t_out) * item
    need = net.layer_need_backward[i]
    bwd_flops = 0
    bwd_bytes = 0
    if need:
        grads_bottom = any(net.bottom_need_backward[i])
        if fwd_flops is not None:
            bwd_flops = fwd_flops * ((1 if layer.blobs else 0) + (1 if grads_bottom else 0)) \
                if layer.blobs else fwd_flops
        else:
            bwd_flops = None
        bwd_bytes = (t_out + b_in + params + params
                     + (b_in if grads_bottom else 0)) * item
    return fwd_flops, bwd_flops, fwd_bytes, bwd_bytes


def time_net(net, iterations=50, warmup=2) -> TimeReport:
    """Run ``warmup`` untimed passes (numba compiles), then time each layer's forward/backward.
    In GPU mode each layer's time ends with a device synchronize, as Caffe's GPU timer does."""
    from .backend import get_backend
    sync = get_backend().synchronize
    n = len(net.layers)
    for _ in range(warmup):
        net.forward_loss()
        net.backward()
    sync()
    fwd = [0.0] * n
    bwd = [0.0] * n
    for _ in range(iterations):
        for i in range(n):
            layer = net.layers[i]
            t0 = time.perf_counter()
            layer.reshape(net.bottom_vecs[i], net.top_vecs[i])
            layer.forward(net.bottom_vecs[i], net.top_vecs[i])
            sync()
            fwd[i] += time.perf_counter() - t0
        for i in range(n - 1, -1, -1):
            for t, w in zip(net.top_vecs[i], net.loss_weights[i]):
                if w:
                    t.diff[...] = w
            if net.layer_need_backward[i]:
                t0 = time.perf_counter()
                net.layers[i].backward(net.top_vecs[i], net.bottom_need_backward[i],
                                       net.bottom_vecs[i])
                sync()
                bwd[i] += time.perf_counter() - t0
    it = max(iterations, 1)
    rep = TimeReport(iterations=iterations)
    for i, layer in enumerate(net.layers):
        ff, bf, fb, bb = _layer_costs(net, i)
        rep.layers.append(LayerTime(net.layer_names[i], layer.type, 1000 * fwd[i] / it,
                                    1000 * bwd[i] / it, ff, bf, fb, bb))
    rep.forward_ms = 1000 * sum(fwd) / it
    rep.backward_ms = 1000 * sum(bwd) / it
    first = net.top_vecs[0][0].shape if net.top_vecs and net.top_vecs[0] else ()
    rep.batch = first[0] if first else 0
    return rep
