"""One door to Caffe's two database backends, LMDB and LevelDB.

``open_db(path, backend=None)`` returns a reader (:class:`~caffeish.data.lmdb_io.LMDBReader` or
:class:`~caffeish.data.leveldb_io.LevelDBReader`, same interface); without a backend it is
detected from the directory: ``data.mdb`` (or a single file) is an LMDB, ``CURRENT`` a LevelDB.
``db_writer(path, backend)`` returns the matching atomic writer.

A backend is ``"lmdb"`` or ``"leveldb"`` in any case, or Caffe's ``DataParameter.DB`` enum:
``LMDB`` / ``1`` and ``LEVELDB`` / ``0``.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .lmdb_io import MAKE_DB_HINT

LMDB = "lmdb"
LEVELDB = "leveldb"
BACKENDS = (LMDB, LEVELDB)
_NAMES = {"lmdb": LMDB, "1": LMDB, "leveldb": LEVELDB, "0": LEVELDB}
_SHOWN = {LMDB: "an LMDB", LEVELDB: "a LevelDB"}
_MARK = {LMDB: "data.mdb", LEVELDB: "CURRENT"}
_ASK = {LMDB: "--backend lmdb, or backend: LMDB in data_param",
        LEVELDB: "--backend leveldb, or backend: LEVELDB in data_param"}


def backend_name(backend) -> str | None:
    """``"lmdb"``, ``"leveldb"``, or None for None / ``""``; a DataError for anything else."""
    if backend is None or backend == "":
        return None
    # True/False are not Caffe's 1/0
    name = None if isinstance(backend, bool) else _NAMES.get(str(backend).strip().lower())
    if name is None:
        raise DataError(f"unknown database backend {backend!r}; the backends are lmdb "
                        "(Caffe's LMDB = 1) and leveldb (Caffe's LEVELDB = 0)")
    return name


def detect_backend(path) -> str | None:
    """What is at ``path``: ``"lmdb"`` (a directory holding data.mdb, or one LMDB data file),
    ``"leveldb"`` (a directory holding CURRENT), or None."""
    path = Path(path)
    if path.is_file():
        return LMDB
    if (path / "data.mdb").is_file():
        return LMDB
    if (path / "CURRENT").is_file():
        return LEVELDB
    return None


def open_db(path, backend=None):
    """A reader of the database at ``path``: the given backend, or the one found on disk.

    A backend that disagrees with what the directory holds is an error naming what was found.
    """
    wanted = backend_name(backend)
    path = Path(path)
    if not path.exists():
        what = "database" if wanted is None else ("LMDB" if wanted == LMDB else "LevelDB")
        raise DataError(f"{what} {path} does not exist; {MAKE_DB_HINT}")
    found = detect_backend(path)
    if found is None and wanted is None:
        raise DataError(f"{path} is neither an LMDB (no data.mdb inside) nor a LevelDB (no "
                        f"CURRENT file inside); {MAKE_DB_HINT}")
    if wanted is not None and found is not None and found != wanted:
        raise DataError(
            f"{path} is {_SHOWN[found]} (it holds {_MARK[found]}), but the backend asked for is "
            f"{wanted}; ask for {found} ({_ASK[found]}), or leave the backend unset to detect it")
    if (wanted or found) == LEVELDB:
        from .leveldb_io import LevelDBReader
        return LevelDBReader(path)
    from .lmdb_io import LMDBReader
    return LMDBReader(path)


def db_writer(path, backend=LMDB, *, overwrite: bool = False, commit_every: int = 1000,
              map_size: int | None = None):
    """An atomic writer of a new database at ``path`` (LMDB when ``backend`` is None).

    ``map_size`` is LMDB's initial memory map (it grows when full); LevelDB ignores it.
    """
    name = backend_name(backend) or LMDB
    if name == LEVELDB:
        from .leveldb_io import LevelDBWriter
        return LevelDBWriter(path, overwrite=overwrite, commit_every=commit_every)
    from .lmdb_io import DEFAULT_MAP_SIZE, LMDBWriter
    return LMDBWriter(path, map_size=map_size or DEFAULT_MAP_SIZE, overwrite=overwrite,
                      commit_every=commit_every)


def db_kind(reader) -> str:
    """``"LMDB"`` or ``"LevelDB"``: how to name the database a reader reads, in messages."""
    from .leveldb_io import LevelDBReader
    return "LevelDB" if isinstance(reader, LevelDBReader) else "LMDB"


__all__ = ["open_db", "db_writer", "backend_name", "detect_backend", "db_kind", "BACKENDS",
           "LMDB", "LEVELDB"]
