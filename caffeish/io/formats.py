"""Caffe's binary files: ``.caffemodel`` (NetParameter), ``.solverstate`` (SolverState) and
``.binaryproto`` mean files (BlobProto), plus BlobProto <-> ndarray.

Writers go through ``<path>.tmp-<pid>`` and ``os.replace``, so a reader never sees half a file.
Every error is a :class:`FormatError` whose message starts with the file's path.
"""
from __future__ import annotations

import os

import numpy as np

from ..config import caffe_proto as _proto
from ..config.schema import Msg
from ..errors import FormatError
from .codec import decode, encode

__all__ = [
    "read_netparameter", "write_netparameter", "read_solverstate", "write_solverstate",
    "read_binaryproto", "write_binaryproto", "blob_to_array", "array_to_blob", "layer_blobs",
]

_LEGACY = ("num", "channels", "height", "width")

# upgrade_proto.cpp UpgradeV0LayerType: V0 type string -> V1 LayerType symbol.
_V0_TYPES = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING",
    "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT", "tanh": "TANH", "window_data": "WINDOW_DATA",
}


# --- files -------------------------------------------------------------------------------
def _read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise FormatError(f"{os.fspath(path)}: no such file") from None
    except IsADirectoryError:
        raise FormatError(f"{os.fspath(path)}: is a directory, not a file") from None
    except OSError as e:
        raise FormatError(f"{os.fspath(path)}: cannot read: {e.strerror or e}") from None


def _read_message(path, message_name: str, what: str) -> Msg:
    data = _read_bytes(path)
    if not data:
        raise FormatError(f"{os.fspath(path)}: not a {what} file: the file is empty")
    try:
        return decode(data, message_name)
    except FormatError as e:
        raise FormatError(f"{os.fspath(path)}: not a {what} file: {e}") from None


def _atomic_write(path, data: bytes) -> None:
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise FormatError(f"{path}: cannot write: {e.strerror or e}") from None


def read_netparameter(path) -> Msg:
    """A binary NetParameter (``.caffemodel``); V1 ``layers`` and V2 ``layer`` alike."""
    return _read_message(path, "NetParameter", "Caffe NetParameter")


def write_netparameter(msg: Msg, path) -> None:
    _atomic_write(path, encode(msg))


def read_solverstate(path) -> Msg:
    """A binary SolverState (``.solverstate``): iter, learned_net, history, current_step."""
    return _read_message(path, "SolverState", "Caffe SolverState")


def write_solverstate(msg: Msg, path) -> None:
    _atomic_write(path, encode(msg))


def read_binaryproto(path) -> np.ndarray:
    """A mean file (BlobProto) as a float32 array; legacy 4-D files give (1, C, H, W)."""
    blob = _read_message(path, "BlobProto", "Caffe BlobProto")
    try:
        return blob_to_array(blob)
    except FormatError as e:
        raise FormatError(f"{os.fspath(path)}: {e}") from None


def write_binaryproto(arr, path, legacy_4d: bool = True) -> None:
    _atomic_write(path, encode(array_to_blob(arr, legacy_4d=legacy_4d)))


# --- blobs -------------------------------------------------------------------------------
def blob_shape(blob: Msg) -> tuple[int, ...]:
    """The shape Caffe's Blob::FromProto gives: legacy 4-D if any of num/channels/height/width
    is set, else ``shape.dim``."""
    if any(blob.has(n) for n in _LEGACY):
        return tuple(int(getattr(blob, n)) for n in _LEGACY)
    return tuple(int(d) for d in blob.shape.dim)


def blob_to_array(blob: Msg) -> np.ndarray:
    """BlobProto -> float32 ndarray of the blob's shape (a copy you may write to).

    Like Caffe, ``double_data`` is used when present, ``data`` otherwise.
    """
    shape = blob_shape(blob)
    if blob.has("double_data"):
        flat, src = blob.double_data, "double_data"
    else:
        flat, src = blob.data, "data"
    flat = np.asarray(flat, dtype=np.float32)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if any(d < 0 for d in shape):
        raise FormatError(f"blob has a negative dimension in shape {list(shape)}")
    if flat.size != count:
        raise FormatError(f"blob shape {list(shape)} holds {count} values but {src} has "
                          f"{flat.size}")
    return flat.reshape(shape)


def array_to_blob(arr, legacy_4d: bool = False) -> Msg:
    """ndarray -> BlobProto with float32 ``data`` and ``shape.dim`` (or, with ``legacy_4d``,
    num/channels/height/width, left-padded with 1s as compute_image_mean writes them)."""
    a = np.asarray(arr, dtype=np.float32)
    blob = Msg("BlobProto")
    if legacy_4d:
        if a.ndim > 4:
            raise FormatError(f"a {a.ndim}-D array does not fit the legacy 4-D blob fields")
        dims = (1,) * (4 - a.ndim) + a.shape
        for n, d in zip(_LEGACY, dims):
            blob.set(n, int(d))
    else:
        blob.mutable("shape").set("dim", [int(d) for d in a.shape])
    blob.set("data", np.ascontiguousarray(a).ravel().copy())
    return blob


def _v1_type(layer: Msg) -> str:
    t = layer.type
    if isinstance(t, int):
        raise FormatError(f"layer {layer.name!r}: unknown V1 layer type {t}")
    return _proto.V1_TYPE_TO_V2[t]


def layer_blobs(netparam: Msg) -> list[tuple[str, str, list[np.ndarray]]]:
    """``[(layer name, V2 type string, [blob arrays])]`` for every layer of a NetParameter,
    V2 ``layer`` first, then V1 ``layers`` (V0 layers nested in V1 ones included)."""
    out = []

    def blobs_of(name, blobs):
        arrs = []
        for i, b in enumerate(blobs):
            try:
                arrs.append(blob_to_array(b))
            except FormatError as e:
                raise FormatError(f"layer {name!r} blob {i}: {e}") from None
        return arrs

    for layer in netparam.layer:
        out.append((layer.name, layer.type, blobs_of(layer.name, layer.blobs)))
    for layer in netparam.layers:
        if layer.has("layer"):  # V0 inside V1
            v0 = layer.layer
            name = layer.name if layer.has("name") else v0.name
            if layer.has("type"):
                ltype = _v1_type(layer)
            elif v0.type in _V0_TYPES:
                ltype = _proto.V1_TYPE_TO_V2[_V0_TYPES[v0.type]]
            else:
                raise FormatError(f"layer {name!r}: unknown V0 layer type {v0.type!r}")
            blobs = layer.blobs if layer.has("blobs") else v0.blobs
            out.append((name, ltype, blobs_of(name, blobs)))
        else:
            out.append((layer.name, _v1_type(layer), blobs_of(layer.name, layer.blobs)))
    return out
