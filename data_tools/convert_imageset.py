"""convert_imageset: a folder of images + a list file -> an LMDB (or a LevelDB) of Caffe Datum
records.

    convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME

Caffe's tool (tools/convert_imageset.cpp), record for record:

- LISTFILE holds ``relative/path label`` lines; the path is everything before the last space, so
  paths may contain spaces. ``ROOTFOLDER + path`` is the file (glued as strings, as Caffe does;
  a root that names a directory but lacks the trailing '/' gets one).
- Keys are ``%08d_<path>``, the number being the line's index in the (shuffled) list. A skipped
  image leaves a gap in the numbers, as in Caffe.
- Values are Datum records: ``channels, height, width, data`` (uint8, C x H x W, **BGR**),
  ``label`` and an explicit ``encoded: false``, byte-identical to Caffe's when the pixels are.
  With ``--encoded`` (or ``--encode_type``) the record holds a compressed file instead
  (``data, label, encoded: true``): the original file's bytes when no resize is needed and its
  extension already is the wanted encoding (Caffe copies it, even with ``--gray``), otherwise the
  decoded (resized, gray) image re-encoded (JPEG quality 95, PNG level 1: OpenCV's defaults).
- Decoding and resizing follow OpenCV (see :mod:`caffeish.data.images`): ``--resize_height`` and
  ``--resize_width`` resize (INTER_LINEAR, byte-exact with OpenCV) only when *both* are > 0.
- ``--backend lmdb`` (the default) or ``--backend leveldb`` (needs plyvel: ``pip install
  'caffeish[leveldb]'``; written as Caffe does: 256 MiB write buffer, snappy-compressed tables).
  The keys and values are the same for both.
- Transactions commit every 1000 records, the LMDB map grows when full, and the DB is written
  under a hidden temporary name and renamed at the end: an interrupted run leaves nothing that
  looks like a finished DB. An existing DB_NAME is refused unless ``--overwrite``.

Differences from Caffe, all deliberate:

- ``--shuffle`` uses numpy's PCG64 seeded by ``--seed`` (a random seed, printed, when absent).
  Caffe shuffles with its own RNG, so the shuffled order can never equal Caffe's.
- Unreadable, missing or truncated images are skipped with one warning each and listed at the
  end; the exit status is 1 when any was skipped unless ``--skip_bad`` (Caffe logs and goes on,
  and accepts truncated JPEGs that libjpeg pads with gray). If no image at all can be read,
  nothing is written.
- A list line without a label, or with a label that is not an integer, is an error naming the
  line (Caffe's ``atoi`` would silently make it label 0); blank lines are ignored.
- ``--check_size`` compares decoded C x H x W (Caffe compares ``data`` lengths, which for encoded
  records are file sizes); a mismatch stops the run without writing the DB, as Caffe's CHECK
  aborts.
- Big images are decoded on up to 4 threads (``--threads N`` to choose; by default threads are
  used when the first images take over 1 ms each); the records still go in list order.
"""
from __future__ import annotations

import io
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from caffeish.errors import DataError

from caffeish.data.images import (decode_image, encode_image, ext_matches, file_extension, parse_list,
                     pillow_format, resize_linear, root_prefix, to_chw)

PROG = "convert_imageset"
AUTO_PROBE = 32                 # images timed before deciding on threads
AUTO_THREADS_ABOVE_S = 0.001    # decode in threads when an image takes longer than this


@dataclass
class Skipped:
    index: int       # the line's index in the (shuffled) list: the number its key would have had
    path: str        # as written in the list file
    reason: str


