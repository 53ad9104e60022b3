"""``type: Python`` layers: a user's class, written as for pycaffe, runs inside a net.

.. code-block:: yaml

    - name: scale
      type: Python
      bottom: x
      top: y
      python_param: {module: my_layers, layer: LearnedScale, param_str: "init: 0.5"}

``module`` is imported with the working directory and the net file's folder searched first
(Caffe users put them on PYTHONPATH), then ``sys.path`` (an installed package works too).
``layer`` names a class, built like pycaffe's ``module.layer(layer_param)``; it then gets
``param_str`` (python_param.param_str), ``phase`` ('TRAIN' or 'TEST', equal to caffeish.TRAIN /
caffeish.TEST) and ``blobs`` (its parameter list: ``self.blobs.add_blob(2, 3)`` or
``self.blobs.append(caffeish.Blob((2, 3)))``; these are saved in .caffemodels and updated by the
solver like any layer's weights). Caffe calls, in order: ``setup(bottom, top)`` once,
``reshape(bottom, top)`` before every forward, ``forward(bottom, top)`` and
``backward(top, propagate_down, bottom)``. ``bottom`` and ``top`` are lists of blobs with pycaffe's
surface: ``.data`` / ``.diff`` (numpy arrays to write into), ``.reshape(*shape)``, ``.shape``,
``.count``, ``.num`` / ``.channels`` / ``.height`` / ``.width``.

As in Caffe, a Python loss layer needs an explicit ``loss_weight``, and ``backward`` must
overwrite bottom diffs and accumulate (``+=``) parameter diffs.

An exception in the user's code becomes a :class:`PythonLayerError` naming the layer, the method
and the user's file and line.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback

import numpy as np

from ..blob import Blob
from ..errors import CaffeishError, did_you_mean
from .base import Layer, register_layer

__all__ = ["PythonLayer", "PythonLayerError", "BlobVec", "PyBlob", "BlobView"]

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PythonLayerError(CaffeishError):
    """An exception raised by the user's code in a ``type: Python`` layer."""


def _shape_args(shape) -> tuple:
    """pycaffe's ``reshape(2, 3)`` and caffeish's ``reshape((2, 3))`` both give (2, 3)."""
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def _legacy_dim(shape, i):
    """Caffe's LegacyShape: num/channels/height/width, 1 past the blob's axes."""
    if len(shape) > 4:
        raise CaffeishError(f"num/channels/height/width are only defined for blobs of up to 4 "
                            f"axes; this one is {shape}")
    return shape[i] if i < len(shape) else 1


class PyBlob(Blob):
    """A parameter Blob made by ``blobs.add_blob``: also takes pycaffe's ``reshape(*shape)``."""

    __slots__ = ()

    def reshape(self, *shape):
        return Blob.reshape(self, _shape_args(shape))

    num = property(lambda self: _legacy_dim(self.shape, 0))
    channels = property(lambda self: _legacy_dim(self.shape, 1))
    height = property(lambda self: _legacy_dim(self.shape, 2))
    width = property(lambda self: _legacy_dim(self.shape, 3))


class BlobView:
    """What a Python layer sees of a net blob: pycaffe's Blob surface over a caffeish Blob."""

    __slots__ = ("blob",)

    def __init__(self, blob: Blob):
        self.blob = blob

    @property
    def data(self) -> np.ndarray:
        return self.blob.data

    @data.setter
    def data(self, value):
        self.blob.data = value

    @property
    def diff(self) -> np.ndarray:
        return self.blob.diff

    @diff.setter
    def diff(self, value):
        self.blob.diff = value

    @property
    def shape(self) -> tuple:
        return self.blob.shape

    @property
    def count(self) -> int:
        return self.blob.count

    num = property(lambda self: _legacy_dim(self.blob.shape, 0))
    channels = property(lambda self: _legacy_dim(self.blob.shape, 1))
    height = property(lambda self: _legacy_dim(self.blob.shape, 2))
    width = property(lambda self: _legacy_dim(self.blob.shape, 3))

    def reshape(self, *shape):
        self.blob.reshape(_shape_args(shape))
        return self

    def __getattr__(self, name):
        return getattr(self.blob, name)

    def __repr__(self):
        return f"<blob {self.blob.name!r} {self.blob.shape} {self.blob.dtype}>"


class BlobVec(list):
    """A Python layer's parameter blobs (pycaffe's ``layer.blobs``), in the net's dtype."""

    def __init__(self, items=(), dtype=np.float32):
        super().__init__(items)
        self.dtype = np.dtype(dtype)

    def add_blob(self, *shape) -> PyBlob:
        """Append a zero-filled parameter blob of ``shape`` and return it (pycaffe's add_blob)."""
        b = PyBlob(_shape_args(shape), self.dtype, name=f"param[{len(self)}]")
        self.append(b)
        return b


