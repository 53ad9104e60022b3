"""``caffeish gradcheck``: the numerical gradient check of one layer, from a net or a spec.

.. code-block:: console

    caffeish gradcheck --model net.yaml --layer conv1
    caffeish gradcheck --spec 'type: ReLU\\nrelu_param: {negative_slope: 0.1}' --shape 2,3,4,4

The layer runs in float64 and its analytic gradient (backward) is compared with central
differences of the objective 1/2 * sum(top^2), element by element, as Caffe's GradientChecker
does (:func:`caffeish.testing.check_gradient`). It prints the worst relative error
(|analytic - numeric| / max(|analytic|, |numeric|, 1)) per bottom and per parameter blob, and
PASS or FAIL; the exit status is 1 when a blob fails, 2 for a usage or config error.

With ``--model``, the net is built in float64 for ``--phase``; its Input blobs get random normal
data (or ``--input NAME=file.npy``), a forward up to the layer gives the layer's bottoms. With
``--spec`` (LayerParameter fields in YAML; ``\\n`` may be written literally; or a path to a YAML
file), one bottom per ``--shape`` gets random normal data (or ``--input INDEX=file.npy``).
A user's ``type: Python`` layer is checked like any other.
"""
from __future__ import annotations

import functools
import math
import os
import sys

import click
import numpy as np

from ..errors import CaffeishError, ConfigError

__all__ = ["gradcheck_cmd", "run_gradcheck"]


