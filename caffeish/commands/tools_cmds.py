"""``caffeish inspect | draw | plot | doctor | sweep``: click commands for the tools.

The commands are plain click objects (``inspect_cmd``, ``draw_cmd``, ``plot_cmd``,
``doctor_cmd``, ``sweep_cmd``) that cli.py adds to the ``caffeish`` group; ``set_option``,
``run_dir_option`` and ``progress_option`` are the options ``caffeish train`` shares with them.
The logic lives in :mod:`caffeish.tools`.
"""
from __future__ import annotations

import functools
import sys

import click

from ..errors import CaffeishError

__all__ = ["inspect_cmd", "draw_cmd", "plot_cmd", "doctor_cmd", "sweep_cmd", "set_option",
           "run_dir_option", "progress_option", "TOOL_COMMANDS"]

_SET_HELP = ("Override a config value, repeatable: a solver field (base_lr=0.05) or a layer "
             "field by layer name (layer.conv1.convolution_param.num_output=32).")


def set_option(fn):
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help=_SET_HELP)(fn)


def run_dir_option(fn):
    return click.option("--run-dir", default=None, type=click.Path(file_okay=False),
                        help="Run directory (default: runs/<name> beside the snapshot "
                             "prefix; a new run never reuses an old one).")(fn)


def progress_option(fn):
    return click.option("--progress/--no-progress", default=None,
                        help="Live progress bar with ETA (default: when stderr is a "
                             "terminal).")(fn)


def _state_options(fn):
    fn = click.option("--stage", default="", help="Comma-separated NetState stages.")(fn)
    fn = click.option("--level", default=0, type=int, help="NetState level.")(fn)
    return fn


def _stages(stage):
    return [s for s in (stage or "").split(",") if s]


def _errors(fn):
    """A CaffeishError (or OSError) is one message on stderr and exit status 2."""

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


_shape_option = click.option(
    "--shape", "shapes", multiple=True, metavar="BLOB=DIMS",
    help="Shape of a data blob whose source is not readable here, e.g. data=3,227,227 "
         "(C,H,W; the batch comes from the layer) or data=10,3,227,227. Repeatable.")


@click.command("inspect")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--phase", default="TEST", show_default=True,
              type=click.Choice(["TRAIN", "TEST"], case_sensitive=False))
@_state_options
@_shape_option
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_errors
def inspect_cmd(config, phase, stage, level, shapes, overrides, as_json):
    """Per-layer shapes, parameters, FLOPs and activation memory, from shapes alone.

    CONFIG is a net (YAML or prototxt) or a solver (its net is used).

    \b
    caffeish inspect configs/mnist/lenet_train_test.yaml --phase train
    caffeish inspect models_zoo/bvlc_reference_caffenet/deploy.yaml --json
    caffeish inspect net.yaml --set layer.conv1.convolution_param.num_output=32
    """
    from ..tools.inspect import inspect_net, load_net_for_tools, parse_shape_options
    net = load_net_for_tools(config, phase, overrides)
    report = inspect_net(net, phase.upper(), _stages(stage), level, parse_shape_options(shapes))
    click.echo(report.to_json() if as_json else report.format())


@click.command("draw")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default=None,
              help="Output file: .svg, .png or .pdf (needs Graphviz's dot), .dot or .gv (DOT "
                   "text). Default: DOT text on stdout.")
@click.option("--phase", default="ALL", show_default=True,
              type=click.Choice(["TRAIN", "TEST", "ALL"], case_sensitive=False))
@_state_options
@click.option("--rankdir", default="LR", show_default=True,
              type=click.Choice(["LR", "RL", "TB", "BT"]), help="Graph direction.")
@click.option("--no-shapes", is_flag=True, help="Do not label edges with blob shapes.")
@_shape_option
@set_option
@_errors
def draw_cmd(config, output, phase, stage, level, rankdir, no_shapes, shapes, overrides):
    """Draw the net: layers as boxes, blobs as ellipses, shapes on the edges.

    \b
    caffeish draw models_zoo/bvlc_googlenet/deploy.yaml -o googlenet.svg
    caffeish draw configs/mnist/lenet_train_test.yaml --phase TRAIN -o lenet.png
    caffeish draw net.yaml > net.dot
    """
    from ..tools.draw import net_to_dot, render
    from ..tools.inspect import load_net_for_tools, parse_shape_options
    net = load_net_for_tools(config, "TRAIN" if phase.upper() == "TRAIN" else "TEST", overrides)
    dot, notes = net_to_dot(net, phase, _stages(stage), level, rankdir, not no_shapes,
                            parse_shape_options(shapes))
    for n in notes:
        click.echo(f"note: {n}", err=True)
    if output is None:
        click.echo(dot, nl=False)
        return
    render(dot, output)
    click.echo(f"wrote {output}", err=True)


