"""DataTransformer: Caffe's TransformationParameter applied to whole batches with numpy.

For every image (C x H x W) Caffe computes::

    out[c, y, x'] = (in[c, h_off + y, w_off + x] - mean[c, h_off + y, w_off + x]) * scale
    x' = crop_w - 1 - x  if mirrored else x

- ``crop_size``: a crop_size x crop_size window; at TRAIN its offsets are random in
  [0, H - crop_size] and [0, W - crop_size], at TEST it is the centre ((H - crop) // 2).
- ``mirror``: each image is flipped left-right with probability 1/2 in *every* phase.
- ``mean_file``: a 1 x C x H x W ``.binaryproto`` of the *uncropped* record size; the mean is
  taken at the crop offset. ``mean_value``: one value for all channels or one per channel.
  Setting both is an error.
- ``scale`` multiplies after the mean is subtracted.

Random draws for a batch of N come from ``rng`` (a numpy Generator) in this order: N mirror
flags (``integers(0, 2, N)``, only when mirror is set), then N row offsets, then N column offsets
(``integers(0, H - crop + 1, N)`` etc., only for a random crop).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, FormatError

_DEFAULTS = {"scale": 1.0, "mirror": False, "crop_size": 0, "mean_file": "", "mean_value": [],
             "force_color": False, "force_gray": False}


def _field(param, name):
    """Read a TransformationParameter field from a Msg, a dict or None (proto default)."""
    if param is None:
        return _DEFAULTS[name]
    if isinstance(param, dict):
        return param.get(name, _DEFAULTS[name])
    return getattr(param, name)


def _is_set(param, name) -> bool:
    if param is None:
        return False
    if isinstance(param, dict):
        v = param.get(name)
        return v is not None and v != "" and v != []
    if hasattr(param, "has"):
        return param.has(name)
    v = getattr(param, name, None)
    return v is not None and v != "" and v != []


def _where(param, name):
    if param is not None and hasattr(param, "where"):
        w = param.where(name)
        return f"{w}: " if w else ""
    return ""


def resolve_path(path, search_dirs=()) -> tuple[Path | None, list[Path]]:
    """``path`` as given if absolute; else relative to the current directory, then to each of
    ``search_dirs``. Returns (the first that exists or None, every candidate tried)."""
    p = Path(path)
    if p.is_absolute():
        return (p if p.exists() else None), [p]
    tried = [Path.cwd() / p]
    for d in search_dirs:
        if d is not None:
            cand = Path(d) / p
            if cand not in tried:
                tried.append(cand)
    for cand in tried:
        if cand.exists():
            return cand, tried
    return None, tried


def load_mean_file(path) -> np.ndarray:
    """A ``.binaryproto`` mean as a float C x H x W array (BlobProto of shape 1 x C x H x W)."""
    from ..io.formats import read_binaryproto

    try:
        blob = read_binaryproto(str(path))
    except FormatError as e:
        raise DataError(f"mean_file {path}: {e}") from None
    arr = np.asarray(blob, dtype=np.float64)
    shape = arr.shape
    if arr.ndim == 4:
        if shape[0] != 1:
            raise DataError(f"mean file {path} holds {shape[0]} means (shape "
                            f"{'x'.join(map(str, shape))}); Caffe expects 1 x C x H x W")
        arr = arr[0]
    elif arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim != 3:
        raise DataError(f"mean file {path} has shape {'x'.join(map(str, shape))}; "
                        "expected 1 x C x H x W")
    return np.ascontiguousarray(arr)


class DataTransformer:
    """Caffe's DataTransformer for batches of C x H x W records.

    param: the TransformationParameter (a Msg, a dict of its fields, or None for defaults).
    phase: 'TRAIN' (random crop) or 'TEST' (centre crop). rng: numpy Generator for crops/mirror.
    search_dirs: directories where a relative ``mean_file`` is looked up after the current
    directory (the net file's directory).
    """

    def __init__(self, param=None, phase: str = "TRAIN", rng: np.random.Generator | None = None,
                 search_dirs=()):
        self.param = param
        self.phase = phase
        self.rng = rng if rng is not None else np.random.default_rng()
        self.scale = float(_field(param, "scale"))
        self.mirror = bool(_field(param, "mirror"))
        self.crop_size = int(_field(param, "crop_size"))
        self.force_color = bool(_field(param, "force_color"))
        self.force_gray = bool(_field(param, "force_gray"))
        if self.crop_size < 0:
            raise ConfigError(f"{_where(param, 'crop_size')}crop_size must be >= 0, "
                              f"got {self.crop_size}")
        if self.force_color and self.force_gray:
            raise ConfigError(f"{_where(param, 'force_gray')}force_color and force_gray cannot "
                              "both be set")
        has_mean_file = _is_set(param, "mean_file")
        mean_values = [float(v) for v in (_field(param, "mean_value") or [])]
        if has_mean_file and mean_values:
            raise ConfigError(f"{_where(param, 'mean_value')}cannot specify mean_file and "
                              "mean_value at the same time")
        self.mean_values = np.asarray(mean_values, np.float64) if mean_values else None
        self.mean = None
        self.mean_file = None
        if has_mean_file:
            name = _field(param, "mean_file")
            found, tried = resolve_path(name, search_dirs)
            if found is None:
                raise DataError(f"{_where(param, 'mean_file')}mean_file {name!r} not found; tried "
                                + ", ".join(str(t) for t in tried)
                                + " (compute one with compute_image_mean)")
            self.mean_file = found
            self.mean = load_mean_file(found)
        self._mean_cache: dict = {}

    # --- shapes --------------------------------------------------------------------------
    def check_input(self, c: int, h: int, w: int, what: str = "records"):
        """Raise DataError when records of shape c x h x w cannot be transformed."""
        if self.crop_size and (h < self.crop_size or w < self.crop_size):
            raise DataError(f"crop_size {self.crop_size} is larger than the {h} x {w} {what}")
        if self.mean is not None and self.mean.shape != (c, h, w):
            raise DataError(f"mean_file {self.mean_file} is "
                            f"{' x '.join(map(str, self.mean.shape))} but the {what} are "
                            f"{c} x {h} x {w} (the mean must have the uncropped record size)")
        if self.mean_values is not None and self.mean_values.size not in (1, c):
            raise DataError(f"specify either 1 mean_value or as many as channels ({c}); "
                            f"got {self.mean_values.size}")

    def infer_shape(self, c: int, h: int, w: int) -> tuple[int, int, int]:
        """Output shape of one record of shape c x h x w."""
        self.check_input(c, h, w)
        if self.crop_size:
            return (c, self.crop_size, self.crop_size)
        return (c, h, w)

    def _mean_for(self, c, dtype):
        """The mean as an array broadcastable against C x H x W, in ``dtype``; None if none."""
        key = (c, np.dtype(dtype).str)
        m = self._mean_cache.get(key)
        if m is None:
            if self.mean is not None:
                m = self.mean.astype(dtype)
            elif self.mean_values is not None:
                mv = self.mean_values if self.mean_values.size == c else \
                    np.full(c, self.mean_values[0])
                m = mv.astype(dtype).reshape(c, 1, 1)
            else:
                return None
            self._mean_cache[key] = m
        return m

    # --- transforms ----------------------------------------------------------------------
    def draw(self, n: int, h: int, w: int):
        """The random choices for a batch: (mirror flags or None, row offsets, column offsets)."""
        flips = self.rng.integers(0, 2, n).astype(bool) if self.mirror else None
        crop = self.crop_size
        if crop and self.phase == "TRAIN":
            hoff = self.rng.integers(0, h - crop + 1, n)
            woff = self.rng.integers(0, w - crop + 1, n)
        elif crop:
            hoff = np.full(n, (h - crop) // 2)
            woff = np.full(n, (w - crop) // 2)
        else:
            hoff = woff = np.zeros(n, np.int64)
        return flips, hoff, woff

    def transform_batch(self, x: np.ndarray, out: np.ndarray | None = None,
                        dtype=np.float32) -> np.ndarray:
        """Transform N x C x H x W records (uint8 or float) into ``out`` (N x C x h' x w')."""
        x = np.asarray(x)
        if x.ndim != 4:
            raise DataError(f"transform_batch takes N x C x H x W, got shape {x.shape}")
        n, c, h, w = x.shape
        oc, oh, ow = self.infer_shape(c, h, w)
        if out is None:
            out = np.empty((n, oc, oh, ow), dtype)
        elif out.shape != (n, oc, oh, ow):
            raise DataError(f"output array of shape {out.shape} for transformed shape "
                            f"{(n, oc, oh, ow)}")
        dtype = out.dtype
        if n == 0:
            return out
        flips, hoff, woff = self.draw(n, h, w)
        mean = self._mean_for(c, dtype)
        per_pixel_mean = self.mean is not None
        scale = dtype.type(self.scale)
        crop = self.crop_size

        if not crop or (hoff == hoff[0]).all() and (woff == woff[0]).all():
            h0, w0 = int(hoff[0]), int(woff[0])
            src = x[:, :, h0:h0 + oh, w0:w0 + ow]
            m = mean[:, h0:h0 + oh, w0:w0 + ow] if per_pixel_mean else mean
            if m is not None:
                np.subtract(src, m, out=out, dtype=dtype, casting="unsafe")
            else:
                out[...] = src
        else:
            for i in range(n):
                h0, w0 = int(hoff[i]), int(woff[i])
                src = x[i, :, h0:h0 + oh, w0:w0 + ow]
                m = mean[:, h0:h0 + oh, w0:w0 + ow] if per_pixel_mean else mean
                if m is not None:
                    np.subtract(src, m, out=out[i], dtype=dtype, casting="unsafe")
                else:
                    out[i] = src
        if self.scale != 1.0:
            out *= scale
        if flips is not None and flips.any():
            idx = np.flatnonzero(flips)
            out[idx] = out[idx, :, :, ::-1]
        return out

    def transform(self, img: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Transform one C x H x W record (draws one set of random choices)."""
        return self.transform_batch(np.asarray(img)[None], dtype=dtype)[0]

    # --- state (exact resume) --------------------------------------------------------------
    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict):
        self.rng.bit_generator.state = state
