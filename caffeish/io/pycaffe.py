"""pycaffe's ``caffe.io``: images as float arrays, resizing, 10-crop oversampling, the
Transformer that turns them into net inputs, and conversions between arrays, BlobProtos and
Datums. ``caffeish.io`` exports all of it, so pycaffe scripts change ``caffe`` to ``caffeish``.

Images here are pycaffe's: H x W x K float32, RGB, values in [0, 1] from :func:`load_image`.
A Transformer for a Caffe model trained on BGR 0..255 pixels is set up as in pycaffe::

    t = caffeish.io.Transformer({"data": net.blobs["data"].data.shape})
    t.set_transpose("data", (2, 0, 1))      # H x W x K -> K x H x W
    t.set_channel_swap("data", (2, 1, 0))   # RGB -> BGR
    t.set_raw_scale("data", 255)            # [0, 1] -> [0, 255]
    t.set_mean("data", np.array([104, 117, 123]))
    net.blobs["data"].data[...] = t.preprocess("data", caffeish.io.load_image("cat.jpg"))
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError

__all__ = ["load_image", "resize_image", "oversample", "Transformer", "array_to_blobproto",
           "blobproto_to_array", "array_to_datum", "datum_to_array"]

_LUMA = np.array([0.2125, 0.7154, 0.0721], np.float64)   # skimage's rgb2gray (pycaffe's gray)


def load_image(filename, color: bool = True) -> np.ndarray:
    """An image file as H x W x 3 float32 RGB in [0, 1] (``color=False``: H x W x 1 gray, the
    luminance 0.2125 R + 0.7154 G + 0.0721 B). A gray file loaded in colour is repeated into
    three channels; alpha is dropped; 16-bit files keep their precision."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(filename) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, np.float64) / 65535.0
            else:
                if im.mode not in ("L", "RGB"):
                    im = im.convert("RGB" if im.mode not in ("LA", "1") else "L")
                arr = np.asarray(im, np.float64) / 255.0
    except FileNotFoundError:
        raise DataError(f"{filename}: no such image file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{filename}: cannot decode the image: {e}") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if color:
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 3:
        arr = (arr @ _LUMA)[:, :, None]
    return arr.astype(np.float32)


