"""Per-layer forward/backward timing (``caffeish time``)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TimeReport:
    iterations: int
    layers: list = field(default_factory=list)  # (name, type, fwd ms, bwd ms)
    forward_ms: float = 0.0
    backward_ms: float = 0.0
    batch: int = 0

    @property
    def total_ms(self):
        return self.forward_ms + self.backward_ms

    def format(self) -> str:
        lines = [f"Average time per layer ({self.iterations} iterations, slowest first):",
                 f"{'layer':<24}{'type':<18}{'forward ms':>12}{'backward ms':>13}{'share':>8}"]
        total = self.total_ms or 1.0
        for name, typ, f, b in sorted(self.layers, key=lambda r: -(r[2] + r[3])):
            lines.append(f"{name:<24}{typ:<18}{f:>12.3f}{b:>13.3f}{100 * (f + b) / total:>7.1f}%")
        lines.append(f"Average Forward pass: {self.forward_ms:.3f} ms.")
        lines.append(f"Average Backward pass: {self.backward_ms:.3f} ms.")
        lines.append(f"Average Forward-Backward: {self.total_ms:.3f} ms.")
        if self.batch and self.total_ms:
            lines.append(f"Throughput: {1000.0 * self.batch / self.total_ms:.0f} images/s "
                         f"(batch {self.batch})")
        return "\n".join(lines)


def time_net(net, iterations=50, warmup=2) -> TimeReport:
    """Run ``warmup`` untimed passes (numba compiles), then time each layer's forward/backward."""
    n = len(net.layers)
    for _ in range(warmup):
        net.forward_loss()
        net.backward()
    fwd = [0.0] * n
    bwd = [0.0] * n
    for _ in range(iterations):
        for i in range(n):
            layer = net.layers[i]
            t0 = time.perf_counter()
            layer.reshape(net.bottom_vecs[i], net.top_vecs[i])
            layer.forward(net.bottom_vecs[i], net.top_vecs[i])
            fwd[i] += time.perf_counter() - t0
        for i in range(n - 1, -1, -1):
            for t, w in zip(net.top_vecs[i], net.loss_weights[i]):
                if w:
                    t.diff[...] = w
            if net.layer_need_backward[i]:
                t0 = time.perf_counter()
                net.layers[i].backward(net.top_vecs[i], net.bottom_need_backward[i],
                                       net.bottom_vecs[i])
                bwd[i] += time.perf_counter() - t0
    it = max(iterations, 1)
    rep = TimeReport(iterations=iterations)
    for i, layer in enumerate(net.layers):
        rep.layers.append((net.layer_names[i], layer.type, 1000 * fwd[i] / it, 1000 * bwd[i] / it))
    rep.forward_ms = 1000 * sum(fwd) / it
    rep.backward_ms = 1000 * sum(bwd) / it
    first = net.top_vecs[0][0].shape if net.top_vecs and net.top_vecs[0] else ()
    rep.batch = first[0] if first else 0
    return rep
