"""Blob: an N-D array of data and its gradient (diff), Caffe's unit of storage.

Like Caffe's SyncedMemory, each of data and diff lives on the host, on the GPU, or both, and is
copied across lazily when the other side asks for it:

- ``blob.data`` / ``blob.diff`` are numpy arrays on the host (pycaffe's view). Asking for them
  brings the values back from the GPU if the GPU holds the newest copy, and marks the host copy
  as the newest (the caller may write into it).
- ``blob.dev_data`` / ``blob.dev_diff`` are the arrays of the active backend: the same numpy
  arrays in CPU mode, device arrays in GPU mode. Layers use these, so one layer body serves both
  modes; asking for them marks the device copy as the newest.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import get_backend
from .errors import AllocationError, ShapeError, is_allocation_failure, size_text

_HOST, _DEV, _BOTH = 0, 1, 2


class SyncedArray:
    """One flat buffer with a host copy and (in GPU mode) a device copy, synced lazily."""

    __slots__ = ("count", "dtype", "_host", "_dev", "_head")

    def __init__(self, count: int, dtype, host: np.ndarray | None = None):
        self.count = int(count)
        self.dtype = np.dtype(dtype)
        self._host = host if host is not None else None
        self._dev = None
        self._head = _HOST

    def host(self) -> np.ndarray:
        """The host copy, newest values, marked as the copy that may be written."""
        if self._host is None:
            self._host = np.zeros(self.count, self.dtype)
            if self._dev is not None and self._head == _DEV:
                self._dev.copy_to_host(self._host)
        elif self._head == _DEV:
            self._dev.copy_to_host(self._host)
        self._head = _HOST
        return self._host

    def host_readonly(self) -> np.ndarray:
        """The host copy, newest values, without taking ownership (the device copy stays valid)."""
        if self._head == _DEV:
            self.host()
            self._head = _BOTH
        elif self._host is None:
            self._host = np.zeros(self.count, self.dtype)
        return self._host

    def device(self, be):
        """The device copy on backend ``be``, newest values, marked as the copy that may be written."""
        if self._dev is None:
            if self._host is not None:
                self._dev = be.to_device(self._host)
            else:
                self._dev = be.zeros(self.count, self.dtype)
        elif self._head == _HOST:
            be.copy_to_device(self._host, self._dev)
        self._head = _DEV
        return self._dev

    def device_view(self, be, shape):
        """``device(be)`` seen with ``shape`` (the backend's view, kept on the device array)."""
        return be.view(self.device(be), shape)

    def drop_device(self):
        """Bring the values home and forget the device copy (used when leaving GPU mode)."""
        if self._dev is not None:
            self.host()
            self._dev = None

    @property
    def on_device(self) -> bool:
        return self._head == _DEV


class SyncedSlice:
    """``count`` values at ``offset`` of a parent SyncedArray, with SyncedArray's interface.

    The parent holds the sync state, so the slice and every other slice of the parent agree on
    where the newest values are: writing one slice on the host makes the whole parent host-newest
    (its next device read copies all of it). The solver packs the learnable parameters this way
    (``caffeish.param_buffers``) so that one kernel can update all of them."""

    __slots__ = ("parent", "offset", "count", "dtype", "_hview")

    def __init__(self, parent: SyncedArray, offset: int, count: int):
        self.parent = parent
        self.offset = int(offset)
        self.count = int(count)
        self.dtype = parent.dtype
        self._hview = None      # the host slice (the parent's host array never changes)

    def _host_slice(self, host):
        if self._hview is None or self._hview.base is not host:
            self._hview = host[self.offset:self.offset + self.count]
        return self._hview

    def host(self) -> np.ndarray:
        return self._host_slice(self.parent.host())

    def host_readonly(self) -> np.ndarray:
        return self._host_slice(self.parent.host_readonly())

    def device(self, be):
        """The device slice (the backend's span, kept on the parent's device array)."""
        return be.span(self.parent.device(be), self.offset, self.offset + self.count)

    def device_view(self, be, shape):
        return be.view(self.device(be), shape)

    def drop_device(self):
        self.parent.drop_device()

    @property
    def on_device(self) -> bool:
        return self.parent.on_device


def zero_storage(mem, be):
    """mem (SyncedArray or SyncedSlice) = 0 where its newest copy lives: on the host unless the
    device copy is the newest (no round trip to the device)."""
    if be.name == "cpu" or not mem.on_device:
        mem.host().fill(0)
    else:
        be.fill(mem.device(be), 0.0)


class Blob:
    """data + diff of one shape and dtype (float32 by default), C-contiguous.

    ``data`` and ``diff`` are numpy arrays; writing into them (``blob.data[...] = x``) changes
    the blob, as in pycaffe. Assigning ``blob.data = x`` copies ``x`` in (shapes must match).
    """

    __slots__ = ("_shape", "_count", "_dmem", "_gmem", "name", "dtype")

    def __init__(self, shape=(), dtype=np.float32, name=None):
        self.dtype = np.dtype(dtype)
        self.name = name
        shape = tuple(int(s) for s in shape)
        self._check_shape(shape)
        self._set_shape(shape)
        self._dmem = SyncedArray(self._count, self.dtype, self._zeros())
        self._gmem = None

    def _set_shape(self, shape):
        self._shape = shape
        self._count = math.prod(shape)

    def _zeros(self) -> np.ndarray:
        try:
            return np.zeros(self._count, self.dtype)
        except Exception as e:
            if not is_allocation_failure(e):
                raise
            raise AllocationError(
                f"blob '{self.name}' of shape {' x '.join(map(str, self._shape))} would take "
                f"{size_text(self._count * self.dtype.itemsize)}, more memory than can be "
                "allocated; check the sizes that make it (input shape, num_output, "
                "kernel_size, stride, batch_size)") from None

    @staticmethod
    def _check_shape(shape):
        if any(s < 0 for s in shape):
            raise ShapeError(f"negative dimension in blob shape {shape}")

    # --- shape -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self._shape

    @property
    def count(self) -> int:
        return self._count

    @property
    def num_axes(self) -> int:
        return len(self._shape)

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
        if shape == self._shape:
            return self
        self._check_shape(shape)
        self._set_shape(shape)
        self._dmem = SyncedArray(self._count, self.dtype, self._zeros())
        self._gmem = None
        return self

    def reshape_like(self, other: "Blob"):
        return self.reshape(other.shape)

    # --- contents: host (pycaffe) view ---------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        return self._dmem.host().reshape(self._shape)

    @data.setter
    def data(self, value):
        value = np.asarray(value)
        if value.shape != self._shape:
            raise ShapeError(f"cannot assign an array of shape {value.shape} to blob "
                             f"'{self.name}' of shape {self._shape}")
        self.data[...] = value

    def _diff_mem(self) -> SyncedArray:
        if self._gmem is None:
            self._gmem = SyncedArray(self._count, self.dtype)
        return self._gmem

    @property
    def diff(self) -> np.ndarray:
        return self._diff_mem().host().reshape(self._shape)

    @diff.setter
    def diff(self, value):
        value = np.asarray(value)
        if value.shape != self._shape:
            raise ShapeError(f"cannot assign an array of shape {value.shape} to the diff of "
                             f"blob '{self.name}' of shape {self._shape}")
        self.diff[...] = value

    def data_readonly(self) -> np.ndarray:
        """The host values without taking them off the device (for display and snapshots)."""
        return self._dmem.host_readonly().reshape(self._shape)

    def diff_readonly(self) -> np.ndarray:
        return self._diff_mem().host_readonly().reshape(self._shape)

    # --- contents: the active backend's arrays (what layers use) -----------------------------
    @property
    def dev_data(self):
        be = get_backend()
        if be.name == "cpu":
            return self._dmem.host().reshape(self._shape)
        return self._dmem.device_view(be, self._shape)

    @property
    def dev_diff(self):
        be = get_backend()
        if be.name == "cpu":
            return self._diff_mem().host().reshape(self._shape)
        return self._diff_mem().device_view(be, self._shape)

    def dev_data_as(self, *shape):
        """``dev_data`` seen with another shape (reshape's spellings; one -1 allowed). On the GPU
        the view is made once per shape and kept, as views of device arrays are slow to build."""
        return self._as(self._dmem, shape)

    def dev_diff_as(self, *shape):
        """``dev_diff`` seen with another shape, like ``dev_data_as``."""
        return self._as(self._diff_mem(), shape)

    @staticmethod
    def _as(mem, shape):
        be = get_backend()
        if be.name == "cpu":
            return mem.host().reshape(*shape)
        return be.view(mem.device(be), *shape)

    @property
    def data_on_device(self) -> bool:
        """True when the newest data lives on the GPU."""
        return self._dmem.on_device

    def to_host(self):
        """Bring data and diff home and release their device copies (``set_mode_cpu``)."""
        self._dmem.drop_device()
        if self._gmem is not None:
            self._gmem.drop_device()

    # --- sharing and adoption ------------------------------------------------------------------
    def set_data_array(self, arr: np.ndarray):
        """Adopt the host array ``arr`` (C-contiguous, right dtype) as the data without copying."""
        if arr.dtype != self.dtype or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if arr.shape != self._shape:
            self._set_shape(arr.shape)
            self._gmem = None
        self._dmem = SyncedArray(self._count, self.dtype, arr.reshape(-1))

    def share_data(self, other: "Blob"):
        """Use ``other``'s data storage (any shape of the same count), as Caffe's ShareData."""
        if other.count != self.count:
            raise ShapeError(f"cannot share data of {other.shape_string} with {self.shape_string}")
        self._dmem = other._dmem

    def share_diff(self, other: "Blob"):
        if other.count != self.count:
            raise ShapeError(f"cannot share diff of {other.shape_string} with {self.shape_string}")
        self._gmem = other._diff_mem()

    def adopt_storage(self, data, diff):
        """Use ``data`` and ``diff`` (SyncedArray or SyncedSlice of this blob's count; diff None:
        a fresh one on first use) as this blob's storage, keeping the shape; nothing is copied."""
        for mem in (data, diff):
            if mem is not None and (mem.count != self._count or mem.dtype != self.dtype):
                raise ShapeError(f"blob '{self.name}': storage of {mem.count} {mem.dtype} values "
                                 f"cannot hold {self.shape_string} {self.dtype}")
        self._dmem, self._gmem = data, diff

    @property
    def diff_storage(self):
        """The storage object behind ``diff`` (created on first use)."""
        return self._diff_mem()

    def shares_data_with(self, other: "Blob") -> bool:
        return self._dmem is other._dmem

    @property
    def data_storage(self) -> SyncedArray:
        """The storage object behind ``data``: a new one after a reallocating reshape."""
        return self._dmem

    def zero_diff(self):
        if self._gmem is not None:
            zero_storage(self._gmem, get_backend())

    def asum_data(self) -> float:
        be = get_backend()
        if be.name != "cpu" and self._dmem.on_device:
            return be.asum(self.dev_data)
        return float(np.abs(self.data_readonly()).sum())

    def asum_diff(self) -> float:
        be = get_backend()
        if be.name != "cpu" and self._diff_mem().on_device:
            return be.asum(self.dev_diff)
        return float(np.abs(self.diff_readonly()).sum())

    def __repr__(self):
        return f"Blob({self.name!r}, shape={self.shape}, dtype={self.dtype})"