@dataclass
class ConvertResult:
    db: Path
    total: int
    written: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seed: int | None = None
    seconds: float = 0.0
    shapes: dict = field(default_factory=dict)    # (C, H, W) -> count of written records
    verbatim_colour: int = 0        # colour files stored unchanged by --gray --encoded

    @property
    def rate(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else float("inf")

    def summary(self, limit: int = 20) -> str:
        s = (f"wrote {self.written} of {self.total} images to {self.db} in {self.seconds:.1f} s "
             f"({self.rate:.0f} images/s)")
        if self.skipped:
            shown = ", ".join(f"{k.path} ({k.reason})" for k in self.skipped[:limit])
            extra = len(self.skipped) - limit
            more = f", ... and {extra} more" if extra > 0 else ""
            s += f"; {len(self.skipped)} skipped: {shown}{more}"
        return s


class Progress:
    """Images done, images/s and ETA on a stream: rewritten in place on a terminal, one line
    every ``every_s`` seconds otherwise. Silent when ``stream`` is None."""

    def __init__(self, total: int, stream=None, prog: str = PROG, every_s: float | None = None):
        self.total = total
        self.stream = stream
        self.prog = prog
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.every_s = every_s if every_s is not None else (0.5 if self.tty else 10.0)
        self.start = time.perf_counter()
        self._last = self.start
        self._dirty = False

    def line(self, done: int) -> str:
        el = time.perf_counter() - self.start
        rate = done / el if el > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else 0.0
        m, s = divmod(int(round(eta)), 60)
        h, m = divmod(m, 60)
        return (f"{self.prog}: {done}/{self.total} images ({rate:.0f} images/s, "
                f"ETA {h}:{m:02d}:{s:02d})")

    def update(self, done: int):
        if self.stream is None:
            return
        now = time.perf_counter()
        if now - self._last < self.every_s:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + self.line(done) + "\x1b[K")
            self._dirty = True
        else:
            self.stream.write(self.line(done) + "\n")
        self.stream.flush()

    def clear(self):
        """End an in-place line so that a following message starts on its own line."""
        if self._dirty and self.stream is not None:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._dirty = False


def check_backend(backend, default: str | None = "lmdb") -> str | None:
    """``"lmdb"`` or ``"leveldb"`` for a --backend value (any case; Caffe's LMDB/1, LEVELDB/0),
    ``default`` when it is unset; a DataError naming the valid ones otherwise."""
    from caffeish.data.db import backend_name

    try:
        return backend_name(backend) or default
    except DataError:
        raise DataError(f"unknown --backend {backend!r}; the backends are lmdb and leveldb") \
            from None


def _is_colour_file(data: bytes) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.mode not in ("L", "1", "LA", "I", "I;16", "I;16B", "I;16L", "F")
    except Exception:
        return False


class _Encoder:
    """Turns one list entry into (key, value, shape, verbatim colour flag); runs on threads."""

    def __init__(self, prefix, height, width, gray, encoded, encode_type):
        self.prefix = prefix
        self.height = height
        self.width = width
        self.resize = height > 0 and width > 0
        self.gray = gray
        self.encoded = encoded
        self.encode_type = encode_type

    def __call__(self, index: int, relpath: str, label: int):
        from caffeish.data.datum import encode_datum

        path = self.prefix + relpath
        key = ("%08d_%s" % (index, relpath)).encode("utf-8")
        if self.encoded:
            try:
                with open(path, "rb") as fh:
                    raw = fh.read()
            except FileNotFoundError:
                raise DataError("no such file") from None
            except IsADirectoryError:
                raise DataError("is a directory, not an image") from None
            except OSError as e:
                raise DataError(e.strerror or str(e)) from None
            img = decode_image(raw, not self.gray, name=path)
        else:
            img = decode_image(path, not self.gray, name=path)
        if self.resize:
            img = resize_linear(img, self.height, self.width)
        shape = (1,) + img.shape if img.ndim == 2 else (img.shape[2],) + img.shape[:2]
        if not self.encoded:
            return key, encode_datum(to_chw(img), label, encoded=False), shape, False
        enc = self.encode_type or file_extension(relpath)
        if not enc:
            raise DataError("cannot guess the encoding from a name without an extension; "
                            "pass --encode_type png (or jpg)")
        if not self.resize and ext_matches(relpath, enc):
            colour = self.gray and _is_colour_file(raw)
            return key, encode_datum(None, label, encoded_bytes=raw), shape, colour
        pillow_format(enc)
        return key, encode_datum(None, label, encoded_bytes=encode_image(img, enc)), shape, False


def _reason(err: DataError, path: str) -> str:
    msg = str(err)
    return msg[len(path) + 2:] if msg.startswith(path + ": ") else msg


