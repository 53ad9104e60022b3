"""Caffe's binary formats: the protobuf wire codec and the files built on it."""
