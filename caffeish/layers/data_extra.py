"""More data layers: MemoryData (arrays handed in from Python), HDF5Data and HDF5Output.

HDF5 needs h5py, an optional dependency (``pip install 'caffeish[hdf5]'``); it is imported only
when an HDF5 layer is set up, and its absence is a ConfigError naming the layer.
"""
from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io.hdf5_snapshot import H5_DAMAGE
from ..log import logger
from .base import Layer, register_layer

HDF5_INSTALL_HINT = "pip install 'caffeish[hdf5]'"


def _h5py(layer):
    try:
        import h5py
    except ImportError:
        raise layer.config_error(f"reading and writing HDF5 files needs the h5py package, which "
                                 f"is not installed: {HDF5_INSTALL_HINT}") from None
    return h5py


def _net_dir(layer):
    src = layer.layer_param.src
    if src and src[0]:
        return Path(src[0]).resolve().parent
    return None


@register_layer("MemoryData")
class MemoryDataLayer(Layer):
    """Batches cut from arrays handed in from Python (Caffe's MemoryDataLayer).

    memory_data_param: batch_size, channels, height, width (all must be positive). Tops: data
    (batch_size x channels x height x width) and label (batch_size). ``set_input_arrays(data,
    labels)`` takes data of shape (n, channels, height, width) and labels of shape (n,) or
    (n, 1, 1, 1), n a positive multiple of batch_size; each forward hands out the next
    batch_size rows, wrapping around to row 0 after the last. Arrays that already have the net's
    dtype and are C-contiguous are used without a copy, so (as in pycaffe, which keeps pointers
    to them) later writes into them show in later batches. A forward before any arrays were
    set is a DataError.

    transform_param is accepted and ignored with a warning: Caffe applies it only to data added
    through the C++-only AddDatumVector / AddMatVector, never to arrays from set_input_arrays.
    get_state/set_state carry the read position (the arrays themselves are not saved).
    """

    exact_bottoms = 0
    exact_tops = 2
    param_field = "memory_data_param"

    def setup(self, bottom, top):
        p = self.param
        self.batch_size = int(p.batch_size)
        self.channels, self.height, self.width = int(p.channels), int(p.height), int(p.width)
        if self.batch_size * self.channels * self.height * self.width <= 0:
            raise self.config_error(
                f"batch_size, channels, height and width must be specified and positive in "
                f"memory_data_param (got {self.batch_size}, {self.channels}, {self.height}, "
                f"{self.width})", "batch_size")
        if self.layer_param.has("transform_param"):
            logger.warning(self._msg("transform_param is ignored: Caffe applies it only to "
                                     "data added with AddDatumVector/AddMatVector, not to "
                                     "arrays from set_input_arrays"))
        self._data = None
        self._labels = None
        self.pos = 0

    def reshape(self, bottom, top):
        top[0].reshape((self.batch_size, self.channels, self.height, self.width))
        top[1].reshape((self.batch_size,))

    def set_input_arrays(self, data, labels):
        """Use ``data`` (n x C x H x W) and ``labels`` (n or n x 1 x 1 x 1) from row 0 on."""
        data = np.ascontiguousarray(data, dtype=self.dtype)
        labels = np.asarray(labels)
        if labels.ndim == 4 and labels.shape[1:] == (1, 1, 1):
            labels = labels.reshape(labels.shape[0])
        labels = np.ascontiguousarray(labels, dtype=self.dtype)
        chw = (self.channels, self.height, self.width)
        if data.ndim != 4 or data.shape[1:] != chw:
            raise self.shape_error(f"set_input_arrays: data array must be n x "
                                   f"{' x '.join(map(str, chw))} (channels x height x width "
                                   f"from memory_data_param), got shape {data.shape}")
        if labels.ndim != 1:
            raise self.shape_error(f"set_input_arrays: labels array must be n or n x 1 x 1 x 1, "
                                   f"got shape {labels.shape}")
        if labels.shape[0] != data.shape[0]:
            raise self.shape_error(f"set_input_arrays: data and labels must have the same first "
                                   f"dimension, got {data.shape[0]} and {labels.shape[0]}")
        n = data.shape[0]
        if n == 0 or n % self.batch_size:
            raise self.shape_error(f"set_input_arrays: the first dimension of the input arrays "
                                   f"({n}) must be a positive multiple of batch_size "
                                   f"{self.batch_size}")
        self._data, self._labels, self.pos = data, labels, 0

    def forward(self, bottom, top):
        if self._data is None:
            raise DataError(self._msg("no input arrays: call set_input_arrays(data, labels) "
                                      "before the first forward"))
        be = self.backend
        bs, p = self.batch_size, self.pos
        be.copy_batch(self._data[p:p + bs], top[0].dev_data)
        be.copy_batch(self._labels[p:p + bs], top[1].dev_data)
        self.pos = (p + bs) % self._data.shape[0]

    def get_state(self) -> dict:
        state = super().get_state()
        state["pos"] = int(self.pos)
        return state

    def set_state(self, state: dict):
        super().set_state(state)
        if "pos" in state:
            self.pos = int(state["pos"])
            if self._data is not None:
                self.pos %= self._data.shape[0]