class PythonLayer:
    """Base class for ``type: Python`` layers (pycaffe's ``caffe.Layer``; caffeish exports it as
    ``caffeish.Layer`` too, so ``class MyLayer(caffe.Layer)`` ports with ``import caffeish as
    caffe``). Override ``setup``, ``reshape``, ``forward`` and, if gradients flow through the
    layer, ``backward``."""

    type = "Python"

    def __init__(self, layer_param=None):
        self.layer_param = layer_param
        pp = getattr(layer_param, "python_param", None)
        self.param_str = pp.param_str if pp is not None else ""
        self.phase = "TRAIN"
        self.blobs = BlobVec()

    def setup(self, bottom, top):
        """Read ``self.param_str``, check bottoms, create ``self.blobs``. Called once."""

    def reshape(self, bottom, top):
        """Reshape the tops (``top[0].reshape(*shape)``). Called before every forward."""

    def forward(self, bottom, top):
        raise NotImplementedError

    def backward(self, top, propagate_down, bottom):
        raise NotImplementedError


# --- loading the user's class ---------------------------------------------------------------------
def _search_dirs(layer_param) -> list[str]:
    dirs = [os.getcwd()]
    src = layer_param.src
    if src and src[0]:
        d = os.path.dirname(os.path.abspath(str(src[0])))
        if os.path.isdir(d) and d not in dirs:
            dirs.append(d)
    return dirs


def _module_candidates(dirs) -> list[str]:
    import pkgutil
    names = {m.name for m in pkgutil.iter_modules(dirs)}
    names.update(m.name for m in pkgutil.iter_modules())
    return sorted(names)


def _user_frame(tb, user_files=()):
    """The (file, line, function, source) to blame: the deepest frame in the user's module file,
    else the deepest frame outside caffeish, else the deepest frame."""
    frames = traceback.extract_tb(tb)
    if not frames:
        return None
    user_files = {os.path.realpath(f) for f in user_files if f}
    for fr in reversed(frames):
        if os.path.realpath(fr.filename) in user_files:
            return fr
    for fr in reversed(frames):
        if not fr.filename.startswith("<") and \
                not os.path.realpath(fr.filename).startswith(_PKG_DIR + os.sep):
            return fr
    return frames[-1]


def _describe_exception(exc, user_files=()) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        text = (exc.text or "").strip()
        return (f"SyntaxError: {exc.msg}\n  at {exc.filename}:{exc.lineno}"
                + (f": {text}" if text else ""))
    fr = _user_frame(exc.__traceback__, user_files)
    msg = f"{type(exc).__name__}: {exc}"
    if fr is None:
        return msg
    line = (fr.line or "").strip()
    return f"{msg}\n  at {fr.filename}:{fr.lineno}, in {fr.name}" + (f": {line}" if line else "")


