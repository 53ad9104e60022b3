"""Caffe's ``Datum`` record: the value stored under each key of a Caffe LMDB.

caffe.proto::

    message Datum {
      optional int32 channels = 1;
      optional int32 height = 2;
      optional int32 width = 3;
      optional bytes data = 4;          // uint8 pixels, C x H x W, BGR for colour images
      optional int32 label = 5;
      repeated float float_data = 6;    // used instead of data for float records
      optional bool encoded = 7 [default = false];  // data holds a JPEG/PNG file
    }

Encoding follows what Caffe's tools write, so our records are byte-identical to theirs:
fields in number order, ``float_data`` unpacked (one tag per float, proto2's default), raw
records carry channels/height/width, encoded records (``convert_imageset --encoded``) carry only
data, label and ``encoded: true``. Reading accepts packed ``float_data`` and unknown fields too.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, FormatError
from ..io.wire import FIXED32, LEN, VARINT, encode_varint, field_bytes, field_varint, iter_fields, \
    signed32, tag

_TAG_FLOAT_DATA = tag(6, FIXED32)
_ENCODED_TRUE = field_varint(7, 1)
_ENCODED_FALSE = field_varint(7, 0)


@dataclass
class Datum:
    """A decoded Datum. ``data`` holds raw uint8 pixels (C x H x W) or, when ``encoded``, a file."""

    channels: int = 0
    height: int = 0
    width: int = 0
    data: bytes = b""
    label: int = 0
    float_data: np.ndarray | None = None
    encoded: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


def encode_datum(pixels, label: int = 0, float_data=None, encoded_bytes: bytes | None = None,
                 encoded: bool | None = None) -> bytes:
    """Serialise one Datum.

    pixels: uint8 array C x H x W (or H x W, taken as one channel), or None for float-only or
    encoded records. float_data: floats written as field 6 (with ``pixels=None``, pass
    ``shape=(c, h, w)`` through a 3-D float array). encoded_bytes: a JPEG/PNG file's bytes,
    stored as ``data`` with ``encoded: true``. encoded: None writes field 7 only for encoded
    records (as ``convert_mnist_data`` does); False writes an explicit ``encoded: false`` (as
    ``convert_imageset`` does for raw records).
    """
    parts = []
    if encoded_bytes is not None:
        if pixels is not None:
            raise DataError("a Datum holds either raw pixels or an encoded image, not both")
        if float_data is not None:
            raise DataError("an encoded Datum cannot also carry float_data")
        parts.append(field_bytes(4, encoded_bytes))
        parts.append(field_varint(5, int(label)))
        parts.append(_ENCODED_TRUE if encoded is None or encoded else _ENCODED_FALSE)
        return b"".join(parts)

    shape = None
    raw = None
    if pixels is not None:
        arr = np.asarray(pixels)
        if arr.dtype != np.uint8:
            raise DataError(f"Datum pixels must be uint8, got {arr.dtype}")
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise DataError(f"Datum pixels must be C x H x W, got shape {arr.shape}")
        shape = arr.shape
        raw = np.ascontiguousarray(arr).tobytes()
    fd = None
    if float_data is not None:
        fd = np.asarray(float_data, dtype="<f4")
        if shape is None and fd.ndim == 3:
            shape = fd.shape
        fd = fd.reshape(-1)
    if shape is not None:
        c, h, w = (int(s) for s in shape)
        parts.append(field_varint(1, c) + field_varint(2, h) + field_varint(3, w))
    if raw is not None:
        parts.append(tag(4, LEN) + encode_varint(len(raw)))
        parts.append(raw)
    parts.append(field_varint(5, int(label)))
    if fd is not None and fd.size:
        # Unpacked repeated float: (tag, 4 bytes) per element, built in one numpy pass.
        rec = np.empty((fd.size, 5), np.uint8)
        rec[:, 0] = _TAG_FLOAT_DATA[0]
        rec[:, 1:] = fd.view(np.uint8).reshape(-1, 4)
        parts.append(rec.tobytes())
    if encoded is not None:
        parts.append(_ENCODED_TRUE if encoded else _ENCODED_FALSE)
    return b"".join(parts)


def decode_datum(buf) -> Datum:
    """Parse a serialised Datum (our bytes, Caffe's, or any protobuf writer's)."""
    d = Datum()
    floats = None
    try:
        for number, wt, val in iter_fields(buf):
            if number <= 3 and wt == VARINT:
                v = signed32(val)
                if number == 1:
                    d.channels = v
                elif number == 2:
                    d.height = v
                else:
                    d.width = v
            elif number == 4 and wt == LEN:
                d.data = bytes(val)
            elif number == 5 and wt == VARINT:
                d.label = signed32(val)
            elif number == 6:
                if floats is None:
                    floats = []
                if wt == FIXED32:
                    floats.append(bytes(val))
                elif wt == LEN:
                    if len(val) % 4:
                        raise FormatError(f"packed float_data of {len(val)} bytes "
                                          "is not a multiple of 4")
                    floats.append(bytes(val))
                else:
                    raise FormatError(f"float_data with wire type {wt}")
            elif number == 7 and wt == VARINT:
                d.encoded = bool(val)
            elif number <= 7:
                raise FormatError(f"Datum field {number} has unexpected wire type {wt}")
    except FormatError as e:
        raise DataError(f"not a Caffe Datum record ({len(buf)} bytes): {e}") from None
    if floats is not None:
        d.float_data = np.frombuffer(b"".join(floats), dtype="<f4").astype(np.float32)
    return d


def native_channels(mode: str, has_transparency: bool) -> int | None:
    """Channels OpenCV's unchanged decode gives a Pillow image mode: gray 1, alpha 4 (BGRA),
    colour 3; 16-bit images are read through the 8-bit colour path (3). None: undecodable."""
    if mode in ("1", "L"):
        return 1
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and has_transparency):
        return 4
    if mode in ("RGB", "P", "CMYK", "YCbCr", "LAB", "HSV") or mode.startswith("I;16"):
        return 3
    return None


def _decode_image(data: bytes, force_color: bool, force_gray: bool) -> np.ndarray:
    """JPEG/PNG bytes -> uint8 C x H x W, BGR(A) channel order like OpenCV's imdecode."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:  # Pillow raises many exception types for bad files
        raise DataError(f"cannot decode the encoded image in a Datum ({len(data)} bytes): {e}") \
            from None
    channels = 1 if force_gray else 3 if force_color else \
        native_channels(img.mode, "transparency" in img.info)
    if channels is None:
        raise DataError(f"encoded image mode {img.mode!r} (float) is not supported; Datum "
                        f"pixels are 8-bit")
    if channels == 4:
        a = np.asarray(img.convert("RGBA"), dtype=np.uint8)
        return np.ascontiguousarray(a[:, :, [2, 1, 0, 3]].transpose(2, 0, 1))
    # gray and colour: OpenCV's conversions (JPEG luma, 16-bit high byte), as convert_imageset
    from .images import decode_image
    a = decode_image(data, is_color=channels == 3)
    return a[None].copy() if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def datum_to_array(d: Datum, force_color: bool = False, force_gray: bool = False) -> np.ndarray:
    """The record's pixels as a C x H x W array: uint8 for ``data``, float32 for ``float_data``.

    Encoded records are decoded (channel order BGR, gray stays one channel unless
    ``force_color``; ``force_gray`` gives one channel). Raw records must hold exactly
    channels*height*width values.
    """
    if force_color and force_gray:
        raise DataError("force_color and force_gray cannot both be set")
    if d.encoded:
        return _decode_image(d.data, force_color, force_gray)
    c, h, w = d.channels, d.height, d.width
    if c < 0 or h < 0 or w < 0:
        raise DataError(f"Datum has a negative dimension {c} x {h} x {w}")
    n = c * h * w
    if d.data:
        if len(d.data) != n:
            raise DataError(f"Datum data holds {len(d.data)} bytes but channels x height x width "
                            f"= {c} x {h} x {w} = {n}")
        return np.frombuffer(d.data, dtype=np.uint8).reshape(c, h, w)
    if d.float_data is not None:
        if d.float_data.size != n:
            raise DataError(f"Datum float_data holds {d.float_data.size} values but channels x "
                            f"height x width = {c} x {h} x {w} = {n}")
        return d.float_data.reshape(c, h, w)
    if n:
        raise DataError(f"Datum of shape {c} x {h} x {w} holds no data and no float_data")
    return np.zeros((c, h, w), np.uint8)


def encode_image_file(path, label: int = 0) -> bytes:
    """A Datum holding a file's bytes as-is (``encoded: true``), like Caffe's ReadFileToDatum."""
    with open(path, "rb") as f:
        return encode_datum(None, label, encoded_bytes=f.read())


__all__ = ["Datum", "encode_datum", "decode_datum", "datum_to_array", "encode_image_file"]