def _taps(n_in: int, n_out: int, order: int):
    """Source indices and weights along one axis (half-pixel centres, edges replicated)."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    if order == 0:
        i = np.clip(np.floor(pos + 0.5), 0, n_in - 1).astype(np.intp)
        return i, i, np.zeros(n_out)
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, pos - lo


def resize_image(im, new_dims, interp_order: int = 1) -> np.ndarray:
    """Resize an H x W x K image to ``new_dims`` (height, width): bilinear (``interp_order``
    1) or nearest (0), sample centres aligned, edge pixels replicated (no anti-aliasing).
    Returns float32. (pycaffe calls scikit-image here; its ``mode='constant'`` blends the border
    with zeros when upscaling, which this does not.)"""
    im = np.asarray(im)
    if im.ndim != 3:
        raise DataError(f"resize_image takes H x W x K images, got shape {im.shape}")
    if interp_order not in (0, 1):
        raise DataError(f"interp_order {interp_order}: 0 (nearest) and 1 (bilinear) are "
                        "supported")
    h, w = (int(d) for d in new_dims)
    if h <= 0 or w <= 0:
        raise DataError(f"cannot resize to {h} x {w}")
    y0, y1, wy = _taps(im.shape[0], h, interp_order)
    x0, x1, wx = _taps(im.shape[1], w, interp_order)
    a = im.astype(np.float64)
    rows = a[y0] * (1 - wy)[:, None, None] + a[y1] * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return out.astype(np.float32)


def oversample(images, crop_dims) -> np.ndarray:
    """pycaffe's 10-crop: for each H x W x K image, the four corner crops and the centre crop,
    then the same five mirrored left-right. Returns (10 * N) x h x w x K float32."""
    images = [np.asarray(im) for im in images]
    if not images:
        raise DataError("oversample: no images")
    shape = images[0].shape
    ch, cw = (int(d) for d in crop_dims)
    if any(im.shape != shape for im in images):
        raise DataError("oversample: every image needs the same size (resize them first)")
    if ch > shape[0] or cw > shape[1]:
        raise DataError(f"oversample: crop {ch} x {cw} is larger than the images "
                        f"{shape[0]} x {shape[1]}")
    corners = [(i, j) for i in (0, shape[0] - ch) for j in (0, shape[1] - cw)]
    centre = (int(shape[0] / 2.0 - ch / 2.0), int(shape[1] / 2.0 - cw / 2.0))
    out = np.empty((10 * len(images), ch, cw, shape[2]), np.float32)
    k = 0
    for im in images:
        for i, j in corners + [centre]:
            out[k] = im[i:i + ch, j:j + cw]
            k += 1
        out[k:k + 5] = out[k - 5:k, :, ::-1]
        k += 5
    return out


class Transformer:
    """pycaffe's Transformer: per input blob, the steps from an H x W x K image to a K x H x W
    net input. ``preprocess``: resize to the blob's H x W, transpose, channel swap, raw scale,
    subtract the mean, input scale (each step only when set); ``deprocess`` undoes them.

    inputs: {input name: the blob's shape (N, K, H, W)}.
    """

    def __init__(self, inputs: dict):
        self.inputs = {k: tuple(int(d) for d in v) for k, v in inputs.items()}
        self.transpose: dict = {}
        self.channel_swap: dict = {}
        self.raw_scale: dict = {}
        self.mean: dict = {}
        self.input_scale: dict = {}

    def _check_input(self, in_):
        if in_ not in self.inputs:
            raise DataError(f"{in_!r} is not one of the Transformer's inputs "
                            f"({', '.join(self.inputs)})")

    def set_transpose(self, in_, order):
        """The axes order taking the image to the net's layout, e.g. (2, 0, 1)."""
        self._check_input(in_)
        order = tuple(int(o) for o in order)
        if len(order) != len(self.inputs[in_]) - 1:
            raise DataError(f"transpose order {order} has {len(order)} axes but input {in_!r} "
                            f"has {len(self.inputs[in_]) - 1} per item")
        self.transpose[in_] = order

    def set_channel_swap(self, in_, order):
        """The channel order after transposing, e.g. (2, 1, 0) for RGB -> BGR."""
        self._check_input(in_)
        order = tuple(int(o) for o in order)
        if len(order) != self.inputs[in_][1]:
            raise DataError(f"channel swap {order} has {len(order)} channels but input {in_!r} "
                            f"has {self.inputs[in_][1]}")
        self.channel_swap[in_] = order

    def set_raw_scale(self, in_, scale):
        """Multiply the [0, 1] image by this (255 for models trained on 0..255 pixels)."""
        self._check_input(in_)
        self.raw_scale[in_] = float(scale)

    def set_mean(self, in_, mean):
        """Subtract a per-channel mean (K values) or a mean image (K x H x W; a mean of another
        size, like ImageNet's 256 x 256 for 227 x 227 inputs, is resized to the input's)."""
        self._check_input(in_)
        mean = np.asarray(mean, np.float32)
        k, h, w = self.inputs[in_][1:]
        if mean.ndim == 1:
            if mean.shape[0] != k:
                raise DataError(f"mean has {mean.shape[0]} channels but input {in_!r} has {k}")
            mean = mean[:, None, None]
        else:
            if mean.ndim == 2:
                mean = mean[None]
            if mean.ndim != 3 or mean.shape[0] != k:
                raise DataError(f"mean of shape {mean.shape} for input {in_!r} of {k} x {h} x "
                                f"{w}: give {k} values or a {k} x H x W image")
            if mean.shape[1:] != (h, w):
                mean = resize_image(mean.transpose(1, 2, 0), (h, w)).transpose(2, 0, 1)
        self.mean[in_] = mean

    def set_input_scale(self, in_, scale):
        """Multiply by this after the mean is subtracted (e.g. 0.017 for some models)."""
        self._check_input(in_)
        self.input_scale[in_] = float(scale)

    def preprocess(self, in_, data) -> np.ndarray:
        """H x W x K image -> K x H x W float32 net input."""
        self._check_input(in_)
        x = np.asarray(data, np.float32)
        hw = self.inputs[in_][2:]
        if x.shape[:2] != hw:
            x = resize_image(x, hw)
        if in_ in self.transpose:
            x = x.transpose(self.transpose[in_])
        if in_ in self.channel_swap:
            x = x[list(self.channel_swap[in_])]
        x = np.array(x, np.float32)
        if in_ in self.raw_scale:
            x *= np.float32(self.raw_scale[in_])
        if in_ in self.mean:
            x -= self.mean[in_]
        if in_ in self.input_scale:
            x *= np.float32(self.input_scale[in_])
        return x

    def deprocess(self, in_, data) -> np.ndarray:
        """Net input (K x H x W, or 1 x K x H x W) -> H x W x K image: preprocess undone."""
        self._check_input(in_)
        x = np.array(data, np.float32).squeeze()
        if x.ndim == 2:
            x = x[None]
        if in_ in self.input_scale:
            x /= np.float32(self.input_scale[in_])
        if in_ in self.mean:
            x += self.mean[in_]
        if in_ in self.raw_scale:
            x /= np.float32(self.raw_scale[in_])
        if in_ in self.channel_swap:
            x = x[list(np.argsort(self.channel_swap[in_]))]
        if in_ in self.transpose:
            x = x.transpose(np.argsort(self.transpose[in_]))
        return x


# --- arrays <-> BlobProto / Datum -----------------------------------------------------------------
def array_to_blobproto(arr, diff=None):
    """A BlobProto message of ``arr`` (shape kept), with ``diff`` when given."""
    from .formats import array_to_blob

    arr = np.asarray(arr)
    blob = array_to_blob(arr)
    if diff is not None:
        diff = np.asarray(diff, np.float32)
        if diff.shape != arr.shape:
            raise DataError(f"diff of shape {diff.shape} for data of shape {arr.shape}")
        blob.set("diff", diff.ravel())
    return blob


def blobproto_to_array(blob, return_diff: bool = False) -> np.ndarray:
    """The data (or diff) of a BlobProto message as an array of its shape."""
    from .formats import blob_to_array

    if not return_diff:
        return blob_to_array(blob)
    data = blob_to_array(blob)
    diff = np.asarray(blob.diff, np.float32)
    if diff.size != data.size:
        raise DataError(f"the BlobProto holds {diff.size} diff values for {data.size} data "
                        "values")
    return diff.reshape(data.shape)


def array_to_datum(arr, label=None) -> bytes:
    """A serialized Datum of a C x H x W array: uint8 as pixels, anything else as float_data."""
    from ..data.datum import encode_datum

    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise DataError(f"a Datum holds C x H x W arrays, got shape {arr.shape}")
    label = 0 if label is None else int(label)
    if arr.dtype == np.uint8:
        return encode_datum(arr, label)
    return encode_datum(None, label, float_data=arr.astype(np.float32))


def datum_to_array(datum) -> np.ndarray:
    """C x H x W array of a Datum (serialized bytes or decoded): uint8 pixels, or float32 from
    float_data; encoded images are decoded."""
    from ..data.datum import datum_to_array as _to_array, decode_datum

    if isinstance(datum, (bytes, bytearray, memoryview)):
        datum = decode_datum(bytes(datum))
    return _to_array(datum)
