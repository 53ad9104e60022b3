"""Where a weights argument points: a file path, or ``zoo:NAME`` for a model zoo entry's weights."""
from __future__ import annotations

import os

from .errors import CaffeishError


def resolve_weights(spec) -> str:
    """The path of a .caffemodel: ``spec`` itself, or the zoo file behind ``zoo:NAME``.

    ``zoo:NAME`` never downloads: it names the weights shipped in the repository, fetched into
    the cache (``caffeish zoo fetch NAME``) or installed by pip; otherwise the error says how to
    get them.
    """
    spec = os.fspath(spec)
    if spec.startswith("zoo:"):
        from .zoo import resolve
        return str(resolve(spec))
    if not os.path.exists(spec):
        raise CaffeishError(f"{spec}: weights file not found")
    return spec
