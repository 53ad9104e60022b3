"""Weight fillers with Caffe's semantics (FillerParameter)."""
from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError, did_you_mean


def _fans(shape):
    count = int(np.prod(shape)) if shape else 1
    fan_in = count // shape[0] if len(shape) >= 1 and shape[0] else count
    fan_out = count // shape[1] if len(shape) >= 2 and shape[1] else count
    return fan_in, fan_out


def _norm_n(shape, variance_norm):
    fan_in, fan_out = _fans(shape)
    if variance_norm == "FAN_OUT":
        return fan_out
    if variance_norm == "AVERAGE":
        return (fan_in + fan_out) / 2.0
    return fan_in


def _constant(a, fp, rng):
    a.fill(fp.value)


def _uniform(a, fp, rng):
    a[...] = rng.uniform(fp.min, fp.max, a.shape)


def _gaussian(a, fp, rng):
    a[...] = rng.normal(fp.mean, fp.std, a.shape)
    if fp.sparse >= 0:
        if a.ndim < 1 or a.shape[0] == 0:
            raise ConfigError("gaussian filler with sparse needs a blob with at least one axis")
        p = fp.sparse / float(a.shape[0])
        a *= rng.random(a.shape) < p


def _positive_unitball(a, fp, rng):
    a[...] = rng.random(a.shape)
    rows = a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, -1)
    rows /= rows.sum(axis=1, keepdims=True)


def _xavier(a, fp, rng):
    scale = math.sqrt(3.0 / _norm_n(a.shape, fp.variance_norm))
    a[...] = rng.uniform(-scale, scale, a.shape)


def _msra(a, fp, rng):
    std = math.sqrt(2.0 / _norm_n(a.shape, fp.variance_norm))
    a[...] = rng.normal(0.0, std, a.shape)


def _bilinear(a, fp, rng):
    if a.ndim != 4 or a.shape[2] != a.shape[3]:
        raise ConfigError(f"bilinear filler needs a 4-D blob with square kernels, got shape {a.shape}")
    k = a.shape[3]
    f = math.ceil(k / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    x = np.arange(k)
    w1 = 1 - np.abs(x / f - c)
    a[...] = np.outer(w1, w1)[None, None]


FILLERS = {
    "constant": _constant,
    "uniform": _uniform,
    "gaussian": _gaussian,
    "positive_unitball": _positive_unitball,
    "xavier": _xavier,
    "msra": _msra,
    "bilinear": _bilinear,
}


def fill(array: np.ndarray, filler, rng: np.random.Generator):
    """Fill ``array`` in place following the FillerParameter message ``filler``."""
    fn = FILLERS.get(filler.type)
    if fn is None:
        where = filler.where("type")
        raise ConfigError(f"{where + ': ' if where else ''}unknown filler type {filler.type!r}"
                          f"{did_you_mean(filler.type, FILLERS)}; known: {', '.join(FILLERS)}")
    fn(array, filler, rng)
    return array