def _errors(fn):
    """A CaffeishError prints as one line (``caffeish: error: ...``) and exits 2."""

    @functools.wraps(fn)
    def wrapper(*args, debug=False, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (CaffeishError, OSError) as e:
            if debug:
                raise
            click.echo(f"caffeish: error: {e}", err=True)
            sys.exit(2)

    return click.option("--debug", is_flag=True, help="Show Python tracebacks on errors.")(wrapper)


def _parse_shape(text) -> tuple:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--shape {text!r}: give comma-separated integers, e.g. 2,3,4,4") \
            from None
    if any(s < 0 for s in shape):
        raise ConfigError(f"--shape {text!r}: dimensions must be >= 0")
    return shape


def _parse_inputs(items) -> dict:
    out = {}
    for item in items:
        key, eq, path = item.partition("=")
        if not eq or not key or not path:
            raise ConfigError(f"--input {item!r}: write KEY=FILE.npy (an input blob name with "
                              f"--model, a bottom index with --spec)")
        if not os.path.exists(path):
            raise ConfigError(f"--input {item!r}: file '{path}' not found")
        try:
            out[key] = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ConfigError(f"--input {item!r}: cannot read '{path}' as a .npy array: {e}") \
                from None
    return out


def _spec_param(spec):
    import caffeish.config  # noqa: F401
    from ..config.yaml_loader import load_message, parse_message
    if os.path.isfile(spec):
        lp = load_message(spec, "LayerParameter")
    else:
        lp = parse_message(spec.replace("\\n", "\n"), "LayerParameter", "<--spec>")
    if not lp.has("type"):
        raise ConfigError("--spec: the layer has no 'type' (e.g. --spec 'type: ReLU')")
    if not lp.has("name"):
        lp.set("name", lp.type.lower())
    return lp


def _layer_from_spec(spec, shapes, inputs, phase, seed):
    from ..layers import layer_class
    from ..testing import blobs_from, setup_layer
    lp = _spec_param(spec)
    cls = layer_class(lp.type, where="<--spec>")
    layer = cls(lp, phase=phase, dtype=np.float64, rng=np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    for key in sorted(inputs, key=lambda k: int(k) if k.isdigit() else -1):
        k = int(key) if key.isdigit() else -1
        if k < 0 or k > len(arrays):
            raise ConfigError(f"--input {key}=...: with --spec the key is a bottom index "
                              f"(0..{len(arrays)})")
        if k == len(arrays):
            arrays.append(inputs[key])
        else:
            arrays[k] = inputs[key]
    names = list(lp.bottom) if len(lp.bottom) == len(arrays) else [None] * len(arrays)
    bottom = blobs_from(arrays, np.float64, names=names)
    top = setup_layer(layer, bottom, len(lp.top) or None)
    return layer, bottom, top


def _layer_from_model(model, name, inputs, phase, stages, level, weights, seed):
    from ..blob import Blob
    from ..errors import did_you_mean
    from ..net import Net
    if not name:
        raise ConfigError("--model needs --layer NAME (the layer to check)")
    net = Net(model, phase=phase, stages=stages, level=level, dtype=np.float64, seed=seed,
              weights=weights)
    try:
        if name not in net.layer_dict:
            raise ConfigError(f"{model}: no layer named '{name}' in the {phase} net"
                              f"{did_you_mean(name, net.layer_dict)}; its layers: "
                              f"{', '.join(net.layer_names)}")
        rng = np.random.default_rng(seed)
        for key in inputs:
            if key not in net.inputs:
                raise ConfigError(f"--input {key}=...: the net has no input blob '{key}'"
                                  f"{did_you_mean(key, net.inputs)}; its inputs: "
                                  f"{', '.join(net.inputs) or 'none'}")
        for blob_name in net.inputs:
            blob = net.blobs[blob_name]
            if blob_name in inputs:
                arr = np.asarray(inputs[blob_name], np.float64)
                blob.reshape(arr.shape)
                blob.data[...] = arr
            else:
                blob.data[...] = rng.standard_normal(blob.shape)
        i = net.layer_names.index(name)
        if i > 0:
            net.forward(end=net.layer_names[i - 1])
        layer = net.layers[i]
        bottom = []
        for b_name, b in zip(net.bottom_name_vecs[i], net.bottom_vecs[i]):
            c = Blob(b.shape, np.float64, name=b_name)
            c.data[...] = b.data
            bottom.append(c)
        top = [Blob((), np.float64, name=t) for t in net.top_name_vecs[i]]
        layer.reshape(bottom, top)
    except BaseException:
        net.close()
        raise
    return net, layer, bottom, top


def run_gradcheck(layer, bottom, top, step=1e-3, threshold=1e-4, bottoms=None, params=True,
                  kink=0.0, kink_range=-1.0, seed=1701, echo=click.echo) -> bool:
    """Check ``layer`` on ``bottom``/``top`` (float64) and print one line per blob; True if all
    pass. ``bottoms``: indexes to check (default: every bottom the layer can back-propagate to,
    e.g. not a loss layer's labels)."""
    from ..testing import check_gradient
    if bottoms is None:
        bottoms = [j for j in range(len(bottom)) if layer.allow_force_backward(j)]
    for j in bottoms:
        if not 0 <= j < len(bottom):
            raise ConfigError(f"--bottom {j}: {layer.describe()} has {len(bottom)} bottom(s)")
    if not bottoms and not (params and layer.blobs):
        raise ConfigError(f"{layer.describe()}: nothing to check (no bottom that takes a "
                          f"gradient and no parameter blob)")
    echo(f"Gradient check of {layer.describe()} in float64: step {step:g}, threshold "
         f"{threshold:g}" + (f", kink {kink:g} +- {kink_range:g}" if kink_range >= 0 else ""))
    worst = check_gradient(layer, bottom, top, stepsize=step, threshold=math.inf,
                           check_bottom=list(bottoms), check_params=params, kink=kink,
                           kink_range=kink_range, seed=seed)
    ok = True
    rows = [(f"bottom[{j}]", bottom[j].name or "", bottom[j]) for j in bottoms]
    if params:
        rows += [(f"param[{j}]", "", b) for j, b in enumerate(layer.blobs)]
    width = max(len(k) + len(n) for k, n, _ in rows) + 3
    for key, blob_name, blob in rows:
        err = worst[key]
        passed = err <= threshold
        ok = ok and passed
        label = f"{key} '{blob_name}'" if blob_name else key
        shape = "x".join(str(s) for s in blob.shape) or "scalar"
        echo(f"  {label:<{width}} {shape:>14}  worst relative error {err:.3e}  "
             f"{'PASS' if passed else 'FAIL'}")
    n_fail = sum(worst[k] > threshold for k, _, _ in rows)
    echo("PASS" if ok else f"FAIL: {n_fail} of {len(rows)} blob(s) above the threshold "
                           f"{threshold:g}")
    return ok


@click.command("gradcheck")
@click.option("--model", default=None, type=click.Path(dir_okay=False),
              help="Net YAML (or .prototxt) holding the layer; use with --layer.")
@click.option("--layer", "layer_name", default=None, help="Name of the layer to check.")
@click.option("--spec", default=None,
              help="A single layer to check instead: LayerParameter fields in YAML, or a file.")
@click.option("--shape", "shapes", multiple=True,
              help="With --spec: a bottom shape such as 2,3,4,4 (once per bottom).")
@click.option("--input", "inputs", multiple=True, metavar="KEY=FILE.npy",
              help="Data for an input blob (--model: its name) or a bottom (--spec: its index), "
                   "e.g. labels; default random normal.")
@click.option("--phase", default="TRAIN", type=click.Choice(["TRAIN", "TEST"],
                                                            case_sensitive=False),
              show_default=True)
@click.option("--stage", default="", help="Comma-separated NetState stages (--model).")
@click.option("--level", default=0, type=int, help="NetState level (--model).")
@click.option("--weights", default=None, help="A .caffemodel to load first (--model).")
@click.option("--step", default=1e-3, show_default=True, type=float,
              help="Central difference step.")
@click.option("--threshold", default=1e-4, show_default=True, type=float,
              help="Largest relative error that passes.")
@click.option("--bottom", "bottoms", multiple=True, type=int,
              help="Check only these bottom indexes (default: all that take a gradient).")
@click.option("--no-params", is_flag=True, help="Do not check the parameter blobs.")
@click.option("--kink", default=0.0, type=float, show_default=True,
              help="Skip elements whose |value| is within --kink-range of this (e.g. ReLU at 0).")
@click.option("--kink-range", default=-1.0, type=float, show_default=True,
              help="Negative: skip nothing.")
@click.option("--seed", default=1701, type=int, show_default=True,
              help="Seed for the random inputs, fillers and the layer's RNG.")
@_errors
def gradcheck_cmd(model, layer_name, spec, shapes, inputs, phase, stage, level, weights, step,
                  threshold, bottoms, no_params, kink, kink_range, seed):
    """Numerically check one layer's gradients (bottoms and parameters) in float64.

    \b
    caffeish gradcheck --model net.yaml --layer conv1
    caffeish gradcheck --spec 'type: ReLU\\nrelu_param: {negative_slope: 0.1}' --shape 2,3,4,4
    caffeish gradcheck --spec '{type: SoftmaxWithLoss}' --shape 4,5 --input 1=labels.npy
    """
    phase = phase.upper()
    if bool(model) == bool(spec):
        raise click.UsageError("give either --model NET --layer NAME, or --spec 'type: ...' "
                               "--shape N,C,H,W")
    arrays = _parse_inputs(inputs)
    if spec:
        if layer_name:
            raise click.UsageError("--layer goes with --model, not --spec")
        net = None
        layer, bottom, top = _layer_from_spec(spec, [_parse_shape(s) for s in shapes], arrays,
                                              phase, seed)
    else:
        if shapes:
            raise click.UsageError("--shape goes with --spec; with --model the net's Input "
                                   "shapes are used")
        stages = [s for s in stage.split(",") if s]
        net, layer, bottom, top = _layer_from_model(model, layer_name, arrays, phase, stages,
                                                    level, weights, seed)
    try:
        ok = run_gradcheck(layer, bottom, top, step=step, threshold=threshold,
                           bottoms=list(bottoms) if bottoms else None, params=not no_params,
                           kink=kink, kink_range=kink_range, seed=seed)
    finally:
        if net is not None:
            net.close()
    if not ok:
        sys.exit(1)
