"""Blob: an N-D array of data and its gradient (diff), Caffe's unit of storage."""
from __future__ import annotations

import numpy as np

from .errors import ShapeError


class Blob:
    """data + diff of one shape and dtype (float32 by default), C-contiguous.

    ``data`` and ``diff`` are numpy arrays; writing into them (``blob.data[...] = x``) changes
    the blob, as in pycaffe. Assigning ``blob.data = x`` copies ``x`` in (shapes must match).
    """

    __slots__ = ("_data", "_diff", "name", "dtype")

    def __init__(self, shape=(), dtype=np.float32, name=None):
        self.dtype = np.dtype(dtype)
        self.name = name
        shape = tuple(int(s) for s in shape)
        self._check_shape(shape)
        self._data = np.zeros(shape, self.dtype)
        self._diff = None

    @staticmethod
    def _check_shape(shape):
        if any(s < 0 for s in shape):
            raise ShapeError(f"negative dimension in blob shape {shape}")

    # --- shape -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def count(self) -> int:
        return int(self._data.size)

    @property
    def num_axes(self) -> int:
        return self._data.ndim

    def count_range(self, start, end=None) -> int:
        s = self.shape[start:end]
        return int(np.prod(s)) if s else 1

    def _legacy(self, i):
        if self.num_axes > 4:
            raise ShapeError(f"blob {self.name!r} has {self.num_axes} axes; num/channels/height/"
                             f"width describe at most 4")
        return self.shape[i] if i < self.num_axes else 1  # Caffe's LegacyShape

    num = property(lambda self: self._legacy(0), doc="shape[0] of the legacy 4-D view")
    channels = property(lambda self: self._legacy(1), doc="shape[1] of the legacy 4-D view")
    height = property(lambda self: self._legacy(2), doc="shape[2] of the legacy 4-D view")
    width = property(lambda self: self._legacy(3), doc="shape[3] of the legacy 4-D view")

    def canonical_axis(self, axis: int) -> int:
        n = self.num_axes
        if not -n <= axis < max(n, 1):
            raise ShapeError(f"axis {axis} out of range for a {n}-D blob {self.shape_string}")
        return axis % n if n else 0

    @property
    def shape_string(self) -> str:
        return " ".join(str(s) for s in self.shape) + f" ({self.count})"

    def reshape(self, *shape):
        """Set the shape (``reshape((2, 3))`` or pycaffe's ``reshape(2, 3)``); contents are kept
        only when the shape is unchanged."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        shape = tuple(int(s) for s in shape)
        if shape == self._data.shape:
            return self
        self._check_shape(shape)
        self._data = np.zeros(shape, self.dtype)
        self._diff = None
        return self

    def reshape_like(self, other: "Blob"):
        return self.reshape(other.shape)

    # --- contents ------------------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value):
        value = np.asarray(value)
        if value.shape != self._data.shape:
            raise ShapeError(f"cannot assign an array of shape {value.shape} to blob "
                             f"'{self.name}' of shape {self._data.shape}")
        self._data[...] = value

    @property
    def diff(self) -> np.ndarray:
        if self._diff is None or self._diff.shape != self._data.shape:
            self._diff = np.zeros(self._data.shape, self.dtype)
        return self._diff

    @diff.setter
    def diff(self, value):
        value = np.asarray(value)
        if value.shape != self._data.shape:
            raise ShapeError(f"cannot assign an array of shape {value.shape} to the diff of "
                             f"blob '{self.name}' of shape {self._data.shape}")
        self.diff[...] = value

    def set_data_array(self, arr: np.ndarray):
        """Adopt ``arr`` (C-contiguous, right dtype) as the data without copying."""
        if arr.dtype != self.dtype or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if arr.shape != self._data.shape:
            self._diff = None
        self._data = arr

    def share_data(self, other: "Blob"):
        if other.count != self.count:
            raise ShapeError(f"cannot share data of {other.shape_string} with {self.shape_string}")
        self._data = other._data.reshape(self.shape)

    def share_diff(self, other: "Blob"):
        if other.count != self.count:
            raise ShapeError(f"cannot share diff of {other.shape_string} with {self.shape_string}")
        self._diff = other.diff.reshape(self.shape)

    def zero_diff(self):
        if self._diff is not None:
            self._diff.fill(0)

    def asum_data(self) -> float:
        return float(np.abs(self._data).sum())

    def asum_diff(self) -> float:
        return float(np.abs(self.diff).sum())

    def __repr__(self):
        return f"Blob({self.name!r}, shape={self.shape}, dtype={self.dtype})"
