"""What is inside a Caffe LMDB or LevelDB: ``caffeish data inspect DB [--dump N OUTDIR]``
(the backend is detected from the directory).

:func:`inspect_db` reads every record once and reports the count, raw / encoded / float_data
records, the distinct C x H x W shapes, channel counts, the label histogram, a few sample keys
and the records that cannot be read. Raw and float records are checked completely (their data
must hold C x H x W values). Encoded records are checked from their image header (format, size,
mode) unless ``verify``, which decodes every image (slow on big DBs, but it finds truncated
files). :func:`dump_images` writes the first N records as PNG files so they can be looked at.
"""
from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .datum import datum_to_array, decode_datum, native_channels


@dataclass
class BadRecord:
    key: bytes
    reason: str


@dataclass
class DBReport:
    path: Path
    count: int = 0
    raw: int = 0
    encoded: int = 0
    float_records: int = 0
    shapes: Counter = field(default_factory=Counter)       # (C, H, W) -> records
    channels: Counter = field(default_factory=Counter)     # C -> records
    formats: Counter = field(default_factory=Counter)      # encoded image format -> records
    labels: Counter = field(default_factory=Counter)       # label -> records
    sample_keys: list = field(default_factory=list)
    bad: list = field(default_factory=list)
    verified: bool = False
    kind: str = "LMDB"                                     # or "LevelDB"

    def format(self, max_labels: int = 30, max_bad: int = 20) -> str:
        out = [f"{self.kind} {self.path}", f"records: {self.count}"]
        kinds = [f"{n} {what}" for n, what in ((self.raw, "raw"), (self.encoded, "encoded"),
                                               (self.float_records, "float_data")) if n]
        out.append("kind: " + (", ".join(kinds) if kinds else "none"))
        if self.formats:
            how = ("decoded" if self.verified
                   else "headers only; --verify decodes every image")
            out.append("encoded formats: " + ", ".join(
                f"{f} ({n})" for f, n in self.formats.most_common()) + f" [{how}]")
        if self.shapes:
            out.append("shapes (C x H x W): " + ", ".join(
                f"{' x '.join(map(str, s))} ({n})" for s, n in self.shapes.most_common(10))
                + (f", ... {len(self.shapes) - 10} more" if len(self.shapes) > 10 else ""))
            out.append("channels: " + ", ".join(
                f"{c} ({n})" for c, n in sorted(self.channels.items())))
        if self.labels:
            labs = sorted(self.labels)
            out.append(f"labels: {len(labs)} distinct, {labs[0]} .. {labs[-1]}")
            if len(labs) <= max_labels:
                out.extend(f"  {lab}: {self.labels[lab]}" for lab in labs)
            else:
                lo = min(self.labels.items(), key=lambda kv: (kv[1], kv[0]))
                hi = max(self.labels.items(), key=lambda kv: (kv[1], -kv[0]))
                out.append(f"  fewest: label {lo[0]} ({lo[1]}), most: label {hi[0]} ({hi[1]})")
        if self.sample_keys:
            out.append("sample keys: " + ", ".join(_show(k) for k in self.sample_keys))
        if self.bad:
            out.append(f"unreadable records: {len(self.bad)}")
            out.extend(f"  {_show(b.key)}: {b.reason}" for b in self.bad[:max_bad])
            if len(self.bad) > max_bad:
                out.append(f"  ... and {len(self.bad) - max_bad} more")
        else:
            out.append("unreadable records: none")
        return "\n".join(out)


def _show(key: bytes) -> str:
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return repr(key)


