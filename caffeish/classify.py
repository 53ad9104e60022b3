"""Classify images with a deploy net: decode (Pillow), preprocess as the model was trained, top-k.

Preprocessing, in this order (Caffe's python/classify.py and DataTransformer)::

    img   = decode(file) as RGB (or gray for channel_order GRAY), uint8 H x W x C
    img   = resize(img, resize)              # bilinear; skipped when resize is not given
    img   = centre_crop(img, crop)           # offsets (H - h) // 2, (W - w) // 2
    x     = float(img)[..., ::-1] if BGR     # Caffe nets see BGR
    x[c]  = (x[c] - mean[c]) * scale         # pixels in 0..255; mean in the net's channel order

Without ``resize`` and ``crop`` the image is resized to the net's input size. The settings come
from a zoo entry's ``transform:`` block (``models_zoo/<name>/zoo.yaml``), overridden per field by
the command line.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError

__all__ = ["Transform", "load_image", "preprocess", "top_k", "classify_images", "Prediction"]

CHANNEL_ORDERS = ("BGR", "RGB", "GRAY")


def _pair(value, what, where):
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        value = [int(value), int(value)]
    if isinstance(value, str):
        value = [v for v in value.replace("x", ",").split(",") if v.strip()]
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}{what} must be one size or [height, width], got "
                          f"{value!r}") from None
    if len(out) == 1:
        out = (out[0], out[0])
    if len(out) != 2 or min(out) <= 0:
        raise ConfigError(f"{where}{what} must be one positive size or [height, width], got "
                          f"{value!r}")
    return out


@dataclass
class Transform:
    """How an image becomes the net's input (see the module docstring)."""

    channel_order: str = "BGR"
    resize: tuple[int, int] | None = None   # (height, width)
    crop: tuple[int, int] | None = None     # (height, width), centred
    mean: tuple[float, ...] | None = None   # one value, or one per channel in net order
    scale: float = 1.0
    input: str | None = None                # the net's input blob (default: its only input)

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "") -> "Transform":
        d = dict(d or {})
        prefix = f"{where}: transform: " if where else ""
        known = {"channel_order", "resize", "crop", "mean", "scale", "input"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{prefix}unknown key(s) {', '.join(unknown)} (known: "
                              f"{', '.join(sorted(known))})")
        t = cls()
        return t.updated(d, prefix)

    def updated(self, d: dict, prefix: str = "") -> "Transform":
        """A copy with the non-None values of ``d`` replacing this transform's fields."""
        kw = asdict(self)
        for k, v in d.items():
            if v is None:
                continue
            if k == "channel_order":
                v = str(v).upper()
                if v not in CHANNEL_ORDERS:
                    raise ConfigError(f"{prefix}channel_order must be one of "
                                      f"{', '.join(CHANNEL_ORDERS)}, got {v!r}")
            elif k in ("resize", "crop"):
                v = _pair(v, k, prefix)
            elif k == "mean":
                if isinstance(v, str):
                    v = [x for x in v.split(",") if x.strip()]
                if isinstance(v, (int, float)):
                    v = [v]
                try:
                    v = tuple(float(x) for x in v)
                except (TypeError, ValueError):
                    raise ConfigError(f"{prefix}mean must be numbers, got {v!r}") from None
            elif k == "scale":
                v = float(v)
            kw[k] = v
        out = Transform(**kw)
        channels = 1 if out.channel_order == "GRAY" else 3
        if out.mean is not None and len(out.mean) not in (1, channels):
            raise ConfigError(f"{prefix}mean has {len(out.mean)} values; give 1 or {channels} "
                              f"(one per channel, {out.channel_order} order)")
        return out

    @property
    def channels(self) -> int:
        return 1 if self.channel_order == "GRAY" else 3

    def describe(self) -> str:
        parts = []
        if self.resize:
            parts.append(f"resize {self.resize[0]}x{self.resize[1]}")
        if self.crop:
            parts.append(f"centre crop {self.crop[0]}x{self.crop[1]}")
        if not self.resize and not self.crop:
            parts.append("resize to the net's input")
        parts.append(self.channel_order)
        if self.mean:
            parts.append("mean " + "/".join(f"{m:g}" for m in self.mean))
        if self.scale != 1.0:
            parts.append(f"scale {self.scale:g}")
        return ", ".join(parts)


def load_image(path, channel_order: str = "BGR"):
    """A Pillow image in mode 'RGB' (or 'L' for GRAY); decoding errors are DataErrors."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("L" if channel_order == "GRAY" else "RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode the image: {e}") from None


def preprocess(image, transform: Transform, input_hw: tuple[int, int]) -> np.ndarray:
    """A Pillow image (or an H x W [x C] uint8 array) -> C x H x W float32 net input."""
    from PIL import Image
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, np.uint8))
    mode = "L" if transform.channel_order == "GRAY" else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    if transform.resize:
        h, w = transform.resize
        image = image.resize((w, h), Image.BILINEAR)
    elif not transform.crop and (image.height, image.width) != tuple(input_hw):
        image = image.resize((input_hw[1], input_hw[0]), Image.BILINEAR)
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    if transform.crop:
        ch, cw = transform.crop
        H, W = x.shape[:2]
        if ch > H or cw > W:
            raise DataError(f"crop {ch}x{cw} is larger than the (resized) image {H}x{W}")
        y0, x0 = (H - ch) // 2, (W - cw) // 2
        x = x[y0:y0 + ch, x0:x0 + cw]
    if transform.channel_order == "BGR":
        x = x[:, :, ::-1]
    x = np.ascontiguousarray(x.transpose(2, 0, 1))
    if transform.mean is not None:
        x -= np.asarray(transform.mean, np.float32).reshape(-1, 1, 1)
    if transform.scale != 1.0:
        x *= np.float32(transform.scale)
    return x


def top_k(scores, k: int) -> list[int]:
    """Indices of the k largest scores, largest first (ties: lower index first)."""
    s = np.asarray(scores, np.float64).ravel()
    return [int(i) for i in np.argsort(-s, kind="stable")[:max(k, 0)]]


@dataclass
class Prediction:
    image: str
    top: list[tuple[int, str | None, float]]  # (class index, label, score)

    def as_dict(self) -> dict:
        return {"image": self.image,
                "top_k": [{"rank": r + 1, "index": i, "label": lab, "score": s}
                          for r, (i, lab, s) in enumerate(self.top)]}


def _input_name(net, transform):
    if transform.input:
        if transform.input not in net.blobs:
            raise ConfigError(f"the net has no input blob '{transform.input}'; its inputs are "
                              f"{net.inputs}")
        return transform.input
    if len(net.inputs) != 1:
        raise ConfigError(f"the net has {len(net.inputs)} inputs ({', '.join(net.inputs)}); "
                          f"say which one takes the images (--input / transform.input)")
    return net.inputs[0]


def _output_name(net, output):
    if output:
        if output not in net.blobs:
            from .errors import did_you_mean
            raise ConfigError(f"the net has no blob '{output}'{did_you_mean(output, net.blobs)}; "
                              f"its outputs are {net.outputs}")
        return output
    if len(net.outputs) != 1:
        raise ConfigError(f"the net has {len(net.outputs)} outputs ({', '.join(net.outputs)}); "
                          f"say which one to rank (--output)")
    return net.outputs[0]


def classify_images(net, images, transform: Transform, labels=None, k: int = 5,
                    output: str | None = None, batch_size: int = 8) -> list[Prediction]:
    """Run ``net`` on image files (or Pillow images / arrays) and return their top-k classes."""
    in_name = _input_name(net, transform)
    out_name = _output_name(net, output)
    shape = net.blobs[in_name].shape
    if len(shape) != 4:
        raise ConfigError(f"input blob '{in_name}' has shape {shape}; classify needs "
                          f"N x C x H x W")
    if shape[1] != transform.channels:
        raise ConfigError(f"input blob '{in_name}' has {shape[1]} channel(s) but channel_order "
                          f"{transform.channel_order} gives {transform.channels}")
    input_hw = transform.crop or transform.resize or (shape[2], shape[3])
    results = []
    items = list(images)
    for start in range(0, len(items), max(batch_size, 1)):
        chunk = items[start:start + max(batch_size, 1)]
        xs, names = [], []
        for item in chunk:
            if isinstance(item, (str, Path)):
                img, name = load_image(item, transform.channel_order), str(item)
            else:
                img, name = item, f"<image {start + len(names)}>"
            xs.append(preprocess(img, transform, input_hw))
            names.append(name)
        batch = np.stack(xs).astype(net.dtype, copy=False)
        out = net.forward(blobs=[out_name], **{in_name: batch})
        scores = np.asarray(out[out_name], np.float64).reshape(len(xs), -1)
        if labels is not None and len(labels) != scores.shape[1]:
            raise ConfigError(f"{len(labels)} labels for the {scores.shape[1]} values of output "
                              f"'{out_name}'")
        for name, s in zip(names, scores):
            idx = top_k(s, k)
            results.append(Prediction(name, [(i, labels[i] if labels else None, float(s[i]))
                                             for i in idx]))
    return results