@register_layer("HDF5Data")
class HDF5DataLayer(Layer):
    """Rows of the datasets in a list of HDF5 files, one dataset per top (Caffe's HDF5DataLayer).

    hdf5_data_param: ``source`` (a text file naming .h5 files, separated by whitespace; looked
    up in the current directory, then beside the net file), ``batch_size``, ``shuffle``. Each top
    reads the dataset named like the top; every dataset of a file must have the same first
    dimension (the rows) and its trailing dims give the top shape (batch_size x ...). Integer
    datasets are converted to the net's float type; other types are a DataError. A relative
    file name in the list is looked up in the current directory (as Caffe does) and then beside
    the list file.

    Rows are copied in order, file after file, wrapping around after the last. One file is held
    in memory at a time, as in Caffe. With ``shuffle`` the file order is a permutation (drawn
    again at each pass over the files) and the rows of each file are permuted when it is loaded
    and again whenever its last row was read (Caffe's scheme); the draws come from the layer's
    RNG, so random_seed fixes them. get_state/set_state carry the file order, the file and row
    position and the RNG state behind the current row permutation, for an exact resume.
    transform_param is refused, as in Caffe.
    """

    exact_bottoms = 0
    min_tops = 1
    param_field = "hdf5_data_param"

    def data_error(self, message, field=None) -> DataError:
        return DataError(self._msg(message, field))

    def setup(self, bottom, top):
        from ..data.transformer import resolve_path

        _h5py(self)
        lp, p = self.layer_param, self.param
        if lp.has("transform_param"):
            raise self.config_error("HDF5Data does not transform data: remove transform_param "
                                    "(scale or mean-subtract the data when writing the .h5 files)")
        if len(lp.top) != len(top):
            raise self.config_error("every top must be named: each top reads the HDF5 dataset "
                                    "of its name")
        self.dataset_names = list(lp.top)
        if not p.source:
            raise self.config_error("hdf5_data_param.source is not set (a text file listing the "
                                    ".h5 files to read)", "source")
        self.batch_size = int(p.batch_size)
        if self.batch_size <= 0:
            raise self.config_error(f"hdf5_data_param.batch_size must be positive, got "
                                    f"{self.batch_size}", "batch_size")
        self.shuffle = bool(p.shuffle)
        net_dir = _net_dir(self)
        found, tried = resolve_path(p.source, [net_dir] if net_dir else [])
        if found is None:
            raise self.data_error(f"HDF5 file list {p.source!r} not found; tried "
                                  + " and ".join(str(t) for t in tried), "source")
        self.source = found
        logger.info(f"Loading list of HDF5 filenames from: {found}")
        try:
            names = Path(found).read_text().split()
        except (OSError, UnicodeDecodeError) as e:
            raise self.data_error(f"cannot read the HDF5 file list {found}: {e}", "source") \
                from None
        if not names:
            raise self.data_error(f"{found} lists no HDF5 files (it must name at least one)",
                                  "source")
        files = []
        for name in names:
            f, tried = resolve_path(name, [Path(found).parent])
            if f is None:
                raise self.data_error(f"{found} lists {name!r}, which was not found; tried "
                                      + " and ".join(str(t) for t in tried), "source")
            files.append(f)
        self.files = files
        logger.info(f"Number of HDF5 files: {len(files)}")
        self._item_shapes = None
        self._loaded = None
        self._row_rng = None
        self.file_order = (self.rng.permutation(len(files)) if self.shuffle
                           else np.arange(len(files))).tolist()
        self.file_index = 0
        self._load(self.file_order[0])
        self.row = 0

    def _load(self, file_no, shuffle_rows=True):
        """Read every dataset of file ``file_no`` into memory; draw a row order if shuffling."""
        h5py = _h5py(self)
        path = self.files[file_no]
        arrays = []
        try:
            with h5py.File(path, "r") as f:
                for name in self.dataset_names:
                    if name not in f or not isinstance(f[name], h5py.Dataset):
                        have = ", ".join(k for k in f.keys()) or "none"
                        raise self.data_error(f"{path}: no dataset {name!r} for the top of that "
                                              f"name (datasets in the file: {have})")
                    ds = f[name]
                    if ds.dtype.kind not in "fiu":
                        raise self.data_error(f"{path}: dataset {name!r} has type {ds.dtype}; "
                                              f"only float and integer datasets can be read")
                    if ds.ndim < 1:
                        raise self.data_error(f"{path}: dataset {name!r} is a scalar; it needs "
                                              f"at least 1 axis (the rows)")
                    arrays.append(np.ascontiguousarray(ds[()], dtype=self.dtype))
        except OSError as e:
            raise self.data_error(f"failed opening HDF5 file {path}: {e}") from None
        except H5_DAMAGE as e:      # h5py's other ways of reporting a damaged file
            raise self.data_error(f"HDF5 file {path} is damaged ({type(e).__name__}: {e}); "
                                  "write it again") from None
        rows = arrays[0].shape[0]
        for name, a in zip(self.dataset_names, arrays):
            if a.shape[0] != rows:
                raise self.data_error(
                    f"{path}: dataset {name!r} has {a.shape[0]} rows but "
                    f"{self.dataset_names[0]!r} has {rows}; all datasets need the same first "
                    f"dimension")
        if rows == 0:
            raise self.data_error(f"{path}: the datasets have no rows")
        shapes = [a.shape[1:] for a in arrays]
        if self._item_shapes is None:
            self._item_shapes = shapes
        elif shapes != self._item_shapes:
            raise self.data_error(
                f"{path}: dataset row shapes {shapes} differ from those of the first file read "
                f"{self._item_shapes}; every file must hold rows of the same shape")
        self._arrays = arrays
        self._rows = rows
        self._loaded = file_no
        self.row_order = None
        if self.shuffle and shuffle_rows:
            self._draw_row_order()

    def _draw_row_order(self):
        self._row_rng = self.rng.bit_generator.state
        self.row_order = self.rng.permutation(self._rows)

    def _advance_file(self):
        """Caffe's Next() at the end of a file: next file (reshuffled order after the last), then
        row 0 with a fresh row order."""
        if len(self.files) > 1:
            self.file_index += 1
            if self.file_index == len(self.files):
                self.file_index = 0
                if self.shuffle:
                    self.file_order = self.rng.permutation(len(self.files)).tolist()
            self._load(self.file_order[self.file_index])
        self.row = 0
        if self.shuffle:
            self._draw_row_order()

    def reshape(self, bottom, top):
        for t, s in zip(top, self._item_shapes):
            t.reshape((self.batch_size,) + tuple(s))

    def forward(self, bottom, top):
        i, bs = 0, self.batch_size
        while i < bs:
            k = min(bs - i, self._rows - self.row)
            rows = (slice(self.row, self.row + k) if self.row_order is None
                    else self.row_order[self.row:self.row + k])
            for t, a in zip(top, self._arrays):
                t.data[i:i + k] = a[rows]
            i += k
            self.row += k
            if self.row == self._rows:
                self._advance_file()

    # --- exact resume ----------------------------------------------------------------------
    def get_state(self) -> dict:
        state = super().get_state()
        state.update({"source": str(self.source), "file_order": list(self.file_order),
                      "file_index": int(self.file_index), "row": int(self.row),
                      "row_rng": self._row_rng if self.row_order is not None else None})
        return state

    def set_state(self, state: dict):
        super().set_state(state)
        if "file_order" not in state:
            return
        order = [int(i) for i in state["file_order"]]
        if sorted(order) != list(range(len(self.files))):
            raise self.data_error(f"saved state lists files {order} but {self.source} names "
                                  f"{len(self.files)}; was the list changed?")
        self.file_order = order
        self.file_index = int(state["file_index"])
        file_no = order[self.file_index]
        if self._loaded != file_no:
            self._load(file_no, shuffle_rows=False)
        self.row_order = None
        if state.get("row_rng") is not None:
            now = self.rng.bit_generator.state
            self.rng.bit_generator.state = state["row_rng"]
            self._draw_row_order()
            self.rng.bit_generator.state = now
        row = int(state["row"])
        if not 0 <= row < self._rows:
            raise self.data_error(f"saved row {row} is outside file "
                                  f"{self.files[file_no]} ({self._rows} rows)")
        self.row = row


