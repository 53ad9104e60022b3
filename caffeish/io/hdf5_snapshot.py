"""Caffe's HDF5 snapshots (``snapshot_format: HDF5``): ``.caffemodel.h5`` and ``.solverstate.h5``.

The layout is Caffe's (Net::ToHDF5, SGDSolver::SnapshotSolverStateToHDF5):

* weights: group ``data``, one group per layer with parameters, named after the layer, holding
  datasets ``0``, ``1``, ... (the layer's blobs in their own shapes); with ``snapshot_diff`` a
  group ``diff`` laid out the same way holds the gradients;
* solver state: scalar integer datasets ``iter`` and ``current_step``, a string dataset
  ``learned_net`` (the weights file) and a group ``history`` with datasets ``0``, ``1``, ... (the
  solver's history blobs in the net's parameter order). caffeish adds a ``caffeish_state``
  byte-string dataset (data order, RNG states), which Caffe does not read.

A weights path is read as HDF5 when it ends in ``.h5``, as Caffe decides. h5py is an optional
dependency (``pip install 'caffeish[hdf5]'``).
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from ..config.schema import Msg
from ..errors import CaffeishError, FormatError

__all__ = ["is_hdf5", "save_net_hdf5", "read_net_hdf5", "save_solverstate_hdf5",
           "read_solverstate_hdf5"]

INSTALL_HINT = "pip install 'caffeish[hdf5]'"


def is_hdf5(path) -> bool:
    """Caffe's test: the file name ends in .h5."""
    return os.fspath(path).endswith(".h5")


def _h5py(path, what):
    try:
        import h5py
    except ImportError:
        raise CaffeishError(f"{path}: {what} is an HDF5 file, and reading or writing HDF5 needs "
                            f"the h5py package, which is not installed: {INSTALL_HINT} (or use "
                            f"snapshot_format: BINARYPROTO)") from None
    return h5py


def _write_atomic(path, what, fill):
    """Create the HDF5 file under a temporary name, fill(h5file), then rename it into place."""
    path = os.fspath(path)
    h5py = _h5py(path, what)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            fill(f)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise FormatError(f"{path}: cannot write: {e.strerror or e}") from None


# what h5py raises for a damaged file, beyond OSError (h5py maps HDF5's error stack onto
# KeyError, RuntimeError, ValueError, ...)
H5_DAMAGE = (OSError, KeyError, RuntimeError, ValueError, TypeError, AttributeError)


@contextlib.contextmanager
def _reading(path, what):
    """Turn h5py's exceptions for a damaged file into one FormatError naming it."""
    try:
        yield
    except H5_DAMAGE as e:
        raise FormatError(f"{os.fspath(path)}: the {what} is damaged or not in Caffe's HDF5 "
                          f"layout ({type(e).__name__}: {e}); write it again, or use another "
                          "snapshot") from None


def _open(path, what):
    path = os.fspath(path)
    h5py = _h5py(path, what)
    if not os.path.exists(path):
        raise CaffeishError(f"{path}: {what} not found")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise FormatError(f"{path}: not a readable HDF5 file ({e}); was it cut short while "
                          f"being written?") from None


def save_net_hdf5(net, path, with_diff=False) -> None:
    """Every parametrised layer's blobs (float32, their own shapes) under data/<layer>/<j>."""
    def fill(f):
        groups = [("data", lambda b: b.data_readonly())]
        if with_diff:
            groups.append(("diff", lambda b: b.diff_readonly()))
        for gname, get in groups:
            g = f.create_group(gname)
            for name, layer in zip(net.layer_names, net.layers):
                if not layer.blobs:
                    continue
                lg = g.create_group(name)
                for j, b in enumerate(layer.blobs):
                    lg.create_dataset(str(j), data=np.asarray(get(b), np.float32))
    _write_atomic(path, "the weights snapshot", fill)


def _numbered(group, path, where):
    """The datasets 0, 1, ... of an HDF5 group, as arrays; an error names a gap."""
    keys = list(group.keys())
    try:
        idx = sorted(int(k) for k in keys)
    except ValueError:
        raise FormatError(f"{path}: {where} holds {sorted(keys)}; Caffe's layout numbers its "
                          f"datasets 0, 1, ...") from None
    if idx != list(range(len(idx))):
        raise FormatError(f"{path}: {where} holds datasets {idx}, not 0..{len(idx) - 1}")
    return [np.asarray(group[str(i)][()]) for i in idx]


def read_net_hdf5(path) -> list:
    """[(layer name, None, [blob arrays])] from a .caffemodel.h5 (the shape of
    io.formats.layer_blobs' answer; HDF5 weights carry no layer types)."""
    with _open(path, "weights file") as f, _reading(path, "weights file"):
        if "data" not in f:
            raise FormatError(f"{os.fspath(path)}: no 'data' group: not a Caffe HDF5 weights "
                              f"file (those hold data/<layer name>/0, 1, ...)")
        return [(_text(name), None,
                 _numbered(f["data"][name], os.fspath(path), f"data/{_text(name)}"))
                for name in f["data"].keys()]


def _text(name) -> str:
    """A group name as text (h5py gives bytes for names that are not valid UTF-8)."""
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def save_solverstate_hdf5(path, it, learned_net, current_step, history, extra: bytes) -> None:
    def fill(f):
        f.create_dataset("iter", data=np.int32(it))
        f.create_dataset("learned_net", data=np.bytes_(learned_net.encode()))
        f.create_dataset("current_step", data=np.int32(current_step))
        g = f.create_group("history")
        for j, h in enumerate(history):
            g.create_dataset(str(j), data=np.asarray(h, np.float32))
        f.create_dataset("caffeish_state", data=np.bytes_(extra))
    _write_atomic(path, "the solver state snapshot", fill)


def _scalar(f, key, path):
    if key not in f:
        raise FormatError(f"{path}: no '{key}' dataset: not a Caffe HDF5 solver state")
    v = f[key][()]
    return v.decode() if isinstance(v, bytes) else v


def read_solverstate_hdf5(path) -> Msg:
    """A .solverstate.h5 as the SolverState message the binary reader gives (history as
    BlobProtos, caffeish_state when present)."""
    from .formats import array_to_blob
    p = os.fspath(path)
    with _open(p, "solver state") as f, _reading(p, "solver state"):
        st = Msg("SolverState")
        st.set("iter", int(_scalar(f, "iter", p)))
        st.set("current_step", int(_scalar(f, "current_step", p)) if "current_step" in f else 0)
        if "learned_net" in f:
            st.set("learned_net", str(_scalar(f, "learned_net", p)))
        hist = _numbered(f["history"], p, "history") if "history" in f else []
        st.set("history", [array_to_blob(np.asarray(h, np.float32)) for h in hist])
        if "caffeish_state" in f:
            st.set("caffeish_state", bytes(f["caffeish_state"][()]))
    return st
