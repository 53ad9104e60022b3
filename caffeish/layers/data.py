"""data layers: Input, DummyData, Data (LMDB or LevelDB of Caffe Datum records) and ImageData
(image files from a list), the last two prefetched on a thread."""
from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..backend import get_backend
from .base import Layer, register_layer


def _blob_shape(layer, shape_msg, field):
    dims = [int(d) for d in shape_msg.dim]
    if any(d < 0 for d in dims):
        raise layer.shape_error(f"negative dimension in shape {dims}", field)
    return tuple(dims)


@register_layer("Input")
class InputLayer(Layer):
    """Tops whose contents the user (or the net's input) writes; forward does nothing.

    input_param.shape: no shape (tops keep whatever shape they are given), one BlobShape for
    every top, or one per top. Like Caffe, reshape does nothing, so a top reshaped by the user
    keeps its new shape.
    """

    exact_bottoms = 0
    min_tops = 1
    param_field = "input_param"

    def setup(self, bottom, top):
        shapes = self.param.shape
        if len(shapes) not in (0, 1, len(top)):
            raise self.config_error(
                f"must specify 'shape' once, once per top blob ({len(top)}), or not at all; "
                f"specified {len(shapes)}", "shape")
        for i, t in enumerate(top):
            if shapes:
                t.reshape(_blob_shape(self, shapes[0 if len(shapes) == 1 else i], "shape"))

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass


@register_layer("DummyData")
class DummyDataLayer(Layer):
    """Tops filled by fillers: for tests and for timing nets without data.

    dummy_data_param: ``shape`` (one BlobShape for all tops or one per top), or the legacy
    ``num``/``channels``/``height``/``width`` (each once or once per top). ``data_filler``: none
    (constant 0), one for all tops, or one per top. Constant fillers fill their tops once at
    setup; any other filler refills its top at every forward (Caffe's refill rule).
    """

    exact_bottoms = 0
    min_tops = 1
    param_field = "dummy_data_param"

    def setup(self, bottom, top):
        p = self.param
        n_top = len(top)
        n_fill = len(p.data_filler)
        if n_fill not in (0, 1, n_top):
            raise self.config_error(
                f"number of data fillers must be 0, 1 or equal to the number of tops ({n_top}); "
                f"you specified {n_fill} data fillers", "data_filler")
        legacy = [name for name in ("num", "channels", "height", "width") if p.has(name)]
        shapes = []
        if legacy:
            if p.has("shape"):
                raise self.config_error("both shape and legacy fields (num, channels, height, "
                                        "width) were specified", "shape")
            for name in ("num", "channels", "height", "width"):
                if len(getattr(p, name)) not in (1, n_top):
                    raise self.config_error(
                        f"must specify '{name}' once, or once per top blob ({n_top}); "
                        f"specified {len(getattr(p, name))}", name)
            for i in range(n_top):
                shapes.append(tuple(int(getattr(p, name)[0 if len(getattr(p, name)) == 1 else i])
                                    for name in ("num", "channels", "height", "width")))
        else:
            if len(p.shape) not in (1, n_top):
                raise self.config_error(
                    f"must specify 'shape' once, or once per top blob ({n_top}); "
                    f"specified {len(p.shape)}", "shape")
            for i in range(n_top):
                shapes.append(_blob_shape(self, p.shape[0 if len(p.shape) == 1 else i], "shape"))
        self._shapes = shapes
        if n_fill == 0:
            from ..config.schema import Msg
            self._fillers = [Msg("FillerParameter", {"type": "constant", "value": 0.0})]
        else:
            self._fillers = list(p.data_filler)
        self._refill = [f.type != "constant" for f in self._fillers]
        self._filled = [None] * n_top
        for t, s in zip(top, shapes):
            t.reshape(s)
        self._fill(top, first=True)

    def _filler_index(self, i):
        return i if len(self._fillers) > 1 else 0

    def _fill(self, top, first=False):
        from ..fillers import fill
        for i, t in enumerate(top):
            j = self._filler_index(i)
            if self._refill[j] or first or self._filled[i] is not t.data_storage:
                if t.count:
                    try:
                        fill(t.data, self._fillers[j], self.rng)
                    except ConfigError as e:
                        raise self.config_error(str(e), "data_filler") from None
                self._filled[i] = t.data_storage

    def reshape(self, bottom, top):
        for t, s in zip(top, self._shapes):
            t.reshape(s)

    def forward(self, bottom, top):
        self._fill(top)


