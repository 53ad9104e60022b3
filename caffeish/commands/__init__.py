"""Subcommands of the ``caffeish`` CLI that live outside cli.py (cli.py adds them to the group).

- :mod:`.interop`: ``import`` (Caffe prototxt -> YAML, upgraded) and ``export`` (YAML -> prototxt).
"""
from .interop import export_cmd, import_cmd

__all__ = ["import_cmd", "export_cmd"]