@click.command("plot")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", default=None,
              help="Image file (.png, .svg, .pdf). Default: curves.png in the (first) run "
                   "directory, or <log name>.png beside a log file.")
@click.option("--csv", "csv_out", default=None, metavar="FILE",
              help="Write the parsed table as CSV instead ('-' for stdout); needs no "
                   "matplotlib.")
@click.option("--title", default=None, help="Figure title.")
@_errors
def plot_cmd(sources, output, csv_out, title):
    """Learning curves from run directories, metrics.jsonl files or Caffe glog logs.

    \b
    caffeish plot runs/lenet/ -o curves.png
    caffeish plot caffe_train.log -o curves.svg
    caffeish plot runs/lenet runs/lenet-2 -o compare.png
    caffeish plot caffe_train.log --csv table.csv
    """
    from pathlib import Path

    from ..tools.logparse import load_curves, to_csv
    from ..tools.plot import plot_curves
    curves = [load_curves(s) for s in sources]
    if csv_out:
        text = to_csv(curves)
        if csv_out == "-":
            click.echo(text, nl=False)
        else:
            Path(csv_out).write_text(text)
            click.echo(f"wrote {csv_out}", err=True)
        return
    if output is None:
        first = Path(sources[0])
        output = first / "curves.png" if first.is_dir() else first.with_suffix(".png")
    plot_curves(curves, output, title)
    click.echo(f"wrote {output}", err=True)


@click.command("doctor")
@click.argument("config", type=click.Path(dir_okay=False))
@set_option
@click.option("--max-records", default=200_000, show_default=True, type=int,
              help="Records read per data source for the label checks.")
@click.option("-v", "--verbose", is_flag=True, help="Also say which checks were skipped.")
def doctor_cmd(config, overrides, max_records, verbose):
    """Find common mistakes in a solver or net; exit 1 when it finds any.

    Each problem has an ID, the file:line and a fix: D001 lr_policy fields, D002 learning rate
    overflow, D003 test set coverage, D004 mean file shape, D005 crop size, D006 label range,
    D007 layers reaching no loss, D008 BatchNorm lr_mult (D000: the config does not load).

    \b
    caffeish doctor configs/mnist/lenet_solver.yaml
    caffeish doctor my_net.yaml -v
    """
    from ..tools.doctor import diagnose
    rep = diagnose(config, overrides, max_records)
    text = rep.format(verbose)
    if text:
        click.echo(text)
    sys.exit(1 if rep.findings else 0)


@click.command("sweep")
@click.option("--solver", required=True, type=click.Path(dir_okay=False), help="Solver YAML.")
@click.option("--set", "sets", multiple=True, required=True, metavar="KEY=V1,V2,...",
              help="One grid axis (comma-separated values) or a fixed override. Repeatable.")
@click.option("--iters", default=None, type=int, help="max_iter for every run.")
@click.option("--jobs", default=1, show_default=True, type=int,
              help="Runs at once (each in its own process).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of the run directories (default: runs/sweep-<solver>-<time>).")
@click.option("--sort", "sort_by", default=None, metavar="OUTPUT",
              help="Test output to rank by (default: the first one, e.g. accuracy).")
@click.option("--ascending/--descending", default=None,
              help="Sort order (default: ascending for names containing 'loss').")
@_state_options
@_errors
def sweep_cmd(solver, sets, iters, jobs, out_dir, sort_by, ascending, stage, level):
    """Train a grid of --set values; print the runs ranked by a test output.

    \b
    caffeish sweep --solver s.yaml --set base_lr=0.1,0.01,0.001 \\
        --set weight_decay=0,5e-4 --iters 500
    caffeish sweep --solver s.yaml --set base_lr=0.1,0.01 --jobs 2 --sort accuracy
    """
    from ..tools.sweep import run_sweep
    if jobs < 1:
        raise CaffeishError("--jobs must be at least 1")
    res = run_sweep(solver, sets, iters=iters, jobs=jobs, out_dir=out_dir, sort_by=sort_by,
                    ascending=ascending, echo=lambda s: click.echo(s, err=True),
                    stages=_stages(stage), level=level)
    click.echo(res.format())


TOOL_COMMANDS = [inspect_cmd, draw_cmd, plot_cmd, doctor_cmd, sweep_cmd]
