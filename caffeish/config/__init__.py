"""YAML configs and the caffe.proto schema; importing this registers every message and enum."""
from . import caffe_proto  # noqa: F401  (fills schema.MESSAGES / schema.ENUMS)
