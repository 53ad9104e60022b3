"""Copy weights between nets and .caffemodel files, by layer name (Caffe's semantics)."""
from __future__ import annotations

import os

import numpy as np

from .config.schema import Msg
from .errors import ShapeError
from .log import logger


def _legacy_equal(want, got):
    """Caffe's ShapeEquals: a legacy 4-D (num, channels, height, width) blob matches an N-D one
    when the N-D shape, left-padded with ones to 4-D, is the same."""
    if tuple(want) == tuple(got):
        return True
    if len(got) == 4 and len(want) <= 4:
        return tuple([1] * (4 - len(want)) + list(want)) == tuple(got)
    return False


def copy_weights(net, source, log=True, hdf5: bool | None = None) -> dict:
    """Copy blobs from ``source`` (a path or a NetParameter Msg) into ``net``'s same-named layers.
    A path ending in .h5 is read as Caffe's HDF5 weights (io/hdf5_snapshot.py); ``hdf5``
    True/False says which a path is whatever its ending.

    Returns {'copied': [...], 'skipped': [...], 'not_in_file': [...]}: layers whose weights were
    copied, layers of the file absent from the net, and the net's parametrised layers that the
    file did not have (left at their fillers).
    """
    from .io.formats import layer_blobs, read_netparameter
    from .io.hdf5_snapshot import is_hdf5, read_net_hdf5
    from .zoo_paths import resolve_weights
    if not isinstance(source, Msg):
        source = resolve_weights(os.fspath(source))
    label = source if not isinstance(source, Msg) else "<NetParameter>"
    if isinstance(source, Msg):
        entries = layer_blobs(source)
    elif is_hdf5(source) if hdf5 is None else hdf5:
        entries = read_net_hdf5(source)
    else:
        entries = layer_blobs(read_netparameter(source))
    copied, skipped, problems = [], [], []
    plan = []
    for name, typ, arrays in entries:
        layer = net.layer_dict.get(name)
        if layer is None:
            skipped.append(name)
            continue
        if not arrays:
            continue
        if len(arrays) != len(layer.blobs):
            problems.append(f"layer '{name}' ({layer.type}) has {len(arrays)} blob(s) in the file "
                            f"but {len(layer.blobs)} in the net")
            continue
        bad = [f"layer '{name}' ({layer.type}) blob {j}: the file has shape {tuple(arr.shape)} "
               f"but the net expects {tuple(blob.shape)}"
               for j, (arr, blob) in enumerate(zip(arrays, layer.blobs))
               if not _legacy_equal(blob.shape, arr.shape)]
        problems.extend(bad)
        if not bad:
            plan.append((name, arrays, layer))
    if problems:
        first = problems[0] if len(problems) == 1 else \
            f"{len(problems)} parameter blobs do not fit the net:\n  " + "\n  ".join(problems)
        raise ShapeError(f"{label}: {first}. These layers are configured differently from the "
                         f"ones the weights were trained with; rename a layer in your net to "
                         f"re-initialise it instead of copying")
    for name, arrays, layer in plan:
        for arr, blob in zip(arrays, layer.blobs):
            blob.data[...] = arr.reshape(blob.shape)
        copied.append(name)
    not_in_file = [n for n, layer in net.layer_dict.items()
                   if layer.blobs and n not in copied]
    if log:
        logger.info(f"Copied weights from {label}: {len(copied)} layer(s) copied"
                    f"{' (' + ', '.join(copied) + ')' if copied else ''}; "
                    f"{len(skipped)} in the file but not in the net"
                    f"{' (' + ', '.join(skipped) + ')' if skipped else ''}; "
                    f"{len(not_in_file)} left at their fillers"
                    f"{' (' + ', '.join(not_in_file) + ')' if not_in_file else ''}")
    return {"copied": copied, "skipped": skipped, "not_in_file": not_in_file}


def net_to_proto(net, with_diff=False) -> Msg:
    """A NetParameter holding every layer's definition and its blobs (Caffe's Net::ToProto)."""
    from .io.formats import array_to_blob
    out = Msg("NetParameter")
    if net.name:
        out.set("name", net.name)
    for layer in net.layers:
        lp = layer.layer_param.copy()
        blobs = []
        for b in layer.blobs:
            bp = array_to_blob(np.asarray(b.data_readonly(), np.float32))
            if with_diff:
                bp.set("diff", np.asarray(b.diff_readonly(), np.float32).ravel())
            blobs.append(bp)
        if blobs:
            lp.set("blobs", blobs)
        lp.set("phase", net.phase)
        out.add("layer", lp)
    return out


def save_caffemodel(net, path, with_diff=False):
    from .io.formats import write_netparameter
    write_netparameter(net_to_proto(net, with_diff=with_diff), path)
