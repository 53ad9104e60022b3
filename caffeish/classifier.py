"""pycaffe's ``caffe.Classifier``: a deploy net that predicts class probabilities for images.

::

    net = caffeish.Classifier("deploy.prototxt", "weights.caffemodel", image_dims=(256, 256),
                              mean=np.array([104, 117, 123]), raw_scale=255,
                              channel_swap=(2, 1, 0))
    probs = net.predict([caffeish.io.load_image("cat.jpg")])     # N x classes, 10-crop averaged

Images are pycaffe's H x W x K float arrays in [0, 1] (:func:`caffeish.io.load_image`). Each is
resized to ``image_dims`` (default: the net's input size), then cut into the ten crops of
:func:`caffeish.io.oversample` (or, with ``oversample=False``, its centre crop) of the input's
size; the Transformer (transpose to K x H x W, ``channel_swap``, ``raw_scale``, ``mean``,
``input_scale``) makes the net inputs, and the ten crops' predictions are averaged.
"""
from __future__ import annotations

import numpy as np

from .errors import DataError
from .net import Net

__all__ = ["Classifier", "ImageNetBase"]


class ImageNetBase(Net):
    """A TEST net with weights and a Transformer for its first input (transpose to K x H x W,
    then ``mean``, ``input_scale``, ``raw_scale``, ``channel_swap`` where given): what
    Classifier and Detector share."""

    def __init__(self, model_file, pretrained_file, mean=None, input_scale=None,
                 raw_scale=None, channel_swap=None):
        from .io.pycaffe import Transformer

        super().__init__(model_file, phase="TEST", weights=pretrained_file)
        if not self.inputs:
            raise DataError(f"{type(self).__name__}: net '{self.name}' has no inputs (an Input "
                            "layer or input: fields, as in a deploy net)")
        in_ = self.inputs[0]
        t = self.transformer = Transformer({in_: self.blobs[in_].shape})
        t.set_transpose(in_, (2, 0, 1))
        for value, setter in ((mean, t.set_mean), (input_scale, t.set_input_scale),
                              (raw_scale, t.set_raw_scale), (channel_swap, t.set_channel_swap)):
            if value is not None:
                setter(in_, value)


class Classifier(ImageNetBase):
    def __init__(self, model_file, pretrained_file, image_dims=None, mean=None,
                 input_scale=None, raw_scale=None, channel_swap=None):
        super().__init__(model_file, pretrained_file, mean, input_scale, raw_scale,
                         channel_swap)
        in_ = self.inputs[0]
        self.crop_dims = np.array(self.blobs[in_].shape[2:])
        self.image_dims = np.array(image_dims if image_dims is not None else self.crop_dims)
        if (self.image_dims < self.crop_dims).any():
            raise DataError(f"Classifier: image_dims {tuple(self.image_dims)} are smaller than "
                            f"the net's input {tuple(self.crop_dims)}")

    def predict(self, inputs, oversample: bool = True) -> np.ndarray:
        """Class scores (the first output) for a list of H x W x K images: N x classes."""
        from .io.pycaffe import oversample as ten_crop, resize_image

        inputs = list(inputs)
        if not inputs:
            raise DataError("Classifier.predict: no images")
        h, w = (int(d) for d in self.image_dims)
        resized = np.stack([resize_image(im, (h, w)) for im in inputs])
        ch, cw = (int(d) for d in self.crop_dims)
        if oversample:
            crops = ten_crop(resized, (ch, cw))
        else:
            y0, x0 = int(h / 2.0 - ch / 2.0), int(w / 2.0 - cw / 2.0)
            crops = resized[:, y0:y0 + ch, x0:x0 + cw]
        in_ = self.inputs[0]
        caffe_in = np.stack([self.transformer.preprocess(in_, c) for c in crops])
        out = self.forward_all(**{in_: caffe_in})
        predictions = out[self.outputs[0]]
        if oversample:
            predictions = predictions.reshape(len(predictions) // 10, 10, -1).mean(axis=1)
        return predictions
