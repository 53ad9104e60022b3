"""pycaffe's ``caffe.Detector``: a deploy net scoring windows of images (R-CNN style).

::

    det = caffeish.Detector("deploy.prototxt", "rcnn.caffemodel", mean=np.array([104, 117, 123]),
                            raw_scale=255, channel_swap=(2, 1, 0), context_pad=16)
    found = det.detect_windows([("cat.jpg", [(10, 20, 120, 200), (0, 0, 50, 50)])])
    found[0]["prediction"]      # the first output's values for that window

A window is ``(ymin, xmin, ymax, xmax)`` in pixels of the image. Each window is cut out of the
image (pycaffe's :func:`caffeish.io.load_image` format: H x W x K floats in [0, 1]), resized
to the net's input and run through the Transformer (transpose, channel swap, raw scale, mean,
input scale), in batches of the net's batch size.

With ``context_pad`` p the window is first grown so that, once warped to the c x c input, it has
p pixels of context on every side (by c / (c - 2p)); what of the grown box falls outside the
image becomes padding filled with the mean (in image units, so that it is 0 after the mean is
subtracted), as in R-CNN.
"""
from __future__ import annotations

import numpy as np

from .classifier import ImageNetBase
from .errors import DataError

__all__ = ["Detector"]


def _round(v) -> int:
    """numpy's rounding (halves to even), which pycaffe's Detector uses."""
    return int(np.round(v))


class Detector(ImageNetBase):
    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None, context_pad=None):
        super().__init__(model_file, pretrained_file, mean, input_scale, raw_scale,
                         channel_swap)
        self.configure_crop(context_pad)

    def configure_crop(self, context_pad):
        """Set the context padding, and the fill for the padding: the mean taken back to image
        units (H x W x K, channels unswapped, divided by the raw scale)."""
        in_ = self.inputs[0]
        n, k, h, w = self.blobs[in_].shape
        if context_pad and h != w:
            raise DataError(f"Detector: context_pad needs a square input, the net's is {h} x {w}")
        if context_pad and 2 * int(context_pad) >= w:
            raise DataError(f"Detector: context_pad {context_pad} leaves no room for the window "
                            f"in a {w} x {w} input")
        self.context_pad = int(context_pad or 0)
        self.crop_dims = (h, w, k)
        t = self.transformer
        mean = t.mean.get(in_)
        fill = np.zeros((k, 1, 1), np.float32) if mean is None else np.array(mean, np.float32)
        if in_ in t.channel_swap:
            fill = fill[list(np.argsort(t.channel_swap[in_]))]
        if in_ in t.raw_scale:
            fill = fill / np.float32(t.raw_scale[in_])
        fill = np.broadcast_to(fill, (k, h, w)) if fill.shape[1:] != (h, w) else fill
        self.crop_mean = np.ascontiguousarray(fill.transpose(1, 2, 0))

    def crop(self, im, window) -> np.ndarray:
        """The part of ``im`` (H x W x K) that window (ymin, xmin, ymax, xmax) scores: the box
        itself, or with context_pad the grown box on a mean-filled input-sized canvas."""
        from .io.pycaffe import resize_image

        y0, x0, y1, x1 = (int(v) for v in window)
        if not self.context_pad:
            return im[y0:y1, x0:x1]
        size = self.crop_dims[0]
        grow = size / (size - 2.0 * self.context_pad)
        half_h, half_w = (y1 - y0 + 1) / 2.0, (x1 - x0 + 1) / 2.0
        cy, cx = y0 + half_h, x0 + half_w
        by0, bx0 = _round(cy - grow * half_h), _round(cx - grow * half_w)
        by1, bx1 = _round(cy + grow * half_h), _round(cx + grow * half_w)
        scale_h = size / (by1 - by0 + 1.0)
        scale_w = size / (bx1 - bx0 + 1.0)
        pad_y = _round(max(0, -by0) * scale_h)
        pad_x = _round(max(0, -bx0) * scale_w)
        ih, iw = im.shape[:2]
        by0, bx0 = min(max(by0, 0), ih), min(max(bx0, 0), iw)
        by1, bx1 = min(max(by1, 0), ih), min(max(bx1, 0), iw)
        if by1 - by0 < 1 or bx1 - bx0 < 1:
            raise DataError(f"window {tuple(window)} lies outside the {ih} x {iw} image")
        crop_h = min(_round((by1 - by0 + 1) * scale_h), size - pad_y)
        crop_w = min(_round((bx1 - bx0 + 1) * scale_w), size - pad_x)
        out = np.array(self.crop_mean, np.float32)
        if crop_h > 0 and crop_w > 0:
            out[pad_y:pad_y + crop_h, pad_x:pad_x + crop_w] = resize_image(
                im[by0:by1, bx0:bx1], (crop_h, crop_w))
        return out

    def detect_windows(self, images_windows):
        """[{"window", "prediction", "filename"}] for every window of every (image file,
        windows) pair, in order; the prediction is the first output's row for the window."""
        from .io.pycaffe import load_image

        in_ = self.inputs[0]
        crops, meta = [], []
        for filename, windows in images_windows:
            image = load_image(filename).astype(np.float32)
            for window in windows:
                c = self.crop(image, window)
                if c.size == 0:
                    raise DataError(f"{filename}: window {tuple(window)} is empty")
                crops.append(self.transformer.preprocess(in_, c))
                meta.append((tuple(int(v) for v in window), filename))
        if not crops:
            return []
        out = self.forward_all(**{in_: np.stack(crops)})
        scores = out[self.outputs[0]]
        return [{"window": np.array(w), "prediction": scores[i], "filename": f}
                for i, (w, f) in enumerate(meta)]

    def detect_selective_search(self, image_fnames):
        """Caffe computes windows with the external selective_search_ijcv_with_python package
        (MATLAB-backed); compute the proposals with any tool and call detect_windows."""
        raise DataError("detect_selective_search needs external selective-search proposals; "
                        "compute (ymin, xmin, ymax, xmax) windows with any proposal tool and "
                        "call detect_windows([(image file, windows), ...])")
