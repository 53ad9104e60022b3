"""LMDB databases in Caffe's layout: one directory holding ``data.mdb``, keys sorted as bytes.

``LMDBWriter`` builds a database atomically: everything goes into a hidden sibling directory
that is renamed onto the target only when the ``with`` block ends without an error, so a
crashed or interrupted conversion never leaves a half-written DB where training would find it.
``LMDBReader`` opens read-only without a lock file, so any number of trainings can read one DB
(and a read-only mount works); its :class:`LMDBCursor` wraps around at the end like Caffe's
DataLayer and can be placed at any record index for an exact resume.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

import lmdb

from ..errors import DataError

log = logging.getLogger("caffeish.data")

COMMIT_EVERY = 1000
DEFAULT_MAP_SIZE = 1 << 30

MAKE_DB_HINT = ("create one with `caffeish data mnist DIR` (MNIST) or `convert_imageset ROOT/ "
                "LIST.txt OUT_LMDB` (your images)")


def _as_key(key) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    raise TypeError(f"LMDB keys are str or bytes, got {type(key).__name__}")


def move_into_place(tmp: Path, path: Path) -> None:
    """Rename the finished database directory ``tmp`` onto ``path``, replacing what is there
    (moved aside first, deleted after): the last step of an atomic write."""
    old = None
    if path.exists() or path.is_symlink():
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


class LMDBWriter:
    """Write an LMDB at ``path`` atomically.

    >>> with LMDBWriter("train_lmdb") as w:
    ...     w.put("%08d" % i, value)

    Puts are committed every ``commit_every`` records (Caffe's tools commit every 1000); when
    the memory map fills up it is doubled and the pending puts are replayed. An existing
    ``path`` is refused unless ``overwrite``; then it is replaced only at the final rename.
    """

    def __init__(self, path, map_size: int = DEFAULT_MAP_SIZE, overwrite: bool = False,
                 commit_every: int = COMMIT_EVERY):
        self.path = Path(path)
        self.map_size = int(map_size)
        self.overwrite = overwrite
        self.commit_every = int(commit_every)
        self.count = 0
        self._pending: list[tuple[bytes, bytes]] = []
        self._env = None
        self._tmp: Path | None = None
        self._check_target()

    def _check_target(self):
        if (self.path.exists() or self.path.is_symlink()) and not self.overwrite:
            raise DataError(f"{self.path} already exists; remove it or pass overwrite "
                            "(--overwrite) to replace it")

    # --- lifecycle -----------------------------------------------------------------------
    def open(self):
        if self._env is not None:
            return self
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot create the directory {parent} for {self.path}: {e}") from None
        self._tmp = parent / f".{self.path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            # lock=False: nobody else knows the hidden directory, and the finished DB then
            # holds data.mdb only (as Caffe's do); readers open it without a lock file anyway.
            self._env = lmdb.open(str(self._tmp), map_size=self.map_size, subdir=True,
                                  lock=False, meminit=False)
        except lmdb.Error as e:
            self._discard()
            raise DataError(f"cannot create an LMDB at {self._tmp}: {e}") from None
        return self

    def __enter__(self):
        return self.open()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def put(self, key, value: bytes):
        if self._env is None:
            self.open()
        self._pending.append((_as_key(key), bytes(value)))
        self.count += 1
        if len(self._pending) >= self.commit_every:
            self.commit()

    def commit(self):
        """Write the pending puts in one transaction, growing the map until they fit."""
        if not self._pending:
            return
        while True:
            txn = self._env.begin(write=True)
            try:
                for k, v in self._pending:
                    txn.put(k, v)
                txn.commit()
                break
            except lmdb.MapFullError:
                txn.abort()
                self.map_size *= 2
                self._env.set_mapsize(self.map_size)
            except lmdb.Error as e:
                txn.abort()
                raise DataError(f"writing {self.path} failed: {e}") from None
        self._pending.clear()

    def close(self):
        """Commit, close and move the finished database onto ``path``."""
        if self._env is None:
            self.open()
        try:
            self.commit()
            self._env.sync(True)
        except BaseException:
            self.abort()
            raise
        self._env.close()
        self._env = None
        try:
            self._check_target()
        except DataError:
            self._discard()
            raise
        move_into_place(self._tmp, self.path)
        self._tmp = None

    def abort(self):
        """Drop everything written so far; ``path`` is left as it was."""
        self._pending.clear()
        if self._env is not None:
            self._env.close()
            self._env = None
        self._discard()

    def _discard(self):
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


# LMDB forbids opening one database file twice in a process (py-lmdb refuses), yet a TRAIN and a
# TEST net, or two Data layers, may read the same DB: readers share one Environment per data
# file, keyed by its (device, inode), and the last reader to close it closes the Environment.
_SHARED_LOCK = threading.Lock()
_SHARED: dict[tuple, list] = {}


def _open_shared(path: Path, subdir: bool):
    data_file = path / "data.mdb" if subdir else path
    try:
        st = os.stat(data_file)
    except OSError as e:
        raise DataError(f"cannot read {data_file}: {e}; {MAKE_DB_HINT}") from None
    key = (st.st_dev, st.st_ino)
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            try:
                env = lmdb.open(str(path), readonly=True, lock=False, subdir=subdir)
                n = env.stat()["entries"]
            except lmdb.Error as e:
                raise DataError(f"{path} is not a readable LMDB ({e}); {MAKE_DB_HINT}") from None
            entry = _SHARED[key] = [env, 0, n]
        entry[1] += 1
        return key, entry[0], entry[2]


def _release_shared(key):
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _SHARED[key]
            entry[0].close()


class LMDBReader:
    """Read-only access to a Caffe LMDB (``lock=False``: many readers, no lock file)."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"LMDB {self.path} does not exist; {MAKE_DB_HINT}")
        subdir = self.path.is_dir()
        if subdir and not (self.path / "data.mdb").is_file():
            if (self.path / "CURRENT").is_file():
                raise DataError(f"{self.path} is a LevelDB (it holds CURRENT), not an LMDB; read "
                                "it with backend leveldb (data_param backend: LEVELDB, "
                                "--backend leveldb) or leave the backend unset to detect it")
            raise DataError(f"{self.path} is not an LMDB (no data.mdb inside); {MAKE_DB_HINT}")
        self._key, self.env, self._len = _open_shared(self.path, subdir)

    def __len__(self):
        return self._len

    def __iter__(self):
        """(key, value) pairs in key order."""
        with self.env.begin(buffers=False) as txn:
            yield from txn.cursor()

    def get(self, key) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(_as_key(key))

    def keys(self) -> list[bytes]:
        with self.env.begin() as txn:
            return list(txn.cursor().iternext(keys=True, values=False))

    def cursor(self, position: int = 0, key: bytes | None = None) -> "LMDBCursor":
        c = LMDBCursor(self)
        c.seek(position, key)
        return c

    def close(self):
        if self.env is not None:
            self.env = None
            _release_shared(self._key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"LMDBReader({str(self.path)!r}, {self._len} records)"


class LMDBCursor:
    """An endless cursor: ``next()`` returns (key, value) and wraps to the first record.

    ``position`` is the index (0-based, in key order) of the record ``next()`` returns next;
    ``key`` is that record's key. ``seek(position, key)`` puts the cursor back there: with the
    key it jumps directly (checking the key still exists), otherwise it walks from the start.
    """

    def __init__(self, reader: LMDBReader):
        self.reader = reader
        if len(reader) == 0:
            raise DataError(f"LMDB {reader.path} holds no records; {MAKE_DB_HINT}")
        self._txn = reader.env.begin(buffers=False)
        self._cur = self._txn.cursor()
        self.position = 0
        self.epochs = 0
        self._cur.first()

    def __len__(self):
        return len(self.reader)

    @property
    def key(self) -> bytes:
        return self._cur.key()

    def seek(self, position: int = 0, key: bytes | None = None):
        n = len(self.reader)
        position = int(position) % n
        if key is not None:
            key = _as_key(key)
            if self._cur.set_key(key):
                self.position = position
                return self
        self._cur.first()
        if position:
            # LMDB has no positional index: step over the records before ``position``.
            step = self._cur.next
            for _ in range(position):
                if not step():
                    raise DataError(f"cannot seek to record {position} of {self.reader.path}")
        self.position = position
        return self

    def peek(self) -> tuple[bytes, bytes]:
        """The record ``next()`` would return, without moving."""
        return self._cur.item()

    def next(self) -> tuple[bytes, bytes]:
        k, v = self._cur.item()
        if not self._cur.next():
            log.info("Restarting data prefetching from start.")
            self._cur.first()
            self.position = 0
            self.epochs += 1
        else:
            self.position += 1
        return k, v

    __next__ = next

    def __iter__(self):
        return self

    def close(self):
        if self._txn is not None:
            try:
                self._txn.abort()
            except lmdb.Error:   # the Environment was closed first; nothing left to release
                pass
            self._txn = None
