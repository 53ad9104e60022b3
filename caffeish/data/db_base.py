"""What the LMDB and LevelDB readers and cursors share: record counts, endless cursors with
positions for an exact resume, context management."""
from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from ..errors import DataError

log = logging.getLogger("caffeish.data")


def as_key(key) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    raise TypeError(f"database keys are str or bytes, got {type(key).__name__}")


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


class WriterBase:
    """Write a database at ``path`` atomically: records go into a hidden sibling directory that
    is renamed onto ``path`` only when ``close()`` (the end of a ``with`` block without an error)
    finishes; ``abort()`` leaves ``path`` as it was. Puts are written every ``commit_every``
    records (Caffe's tools commit every 1000). An existing ``path`` is refused unless
    ``overwrite``; then it is replaced only at the final rename.

    Subclasses give ``_create(tmp)`` (the open store, or a DataError), ``_write(pending,
    final)``, ``_finish(store)`` (flush and close) and ``_close_store(store)``.
    """

    def __init__(self, path, overwrite: bool, commit_every: int):
        self.path = Path(path)
        self.overwrite = overwrite
        self.commit_every = int(commit_every)
        self.count = 0
        self._pending: list[tuple[bytes, bytes]] = []
        self._store = None
        self._tmp: Path | None = None

    def _check_target(self):
        if (self.path.exists() or self.path.is_symlink()) and not self.overwrite:
            raise DataError(f"{self.path} already exists; remove it or pass overwrite "
                            "(--overwrite) to replace it")

    # --- lifecycle -----------------------------------------------------------------------
    def open(self):
        if self._store is not None:
            return self
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot create the directory {parent} for {self.path}: {e}") from None
        self._tmp = parent / f".{self.path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self._store = self._create(self._tmp)
        except DataError:
            self._discard()
            raise
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
        if self._store is None:
            self.open()
        self._pending.append((as_key(key), bytes(value)))
        self.count += 1
        if len(self._pending) >= self.commit_every:
            self.commit()

    def commit(self, final: bool = False):
        """Write the pending puts (``final``: the last write, made durable)."""
        if not self._pending:
            return
        self._write(self._pending, final)
        self._pending.clear()

    def close(self):
        """Write what is pending, close and move the finished database onto ``path``."""
        if self._store is None:
            self.open()
        try:
            self.commit(final=True)
            self._finish(self._store)
        except BaseException:
            self.abort()
            raise
        self._store = None
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
        store, self._store = self._store, None
        try:
            if store is not None:
                self._close_store(store)
        finally:
            self._discard()

    def _discard(self):
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class SharedHandles:
    """Open databases shared by the readers of one file in this process, keyed by the file's
    (device, inode): LMDB and LevelDB both refuse a second open of one database in a process,
    yet a TRAIN and a TEST net, or two Data layers, may read the same DB. The last reader to
    let go closes the handle."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[tuple, list] = {}

    def acquire(self, file, opener, missing_hint: str):
        """(key, handle, record count) for ``file``; ``opener()`` gives (handle, count) when
        the file is not open yet."""
        try:
            st = os.stat(file)
        except OSError as e:
            raise DataError(f"cannot read {file}: {e}; {missing_hint}") from None
        key = (st.st_dev, st.st_ino)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                handle, n = opener()
                entry = self._entries[key] = [handle, 0, n]
            entry[1] += 1
            return key, entry[0], entry[2]

    def release(self, key):
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del self._entries[key]
                entry[0].close()


class ReaderBase:
    """``len``, ``cursor()``, ``with``, repr; subclasses set ``path``, ``_len``,
    ``cursor_class`` and define ``close``."""

    cursor_class: type

    def __len__(self):
        return self._len

    def cursor(self, position: int = 0, key: bytes | None = None):
        c = self.cursor_class(self)
        c.seek(position, key)
        return c

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"{type(self).__name__}({str(self.path)!r}, {self._len} records)"


class CursorBase:
    """An endless cursor: ``next()`` returns (key, value) and wraps to the first record.

    ``position`` is the index (0-based, in key order) of the record ``next()`` returns next;
    ``key`` is that record's key. ``seek(position, key)`` puts the cursor back there: with the
    key it jumps directly (checking the key still exists), otherwise it walks from the start.

    Subclasses give ``_current()`` (the record next() returns), ``_advance()`` (step on; False
    past the last record), ``_rewind()`` (to the first record) and ``_seek_key(key)`` (stand on
    ``key``; False when it is not there), and set ``reader``, ``position`` and ``epochs``.
    """

    def __len__(self):
        return len(self.reader)

    @property
    def key(self) -> bytes:
        return self._current()[0]

    def seek(self, position: int = 0, key: bytes | None = None):
        position = int(position) % len(self.reader)
        if key is not None and self._seek_key(key):
            self.position = position
            return self
        self._rewind()
        # no positional index: step over the records before ``position``
        for _ in range(position):
            if not self._advance():
                raise DataError(f"cannot seek to record {position} of {self.reader.path}")
        self.position = position
        return self

    def peek(self) -> tuple[bytes, bytes]:
        """The record ``next()`` would return, without moving."""
        return self._current()

    def next(self) -> tuple[bytes, bytes]:
        item = self._current()
        if not self._advance():
            log.info("Restarting data prefetching from start.")
            self._rewind()
            self.position = 0
            self.epochs += 1
        else:
            self.position += 1
        return item

    __next__ = next

    def __iter__(self):
        return self
