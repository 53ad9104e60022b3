"""Where a weights argument points: a file path (``zoo:NAME`` arrives with the model zoo)."""
from __future__ import annotations

import os

from .errors import CaffeishError


def resolve_weights(spec: str) -> str:
    spec = os.fspath(spec)
    if spec.startswith("zoo:"):
        raise CaffeishError(f"{spec}: the model zoo is not available in this version; pass the "
                            f"path of a .caffemodel file")
    if not os.path.exists(spec):
        raise CaffeishError(f"{spec}: weights file not found")
    return spec
