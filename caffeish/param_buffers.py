"""The solver's packed parameters: the data, the diff and each update-history set of every
learnable parameter in one flat buffer apiece, each parameter blob a slice of them (the layout of
Caffe's ``Params`` in parallel.cpp, kept there for NCCL's one all-reduce).

With them the solver clears every gradient with one fill and updates every parameter with one
``fused_update`` pass (normalise, regularise, update rule, ``w -= update``) instead of three or four
calls per parameter: on a GPU about 4 kernel launches fewer per parameter and iteration, and on
the CPU one pass over the weights instead of three. The blobs keep working as before (``.data``,
``.diff``, ``dev_data``); a blob whose storage is replaced afterwards (a reshape, ``set_data_array``)
is noticed by ``intact()`` and the solver packs again.
"""
from __future__ import annotations

import numpy as np

from .blob import SyncedArray, SyncedSlice, zero_storage

__all__ = ["ParamBuffers"]


class ParamBuffers:
    """Packed data, diff and history of ``params`` (learnable blobs of one dtype), with the
    per-parameter ``lr_mult`` and ``decay_mult`` of ``specs``."""

    def __init__(self, params, specs, histories, nets):
        """histories: one list of blobs (one per parameter) for each history set; nets: every
        net whose layers may hold views of these parameters (shared parameters)."""
        self.params = list(params)
        self.histories = [list(h) for h in histories]
        dtypes = {p.dtype for p in self.params} | {h.dtype for hs in self.histories for h in hs}
        if len(dtypes) != 1:
            raise ValueError(f"parameters of several dtypes ({sorted(map(str, dtypes))}) cannot "
                             f"share one buffer")
        self.dtype = dtypes.pop()
        counts = [p.count for p in self.params]
        self.offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        self.total = int(self.offsets[-1])
        self.lr_mult = np.array([float(s[0]) for s in specs], np.float64)
        self.decay_mult = np.array([float(s[1]) for s in specs], np.float64)

        def pack(values):
            host = np.empty(self.total, self.dtype)
            for v, lo, hi in zip(values, self.offsets[:-1], self.offsets[1:]):
                host[lo:hi] = v.reshape(-1)
            mem = SyncedArray(self.total, self.dtype, host)
            return mem, [SyncedSlice(mem, lo, hi - lo)
                         for lo, hi in zip(self.offsets[:-1], self.offsets[1:])]

        self.data, self._data_slices = pack([p.data_readonly() for p in self.params])
        self.diff, self._diff_slices = pack([p.diff_readonly() for p in self.params])
        packed_hist = [pack([h.data_readonly() for h in hs]) for hs in self.histories]
        self.history = [mem for mem, _ in packed_hist]
        self._hist_slices = [slices for _, slices in packed_hist]

        moved = {}  # id(old storage) -> new slice, for the views of shared parameters
        for p, d, g in zip(self.params, self._data_slices, self._diff_slices):
            moved[id(p.data_storage)] = d
            moved[id(p.diff_storage)] = g
            p.adopt_storage(d, g)
        for net in nets:
            for layer in net.layers:
                for b in layer.blobs:
                    d = moved.get(id(b.data_storage))
                    if d is not None:
                        b.adopt_storage(d, moved.get(id(b.diff_storage)))
        for hs, slices in zip(self.histories, self._hist_slices):
            for h, s in zip(hs, slices):
                h.adopt_storage(s, None)
        self._meta = {}

    def intact(self) -> bool:
        """Whether every blob still uses its slice (a reshape or ``set_data_array`` gives a blob
        storage of its own, which the packed update would no longer see)."""
        for p, d, g in zip(self.params, self._data_slices, self._diff_slices):
            if p.data_storage is not d or p.diff_storage is not g:
                return False
        for hs, slices in zip(self.histories, self._hist_slices):
            for h, s in zip(hs, slices):
                if h.data_storage is not s:
                    return False
        return True

    @staticmethod
    def _array(mem, be):
        return mem.host() if be.name == "cpu" else mem.device(be)

    def diff_array(self, be):
        """Every gradient, flat, on backend ``be`` (marked as written)."""
        return self._array(self.diff, be)

    def arrays(self, be):
        """(data, diff, history 1, history 2) flat on ``be``; history 2 is history 1 when the
        rule keeps one set."""
        hist = [self._array(h, be) for h in self.history]
        h1 = hist[0]
        h2 = hist[1] if len(hist) > 1 else h1
        return self._array(self.data, be), self._array(self.diff, be), h1, h2

    def meta(self, be):
        """(chunks, lr_mult, decay_mult) on ``be``: chunks are int64 rows (start, stop,
        parameter) of at most ``be.FUSED_CHUNK`` elements, never across two parameters."""
        key = (be.name, be.current_device() if hasattr(be, "current_device") else 0)
        hit = self._meta.get(key)
        if hit is None:
            step = int(be.FUSED_CHUNK)
            rows = [(lo, min(lo + step, hi), s)
                    for s, (lo, hi) in enumerate(zip(self.offsets[:-1], self.offsets[1:]))
                    for lo in range(int(lo), int(hi), step)]
            chunks = np.array(rows, np.int64).reshape(-1, 3)
            hit = self._meta[key] = (be.to_device(chunks), be.to_device(self.lr_mult),
                                     be.to_device(self.decay_mult))
        return hit

    def clear_diffs(self, be):
        """Every gradient = 0, where the newest copy lives (no round trip to the device)."""
        zero_storage(self.diff, be)
