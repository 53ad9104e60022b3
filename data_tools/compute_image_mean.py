"""compute_image_mean: the per-pixel mean of every record of an LMDB or a LevelDB, as a Caffe
mean file.

    compute_image_mean [--backend lmdb|leveldb] INPUT_DB [OUTPUT_FILE] [--npy MEAN.npy]

Like Caffe's tools/compute_image_mean.cpp: every record (raw ``data``, ``float_data`` or an
encoded image, decoded with its own channel count) is summed pixel by pixel and divided by the
record count; OUTPUT_FILE receives a BlobProto of shape 1 x C x H x W in the legacy
num/channels/height/width fields (what ``transform_param.mean_file`` reads), and the per-channel
means are printed (``mean_value channel [c]: v``, BGR order for colour data). ``--npy`` also
saves the C x H x W float32 mean with numpy, as pycaffe's ``*_mean.npy`` files are.

Without ``--backend`` the backend is detected from INPUT_DB (Caffe assumes lmdb); a LevelDB
needs plyvel (``pip install 'caffeish[leveldb]'``).

Sums are exact (integers for uint8 records, float64 for float records) where Caffe adds in float32,
so for very large DBs our mean is the more accurate one; for small ones they are equal. Every
record must have the shape of the first one: another shape is an error naming its key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caffeish.errors import DataError

from .convert_imageset import Progress, check_backend

PROG = "compute_image_mean"


@dataclass
class MeanResult:
    mean: np.ndarray          # C x H x W float32
    count: int

    @property
    def channel_means(self) -> np.ndarray:
        return self.mean.astype(np.float64).mean(axis=(1, 2))


def _show(key: bytes) -> str:
    try:
        return repr(key.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(key)


def compute_mean(db, stream=None, progress_every_s: float | None = None,
                 backend=None) -> MeanResult:
    """The mean record of the LMDB or LevelDB ``db`` (raw, float or encoded Datum records);
    ``backend`` None: detected from the directory."""
    from caffeish.data.datum import datum_to_array, decode_datum
    from caffeish.data.db import open_db

    with open_db(db, backend) as reader:
        n = len(reader)
        if n == 0:
            raise DataError(f"{db} holds no records; there is no mean to compute")
        progress = Progress(n, stream, prog=PROG, every_s=progress_every_s)
        acc = None
        first_key = None
        count = 0
        for key, value in reader:
            try:
                arr = datum_to_array(decode_datum(value))
            except DataError as e:
                raise DataError(f"{db}: record {_show(key)}: {e}") from None
            if acc is None:
                first_key = key
                acc = np.zeros(arr.shape, np.uint64 if arr.dtype == np.uint8 else np.float64)
            elif arr.shape != acc.shape:
                raise DataError(
                    f"{db}: record {_show(key)} is {' x '.join(map(str, arr.shape))} but the "
                    f"first record {_show(first_key)} is {' x '.join(map(str, acc.shape))}; a mean "
                    "needs records of one size (convert with --resize_height/--resize_width)")
            if arr.dtype != np.uint8 and acc.dtype == np.uint64:
                acc = acc.astype(np.float64)
            acc += arr
            count += 1
            progress.update(count)
        progress.clear()
    mean = (acc.astype(np.float64) / count).astype(np.float32)
    return MeanResult(mean=mean, count=count)


def write_mean(result: MeanResult, output=None, npy=None) -> None:
    """Write the mean as a BlobProto (1 x C x H x W, legacy fields) and/or a C x H x W .npy."""
    from caffeish.io.formats import write_binaryproto

    if output:
        write_binaryproto(result.mean[None], os.fspath(output), legacy_4d=True)
    if npy:
        path = Path(npy)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
        try:
            np.save(tmp, result.mean)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise DataError(f"{path}: cannot write: {e.strerror or e}") from None


def compute_image_mean(db, output=None, npy=None, backend: str | None = None, stream=None,
                       progress_every_s: float | None = None) -> MeanResult:
    """compute_image_mean as a function: compute, then write ``output`` and/or ``npy``.
    ``backend``: "lmdb", "leveldb", or None to detect it from ``db``."""
    backend = check_backend(backend, default=None)
    for target in (output, npy):
        if target and os.path.isdir(target):
            raise DataError(f"{target} is a directory; give a file name for the mean")
    result = compute_mean(db, stream=stream, progress_every_s=progress_every_s, backend=backend)
    write_mean(result, output, npy)
    return result


def report_lines(result: MeanResult) -> list[str]:
    """Caffe's closing log lines: channel count and each channel's mean value."""
    lines = [f"Number of channels: {result.mean.shape[0]}"]
    for c, v in enumerate(result.channel_means):
        lines.append(f"mean_value channel [{c}]: {v:.6g}")
    return lines


__all__ = ["compute_image_mean", "compute_mean", "write_mean", "MeanResult", "report_lines"]
