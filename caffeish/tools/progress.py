"""A one-line progress bar with ETA under the log lines, for a terminal.

The bar is a solver callback (``on_gradients_ready``) drawn on the last line of stderr; log
lines go through :class:`BarStream`, which clears the bar, writes the line and draws the bar
again, so the Caffe-style log stays intact above it. Not used when stderr is not a terminal
(CI, files): there only the plain log lines are written.
"""
from __future__ import annotations

import math
import sys
import time


def _fmt_eta(seconds):
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class BarStream:
    """A text stream that keeps a bar on the last line of ``stream``."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar = ""

    def write(self, s):
        if self.bar:
            self.stream.write("\r\x1b[K")
        n = self.stream.write(s)
        if self.bar and s.endswith("\n"):
            self.stream.write(self.bar)
        self.stream.flush()
        return n

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return getattr(self.stream, "isatty", lambda: False)()

    def show(self, bar):
        self.bar = bar
        self.stream.write("\r\x1b[K" + bar)
        self.stream.flush()

    def clear(self):
        if self.bar:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        self.bar = ""


class ProgressBar:
    """Solver callback: ``[####......] 1200/10000 25.1 it/s ETA 5m50s loss 0.231``."""

    def __init__(self, stream: BarStream, max_iter: int, width: int = 30, every: float = 0.1):
        self.stream = stream
        self.max_iter = max(int(max_iter), 1)
        self.width = width
        self.every = every
        self._t0 = None
        self._it0 = 0
        self._last = 0.0

    def render(self, it, loss, now):
        done = min(it / self.max_iter, 1.0)
        fill = int(round(done * self.width))
        rate = (it - self._it0) / (now - self._t0) if self._t0 and now > self._t0 and \
            it > self._it0 else float("nan")
        eta = (self.max_iter - it) / rate if rate == rate and rate > 0 else float("nan")
        speed = f"{rate:.3g} it/s" if rate == rate else "- it/s"
        return (f"[{'#' * fill}{'.' * (self.width - fill)}] {it}/{self.max_iter} {speed} "
                f"ETA {_fmt_eta(eta)} loss {loss:.4g}")

    def on_gradients_ready(self, solver):
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._it0 = now, solver.iter
        if now - self._last < self.every and solver.iter + 1 < self.max_iter:
            return
        self._last = now
        self.stream.show(self.render(solver.iter + 1, float(solver.smoothed_loss), now))

    def close(self):
        self.stream.clear()
