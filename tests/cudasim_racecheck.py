"""A data-race detector for kernels run on numba's CUDA simulator.

The simulator runs a launch's blocks one after another, so a kernel whose threads in different
blocks write the same element (a racy scatter ``out[j] += v``), or where one thread reads what
another writes with no barrier between them, gives the right answer there and a wrong,
run-to-run different one on a GPU. compute-sanitizer's racecheck looks at shared memory only;
this looks at global and shared memory, on every launch the simulated GPU tests make.

While a checked launch runs, every element access through a kernel's array arguments and its
``cuda.shared.array`` buffers is recorded with the thread that made it, its block, and how many
``syncthreads()`` barriers that thread had passed (its epoch). After the launch, two accesses to
the same address race when they come from different threads, at least one writes (an atomic
against a plain access counts; two atomics do not), and nothing orders them:

* threads of different blocks are never ordered within a launch (shared memory is per block, so
  it only races within one);
* threads of one block are ordered only by a barrier between the accesses: same epoch, race.

A race raises :class:`RaceError` naming the kernel, the argument, the element and both threads.
tests/conftest.py turns this on for every launch of a simulated test session
(``CAFFEISH_CUDASIM_RACECHECK=0`` turns it off); :func:`checking` turns it on around chosen
launches.
"""
from __future__ import annotations

import inspect
import operator
import sys
import threading
from contextlib import contextmanager
from threading import current_thread

import numpy as np

_state = threading.local()
_active = None          # the _Launch being checked, or None
_enabled = 0            # > 0: check launches
_installed = False


class RaceError(AssertionError):
    pass


class _Launch:
    def __init__(self, fn, args):
        self.fn = fn
        self.acc: dict = {}          # byte address -> set of (block, thread, epoch, kind)
        self.shared: list = []       # (start, stop, where, ndarray) of shared buffers
        self.names: list = []        # (start, stop, name, ndarray) of array arguments
        self.layouts: dict = {}      # id(ndarray) -> (address, shape, strides, ndarray)
        try:
            params = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            params = []
        for i, a in enumerate(args):
            ary = getattr(a, "_ary", None)     # a simulated device array's host storage
            if ary is not None and ary.size:
                lo, hi = _extent(ary)
                name = params[i] if i < len(params) else f"#{i}"
                self.names.append((lo, hi, name, ary))

    def describe(self, addr):
        for lo, hi, name, ary in self.names:
            if lo <= addr < hi:
                return f"argument `{name}` element {_index(ary, addr)}"
        for lo, hi, where, ary in self.shared:
            if lo <= addr < hi:
                return f"shared array ({where}) element {_index(ary, addr)}"
        return f"address {addr:#x}"

    def races(self, limit=5):
        found = []
        for addr, entries in self.acc.items():
            if len(entries) < 2:
                continue
            writes = [e for e in entries if e[3] != "R"]
            if not writes:
                continue
            shared = any(s[0] <= addr < s[1] for s in self.shared)
            hit = _first_conflict(writes, entries, shared)
            if hit:
                found.append((addr, hit))
                if len(found) >= limit:
                    break
        return found


def _index(ary, addr):
    """The index of the element of ``ary`` at byte address ``addr`` (C-ordered strides)."""
    off = addr - ary.__array_interface__["data"][0]
    idx = []
    for s in ary.strides:
        q = off // s if s else 0
        idx.append(int(q))
        off -= q * s
    return tuple(idx)


def _first_conflict(writes, entries, shared):
    """Two of ``entries`` (block, thread, epoch, kind) that race, or None."""
    if not shared:
        # nothing orders blocks: a write against any access of another block
        for w in writes:
            for o in entries:
                if o[0] != w[0] and not (w[3] == "A" and o[3] == "A"):
                    return w, o
    groups: dict = {}                         # threads of one block between two barriers
    for e in entries:
        groups.setdefault((e[0], e[2]), []).append(e)
    for group in groups.values():
        if len(group) < 2:
            continue
        for w in group:
            if w[3] == "R":
                continue
            for o in group:
                if o[1] != w[1] and not (w[3] == "A" and o[3] == "A"):
                    return w, o
    return None


def _extent(ary):
    base = ary.__array_interface__["data"][0]
    lo = hi = base
    for n, s in zip(ary.shape, ary.strides):
        if s >= 0:
            hi += (n - 1) * s
        else:
            lo += (n - 1) * s
    return lo, hi + ary.itemsize


def _addresses(launch, ary, idx):
    """The byte addresses of the elements ``ary[idx]`` touches (basic indexing)."""
    key = idx if isinstance(idx, tuple) else (idx,)
    layout = launch.layouts.get(id(ary))
    if layout is None:
        # kept with the array itself, so that its id is not reused during the launch
        layout = launch.layouts[id(ary)] = (ary.__array_interface__["data"][0], ary.shape,
                                            ary.strides, ary)
    base, shape, strides, _ = layout
    if len(key) == len(shape):
        try:
            addr = base
            for i, n, s in zip(key, shape, strides):
                i = operator.index(i)
                addr += (i + n if i < 0 else i) * s
            return (addr,)
        except TypeError:
            pass                              # a slice among the indices
    sub = ary[idx]
    if not isinstance(sub, np.ndarray):
        sub = ary[idx + (Ellipsis,) if isinstance(idx, tuple) else (idx, Ellipsis)]
    if sub.size and not np.shares_memory(sub, ary):
        raise RaceError(f"racecheck cannot follow advanced indexing {idx!r} in a kernel")
    base = sub.__array_interface__["data"][0]
    offs = np.zeros(sub.shape, dtype=np.int64)
    for ax, s in enumerate(sub.strides):
        shape = [1] * sub.ndim
        shape[ax] = sub.shape[ax]
        offs = offs + np.arange(sub.shape[ax], dtype=np.int64).reshape(shape) * s
    return (base + offs).ravel().tolist()