@register_layer("Python")
class PythonLayerAdapter(Layer):
    """Runs the user's class named by ``python_param`` (module, layer, param_str).

    Any bottom and top counts; may run in place (as in Caffe, the user's code must allow it).
    Parameter blobs are the user's ``self.blobs`` (the very same list), so weight sharing,
    snapshots and the solver see them.
    """

    param_field = "python_param"
    in_place_ok = True

    def __init__(self, layer_param, phase="TRAIN", dtype=np.float32, rng=None):
        super().__init__(layer_param, phase=phase, dtype=dtype, rng=rng)
        cls = self._load_class()
        self.user_class = cls
        self.user_files = [getattr(sys.modules.get(m), "__file__", None)
                           for m in (self.param.module, getattr(cls, "__module__", None))]
        try:
            args = (layer_param,)
            inspect.signature(cls).bind(*args)
        except (TypeError, ValueError):
            args = ()
        self.py = self._guard("__init__", cls, *args)
        self.blobs = BlobVec(dtype=self.dtype)
        self._sync_attrs()

    def describe(self) -> str:
        p = self.param
        return f"layer '{self.name}' (Python {p.module}.{p.layer})"

    # --- loading -------------------------------------------------------------------------------
    def _load_class(self):
        p = self.param
        for field in ("module", "layer"):
            if not p.has(field) or not getattr(p, field):
                raise self.config_error(f"python_param.{field} is not set (python_param needs "
                                        f"module: <python module> and layer: <class name>)",
                                        field if p.has(field) else None)
        dirs = _search_dirs(self.layer_param)
        importlib.invalidate_caches()
        added = [d for d in dirs if d not in sys.path]
        sys.path[:0] = added
        try:
            module = importlib.import_module(p.module)
        except ModuleNotFoundError as e:
            if e.name and (p.module == e.name or p.module.startswith(e.name + ".")):
                hint = did_you_mean(p.module, _module_candidates(dirs))
                raise self.config_error(
                    f"python module '{p.module}' not found{hint}; looked in "
                    f"{', '.join(dirs)} and on sys.path (put the module beside the net file or in "
                    f"the working directory, or install it)", "module") from None
            raise self._user_error(f"importing module '{p.module}' failed", e) from e
        except Exception as e:  # noqa: BLE001  (the user's module raised while importing)
            raise self._user_error(f"importing module '{p.module}' failed", e) from e
        finally:
            for d in added:
                if d in sys.path:
                    sys.path.remove(d)
        cls = getattr(module, p.layer, None)
        if cls is None:
            classes = [n for n, v in vars(module).items() if isinstance(v, type)]
            where = getattr(module, "__file__", p.module)
            raise self.config_error(
                f"module '{p.module}' ({where}) has no class '{p.layer}'"
                f"{did_you_mean(p.layer, classes)}"
                f"{'; it defines ' + ', '.join(classes) if classes else ''}", "layer")
        if not callable(cls):
            raise self.config_error(f"'{p.module}.{p.layer}' is a {type(cls).__name__}, not a "
                                    f"class", "layer")
        if not callable(getattr(cls, "forward", None)):
            raise self.config_error(f"class '{p.module}.{p.layer}' has no forward(bottom, top) "
                                    f"method", "layer")
        return cls

    # --- calling the user's code ---------------------------------------------------------------
    def _user_error(self, what, exc) -> PythonLayerError:
        detail = _describe_exception(exc, getattr(self, "user_files", ()))
        sep = " " if what.endswith("raised") else ": "
        return PythonLayerError(self._msg(f"{what}{sep}{detail}"))

    def _guard(self, method, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001  (the user's code: report it with its location)
            raise self._user_error(f"{method}() raised", e) from e

    def _sync_attrs(self):
        py = self.py
        try:
            py.param_str = self.param.param_str
            py.phase = self.phase
            py.blobs = self.blobs
        except AttributeError as e:
            raise self.config_error(f"cannot set param_str/phase/blobs on the layer object: {e}")

    def _sync_blobs(self):
        """Adopt the user's ``self.blobs`` (any list of Blobs or arrays) in the net's dtype; the
        adapter and the user object then share one list."""
        user = getattr(self.py, "blobs", None)
        items = list(user) if user is not None else []
        out = BlobVec(dtype=self.dtype)
        for j, b in enumerate(items):
            if isinstance(b, BlobView):
                b = b.blob
            if isinstance(b, Blob):
                if b.dtype != self.dtype:
                    nb = PyBlob(b.shape, self.dtype, name=b.name)
                    nb.data[...] = b.data
                    b = nb
            elif isinstance(b, np.ndarray):
                arr = b
                b = PyBlob(arr.shape, self.dtype, name=f"param[{j}]")
                b.data[...] = arr
            else:
                raise self.config_error(f"self.blobs[{j}] is a {type(b).__name__}; parameter "
                                        f"blobs must be caffeish.Blob (use "
                                        f"self.blobs.add_blob(*shape))")
            if b.name is None:
                b.name = f"{self.name}[{j}]"
            out.append(b)
        if isinstance(user, BlobVec) and user is self.blobs:
            user[:] = out
        else:
            self.blobs = out
        self.py.blobs = self.blobs

    @staticmethod
    def _views(blobs):
        return [BlobView(b) for b in blobs]

    def _has_own(self, method):
        fn = getattr(type(self.py), method, None)
        return fn is not None and fn is not getattr(PythonLayer, method, None)

    # --- the layer contract --------------------------------------------------------------------
    def setup(self, bottom, top):
        self._sync_attrs()
        fn = getattr(self.py, "setup", None)
        if fn is not None:
            self._guard("setup", fn, self._views(bottom), self._views(top))
        self._sync_blobs()

    def reshape(self, bottom, top):
        fn = getattr(self.py, "reshape", None)
        if fn is not None:
            self._guard("reshape", fn, self._views(bottom), self._views(top))

    def forward(self, bottom, top):
        self._guard("forward", self.py.forward, self._views(bottom), self._views(top))

    def backward(self, top, propagate_down, bottom):
        fn = getattr(self.py, "backward", None)
        if fn is None or not self._has_own("backward") and isinstance(self.py, PythonLayer):
            if not any(propagate_down) and not self.blobs:
                return
            raise self.config_error(
                f"class '{self.param.module}.{self.param.layer}' defines no "
                f"backward(top, propagate_down, bottom), but the net back-propagates through this "
                f"layer; define it, or stop the gradient with propagate_down: false")
        self._guard("backward", fn, self._views(top), list(map(bool, propagate_down)),
                    self._views(bottom))
