"""Data commands: ``caffeish data inspect``, ``caffeish data fashion-mnist`` and the console
scripts ``convert_imageset``, ``compute_image_mean`` and ``extract_features``.

The console scripts take Caffe's gflags spellings as well as click's: ``-resize_height=256``,
``--resize_height 256``, ``--gray``, ``--gray=true``, ``-gray=false``, ``--nogray``. A
CaffeishError is printed as ``<prog>: error: <message>`` (no traceback; ``--debug`` shows it) and
the exit status is 2.
"""
from __future__ import annotations

import functools
import sys

import click

from ..errors import CaffeishError

__all__ = ["inspect_cmd", "fashion_mnist_cmd", "convert_imageset_main", "compute_image_mean_main",
           "extract_features_main", "GflagsCommand", "normalize_gflags"]

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def normalize_gflags(args, bool_flags, value_flags) -> list[str]:
    """Rewrite gflags-style arguments into click's: ``-name`` -> ``--name``, ``--flag=true`` ->
    ``--flag``, ``--flag=false`` / ``-noflag`` -> ``--noflag``. Unknown names pass unchanged."""
    out = []
    args = list(args)
    for i, a in enumerate(args):
        if a == "--":
            out.extend(args[i:])
            break
        if a.startswith("-") and len(a) > 2 and not a.startswith("---"):
            body = a[2:] if a.startswith("--") else a[1:]
            name, eq, val = body.partition("=")
            if name in bool_flags:
                if not eq or val.lower() in _TRUE:
                    out.append("--" + name)
                elif val.lower() in _FALSE:
                    out.append("--no" + name)
                else:
                    raise click.UsageError(f"--{name} takes true or false, got {val!r}")
                continue
            if not eq and name.startswith("no") and name[2:] in bool_flags:
                out.append("--" + name)
                continue
            if name in value_flags:
                out.append("--" + name + ("=" + val if eq else ""))
                continue
        out.append(a)
    return out


class GflagsCommand(click.Command):
    """A click command that also accepts Caffe's gflags spellings (see normalize_gflags)."""

    def parse_args(self, ctx, args):
        bools, values = set(), set()
        for p in self.params:
            if not isinstance(p, click.Option):
                continue
            for opt in p.opts:
                name = opt.lstrip("-")
                (bools if p.is_flag else values).add(name)
        return super().parse_args(ctx, normalize_gflags(args, bools, values))


