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

from pathlib import Path

from ..errors import DataError
from .db_base import CursorBase, ReaderBase, SharedHandles, WriterBase
from .db_base import as_key as _as_key
from .lmdb_io import MAKE_DB_HINT


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


class LevelDBWriter(WriterBase):
    """Write a LevelDB at ``path`` atomically (see WriterBase).

    >>> with LevelDBWriter("train_leveldb") as w:
    ...     w.put("%08d" % i, value)

    Puts go into one write batch per commit; the last batch is written with ``sync``.
    """

    def __init__(self, path, overwrite: bool = False, commit_every: int = COMMIT_EVERY,
                 write_buffer_size: int = WRITE_BUFFER_SIZE):
        super().__init__(path, overwrite, commit_every)
        self.write_buffer_size = int(write_buffer_size)
        self._plyvel = _plyvel(self.path, "writing")    # before any work is done
        self._check_target()

    def _create(self, tmp):
        plyvel = self._plyvel
        try:
            return plyvel.DB(str(tmp), create_if_missing=True, error_if_exists=True,
                             write_buffer_size=self.write_buffer_size, compression="snappy")
        except plyvel.Error as e:
            raise DataError(f"cannot create a LevelDB at {tmp}: {_reason(e)}") from None

    def _write(self, pending, final):
        try:
            with self._store.write_batch(sync=final) as batch:
                for k, v in pending:
                    batch.put(k, v)
        except self._plyvel.Error as e:
            raise DataError(f"writing {self.path} failed: {_reason(e)}") from None

    def _finish(self, db):
        db.close()

    def _close_store(self, db):
        db.close()


# LevelDB refuses a second open of one directory in a process (its LOCK is held): see
# SharedHandles.
_SHARED = SharedHandles()


def _open_shared(path: Path):
    plyvel = _plyvel(path, "reading")

    def opener():
        try:
            db = plyvel.DB(str(path), create_if_missing=False)
        except plyvel.Error as e:
            raise _open_error(path, e, plyvel) from None
        try:
            # LevelDB keeps no count: step over the keys once.
            with db.iterator(include_value=False) as it:
                return db, sum(1 for _ in it)
        except plyvel.Error as e:
            db.close()
            raise _corruption(path, e) from None

    return _SHARED.acquire(path, opener, MAKE_DB_HINT) + (plyvel,)


class LevelDBReader(ReaderBase):
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

    def close(self):
        if self.db is not None:
            self.db = None
            _SHARED.release(self._key)


class LevelDBCursor(CursorBase):
    """The endless cursor of a LevelDB (see CursorBase). It reads a snapshot taken when it was
    made (as an LMDB cursor reads one transaction)."""

    def __init__(self, reader: LevelDBReader):
        self.reader = reader
        if len(reader) == 0:
            raise DataError(f"LevelDB {reader.path} holds no records; {MAKE_DB_HINT}")
        self._it = reader.db.iterator()
        self._item: tuple[bytes, bytes] | None = None
        self.position = 0
        self.epochs = 0
        self._rewind()

    # The iterator always stands just past ``_item``, the record next() returns next.
    def _advance(self) -> bool:
        try:
            self._item = next(self._it)
            return True
        except StopIteration:
            return False
        except self.reader._plyvel.Error as e:
            raise _corruption(self.reader.path, e) from None
        except RuntimeError as e:      # plyvel: "Database or iterator is closed"
            raise DataError(f"cannot read {self.reader.path}: {e}") from None

    def _rewind(self):
        self._it.seek_to_start()
        if not self._advance():
            raise DataError(f"LevelDB {self.reader.path} holds no records; {MAKE_DB_HINT}")

    def _current(self):
        return self._item

    def _seek_key(self, key) -> bool:
        key = _as_key(key)
        self._it.seek(key)
        return self._advance() and self._item[0] == key

    def close(self):
        if self._it is not None:
            try:
                self._it.close()
            except RuntimeError:    # the database was closed first; nothing left to release
                pass
            self._it = None


LevelDBReader.cursor_class = LevelDBCursor
