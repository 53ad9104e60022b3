"""Caffe's binary formats (the protobuf wire codec and the files built on it), and pycaffe's
``caffe.io`` helpers (:mod:`caffeish.io.pycaffe`): load_image, resize_image, oversample,
Transformer, and arrays <-> BlobProto / Datum."""
from .pycaffe import (Transformer, array_to_blobproto, array_to_datum,  # noqa: F401
                      blobproto_to_array, datum_to_array, load_image, oversample, resize_image)
