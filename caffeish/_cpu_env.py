"""Environment choices that must be made before numpy (and so OpenBLAS) loads. Imports nothing
heavy: caffeish/__init__ runs this first."""
from __future__ import annotations

import os
import sys

# OpenBLAS picks its kernels for the CPU it finds. On AMD Zen 4 (family 25 with AVX-512) it
# takes its SkylakeX (AVX-512) SGEMM kernels, but Zen 4 runs 512-bit FMAs as two 256-bit halves
# and OpenBLAS's Haswell (AVX2) kernels are faster there: measured on one core, float32 products
# of the shapes in LeNet, CIFAR10-quick and CaffeNet ran 3-11% faster (1024^3: 99 -> 105
# GFLOP/s; CIFAR10-quick conv2 32x800x256: 85 -> 94), float64 the same, and a CIFAR10-quick
# training step 8.6% faster. Zen 5 (family 26) has full-width AVX-512 and is left alone.
_ZEN4_FAMILY = 25


def cpu_fields(path: str = "/proc/cpuinfo") -> dict:
    """vendor_id, cpu family and flags of the first processor in /proc/cpuinfo ({} elsewhere)."""
    fields: dict = {}
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("vendor_id", "cpu family", "flags"):
                    fields[key] = value.strip()
    except OSError:
        return {}
    return fields


def openblas_coretype(fields: dict) -> str | None:
    """The OpenBLAS kernel set caffeish asks for on this CPU, or None for OpenBLAS's own choice."""
    try:
        family = int(fields.get("cpu family", "-1"))
    except ValueError:
        return None
    if (fields.get("vendor_id") == "AuthenticAMD" and family == _ZEN4_FAMILY
            and "avx512f" in fields.get("flags", "").split()):
        return "Haswell"
    return None


def choose_openblas_coretype(environ=os.environ, modules=sys.modules, path="/proc/cpuinfo"):
    """Set OPENBLAS_CORETYPE for this CPU unless the user set it, or numpy (and its OpenBLAS) is
    already loaded, when it would no longer be read. Returns the value set, or None."""
    if "OPENBLAS_CORETYPE" in environ or "numpy" in modules:
        return None
    choice = openblas_coretype(cpu_fields(path))
    if choice:
        environ["OPENBLAS_CORETYPE"] = choice
    return choice
