"""``caffeish plot``: learning curves (PNG/SVG/PDF) from run directories and glog logs.

Four panels: loss against iterations (train, and test outputs whose name contains 'loss'),
the other test outputs (accuracy...) against iterations, the learning rate against iterations,
and the train loss against wall-clock seconds. Several sources go on the same axes, one colour
each (like Caffe's plot_training_log.py with several logs). matplotlib is an optional extra:
``pip install 'caffeish[plot]'``.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import CaffeishError, ConfigError
from .logparse import Curves

MATPLOTLIB_HINT = ("plotting needs matplotlib, an optional extra: pip install 'caffeish[plot]' "
                   "(or pip install matplotlib); `caffeish plot --csv out.csv` works without it")
FORMATS = ("png", "svg", "pdf")


class MatplotlibMissing(CaffeishError):
    """``caffeish plot`` was asked for an image but matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MatplotlibMissing(MATPLOTLIB_HINT) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _finite(xs, ys):
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None and
           isinstance(y, (int, float)) and math.isfinite(y)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _label(curves: Curves, multi: bool, what: str) -> str:
    return f"{Path(curves.source).parent.name or curves.source}: {what}" if multi else what


def plot_curves(curves_list, out, title=None) -> Path:
    """Draw ``curves_list`` (one :class:`Curves` per source) into the image file ``out``."""
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"{out}: unknown image format '{fmt or '(none)'}'; use "
                          f"{', '.join('.' + f for f in FORMATS)} (or --csv for a table)")
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (ax_loss, ax_out), (ax_lr, ax_time) = axes
    multi = len(curves_list) > 1
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2"])
    drawn = {ax: False for ax in axes.flat}
    for n, c in enumerate(curves_list):
        color = colors[n % len(colors)]
        tr = [r for r in c.train if r.loss is not None]
        x, y = _finite([r.iter for r in tr], [r.loss for r in tr])
        if x:
            ax_loss.plot(x, y, color=color, label=_label(c, multi, "train loss"))
            drawn[ax_loss] = True
        xt, yt = _finite([r.seconds for r in tr], [r.loss for r in tr])
        if xt:
            ax_time.plot(xt, yt, color=color, label=_label(c, multi, "train loss"))
            drawn[ax_time] = True
        lr = [r for r in c.train if r.lr is not None]
        x, y = _finite([r.iter for r in lr], [r.lr for r in lr])
        if x:
            ax_lr.plot(x, y, color=color, label=_label(c, multi, "lr"))
            drawn[ax_lr] = True
        styles = ["-", "--", ":", "-."]
        for k, name in enumerate(c.output_names("test")):
            rows = [r for r in c.test if name in r.outputs]
            x, y = _finite([r.iter for r in rows], [r.outputs[name] for r in rows])
            if not x:
                continue
            ax = ax_loss if "loss" in name.lower() else ax_out
            ax.plot(x, y, color=color, linestyle=styles[(k + 1) % len(styles)], marker="o",
                    markersize=3, label=_label(c, multi, f"test {name}"))
            drawn[ax] = True
    ax_loss.set(title="loss", xlabel="iteration", ylabel="loss")
    ax_out.set(title="test outputs", xlabel="iteration")
    ax_lr.set(title="learning rate", xlabel="iteration", ylabel="lr")
    ax_time.set(title="train loss over time", xlabel="seconds", ylabel="loss")
    for ax, ok in drawn.items():
        if ok:
            ax.legend(fontsize=8)
            ax.grid(True, alpha=0.3)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                    color="gray")
    fig.suptitle(title or ", ".join(Path(c.source).name if not multi else c.source
                                    for c in curves_list))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
