"""WindowData: Caffe's R-CNN window sampler (fine-tuning a classifier on object proposals).

The ``window_data_param.source`` file lists images and, for each, candidate windows (boxes) with
their class and their overlap with the ground truth. Each batch holds ``batch_size`` windows cut
out of the images and warped to ``crop_size`` x ``crop_size``: a fraction ``fg_fraction`` of
foreground windows (overlap >= ``fg_threshold``, their own class) and the rest background
windows (overlap < ``bg_threshold``, class 0). Windows in between are dropped, as in Caffe.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backend import get_backend
from ..errors import ConfigError, DataError
from .base import register_layer
from .data import _Batch, _PrefetchingDataLayer

log = logging.getLogger("caffeish.data")

_F32 = np.float32


@dataclass(frozen=True)
class Window:
    """One window of a window file: ``image`` indexes the images, coordinates are inclusive
    pixel indices (x: column, y: row), ``line`` is the file line it came from."""
    image: int
    label: int
    overlap: float
    x1: int
    y1: int
    x2: int
    y2: int
    line: int


@dataclass(frozen=True)
class WindowImage:
    path: str
    channels: int
    height: int
    width: int
    line: int


@dataclass
class WindowFile:
    images: list
    foreground: list
    background: list
    dropped: int            # windows with bg_threshold <= overlap < fg_threshold
    label_counts: dict      # class -> number of windows kept (0: background)


def _tokens(path: Path):
    """(token, line number) for every whitespace-separated token of the file."""
    from ..data.images import read_text

    text = read_text(path, "window file")
    for lineno, line in enumerate(text.splitlines(), 1):
        for tok in line.split():
            yield tok, lineno


FORMAT_HINT = ("a window file repeats: '# image_index' (0, 1, 2, ... in order), the image path, "
               "channels, height, width, the number of windows, then one 'class overlap x1 y1 "
               "x2 y2' line per window")


def parse_window_file(path, root_folder: str = "", fg_threshold: float = 0.5,
                      bg_threshold: float = 0.5) -> WindowFile:
    """Read a Caffe window file (the format of R-CNN's ``window_file_*.txt``).

    Each image block is ``# index``, ``path``, ``channels``, ``height``, ``width``,
    ``num_windows``, then ``num_windows`` lines ``class overlap x1 y1 x2 y2``. Image paths get
    ``root_folder`` put before them (Caffe glues them: ``root_folder + path``). Windows with
    overlap >= ``fg_threshold`` are foreground (their class must be > 0); windows with
    overlap < ``bg_threshold`` are background (class and overlap set to 0); others are dropped.

    Raises DataError naming ``file:line`` for anything malformed, including what Caffe would
    silently misread: image indices out of order (Caffe looks windows' images up by that index),
    boxes with x2 < x1 or outside the declared image size, a foreground window of class 0.
    """
    path = Path(path)
    toks = _tokens(path)
    last_line = [0]

    def take(what):
        try:
            tok, line = next(toks)
        except StopIteration:
            raise DataError(f"{path}:{last_line[0]}: the file ends where {what} should be; "
                            f"{FORMAT_HINT}") from None
        last_line[0] = line
        return tok, line

    def take_number(what, kind, lo=None):
        tok, line = take(what)
        try:
            v = kind(tok)
        except ValueError:
            word = "an integer" if kind is int else "a number"
            raise DataError(f"{path}:{line}: {what} {tok!r} is not {word}; "
                            f"{FORMAT_HINT}") from None
        if kind is float and not math.isfinite(v):
            raise DataError(f"{path}:{line}: {what} is {tok}; it must be a finite number")
        if lo is not None and v < lo:
            raise DataError(f"{path}:{line}: {what} is {v}; it must be >= {lo}")
        return v

    def take_int(what, lo=None):
        return take_number(what, int, lo)

    fg_threshold, bg_threshold = _F32(fg_threshold), _F32(bg_threshold)   # Caffe compares floats
    images: list[WindowImage] = []
    fg: list[Window] = []
    bg: list[Window] = []
    dropped = 0
    counts: dict[int, int] = {0: 0}
    while True:
        try:
            tok, line = next(toks)
        except StopIteration:
            break
        last_line[0] = line
        if tok != "#":
            raise DataError(f"{path}:{line}: expected '#' to start image block {len(images)}, "
                            f"got {tok!r}; {FORMAT_HINT}")
        index = take_int("the image index")
        if index != len(images):
            raise DataError(f"{path}:{line}: image index {index}, expected {len(images)}: "
                            "windows name their image by its place in the file, so the images "
                            "must be numbered 0, 1, 2, ... in order (Caffe would cut windows "
                            "out of the wrong image)")
        img_path, img_line = take("the image path")
        channels = take_int("channels", 1)
        height = take_int("height", 1)
        width = take_int("width", 1)
        if channels not in (1, 3):
            raise DataError(f"{path}:{img_line}: image {img_path!r} has {channels} channels; "
                            "WindowData reads images as colour (3) or gray (1)")
        if images and channels != images[0].channels:
            raise DataError(f"{path}:{img_line}: image {img_path!r} has {channels} channels but "
                            f"{images[0].path!r} has {images[0].channels}; every image of a "
                            "window file needs the same number")
        images.append(WindowImage(root_folder + img_path, channels, height, width, img_line))
        n = take_int(f"the number of windows of image {index}", 0)
        for _ in range(n):
            label = take_int("the window's class", 0)
            wline = last_line[0]
            overlap = _F32(take_number("the window's overlap", float))
            x1, y1 = take_int("x1"), take_int("y1")
            x2, y2 = take_int("x2"), take_int("y2")
            if not (0 <= x1 <= x2 < width and 0 <= y1 <= y2 < height):
                raise DataError(
                    f"{path}:{wline}: window ({x1}, {y1}) - ({x2}, {y2}) of image {img_path!r} "
                    f"is not inside the image's declared {width} x {height} (x1 <= x2 < width, "
                    "y1 <= y2 < height, 0-based pixel indices)")
            if overlap >= fg_threshold:
                if label <= 0:
                    raise DataError(
                        f"{path}:{wline}: a foreground window (overlap {overlap:g} >= "
                        f"fg_threshold {fg_threshold:g}) has class {label}; class 0 is the "
                        "background, object classes are 1, 2, ...")
                fg.append(Window(index, label, float(overlap), x1, y1, x2, y2, wline))
                counts[label] = counts.get(label, 0) + 1
            elif overlap < bg_threshold:
                bg.append(Window(index, 0, 0.0, x1, y1, x2, y2, wline))
                counts[0] += 1
            else:
                dropped += 1
    if not images:
        raise DataError(f"window file {path} is empty; {FORMAT_HINT}")
    return WindowFile(images, fg, bg, dropped, dict(sorted(counts.items())))


def _cround(v) -> int:
    """C's round(): halves away from zero."""
    v = float(v)
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def warp_geometry(w: Window, img_h: int, img_w: int, crop: int, context_pad: int = 0,
                  square: bool = False, mirror: bool = False):
    """Where window ``w`` is cut from an ``img_h`` x ``img_w`` image and where it lands in the
    ``crop`` x ``crop`` output, as Caffe's WindowDataLayer computes it (in float32).

    Returns ``(x1, y1, x2, y2)`` (the inclusive region read from the image) and ``(out_h,
    out_w, pad_h, pad_w)`` (the region is resized to out_h x out_w and pasted at row pad_h,
    column pad_w; the rest of the output stays 0). With ``context_pad`` or ``square`` the box
    is first grown (to a square for ``square``) so that after warping it has ``context_pad``
    pixels of context on each side; the part outside the image is clipped and becomes zero
    padding, mirrored along with the window when ``mirror``.
    """
    x1, y1, x2, y2 = w.x1, w.y1, w.x2, w.y2
    out_h = out_w = crop
    pad_h = pad_w = 0
    if context_pad > 0 or square:
        context_scale = _F32(crop) / _F32(crop - 2 * context_pad)
        half_h = _F32((y2 - y1 + 1) / 2.0)
        half_w = _F32((x2 - x1 + 1) / 2.0)
        cx = _F32(x1) + half_w
        cy = _F32(y1) + half_h
        if square:
            half_h = half_w = max(half_h, half_w)
        x1 = _cround(cx - half_w * context_scale)
        x2 = _cround(cx + half_w * context_scale)
        y1 = _cround(cy - half_h * context_scale)
        y2 = _cround(cy + half_h * context_scale)
        unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
        pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
        pad_x2, pad_y2 = max(0, x2 - img_w + 1), max(0, y2 - img_h + 1)
        x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
        scale_x = _F32(crop) / _F32(unclipped_w)
        scale_y = _F32(crop) / _F32(unclipped_h)
        out_w = _cround(_F32(x2 - x1 + 1) * scale_x)
        out_h = _cround(_F32(y2 - y1 + 1) * scale_y)
        pad_x1, pad_x2 = _cround(_F32(pad_x1) * scale_x), _cround(_F32(pad_x2) * scale_x)
        pad_y1 = _cround(_F32(pad_y1) * scale_y)
        pad_h = pad_y1
        pad_w = pad_x2 if mirror else pad_x1
        # rounding may overshoot the output: shrink the warped region to fit
        if pad_h + out_h > crop:
            out_h = crop - pad_h
        if pad_w + out_w > crop:
            out_w = crop - pad_w
        # a sliver warped to nothing: Caffe's resize would abort; keep one row/column
        if out_h < 1:
            out_h, pad_h = 1, min(pad_h, crop - 1)
        if out_w < 1:
            out_w, pad_w = 1, min(pad_w, crop - 1)
    return (x1, y1, x2, y2), (out_h, out_w, pad_h, pad_w)


class _WindowSource:
    """Samples, cuts, warps and normalizes one batch of windows (the prefetch thread's work).

    Background windows fill the first ``batch_size - int(batch_size * fg_fraction)`` items, the
    foreground windows the rest; each is drawn uniformly with replacement, then mirrored with
    probability 1/2 when ``mirror``. ``rng`` is the only randomness, so its state is the whole
    resume state.
    """

    def __init__(self, wf: WindowFile, images_bytes, crop, context_pad, square, mirror, scale,
                 mean, mean_values, batch_size, num_fg, dtype, rng, describe, source):
        self.wf = wf
        self.images_bytes = images_bytes
        self.channels = wf.images[0].channels
        self.crop = crop
        self.context_pad = context_pad
        self.square = square
        self.mirror = mirror
        self.scale = scale
        self.mean = mean                  # C x H x W or None
        self.mean_off = (mean.shape[2] - crop) // 2 if mean is not None else 0
        self.mean_values = mean_values    # C or None
        self.batch_size = batch_size
        self.num_fg = num_fg
        self.dtype = np.dtype(dtype)
        self.rng = rng
        self.batches = 0
        self.describe = describe
        self.source = source

    def state(self) -> dict:
        return {"position": self.batches, "window_rng": self.rng.bit_generator.state}

    def restore(self, state: dict):
        self.batches = int(state["position"])
        if "window_rng" in state:
            self.rng.bit_generator.state = state["window_rng"]

    def _image(self, w: Window) -> np.ndarray:
        from ..data.images import decode_image

        info = self.wf.images[w.image]
        src = self.images_bytes[w.image] if self.images_bytes is not None else info.path
        try:
            return decode_image(src, self.channels == 3, name=info.path)
        except DataError as e:
            raise DataError(f"{self.describe}: {self.source}:{info.line}: {e}") from None

    def render(self, w: Window, flip: bool, out: np.ndarray):
        """Cut window ``w`` out of its image, warp it and write it, normalized, into ``out``
        (C x crop x crop, already zero)."""
        from ..data.images import resize_linear

        img = self._image(w)
        ih, iw = img.shape[:2]
        if self.context_pad <= 0 and not self.square and not (w.x2 < iw and w.y2 < ih):
            info = self.wf.images[w.image]
            raise DataError(
                f"{self.describe}: {self.source}:{w.line}: window ({w.x1}, {w.y1}) - "
                f"({w.x2}, {w.y2}) lies outside image {info.path!r}, which is {iw} x {ih} "
                f"(the window file says {info.width} x {info.height})")
        (x1, y1, x2, y2), (oh, ow, ph, pw) = warp_geometry(
            w, ih, iw, self.crop, self.context_pad, self.square, flip)
        if x1 > x2 or y1 > y2:
            info = self.wf.images[w.image]
            raise DataError(
                f"{self.describe}: {self.source}:{w.line}: window ({w.x1}, {w.y1}) - "
                f"({w.x2}, {w.y2}) lies outside image {info.path!r}, which is {iw} x {ih}")
        patch = resize_linear(img[y1:y2 + 1, x1:x2 + 1], oh, ow)
        if flip:
            patch = patch[:, ::-1]
        chw = patch.transpose(2, 0, 1) if patch.ndim == 3 else patch[None]
        dst = out[:, ph:ph + oh, pw:pw + ow]
        dt = out.dtype
        if self.mean is not None:
            r, c = self.mean_off + ph, self.mean_off + pw
            np.subtract(chw, self.mean[:, r:r + oh, c:c + ow], out=dst, dtype=dt,
                        casting="unsafe")
        elif self.mean_values is not None:
            np.subtract(chw, self.mean_values, out=dst, dtype=dt, casting="unsafe")
        else:
            dst[...] = chw
        if self.scale != 1.0:
            dst *= dt.type(self.scale)

    def __call__(self) -> _Batch:
        bs, crop = self.batch_size, self.crop
        data = np.zeros((bs, self.channels, crop, crop), self.dtype)
        labels = np.empty(bs, self.dtype)
        item = 0
        for windows, n in ((self.wf.background, bs - self.num_fg),
                           (self.wf.foreground, self.num_fg)):
            for _ in range(n):
                w = windows[int(self.rng.integers(0, len(windows)))]
                flip = bool(self.rng.integers(0, 2)) if self.mirror else False
                self.render(w, flip, data[item])
                labels[item] = w.label
                item += 1
        self.batches += 1
        be = get_backend()  # in GPU mode the batch goes to the device here, on this thread
        return _Batch(be.stage_batch(data), be.stage_batch(labels), self.state())


@register_layer("WindowData")
class WindowDataLayer(_PrefetchingDataLayer):
    """Batches of object-proposal windows sampled from a window file (Caffe's WindowDataLayer,
    R-CNN's fine-tuning input).

    window_data_param: ``source`` (the window file, see :func:`parse_window_file`),
    ``batch_size``, ``fg_threshold`` (0.5), ``bg_threshold`` (0.5), ``fg_fraction`` (0.25: the
    share of foreground windows in each batch; they come last), ``context_pad`` (0: pixels of
    context around the box after warping), ``crop_mode`` (``warp``: stretch the box to a square;
    ``square``: grow the box's shorter side first), ``cache_images`` (read every image file into
    memory at setup; decoded as needed), ``root_folder`` (put before each image path).

    transform_param: ``crop_size`` (required: the output side), ``mirror`` (flip half the
    windows, in both phases as in Caffe), ``mean_file`` (the centred crop_size x crop_size part
    of the mean is subtracted, shifted with the padding) or ``mean_value``, ``scale``. The
    deprecated ``scale``/``mean_file``/``crop_size``/``mirror`` of window_data_param win when
    set. (Caffe reads ``scale`` from window_data_param only and ignores transform_param's;
    caffeish honours either.)

    Tops: data (batch_size x C x crop_size x crop_size; pixels outside the warped window are 0)
    and label (batch_size; 0 for background). Images are decoded as Caffe does (BGR; C is the
    window file's channel count, 3 or 1) and warped with OpenCV's INTER_LINEAR, byte-exact.
    ``data_param.prefetch`` (default 4) batches are prepared ahead on a thread. get_state and
    set_state give an exact resume.
    """

    param_field = "window_data_param"

    def _check_params(self, tp):
        p = self.param
        if not p.source:
            raise self.config_error("window_data_param.source is not set (the window file: "
                                    "images and their candidate windows)", "source")
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.config_error(f"batch_size must be positive, got {self.batch_size}",
                                    "batch_size")
        crop = int(tp.crop_size)
        if crop <= 0:
            raise ConfigError(self._msg(
                "WindowData needs transform_param.crop_size (the side of the square windows "
                "it outputs, e.g. 227)"))
        if not 0.0 <= float(p.fg_fraction) <= 1.0:
            raise self.config_error(f"fg_fraction must be in [0, 1], got {p.fg_fraction:g}",
                                    "fg_fraction")
        if p.crop_mode not in ("warp", "square"):
            raise self.config_error(f"crop_mode {p.crop_mode!r} is not one of 'warp', 'square'",
                                    "crop_mode")
        if int(p.context_pad) * 2 >= crop:
            raise self.config_error(
                f"context_pad {p.context_pad} leaves no room for the window in a {crop} x "
                f"{crop} crop (it must be below crop_size / 2)", "context_pad")
        if float(p.bg_threshold) > float(p.fg_threshold):
            log.warning("%s: bg_threshold %g is above fg_threshold %g: windows with overlap in "
                        "between count as foreground", self.describe(), p.bg_threshold,
                        p.fg_threshold)
        return crop

    def setup(self, bottom, top):
        from ..data.transformer import DataTransformer, resolve_path

        p = self.param
        tp = self._transform_param()
        crop = self._check_params(tp)
        net_dir = self._net_dir()
        search = [net_dir] if net_dir else []
        found, tried = resolve_path(p.source, search)
        if found is None:
            raise self.data_error(f"window file {p.source!r} not found; tried "
                                  + " and ".join(str(t) for t in tried), "source")
        self.source = found
        try:
            wf = parse_window_file(found, self._root_prefix(p.root_folder, search),
                                   float(p.fg_threshold), float(p.bg_threshold))
        except DataError as e:
            raise self.data_error(str(e), "source") from None
        self.num_fg = int(_F32(self.batch_size) * _F32(p.fg_fraction))
        for name, windows, n, rule in (
                ("foreground", wf.foreground, self.num_fg, f">= fg_threshold {p.fg_threshold:g}"),
                ("background", wf.background, self.batch_size - self.num_fg,
                 f"< bg_threshold {p.bg_threshold:g}")):
            if n and not windows:
                raise self.data_error(
                    f"{found} has no {name} windows (overlap {rule}) but each batch takes {n}; "
                    "check the thresholds and fg_fraction", "source")
        self.window_file = wf
        channels = wf.images[0].channels
        try:
            self.transformer = DataTransformer(tp, self.phase, None, search_dirs=search)
        except (ConfigError, DataError) as e:
            raise type(e)(self._msg(str(e))) from None
        mean = self.transformer.mean
        if mean is not None:
            mc, mh, mw = mean.shape
            off = (mw - crop) // 2
            if mc != channels or mw < crop or off + crop > mh:
                raise self.data_error(
                    f"mean_file {self.transformer.mean_file} is {mc} x {mh} x {mw}; WindowData "
                    f"subtracts its centred {crop} x {crop} part from {channels}-channel "
                    f"windows, so it needs {channels} channels and at least {crop} x {crop}")
            mean = mean.astype(self.dtype)
        mv = self.transformer.mean_values
        if mv is not None:
            if mv.size not in (1, channels):
                raise self.config_error(f"specify either 1 mean_value or as many as channels "
                                        f"({channels}); got {mv.size}")
            mv = np.broadcast_to(mv, (channels,)).astype(self.dtype).reshape(channels, 1, 1)
        images_bytes = self._read_images(wf, found) if p.cache_images else None
        if images_bytes is None:
            self._check_images_exist(wf, found)
        self._log_summary(wf, found)
        rng = np.random.default_rng(int(self.rng.integers(0, 2**63)))
        src = _WindowSource(wf, images_bytes, crop, int(p.context_pad), p.crop_mode == "square",
                            bool(tp.mirror), float(tp.scale), mean, mv, self.batch_size,
                            self.num_fg, self.dtype, rng, self.describe(), found)
        self._item_shape = (channels, crop, crop)
        self._start_prefetch(src, self._prefetch_depth())

    def _check_images_exist(self, wf: WindowFile, found):
        missing = [f"{found}:{im.line}: {im.path}" for im in wf.images
                   if not os.path.isfile(im.path)]
        if missing:
            more = f"\n... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise self.data_error(f"{len(missing)} image(s) of the window file not found "
                                  "(set window_data_param.root_folder if the paths are "
                                  "relative):\n" + "\n".join(missing[:10]) + more, "source")

    def _read_images(self, wf: WindowFile, found) -> list:
        self._check_images_exist(wf, found)
        out = []
        for im in wf.images:
            try:
                out.append(Path(im.path).read_bytes())
            except OSError as e:
                raise self.data_error(f"{found}:{im.line}: cannot read {im.path}: "
                                      f"{e.strerror or e}") from None
        return out

    def _log_summary(self, wf: WindowFile, found):
        p = self.param
        log.info("%s: %s: %d images, %d foreground and %d background windows (%d dropped "
                 "between the thresholds); fg_threshold %g, bg_threshold %g, fg_fraction %g, "
                 "context_pad %d, crop_mode %s, cache_images %s", self.describe(), found,
                 len(wf.images), len(wf.foreground), len(wf.background), wf.dropped,
                 p.fg_threshold, p.bg_threshold, p.fg_fraction, p.context_pad, p.crop_mode,
                 bool(p.cache_images))
        log.info("%s: windows per class: %s", self.describe(),
                 ", ".join(f"{k}: {v}" for k, v in wf.label_counts.items()))

    def _seek(self, state: dict):
        self._source.restore(state)


__all__ = ["WindowDataLayer", "parse_window_file", "warp_geometry", "Window", "WindowFile"]