def _record(ary, idx, kind):
    launch = _active
    if launch is None:
        return
    t = current_thread()
    who = t.__dict__.get("_racecheck_who")
    if who is None:
        block = getattr(t, "blockIdx", None)
        if block is None:
            return                            # host code touching a device array
        who = t._racecheck_who = ((block.x, block.y, block.z),
                                  (t.threadIdx.x, t.threadIdx.y, t.threadIdx.z))
    entry = (who[0], who[1], t._racecheck_epoch,
             "A" if getattr(_state, "atomic", False) else kind)
    acc = launch.acc
    for a in _addresses(launch, ary, idx):
        s = acc.get(a)
        if s is None:
            s = acc.setdefault(a, set())
        s.add(entry)


def install():
    """Patch the simulator (once) so that checked launches record their accesses."""
    global _installed
    if _installed:
        return
    # caffeish's own simulator patches (thread-safe shared arrays, module swap) go in first,
    # so that ours wrap theirs rather than being replaced by them
    import caffeish.backend.cuda.core  # noqa: F401
    from numba.cuda.simulator import kernel, kernelapi
    from numba.cuda.simulator.cudadrv import devicearray as sda

    wrapper = sda.FakeWithinKernelCUDAArray
    get, set_ = wrapper.__getitem__, wrapper.__setitem__

    def __getitem__(self, idx):
        out = get(self, idx)
        if _active is not None and not isinstance(out, wrapper):
            _record(self.__dict__["_item"]._ary, idx, "R")
        return out

    def __setitem__(self, idx, val):
        if _active is not None:
            _record(self.__dict__["_item"]._ary, idx, "W")
        set_(self, idx, val)

    wrapper.__getitem__, wrapper.__setitem__ = __getitem__, __setitem__

    sync = kernel.BlockThread.syncthreads
    kernel.BlockThread._racecheck_epoch = 0      # barriers a simulated thread has passed

    def syncthreads(self):
        sync(self)
        self._racecheck_epoch += 1

    kernel.BlockThread.syncthreads = syncthreads

    shared_array = kernelapi.FakeCUDAShared.array    # caffeish's thread-safe one

    def array(self, shape, dtype):
        launch = _active
        # the simulator tells a kernel's shared arrays apart by the line asking for them:
        # that is the kernel's frame, one up from this wrapper
        arr = shared_array(self, shape, dtype, _frame_depth=2)
        if launch is None:
            return arr
        if arr.size:
            lo, hi = _extent(arr)
            if not any(lo == s[0] for s in launch.shared):
                f = sys._getframe(1)
                where = f"{f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno}"
                launch.shared.append((lo, hi, where, arr))
        return _SharedArray(arr)

    kernelapi.FakeCUDAShared.array = array

    for name in ("add", "sub", "and_", "or_", "xor", "inc", "dec", "exch", "max", "min",
                 "nanmax", "nanmin", "cas"):
        op = getattr(kernelapi.FakeCUDAAtomic, name, None)
        if op is None:
            continue

        def atomic(self, *args, _op=op):
            _state.atomic = True
            try:
                return _op(self, *args)
            finally:
                _state.atomic = False

        setattr(kernelapi.FakeCUDAAtomic, name, atomic)

    call = kernel.FakeCUDAKernel.__call__

    def checked_call(self, *args):
        global _active
        if self._device or not _enabled:
            return call(self, *args)
        launch = _Launch(self.fn, args)
        _active = launch
        try:
            out = call(self, *args)
        finally:
            _active = None
        races = launch.races()
        if races:
            lines = []
            for addr, (w, o) in races:
                what = launch.describe(addr)
                lines.append(f"  {what}: {_kind(w)} by block {w[0]} thread {w[1]} and "
                             f"{_kind(o)} by block {o[0]} thread {o[1]}"
                             + ("" if o[0] != w[0] else " with no syncthreads() between"))
            raise RaceError(f"data race in kernel {self.fn.__qualname__} "
                            f"(grid {self.grid_dim}, block {self.block_dim}):\n"
                            + "\n".join(lines))
        return out

    kernel.FakeCUDAKernel.__call__ = checked_call
    _installed = True


class _SharedArray:
    """A block's shared buffer whose element accesses are recorded."""
    __slots__ = ("_ary",)

    def __init__(self, ary):
        self._ary = ary

    def __getitem__(self, idx):
        out = self._ary[idx]
        if isinstance(out, np.ndarray):
            return _SharedArray(out)
        _record(self._ary, idx, "R")
        return out

    def __setitem__(self, idx, val):
        _record(self._ary, idx, "W")
        self._ary[idx] = val

    def __len__(self):
        return len(self._ary)

    def __getattr__(self, name):
        return getattr(self._ary, name)


def _kind(e):
    return {"R": "read", "W": "written", "A": "atomic"}[e[3]]


def enable():
    """Check every launch from now on (the whole-suite switch)."""
    global _enabled
    install()
    _enabled = 1


@contextmanager
def checking():
    """Check the launches made inside the block."""
    global _enabled
    install()
    _enabled += 1
    try:
        yield
    finally:
        _enabled -= 1