def _legacy_shape(layer, blob, what):
    if blob.num_axes > 4:
        raise layer.shape_error(f"bottom {what} of shape {blob.shape} has more than 4 axes; "
                                f"HDF5Output writes num x channels x height x width datasets")
    return tuple(blob.shape) + (1,) * (4 - blob.num_axes)


@register_layer("HDF5Output")
class HDF5OutputLayer(Layer):
    """Writes its two bottoms to the HDF5 datasets "data" and "label" (Caffe's HDF5OutputLayer).

    hdf5_output_param.file_name: created (truncated) at setup, relative to the current
    directory. Each forward writes the rows of bottom 0 to "data" and of bottom 1 to "label" as
    num x channels x height x width datasets of the net's float type (Caffe's legacy 4-D
    shapes: missing trailing axes are 1; more than 4 axes is a shape error). Both bottoms need
    the same num. Caffe's layer aborts on its second forward (it tries to create the datasets
    again: BVLC/caffe#1726); here later forwards append their rows, so after k forwards each
    dataset holds the k batches in order and after one forward the file is what Caffe writes.
    The file is flushed after every forward and closed by ``close()``. No tops, no gradient.
    """

    exact_bottoms = 2
    exact_tops = 0
    param_field = "hdf5_output_param"

    DATASETS = ("data", "label")

    def setup(self, bottom, top):
        h5py = _h5py(self)
        self.file_name = self.param.file_name
        if not self.file_name:
            raise self.config_error("hdf5_output_param.file_name is not set (the .h5 file to "
                                    "write)", "file_name")
        try:
            self._file = h5py.File(self.file_name, "w")
        except OSError as e:
            raise DataError(self._msg(f"failed to create HDF5 file {self.file_name}: {e}",
                                      "file_name")) from None
        self._finalizer = weakref.finalize(self, self._file.close)
        self.rows_written = 0

    def reshape(self, bottom, top):
        for i, b in enumerate(bottom):
            _legacy_shape(self, b, self.DATASETS[i])
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise self.shape_error(f"data blob and label blob must have the same batch size "
                                   f"(num): got {bottom[0].shape} and {bottom[1].shape}")

    def forward(self, bottom, top):
        f = self._file
        n = bottom[0].shape[0] if bottom[0].num_axes else 1
        for name, b in zip(self.DATASETS, bottom):
            shape = _legacy_shape(self, b, name)
            values = b.data.reshape(shape)
            if name not in f:
                f.create_dataset(name, data=values, maxshape=(None,) + shape[1:],
                                 chunks=True)
                continue
            ds = f[name]
            if ds.shape[1:] != shape[1:]:
                raise self.shape_error(f"bottom {name} is now {shape} per batch but the "
                                       f"dataset '{name}' in {self.file_name} holds rows of "
                                       f"shape {ds.shape[1:]}")
            old = ds.shape[0]
            ds.resize(old + shape[0], axis=0)
            ds[old:] = values
        f.flush()
        self.rows_written += n
        logger.info(f"Saved {n} rows to HDF5 file {self.file_name} ({self.rows_written} in all)")

    def close(self):
        fin = getattr(self, "_finalizer", None)
        if fin is not None:
            fin()


__all__ = ["MemoryDataLayer", "HDF5DataLayer", "HDF5OutputLayer"]
