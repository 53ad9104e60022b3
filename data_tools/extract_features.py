"""Caffe's ``extract_features`` tool: run a trained net over its data and store blobs' values.

For each of ``num_batches`` forward passes of the TEST-phase net, every item of each named blob
becomes one Datum in that blob's database: ``channels``/``height``/``width`` are the blob's
legacy 4-D shape (an N x D blob gives D x 1 x 1), ``float_data`` the item's values, and keys
count items from 0 as ten-digit decimals (``0000000000``, ``0000000001``, ...), as Caffe writes
them. The databases are built under temporary names and renamed when everything is written.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from caffeish.errors import ConfigError

log = logging.getLogger("caffeish.data")

LOG_EVERY = 1000


def _split(names: str | list, what: str) -> list[str]:
    out = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    if not out or any(not n for n in out):
        raise ConfigError(f"{what} {names!r}: give one or more names separated by commas, "
                          "without empty entries")
    return out


def extract_features(weights, model, blob_names, db_names, num_batches: int,
                     backend: str | None = "lmdb", *, overwrite: bool = False, stages=(),
                     level: int = 0, net=None) -> dict[str, int]:
    """Write ``num_batches`` batches of each blob of ``blob_names`` into the database of the same
    position in ``db_names`` (comma-separated strings or lists). Returns {blob: records written}.

    ``net``: an already built TEST net to use instead of ``model`` and ``weights``.
    """
    from caffeish.data.datum import encode_datum
    from caffeish.data.db import backend_name, db_writer
    from caffeish.errors import did_you_mean
    from caffeish.net import Net

    blobs = _split(blob_names, "blob names")
    dbs = _split(db_names, "database names")
    if len(blobs) != len(dbs):
        raise ConfigError(f"{len(blobs)} blob name(s) ({', '.join(blobs)}) but {len(dbs)} "
                          f"database name(s) ({', '.join(dbs)}); give one database per blob, in "
                          "the same order")
    if len(set(Path(d).resolve() for d in dbs)) != len(dbs):
        raise ConfigError(f"database names {', '.join(dbs)} repeat; every blob needs its own")
    num_batches = int(num_batches)
    if num_batches < 1:
        raise ConfigError(f"num_mini_batches must be at least 1, got {num_batches}")
    backend = backend_name(backend) or "lmdb"
    # refuse existing targets (and a missing plyvel) before the net is built
    writers = [db_writer(path, backend, overwrite=overwrite) for path in dbs]

    own = net is None
    if own:
        net = Net(model, phase="TEST", stages=stages, level=level)
    try:
        if own:
            net.copy_from(weights)
        for b in blobs:
            if b not in net.blobs:
                raise ConfigError(f"net '{net.name or model}' has no blob {b!r}"
                                  f"{did_you_mean(b, net.blobs)}; its blobs are "
                                  f"{', '.join(net.blobs)}")
        counts = dict.fromkeys(blobs, 0)
        with contextlib.ExitStack() as stack:
            for w in writers:
                stack.enter_context(w)
            for _ in range(num_batches):
                net.forward()
                for b, w in zip(blobs, writers):
                    blob = net.blobs[b]
                    shape = (blob.num, blob.channels, blob.height, blob.width)
                    items = np.asarray(blob.data, np.float32).reshape(shape)
                    for item in items:
                        w.put(f"{counts[b]:010d}", encode_datum(None, float_data=item))
                        counts[b] += 1
                        if counts[b] % LOG_EVERY == 0:
                            log.info(f"Extracted features of {counts[b]} query images for "
                                     f"feature blob {b}")
            for b in blobs:
                if counts[b] % LOG_EVERY:
                    log.info(f"Extracted features of {counts[b]} query images for feature "
                             f"blob {b}")
    finally:
        if own:
            net.close()
    return counts


__all__ = ["extract_features"]