class _Batch:
    __slots__ = ("data", "label", "state")

    def __init__(self, data, label, state):
        self.data = data
        self.label = label
        self.state = state


class _BatchSource:
    """Reads ``batch_size`` records from the cursor and transforms them (the prefetch thread's
    work). Holds no reference to the layer, so a forgotten layer can be collected."""

    def __init__(self, cursor, transformer, batch_size, dtype, describe, source):
        self.cursor = cursor
        self.transformer = transformer
        self.batch_size = batch_size
        self.dtype = dtype
        self.describe = describe
        self.source = source

    def state(self) -> dict:
        return {"position": int(self.cursor.position), "key": self.cursor.key.hex(),
                "transform_rng": self.transformer.get_state()}

    def __call__(self) -> _Batch:
        from ..data.datum import datum_to_array, decode_datum

        bs = self.batch_size
        tf = self.transformer
        labels = np.empty(bs, self.dtype)
        raw = None
        first_key = None
        for i in range(bs):
            key, value = self.cursor.next()
            try:
                d = decode_datum(value)
                img = datum_to_array(d, tf.force_color, tf.force_gray)
            except DataError as e:
                raise DataError(f"{self.describe}: record {_show_key(key)} of {self.source}: {e}") \
                    from None
            if raw is None:
                raw = np.empty((bs,) + img.shape, img.dtype)
                first_key = key
            elif img.shape != raw.shape[1:]:
                raise DataError(
                    f"{self.describe}: record {_show_key(key)} of {self.source} is "
                    f"{' x '.join(map(str, img.shape))} but record {_show_key(first_key)} in the "
                    f"same batch is {' x '.join(map(str, raw.shape[1:]))}; every record of a "
                    "batch needs the same size (resize the images, e.g. convert_imageset "
                    "--resize_height/--resize_width, or use batch_size 1)")
            if img.dtype != raw.dtype:
                raw = raw.astype(np.float32)
            raw[i] = img
            labels[i] = d.label
        try:
            data = tf.transform_batch(raw, dtype=self.dtype)
        except DataError as e:
            raise DataError(f"{self.describe}: {self.source}: {e}") from None
        be = get_backend()  # in GPU mode the batch goes to the device here, on this thread
        return _Batch(be.stage_batch(data), be.stage_batch(labels), self.state())


