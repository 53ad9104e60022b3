"""LevelDB databases in Caffe's layout (``--backend leveldb``, ``backend: LEVELDB``): a directory
holding ``CURRENT``, ``MANIFEST-*``, ``*.ldb`` tables and a ``*.log``; keys sorted as bytes.

Same interface and guarantees as :mod:`caffeish.data.lmdb_io`: :class:`LevelDBWriter` builds the
database in a hidden sibling directory renamed onto the target only when the ``with`` block ends
without an error; :class:`LevelDBReader` counts the records once at open, iterates in key order
and hands out :class:`LevelDBCursor`\\ s that wrap around at the end like Caffe's DataLayer and
can be put back at any record for an exact resume.

LevelDB itself differs from LMDB in two ways that show here:

- A LevelDB can be open in one process at a time (it holds ``LOCK``), and once per process.
  Readers in one process share one open database per directory, so a TRAIN and a TEST net, or
  two Data layers, can read the same DB; a second *process* gets a clear error (LMDB has no
  such limit).
- Opening a LevelDB writes to its directory (``LOCK``, ``LOG``, a new ``*.log``), so it needs
  write access even to be read.

Writing follows Caffe's ``db_leveldb.cpp``: ``create_if_missing``, ``error_if_exists``, a 256 MiB
write buffer and LevelDB's default snappy compression of table blocks. The Python binding is
``plyvel`` (``pip install 'caffeish[leveldb]'``), imported only when a LevelDB is used.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from ..errors import DataError
from .lmdb_io import MAKE_DB_HINT, _as_key, move_into_place

log = logging.getLogger("caffeish.data")

COMMIT_EVERY = 1000
WRITE_BUFFER_SIZE = 256 << 20        # Caffe's db_leveldb.cpp
INSTALL_HINT = "pip install 'caffeish[leveldb]' (or pip install plyvel)"


def _plyvel(path, doing: str):
    """The plyvel module, or a DataError saying how to install it."""
    try:
        import plyvel
    except ImportError as e:
        raise DataError(f"{doing} the LevelDB {path} needs the plyvel package, which is not "
                        f"installed ({e}); {INSTALL_HINT}") from None
    return plyvel


def _reason(err: BaseException) -> str:
    """plyvel's message as text (plyvel passes LevelDB's status as bytes)."""
    arg = err.args[0] if err.args else ""
    if isinstance(arg, bytes):
        arg = arg.decode("utf-8", "replace")
    return str(arg) or type(err).__name__


def _corruption(path, err) -> DataError:
    why = _reason(err)
    msg = f"{path} is a damaged LevelDB ({why})"
    if "compress" in why.lower():
        msg += ("; if the DB is intact, this LevelDB library cannot decompress its blocks "
                "(Caffe writes snappy-compressed tables): install a plyvel built with snappy "
                "(the PyPI wheels are) or convert the DB to LMDB where it was written")
    else:
        msg += "; write it again (convert_imageset --backend leveldb --overwrite ...)"
    return DataError(msg)


def _open_error(path, err, plyvel) -> DataError:
    """A DataError for a failed plyvel.DB(path) that says what to do."""
    if isinstance(err, plyvel.CorruptionError):
        return _corruption(path, err)
    why = _reason(err)
    low = why.lower()
    if "already held by process" in low:
        return DataError(
            f"cannot open the LevelDB {path}: this process already has it open outside "
            f"caffeish's readers ({why}); close that handle first (LevelDB opens a database "
            "once per process)")
    if "error: lock " in low:       # LevelDB's "IO error: lock DIR/LOCK: <why>"
        return DataError(
            f"cannot open the LevelDB {path}: it is open in another process ({why}); LevelDB "
            "lets one process at a time open a database: stop the other process, read a copy "
            "of the DB, or convert it to LMDB, which any number of processes may read")
    if "permission denied" in low or "read-only file system" in low:
        return DataError(
            f"cannot open the LevelDB {path}: {why}; LevelDB writes to its directory even to "
            "read it (LOCK, LOG and log files): make the directory writable, read a writable "
            "copy, or convert it to LMDB (which reads from read-only places)")
    return DataError(f"cannot open the LevelDB {path}: {why}")


class LevelDBWriter:
    """Write a LevelDB at ``path`` atomically.

    >>> with LevelDBWriter("train_leveldb") as w:
    ...     w.put("%08d" % i, value)

    Puts go into a write batch written every ``commit_every`` records (Caffe's tools commit
    every 1000); the last batch is written with ``sync``. An existing ``path`` is refused unless
    ``overwrite``; then it is replaced only at the final rename.
    """

    def __init__(self, path, overwrite: bool = False, commit_every: int = COMMIT_EVERY,
                 write_buffer_size: int = WRITE_BUFFER_SIZE):
        self.path = Path(path)
        self.overwrite = overwrite
        self.commit_every = int(commit_every)
        self.write_buffer_size = int(write_buffer_size)
        self.count = 0
        self._pending: list[tuple[bytes, bytes]] = []
        self._db = None
        self._tmp: Path | None = None
        self._plyvel = _plyvel(self.path, "writing")    # before any work is done
        self._check_target()

    def _check_target(self):
        if (self.path.exists() or self.path.is_symlink()) and not self.overwrite:
            raise DataError(f"{self.path} already exists; remove it or pass overwrite "
                            "(--overwrite) to replace it")

    # --- lifecycle -----------------------------------------------------------------------
    def open(self):
        if self._db is not None:
            return self
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot create the directory {parent} for {self.path}: {e}") from None
        self._tmp = parent / f".{self.path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        plyvel = self._plyvel
        try:
            self._db = plyvel.DB(str(self._tmp), create_if_missing=True, error_if_exists=True,
                                 write_buffer_size=self.write_buffer_size, compression="snappy")
        except plyvel.Error as e:
            self._discard()
            raise DataError(f"cannot create a LevelDB at {self._tmp}: {_reason(e)}") from None
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
        if self._db is None:
            self.open()
        self._pending.append((_as_key(key), bytes(value)))
        self.count += 1
        if len(self._pending) >= self.commit_every:
            self.commit()

    def commit(self, sync: bool = False):
        """Write the pending puts as one write batch."""
        if not self._pending:
            return
        try:
            with self._db.write_batch(sync=sync) as batch:
                for k, v in self._pending:
                    batch.put(k, v)
        except self._plyvel.Error as e:
            raise DataError(f"writing {self.path} failed: {_reason(e)}") from None
        self._pending.clear()

    def close(self):
        """Write what is pending, close and move the finished database onto ``path``."""
        if self._db is None:
            self.open()
        try:
            self.commit(sync=True)
            self._db.close()
        except BaseException:
            self.abort()
            raise
        self._db = None
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
        db, self._db = self._db, None
        try:
            if db is not None:
                db.close()
        finally:
            self._discard()

    def _discard(self):
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


# LevelDB refuses a second open of one directory in a process (its LOCK is held), yet a TRAIN
# and a TEST net, or two Data layers, may read the same DB: readers share one open database per
# directory, keyed by its (device, inode); the last reader to close it closes the database.
_SHARED_LOCK = threading.Lock()
_SHARED: dict[tuple, list] = {}


def _open_shared(path: Path):
    plyvel = _plyvel(path, "reading")
    try:
        st = os.stat(path)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}; {MAKE_DB_HINT}") from None
    key = (st.st_dev, st.st_ino)
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            try:
                db = plyvel.DB(str(path), create_if_missing=False)
            except plyvel.Error as e:
                raise _open_error(path, e, plyvel) from None
            try:
                # LevelDB keeps no count: step over the keys once.
                with db.iterator(include_value=False) as it:
                    n = sum(1 for _ in it)
            except plyvel.Error as e:
                db.close()
                raise _corruption(path, e) from None
            entry = _SHARED[key] = [db, 0, n]
        entry[1] += 1
        return key, entry[0], entry[2], plyvel


def _release_shared(key):
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _SHARED[key]
            entry[0].close()


class LevelDBReader:
    """Access to a Caffe LevelDB: records in key order, ``get``, endless cursors.

    Several readers of one directory in one process share one open database."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"LevelDB {self.path} does not exist; {MAKE_DB_HINT}")
        if not self.path.is_dir() or not (self.path / "CURRENT").is_file():
            what = ("a file, not a directory" if not self.path.is_dir()
                    else "no CURRENT file inside")
            extra = ""
            if self.path.is_file() or (self.path / "data.mdb").is_file():
                extra = (" (it looks like an LMDB: read it with backend lmdb, or leave the "
                         "backend unset to detect it)")
            raise DataError(f"{self.path} is not a LevelDB ({what}){extra}; {MAKE_DB_HINT}")
        self._key, self.db, self._len, self._plyvel = _open_shared(self.path)

    def __len__(self):
        return self._len

    def __iter__(self):
        """(key, value) pairs in key order (from a snapshot taken when iteration starts)."""
        it = self.db.iterator()
        try:
            while True:
                try:
                    item = next(it)
                except StopIteration:
                    return
                except self._plyvel.Error as e:
                    raise _corruption(self.path, e) from None
                yield item
        finally:
            it.close()

    def get(self, key) -> bytes | None:
        try:
            return self.db.get(_as_key(key))
        except self._plyvel.Error as e:
            raise _corruption(self.path, e) from None

    def keys(self) -> list[bytes]:
        with self.db.iterator(include_value=False) as it:
            try:
                return list(it)
            except self._plyvel.Error as e:
                raise _corruption(self.path, e) from None

    def cursor(self, position: int = 0, key: bytes | None = None) -> "LevelDBCursor":
        c = LevelDBCursor(self)
        c.seek(position, key)
        return c

    def close(self):
        if self.db is not None:
            self.db = None
            _release_shared(self._key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"LevelDBReader({str(self.path)!r}, {self._len} records)"


class LevelDBCursor:
    """An endless cursor: ``next()`` returns (key, value) and wraps to the first record.

    ``position`` is the index (0-based, in key order) of the record ``next()`` returns next;
    ``key`` is that record's key. ``seek(position, key)`` puts the cursor back there: with the
    key it jumps directly (checking the key still exists), otherwise it walks from the start.
    The cursor reads a snapshot taken when it was made (as an LMDB cursor reads one transaction).
    """

    def __init__(self, reader: LevelDBReader):
        self.reader = reader
        if len(reader) == 0:
            raise DataError(f"LevelDB {reader.path} holds no records; {MAKE_DB_HINT}")
        self._it = reader.db.iterator()
        self._item: tuple[bytes, bytes] | None = None
        self.position = 0
        self.epochs = 0
        self._first()

    def __len__(self):
        return len(self.reader)

    # The iterator always stands just past ``_item``, the record next() returns next.
    def _load(self) -> bool:
        try:
            self._item = next(self._it)
            return True
        except StopIteration:
            return False
        except self.reader._plyvel.Error as e:
            raise _corruption(self.reader.path, e) from None
        except RuntimeError as e:      # plyvel: "Database or iterator is closed"
            raise DataError(f"cannot read {self.reader.path}: {e}") from None

    def _first(self):
        self._it.seek_to_start()
        if not self._load():
            raise DataError(f"LevelDB {self.reader.path} holds no records; {MAKE_DB_HINT}")

    @property
    def key(self) -> bytes:
        return self._item[0]

    def seek(self, position: int = 0, key: bytes | None = None):
        n = len(self.reader)
        position = int(position) % n
        if key is not None:
            key = _as_key(key)
            self._it.seek(key)
            if self._load() and self._item[0] == key:
                self.position = position
                return self
        self._first()
        for _ in range(position):
            if not self._load():
                raise DataError(f"cannot seek to record {position} of {self.reader.path}")
        self.position = position
        return self

    def peek(self) -> tuple[bytes, bytes]:
        """The record ``next()`` would return, without moving."""
        return self._item

    def next(self) -> tuple[bytes, bytes]:
        item = self._item
        if not self._load():
            log.info("Restarting data prefetching from start.")
            self._first()
            self.position = 0
            self.epochs += 1
        else:
            self.position += 1
        return item

    __next__ = next

    def __iter__(self):
        return self

    def close(self):
        if self._it is not None:
            try:
                self._it.close()
            except RuntimeError:    # the database was closed first; nothing left to release
                pass
            self._it = None