def _header_shape(data: bytes) -> tuple[str, tuple[int, int, int]]:
    """(format, native C x H x W) of an encoded image from its header, as datum_to_array would
    decode it: gray 1 channel, images with alpha 4 (BGRA), others 3."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            mode, (w, h), fmt = im.mode, im.size, im.format or "?"
            has_trns = "transparency" in im.info
    except Exception as e:  # Pillow raises many exception types for bad files
        raise DataError(f"cannot read the encoded image ({len(data)} bytes): "
                        f"{str(e) or type(e).__name__}") from None
    c = native_channels(mode, has_trns)
    if c is None:
        raise DataError(f"encoded {fmt} image of mode {mode!r} (float) cannot be decoded into "
                        "8-bit Datum pixels")
    return fmt, (c, h, w)


def inspect_db(path, samples: int = 5, verify: bool = False) -> DBReport:
    """Read every record of the LMDB or LevelDB at ``path`` and summarise it (see the module
    doc)."""
    from .db import db_kind, open_db

    report = DBReport(path=Path(path), verified=verify)
    with open_db(path) as reader:
        report.kind = db_kind(reader)
        for key, value in reader:
            report.count += 1
            if len(report.sample_keys) < samples:
                report.sample_keys.append(key)
            try:
                d = decode_datum(value)
            except DataError as e:
                report.bad.append(BadRecord(key, str(e)))
                continue
            report.labels[d.label] += 1
            try:
                if d.encoded:
                    report.encoded += 1
                    fmt, shape = _header_shape(d.data)
                    report.formats[fmt] += 1
                    if verify:
                        shape = datum_to_array(d).shape
                else:
                    if d.float_data is not None and not d.data:
                        report.float_records += 1
                    else:
                        report.raw += 1
                    shape = datum_to_array(d).shape
            except DataError as e:
                report.bad.append(BadRecord(key, str(e)))
                continue
            report.shapes[tuple(int(s) for s in shape)] += 1
            report.channels[int(shape[0])] += 1
    return report


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _to_pil(arr: np.ndarray):
    from PIL import Image

    c = arr.shape[0]
    if c == 1:
        return Image.fromarray(np.ascontiguousarray(arr[0]), "L")
    if c == 3:
        return Image.fromarray(np.ascontiguousarray(arr[::-1].transpose(1, 2, 0)), "RGB")
    if c == 4:
        return Image.fromarray(np.ascontiguousarray(arr[[2, 1, 0, 3]].transpose(1, 2, 0)), "RGBA")
    raise DataError(f"{c} channels cannot be shown as an image (1, 3 or 4 needed)")


def dump_images(path, n: int, outdir) -> tuple[list[Path], list[str]]:
    """Write the first ``n`` records of the LMDB or LevelDB as PNG files in ``outdir``.

    Files are named ``<index>_label<label>_<key>.png``; BGR records become RGB PNGs. float_data
    records are scaled linearly from their [min, max] to [0, 255]. Returns (files written, notes
    about records that could not be written).
    """
    from .db import open_db

    if n < 0:
        raise DataError(f"--dump takes a number of images >= 0, got {n}")
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {outdir}: {e.strerror or e}") from None
    written, notes = [], []
    if n == 0:
        return written, notes
    with open_db(path) as reader:
        for i, (key, value) in enumerate(reader):
            if i >= n:
                break
            try:
                d = decode_datum(value)
                arr = datum_to_array(d)
                if arr.dtype != np.uint8:
                    lo, hi = float(arr.min()), float(arr.max())
                    arr = ((arr - lo) * (255.0 / (hi - lo)) if hi > lo else arr * 0)
                    arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
                    notes.append(f"{_show(key)}: float_data scaled from [{lo:g}, {hi:g}] "
                                 "to [0, 255]")
                img = _to_pil(arr)
            except DataError as e:
                notes.append(f"{_show(key)}: not written: {e}")
                continue
            name = _UNSAFE.sub("_", _show(key)).strip("_")[:80] or "record"
            target = outdir / f"{i:05d}_label{d.label}_{name}.png"
            try:
                img.save(target, format="PNG")
            except OSError as e:
                raise DataError(f"cannot write {target}: {e.strerror or e}") from None
            written.append(target)
    return written, notes


__all__ = ["inspect_db", "dump_images", "DBReport", "BadRecord"]
