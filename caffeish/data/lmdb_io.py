"""LMDB databases in Caffe's layout: one directory holding ``data.mdb``, keys sorted as bytes.

``LMDBWriter`` builds a database atomically: everything goes into a hidden sibling directory
that is renamed onto the target only when the ``with`` block ends without an error, so a
crashed or interrupted conversion never leaves a half-written DB where training would find it.
``LMDBReader`` opens read-only without a lock file, so any number of trainings can read one DB
(and a read-only mount works); its :class:`LMDBCursor` wraps around at the end like Caffe's
DataLayer and can be placed at any record index for an exact resume.
"""
from __future__ import annotations

from pathlib import Path

import lmdb

from ..errors import DataError
from .db_base import CursorBase, ReaderBase, SharedHandles, WriterBase
from .db_base import as_key as _as_key


COMMIT_EVERY = 1000
DEFAULT_MAP_SIZE = 1 << 30

MAKE_DB_HINT = ("create one with `caffeish data mnist DIR` (MNIST) or `convert_imageset ROOT/ "
                "LIST.txt OUT_LMDB` (your images)")


class LMDBWriter(WriterBase):
    """Write an LMDB at ``path`` atomically (see WriterBase).

    >>> with LMDBWriter("train_lmdb") as w:
    ...     w.put("%08d" % i, value)

    When the memory map fills up it is doubled and the pending puts are replayed.
    """

    def __init__(self, path, map_size: int = DEFAULT_MAP_SIZE, overwrite: bool = False,
                 commit_every: int = COMMIT_EVERY):
        super().__init__(path, overwrite, commit_every)
        self.map_size = int(map_size)
        self._check_target()

    def _create(self, tmp):
        try:
            # lock=False: nobody else knows the hidden directory, and the finished DB then
            # holds data.mdb only (as Caffe's do); readers open it without a lock file anyway.
            return lmdb.open(str(tmp), map_size=self.map_size, subdir=True, lock=False,
                             meminit=False)
        except lmdb.Error as e:
            raise DataError(f"cannot create an LMDB at {tmp}: {e}") from None

    def _write(self, pending, final):
        """One transaction, growing the map until the puts fit."""
        env = self._store
        while True:
            txn = env.begin(write=True)
            try:
                for k, v in pending:
                    txn.put(k, v)
                txn.commit()
                return
            except lmdb.MapFullError:
                txn.abort()
                self.map_size *= 2
                env.set_mapsize(self.map_size)
            except lmdb.Error as e:
                txn.abort()
                raise DataError(f"writing {self.path} failed: {e}") from None

    def _finish(self, env):
        env.sync(True)
        env.close()

    def _close_store(self, env):
        env.close()


# LMDB forbids opening one database file twice in a process (py-lmdb refuses): see SharedHandles.
_SHARED = SharedHandles()


def _open_shared(path: Path, subdir: bool):
    def opener():
        try:
            env = lmdb.open(str(path), readonly=True, lock=False, subdir=subdir)
            return env, env.stat()["entries"]
        except lmdb.Error as e:
            raise DataError(f"{path} is not a readable LMDB ({e}); {MAKE_DB_HINT}") from None

    return _SHARED.acquire(path / "data.mdb" if subdir else path, opener, MAKE_DB_HINT)


class LMDBReader(ReaderBase):
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

    def close(self):
        if self.env is not None:
            self.env = None
            _SHARED.release(self._key)


class LMDBCursor(CursorBase):
    """The endless cursor of an LMDB (see CursorBase), in one read transaction."""

    def __init__(self, reader: LMDBReader):
        self.reader = reader
        if len(reader) == 0:
            raise DataError(f"LMDB {reader.path} holds no records; {MAKE_DB_HINT}")
        self._txn = reader.env.begin(buffers=False)
        self._cur = self._txn.cursor()
        self.position = 0
        self.epochs = 0
        self._cur.first()

    def _current(self):
        return self._cur.item()

    def _advance(self) -> bool:
        return self._cur.next()

    def _rewind(self):
        self._cur.first()

    def _seek_key(self, key) -> bool:
        return self._cur.set_key(_as_key(key))

    def close(self):
        if self._txn is not None:
            try:
                self._txn.abort()
            except lmdb.Error:   # the Environment was closed first; nothing left to release
                pass
            self._txn = None


LMDBReader.cursor_class = LMDBCursor