def _show_key(key: bytes) -> str:
    try:
        return repr(key.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(key)


class _PrefetchingDataLayer(Layer):
    """What Data and ImageData share (Caffe's BasePrefetchingDataLayer): tops data (+ label),
    batches handed over by a prefetch thread, and the state of the last consumed batch for an
    exact resume. Subclasses set ``batch_size``, ``_item_shape``, ``source``, ``_prefetcher``
    and ``_consumed`` in setup."""

    exact_bottoms = 0
    min_tops = 1
    max_tops = 2

    def data_error(self, message, field=None) -> DataError:
        return DataError(self._msg(message, field))

    def _net_dir(self):
        src = self.layer_param.src
        if src and src[0]:
            return Path(src[0]).resolve().parent
        return None

    def _transform_param(self):
        """transform_param, with the deprecated scale/mean_file/crop_size/mirror of the layer's
        own *_param winning when set (Caffe's UpgradeNetDataTransformation)."""
        tp = self.layer_param.transform_param
        moved = [n for n in ("scale", "mean_file", "crop_size", "mirror") if self.param.has(n)]
        if moved:
            tp = tp.copy()
            for n in moved:
                tp.set(n, getattr(self.param, n))
        return tp

    def reshape(self, bottom, top):
        top[0].reshape((self.batch_size,) + tuple(self._item_shape))
        if len(top) > 1:
            top[1].reshape((self.batch_size,))

    def forward(self, bottom, top):
        batch = self._prefetcher.get()
        if top[0].shape != tuple(batch.data.shape):
            top[0].reshape(tuple(batch.data.shape))
        be = self.backend
        be.copy_batch(batch.data, top[0].dev_data)
        if len(top) > 1:
            be.copy_batch(batch.label, top[1].dev_data)
        else:
            be.release_batch(batch.label)
        self._consumed = batch.state

    # --- exact resume ----------------------------------------------------------------------
    def get_state(self) -> dict:
        state = super().get_state()
        state.update(self._consumed)
        state["source"] = str(self.source)
        return state

    def set_state(self, state: dict):
        super().set_state(state)
        if "position" not in state:
            return
        self._prefetcher.stop()
        self._seek(state)
        if "transform_rng" in state:
            self.transformer.set_state(state["transform_rng"])
        self._consumed = self._source.state()
        self._prefetcher.start()

    def _seek(self, state: dict):
        """Put the source where ``state`` (a consumed batch's state) says."""
        raise NotImplementedError

    def _prefetch_depth(self) -> int:
        """``data_param.prefetch`` where the layer has a data_param, else Caffe's default 4."""
        lp = self.layer_param
        if lp.has("data_param") and lp.data_param.has("prefetch"):
            return int(lp.data_param.prefetch)
        return 4

    def _root_prefix(self, root: str, search) -> str:
        """What goes before each listed image path: ``root`` (``root_folder``), looked up
        beside the net file too when it is relative and not found here."""
        import os

        from caffeish.data.images import root_prefix

        from ..data.transformer import resolve_path

        if root and not os.path.isabs(root) and not os.path.exists(root.rstrip("/") or "/"):
            alt, _ = resolve_path(root.rstrip("/"), search)
            if alt is not None:
                root = str(alt) + "/"
        return root_prefix(root)

    def close(self):
        pf = getattr(self, "_prefetcher", None)
        if pf is not None:
            pf.stop()

    def _start_prefetch(self, source, depth: int):
        from ..data.prefetch import Prefetcher
        self._source = source
        self._consumed = source.state()
        self._prefetcher = Prefetcher(source, depth, name=f"prefetch-{self.name}")
        self._finalizer = weakref.finalize(self, self._prefetcher.request_stop)
        self._prefetcher.start()


@register_layer("Data")
class DataLayer(_PrefetchingDataLayer):
    """Batches of Datum records from an LMDB or a LevelDB (Caffe's DataLayer), prefetched on a
    thread.

    Tops: data (batch_size x C x H' x W', transformed by ``transform_param``) and optionally
    label (batch_size). The record shape comes from the first record; records are read in key
    order and the cursor wraps around at the end. ``rand_skip`` skips a random number of records
    in [0, rand_skip) at setup. ``backend`` is LMDB or LEVELDB; unset, it is detected from the
    source directory (data.mdb: LMDB, CURRENT: LevelDB), where Caffe would assume LEVELDB. A
    backend that disagrees with the directory is an error. LevelDB needs plyvel (``pip install
    'caffeish[leveldb]'``). ``prefetch`` batches are prepared ahead (0: read inside forward).
    A relative ``source`` is looked up in the current directory, then beside the net file.

    get_state/set_state capture the read position and the transformation RNG as of the last
    batch consumed by forward, so a resumed run sees exactly the batches the first run would.
    """

    param_field = "data_param"

    def _transform_param(self):
        tp = super()._transform_param()
        if self.param.force_encoded_color and not tp.force_color:
            tp = tp.copy()
            tp.set("force_color", True)
        return tp

    def setup(self, bottom, top):
        from ..data.db import backend_name, open_db
        from ..data.lmdb_io import MAKE_DB_HINT
        from ..data.transformer import DataTransformer, resolve_path
        from ..data.datum import datum_to_array, decode_datum

        p = self.param
        try:
            backend = backend_name(p.backend) if p.has("backend") else None
        except DataError as e:
            raise self.config_error(str(e), "backend") from None
        if not p.source:
            raise self.config_error("data_param.source is not set (the LMDB or LevelDB directory "
                                    "to read)", "source")
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.config_error(f"batch_size must be positive, got {self.batch_size}",
                                    "batch_size")
        net_dir = self._net_dir()
        found, tried = resolve_path(p.source, [net_dir] if net_dir else [])
        if found is None:
            raise self.data_error(
                f"data source {p.source!r} not found; tried "
                + " and ".join(str(t) for t in tried) + f"; {MAKE_DB_HINT}", "source")
        self.source = found
        reader = None
        try:
            reader = open_db(found, backend)
            cursor = reader.cursor()
        except DataError as e:
            if reader is not None:      # an empty DB: let go of it (LevelDB holds a lock)
                reader.close()
            raise self.data_error(str(e), "source") from None
        self.reader = reader
        if p.rand_skip:
            skip = int(self.rng.integers(0, int(p.rand_skip)))
            cursor.seek(skip)
        try:
            tp = self._transform_param()
            self.transformer = DataTransformer(
                tp, self.phase, np.random.default_rng(int(self.rng.integers(0, 2**63))),
                search_dirs=[net_dir] if net_dir else [])
        except (ConfigError, DataError) as e:
            raise type(e)(self._msg(str(e))) from None

        key, value = cursor.peek()
        try:
            first = datum_to_array(decode_datum(value), self.transformer.force_color,
                                   self.transformer.force_gray)
            if first.ndim != 3:
                raise DataError(f"record {_show_key(key)} is not C x H x W")
            self._item_shape = self.transformer.infer_shape(*first.shape)
        except DataError as e:
            raise self.data_error(f"{found}: first record {_show_key(key)}: {e}") from None
        self._start_prefetch(_BatchSource(cursor, self.transformer, self.batch_size, self.dtype,
                                          self.describe(), found), int(p.prefetch))

    def _seek(self, state: dict):
        key = state.get("key")
        try:
            self._source.cursor.seek(int(state["position"]),
                                     bytes.fromhex(key) if key else None)
        except DataError as e:
            raise self.data_error(str(e)) from None

    def close(self):
        super().close()
        src = getattr(self, "_source", None)
        if src is not None:
            src.cursor.close()
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.close()


class _ImageListSource:
    """Reads ``batch_size`` images named by a list file and transforms them (the prefetch
    thread's work for ImageData). Like _BatchSource it holds no reference to the layer.

    The order is the list's, or, with ``shuffle``, a permutation of it drawn from ``order_rng``
    at the start and again at every wrap-around. ``order_state`` is that RNG's state just before
    the current permutation was drawn, so the order can be rebuilt on resume.
    """

    def __init__(self, lines, prefix, new_height, new_width, is_color, transformer, batch_size,
                 dtype, shuffle, order_rng, describe, source):
        self.lines = lines
        self.prefix = prefix
        self.new_height = new_height
        self.new_width = new_width
        self.is_color = is_color
        self.transformer = transformer
        self.batch_size = batch_size
        self.dtype = dtype
        self.shuffle = shuffle
        self.order_rng = order_rng
        self.describe = describe
        self.source = source
        self.position = 0
        self.order_state = None
        self.order = None
        self._draw_order()

    def _draw_order(self):
        if self.shuffle:
            self.order_state = self.order_rng.bit_generator.state
            self.order = self.order_rng.permutation(len(self.lines))
        else:
            self.order = None

    def restore(self, position, order_state):
        if self.shuffle and order_state is not None:
            self.order_rng.bit_generator.state = order_state
            self._draw_order()
        self.position = int(position) % len(self.lines)

    def state(self) -> dict:
        return {"position": int(self.position), "order_rng": self.order_state,
                "transform_rng": self.transformer.get_state()}

    def peek(self) -> tuple[str, int]:
        i = self.position if self.order is None else int(self.order[self.position])
        return self.lines[i]

    def read(self, relpath, label) -> np.ndarray:
        from caffeish.data.images import read_image, to_chw

        try:
            img = read_image(self.prefix + relpath, self.new_height, self.new_width,
                             self.is_color)
        except DataError as e:
            raise DataError(f"{self.describe}: {self.source}: image {relpath!r} (label {label}): "
                            f"{e}") from None
        return to_chw(img)

    def _next(self) -> tuple[str, int]:
        item = self.peek()
        self.position += 1
        if self.position >= len(self.lines):
            from ..data.db_base import log
            log.info("Restarting data prefetching from start.")
            self.position = 0
            if self.shuffle:
                self._draw_order()
        return item

    def __call__(self) -> _Batch:
        bs = self.batch_size
        labels = np.empty(bs, self.dtype)
        raw = None
        first = None
        for i in range(bs):
            relpath, label = self._next()
            img = self.read(relpath, label)
            if raw is None:
                raw = np.empty((bs,) + img.shape, np.uint8)
                first = relpath
            elif img.shape != raw.shape[1:]:
                raise DataError(
                    f"{self.describe}: {self.source}: image {relpath!r} is "
                    f"{' x '.join(map(str, img.shape))} but {first!r} in the same batch is "
                    f"{' x '.join(map(str, raw.shape[1:]))}; every image of a batch needs the "
                    "same size (set new_height and new_width, or use batch_size 1)")
            raw[i] = img
            labels[i] = label
        try:
            data = self.transformer.transform_batch(raw, dtype=self.dtype)
        except DataError as e:
            raise DataError(f"{self.describe}: {self.source}: {e}") from None
        be = get_backend()  # in GPU mode the batch goes to the device here, on this thread
        return _Batch(be.stage_batch(data), be.stage_batch(labels), self.state())


@register_layer("ImageData")
class ImageDataLayer(_PrefetchingDataLayer):
    """Batches of images read straight from files named in a list (Caffe's ImageDataLayer).

    image_data_param: ``source`` (a text file of ``relative/path label`` lines, the path being
    everything before the last space), ``root_folder`` (put before each path, Caffe-style:
    ``root_folder + path``; a root naming a directory without a trailing '/' gets one),
    ``batch_size``, ``shuffle`` (a new permutation at the start and at each wrap-around),
    ``new_height``/``new_width`` (both or neither; OpenCV INTER_LINEAR, byte-exact), ``is_color``
    (false: one gray channel), ``rand_skip`` (skip a random number of lines in [0, rand_skip)
    at setup). Images are decoded as Caffe's ReadImageToCVMat does (BGR, see
    :mod:`caffeish.data.images`) and transformed by ``transform_param`` (the deprecated
    ``scale``/``mean_file``/``crop_size``/``mirror`` of image_data_param win when set).

    Tops: data (batch_size x C x H' x W', the size of the first image, cropped) and optionally
    label (batch_size). All images of a batch must have one size. ``data_param.prefetch``
    (default 4) batches are prepared ahead on a thread. An unreadable image is a DataError
    naming the file (Caffe aborts). get_state/set_state give an exact resume (position, the
    shuffle RNG before the current permutation, the transformation RNG).
    """

    param_field = "image_data_param"

    def setup(self, bottom, top):
        from caffeish.data.images import parse_list

        from ..data.transformer import DataTransformer, resolve_path

        p = self.param
        if not p.source:
            raise self.config_error("image_data_param.source is not set (a text file of "
                                    "'relative/path label' lines)", "source")
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.config_error(f"batch_size must be positive, got {self.batch_size}",
                                    "batch_size")
        new_h, new_w = int(p.new_height), int(p.new_width)
        if (new_h > 0) != (new_w > 0):
            raise self.config_error(f"new_height and new_width must be set together (got "
                                    f"{new_h} x {new_w})", "new_height")
        net_dir = self._net_dir()
        search = [net_dir] if net_dir else []
        found, tried = resolve_path(p.source, search)
        if found is None:
            raise self.data_error(f"image list {p.source!r} not found; tried "
                                  + " and ".join(str(t) for t in tried), "source")
        self.source = found
        try:
            lines = parse_list(found)
        except DataError as e:
            raise self.data_error(str(e), "source") from None
        order_rng = np.random.default_rng(int(self.rng.integers(0, 2**63)))
        src = _ImageListSource(
            lines, self._root_prefix(p.root_folder, search), new_h, new_w, bool(p.is_color),
            None, self.batch_size, self.dtype, bool(p.shuffle), order_rng, self.describe(),
            found)
        if p.rand_skip:
            skip = int(self.rng.integers(0, int(p.rand_skip)))
            if skip >= len(lines):
                raise self.config_error(f"rand_skip drew {skip} but {found} lists only "
                                        f"{len(lines)} images", "rand_skip")
            src.position = skip
        try:
            self.transformer = DataTransformer(
                self._transform_param(), self.phase,
                np.random.default_rng(int(self.rng.integers(0, 2**63))), search_dirs=search)
        except (ConfigError, DataError) as e:
            raise type(e)(self._msg(str(e))) from None
        src.transformer = self.transformer
        relpath, label = src.peek()
        first = src.read(relpath, label)
        try:
            self._item_shape = self.transformer.infer_shape(*first.shape)
        except DataError as e:
            raise self.data_error(f"{found}: first image {relpath!r}: {e}") from None
        self._start_prefetch(src, self._prefetch_depth())

    def _seek(self, state: dict):
        self._source.restore(state["position"], state.get("order_rng"))


__all__ = ["InputLayer", "DummyDataLayer", "DataLayer", "ImageDataLayer"]