def convert_imageset(root, list_file, db_name, *, resize_height: int = 0, resize_width: int = 0,
                     gray: bool = False, shuffle: bool = False, seed: int | None = None,
                     backend: str = "lmdb", check_size: bool = False, encoded: bool = False,
                     encode_type: str = "", overwrite: bool = False, stream=None,
                     quiet: bool = False, threads: int | None = None,
                     progress_every_s: float | None = None,
                     commit_every: int = 1000) -> ConvertResult:
    """Convert ``root + path`` for every ``path label`` line of ``list_file`` into ``db_name``.

    stream: where warnings (one line per skipped image), progress and notes go (None: silent);
    ``quiet`` keeps only the warnings. Returns what was written and skipped;
    raises DataError for bad arguments, a bad list file, an existing DB (unless ``overwrite``),
    a --check_size mismatch or when no image could be read (then nothing is written).
    """
    from caffeish.data.db import db_writer

    backend = check_backend(backend)
    resize_height = max(0, int(resize_height))
    resize_width = max(0, int(resize_width))
    encode_type = (encode_type or "").strip().lstrip(".")
    if encode_type:
        pillow_format(encode_type)
        encoded = True
    root = os.fspath(root)
    if root.endswith(("/", os.sep)) and not os.path.isdir(root):
        raise DataError(f"root folder {root} is not a directory")
    db = Path(db_name)
    writer = db_writer(db, backend, overwrite=overwrite, commit_every=commit_every)  # refuses early
    entries = parse_list(list_file)

    def say(msg, info=False):
        if stream is not None and not (info and quiet):
            progress.clear()
            stream.write(msg + "\n")
            stream.flush()

    result = ConvertResult(db=db, total=len(entries))
    progress = Progress(len(entries), None if quiet else stream, every_s=progress_every_s)
    if (resize_height > 0) != (resize_width > 0):
        say(f"{PROG}: warning: images are not resized: Caffe resizes only when both "
            f"--resize_height and --resize_width are > 0 (got {resize_height} x {resize_width})")
    if shuffle:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        order = np.random.default_rng(seed).permutation(len(entries))
        entries = [entries[i] for i in order]
        result.seed = seed
        say(f"{PROG}: shuffled {len(entries)} lines with --seed {seed}", info=True)

    make = _Encoder(root_prefix(root), resize_height, resize_width, gray, encoded, encode_type)
    cpus = os.cpu_count() or 1
    first_shape = first_path = None
    start = time.perf_counter()

    def work(i):
        relpath, label = entries[i]
        try:
            return make(i, relpath, label)
        except DataError as e:
            return e

    def results():
        n = len(entries)
        i = 0
        workers = threads or 1
        if threads is None:
            # Threads pay off only for images whose decoding (which releases the GIL) is long:
            # time the first few, then decide.
            probe = min(n, AUTO_PROBE)
            t0 = time.perf_counter()
            for i in range(probe):
                yield i, work(i)
            i = probe
            per_image = (time.perf_counter() - t0) / max(probe, 1)
            if per_image > AUTO_THREADS_ABOVE_S and cpus > 1:
                workers = min(4, cpus)
        if workers <= 1:
            for j in range(i, n):
                yield j, work(j)
            return
        window = 8 * workers
        with ThreadPoolExecutor(workers, thread_name_prefix="convert_imageset") as pool:
            pending = deque()
            nxt = i
            try:
                while pending or nxt < n:
                    while nxt < n and len(pending) < window:
                        pending.append((nxt, pool.submit(work, nxt)))
                        nxt += 1
                    j, fut = pending.popleft()
                    yield j, fut.result()
            finally:
                for _, fut in pending:
                    fut.cancel()

    with writer:
        for i, out in results():
            relpath = entries[i][0]
            if isinstance(out, DataError):
                reason = _reason(out, make.prefix + relpath)
                result.skipped.append(Skipped(i, relpath, reason))
                say(f"{PROG}: warning: skipping {make.prefix + relpath}: {reason}")
            else:
                key, value, shape, colour = out
                if check_size:
                    if first_shape is None:
                        first_shape, first_path = shape, relpath
                    elif shape != first_shape:
                        raise DataError(
                            f"--check_size: {make.prefix + relpath} is "
                            f"{' x '.join(map(str, shape))} but {first_path} is "
                            f"{' x '.join(map(str, first_shape))}; no database written "
                            "(resize with --resize_height/--resize_width)")
                writer.put(key, value)
                result.written += 1
                result.shapes[shape] = result.shapes.get(shape, 0) + 1
                result.verbatim_colour += colour
            progress.update(i + 1)
        if result.written == 0:
            raise DataError(f"none of the {result.total} images listed in {list_file} could be "
                            f"read (first: {result.skipped[0].path}: {result.skipped[0].reason}); "
                            "no database written")
    progress.clear()
    result.seconds = time.perf_counter() - start
    if result.verbatim_colour:
        say(f"{PROG}: note: {result.verbatim_colour} colour file(s) were stored unchanged despite "
            "--gray (Caffe copies files that need no resize or re-encoding); decode them with "
            "transform_param force_gray: true, or add --resize_height/--resize_width")
    return result


__all__ = ["convert_imageset", "ConvertResult", "Skipped", "Progress", "check_backend"]