def _tool_errors(prog):
    """Print CaffeishError / OSError as '<prog>: error: message' and exit 2; Ctrl-C exits 130."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, debug=False, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (CaffeishError, OSError) as e:
                if debug:
                    raise
                click.echo(f"{prog}: error: {e}", err=True)
                sys.exit(2)
            except KeyboardInterrupt:
                if debug:
                    raise
                click.echo(f"\n{prog}: interrupted; nothing was written", err=True)
                sys.exit(130)

        return click.option("--debug", is_flag=True,
                            help="Show Python tracebacks on errors.")(wrapper)

    return deco


_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# --- convert_imageset ----------------------------------------------------------------------
@click.command("convert_imageset", cls=GflagsCommand, context_settings=_CTX)
@click.argument("root_folder")
@click.argument("list_file", type=click.Path(dir_okay=False))
@click.argument("db_name", type=click.Path())
@click.option("--gray/--nogray", default=False,
              help="Read images as one gray channel (default: colour, 3 channels BGR).")
@click.option("--shuffle/--noshuffle", default=False,
              help="Shuffle the list before converting (see --seed).")
@click.option("--backend", default="lmdb", show_default=True,
              help="Database type: lmdb or leveldb (leveldb needs "
                   "pip install 'caffeish[leveldb]').")
@click.option("--resize_width", default=0, show_default=True, type=int,
              help="Width images are resized to (with --resize_height; 0 keeps the size).")
@click.option("--resize_height", default=0, show_default=True, type=int,
              help="Height images are resized to (with --resize_width; 0 keeps the size).")
@click.option("--check_size/--nocheck_size", default=False,
              help="Stop unless every image has the same size.")
@click.option("--encoded/--noencoded", default=False,
              help="Store compressed images (the file itself when no resize is needed).")
@click.option("--encode_type", default="", metavar="EXT",
              help="Compress as this format (png, jpg, ...); implies --encoded.")
@click.option("--seed", default=None, type=int,
              help="Shuffle seed (caffeish's own RNG: the order never equals Caffe's). Default: "
                   "random, printed.")
@click.option("--skip_bad/--noskip_bad", default=False,
              help="Exit 0 even when unreadable images were skipped.")
@click.option("--overwrite/--nooverwrite", default=False, help="Replace an existing DB_NAME.")
@click.option("--quiet/--noquiet", default=False,
              help="No progress or summary (skipped images are still reported).")
@click.option("--threads", default=None, type=click.IntRange(1, 64),
              help="Decoding threads (default: up to 4, when images are big enough to gain).")
@_tool_errors("convert_imageset")
def convert_imageset_main(root_folder, list_file, db_name, gray, shuffle, backend, resize_width,
                          resize_height, check_size, encoded, encode_type, seed, skip_bad,
                          overwrite, quiet, threads):
    """Convert a set of images to an LMDB (or with --backend leveldb, a LevelDB) of Caffe Datum
    records.

    ROOT_FOLDER is put before every path in LIST_FILE, whose lines are
    `relative/path label`. Keys are `%08d_<path>`; pixels are stored C x H x W in BGR order.

    \b
    convert_imageset --resize_height 256 --resize_width 256 --shuffle photos/ train.txt train_lmdb
    convert_imageset --gray --encoded --encode_type png digits/ list.txt digits_lmdb
    convert_imageset --backend leveldb photos/ train.txt train_leveldb

    Exit status: 0 when every image was written (or with --skip_bad), 1 when images were
    skipped, 2 on errors (nothing written).
    """
    from data_tools.convert_imageset import convert_imageset

    err = sys.stderr
    result = convert_imageset(
        root_folder, list_file, db_name, resize_height=resize_height, resize_width=resize_width,
        gray=gray, shuffle=shuffle, seed=seed, backend=backend, check_size=check_size,
        encoded=encoded, encode_type=encode_type, overwrite=overwrite, stream=err, quiet=quiet,
        threads=threads)
    if result.skipped or not quiet:
        click.echo(f"convert_imageset: {result.summary()}", err=True)
    if result.skipped and not skip_bad:
        click.echo("convert_imageset: exit status 1 because images were skipped "
                   "(pass --skip_bad to accept that)", err=True)
        sys.exit(1)


# --- compute_image_mean --------------------------------------------------------------------
@click.command("compute_image_mean", cls=GflagsCommand, context_settings=_CTX)
@click.argument("input_db", type=click.Path())
@click.argument("output_file", required=False, type=click.Path(dir_okay=False))
@click.option("--backend", default=None,
              help="Database type: lmdb or leveldb (default: detected from INPUT_DB; leveldb "
                   "needs pip install 'caffeish[leveldb]').")
@click.option("--npy", default=None, type=click.Path(dir_okay=False),
              help="Also save the C x H x W float32 mean as a numpy .npy file.")
@click.option("--quiet/--noquiet", default=False, help="No progress and no channel means.")
@_tool_errors("compute_image_mean")
def compute_image_mean_main(input_db, output_file, backend, npy, quiet):
    """Compute the mean image of an LMDB or a LevelDB and save it as a Caffe mean file.

    OUTPUT_FILE is a BlobProto (.binaryproto) of shape 1 x C x H x W, what
    `transform_param: {mean_file: ...}` reads. The per-channel means (BGR for colour data)
    are printed; they can go into `mean_value` instead.

    \b
    compute_image_mean train_lmdb mean.binaryproto
    compute_image_mean train_lmdb mean.binaryproto --npy mean.npy
    """
    from data_tools.compute_image_mean import compute_image_mean, report_lines

    result = compute_image_mean(input_db, output_file, npy=npy, backend=backend,
                                stream=None if quiet else sys.stderr)
    if not quiet:
        for line in report_lines(result):
            click.echo(line)
        where = [str(p) for p in (output_file, npy) if p]
        click.echo(f"mean of {result.count} records"
                   + (f" written to {' and '.join(where)}" if where else
                      " (give OUTPUT_FILE to save it)"))


# --- extract_features ----------------------------------------------------------------------
@click.command("extract_features", cls=GflagsCommand, context_settings=_CTX)
@click.argument("pretrained_net_param", type=click.Path(dir_okay=False))
@click.argument("feature_extraction_proto_file", type=click.Path(dir_okay=False))
@click.argument("blob_names")
@click.argument("db_names")
@click.argument("num_mini_batches", type=int)
@click.argument("db_type", default="lmdb", required=False)
@click.argument("mode", default="CPU", required=False,
                type=click.Choice(["CPU", "GPU"], case_sensitive=False))
@click.argument("device_id", default=0, required=False, type=int)
@click.option("--overwrite/--nooverwrite", default=False, help="Replace existing databases.")
@click.option("--stage", default="", help="Comma-separated NetState stages.")
@click.option("--level", default=0, type=int, help="NetState level.")
@_tool_errors("extract_features")
def extract_features_main(pretrained_net_param, feature_extraction_proto_file, blob_names,
                          db_names, num_mini_batches, db_type, mode, device_id, overwrite, stage,
                          level):
    """Run a trained net (TEST phase) over its data and save blobs' values in databases, with
    Caffe's arguments: weights, net, blobs, databases, batches, lmdb|leveldb, CPU|GPU, device.

    BLOB_NAMES and DB_NAMES are comma-separated, one database per blob. Each item of a blob
    becomes a Datum (float_data, the blob's C x H x W) under keys 0000000000, 0000000001, ...

    \b
    extract_features lenet_iter_10000.caffemodel lenet_train_test.yaml ip1,ip2 \\
        ip1_lmdb,ip2_lmdb 100 lmdb
    extract_features net.caffemodel features.prototxt fc7 fc7_leveldb 10 leveldb GPU 0
    """
    from data_tools.extract_features import extract_features

    from .. import backend
    from ..log import setup_logging

    setup_logging()
    if mode.upper() == "GPU":
        backend.set_mode_gpu(device_id)
    else:
        backend.set_mode_cpu()
    counts = extract_features(pretrained_net_param, feature_extraction_proto_file, blob_names,
                              db_names, num_mini_batches, db_type, overwrite=overwrite,
                              stages=[s for s in stage.split(",") if s], level=level)
    for (b, n), path in zip(counts.items(), db_names.split(",")):
        click.echo(f"{b}: {n} records written to {path.strip()}")


# --- caffeish data inspect -----------------------------------------------------------------
@click.command("inspect", context_settings=_CTX)
@click.argument("db", type=click.Path())
@click.option("--dump", nargs=2, type=(click.IntRange(min=0), click.Path(file_okay=False)),
              default=None, metavar="N OUTDIR", help="Write the first N records as PNG files.")
@click.option("--verify", is_flag=True,
              help="Decode every encoded image (finds truncated files; slow on big DBs).")
@click.option("--keys", "n_keys", default=5, show_default=True, type=click.IntRange(min=0),
              help="How many sample keys to show.")
@_tool_errors("caffeish")
def inspect_cmd(db, dump, verify, n_keys):
    """Summarise an LMDB or a LevelDB of Datum records (detected from DB): count, shapes,
    channels, raw or encoded, labels, sample keys and unreadable records. Exits 1 when some
    records cannot be read.

    \b
    caffeish data inspect train_lmdb
    caffeish data inspect train_lmdb --dump 16 peek/
    """
    from ..data.inspect import dump_images, inspect_db

    report = inspect_db(db, samples=n_keys, verify=verify)
    click.echo(report.format())
    if dump is not None:
        n, outdir = dump
        files, notes = dump_images(db, n, outdir)
        for note in notes:
            click.echo(f"note: {note}", err=True)
        click.echo(f"wrote {len(files)} PNG file(s) to {outdir}")
    if report.bad:
        sys.exit(1)


# --- caffeish data fashion-mnist -------------------------------------------------------------
@click.command("fashion-mnist", context_settings=_CTX)
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--from", "from_dir", default=None, type=click.Path(file_okay=False),
              help="Folder holding the four Fashion-MNIST IDX files (plain or .gz). Default: "
                   "/usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist).")
@click.option("--overwrite", is_flag=True, help="Replace existing LMDBs.")
@_tool_errors("caffeish")
def fashion_mnist_cmd(out_dir, from_dir, overwrite):
    """Fashion-MNIST -> OUT_DIR/train_lmdb, OUT_DIR/test_lmdb (Caffe Datum records, 1 x 28 x 28)
    and OUT_DIR/labels.txt (the 10 class names).

    \b
    caffeish data fashion-mnist data/fashion-mnist
    caffeish data fashion-mnist data/fashion-mnist --from ~/Downloads/fashion-mnist
    """
    from data_tools.fashion_mnist import write_fashion_mnist_lmdbs

    write_fashion_mnist_lmdbs(out_dir, from_dir=from_dir, overwrite=overwrite, echo=click.echo)
