"""Training curves from a caffeish run directory (metrics.jsonl) or a glog training log.

One parser reads Caffe's logs and caffeish's: both write glog lines
(``I1122 12:10:15.069875 19839 solver.cpp:231] ...``, newer glog puts the year first:
``I20261122 ...``) with Caffe's wording:

- ``Iteration N (x iter/s, ...), loss = L`` (the part in parentheses is optional),
- ``Iteration N, lr = R``,
- ``Train net output #k: name = v`` and ``Test net output #k: name = v`` (``(* w = l loss)``
  suffixes ignored), after ``Iteration N, Testing net (#i)``,
- ``Test loss: L``.

The result is a list of :class:`Row` (phase 'train' or 'test', iteration, seconds since the
first line, learning rate, loss, named outputs) that :func:`to_csv` writes in one table, like
the two tables of Caffe's parse_log.py merged with a ``phase`` column; outputs are the columns
``output:<name>`` (``loss`` is the smoothed loss of the display line, or the ``Test loss``).
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..errors import DataError

GLOG = re.compile(r"^[IWEF](?P<date>\d{4}|\d{8}) (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)"
                  r"(?:\.(?P<us>\d+))?\s+\d+\s+\S+\]\s?(?P<msg>.*)$")
ITER_LOSS = re.compile(r"Iteration (\d+)(?: \(([^)]*)\))?, loss = (\S+)")
ITER_LR = re.compile(r"Iteration (\d+), lr = (\S+)")
TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
OUTPUT = re.compile(r"(Train|Test) net output #(\d+): (\S+) = (\S+)")
TEST_LOSS = re.compile(r"Test loss: (\S+)")
SPEED = re.compile(r"([-+0-9.eE]+) iter/s")
IMAGES = re.compile(r"([-+0-9.eE]+) images/s")

RUN_FILES = ("metrics.jsonl", "train.log")


@dataclass
class Row:
    phase: str                 # 'train' or 'test'
    iter: int
    seconds: float | None = None
    lr: float | None = None
    loss: float | None = None
    outputs: dict = field(default_factory=dict)
    images_per_s: float | None = None
    net: int = 0


@dataclass
class Curves:
    source: str
    rows: list

    @property
    def train(self):
        return [r for r in self.rows if r.phase == "train"]

    @property
    def test(self):
        return [r for r in self.rows if r.phase == "test"]

    def output_names(self, phase) -> list[str]:
        names = {}
        for r in self.rows:
            if r.phase == phase:
                names.update(dict.fromkeys(r.outputs))
        return list(names)


def _num(s):
    try:
        return float(s)
    except ValueError:
        return float("nan")


def _stamp(m, year_hint):
    date = m.group("date")
    if len(date) == 8:
        year, month, day = int(date[:4]), int(date[4:6]), int(date[6:])
    else:
        year, month, day = year_hint, int(date[:2]), int(date[2:])
    us = m.group("us") or "0"
    try:
        dt = datetime(year, month, day, int(m.group("h")), int(m.group("m")), int(m.group("s")))
    except ValueError:
        return None
    return dt.timestamp() + int(us) / 10 ** len(us)


def parse_glog(lines, source="<log>") -> Curves:
    """Rows from glog-formatted training log lines (Caffe's or caffeish's)."""
    rows: list[Row] = []
    train: dict[int, Row] = {}
    test_block: Row | None = None
    t0 = None
    last_t = None
    year = datetime.now().year
    offset = 0.0
    for line in lines:
        line = line.rstrip("\n")
        m = GLOG.match(line)
        if m:
            msg = m.group("msg")
            t = _stamp(m, year)
            if t is not None:
                if last_t is not None and t + offset < last_t - 3600:
                    offset += 365 * 86400.0  # MMDD logs across new year
                t += offset
                last_t = t
                if t0 is None:
                    t0 = t
        else:
            msg = line
            t = None
        secs = None if t is None or t0 is None else t - t0
        mm = TESTING.search(msg)
        if mm:
            test_block = Row("test", int(mm.group(1)), secs, net=int(mm.group(2)))
            if train.get(int(mm.group(1))) is not None:
                test_block.lr = train[int(mm.group(1))].lr
            rows.append(test_block)
            continue
        mm = ITER_LOSS.search(msg)
        if mm:
            it = int(mm.group(1))
            r = train.get(it)
            if r is None or r.loss is not None:
                r = Row("train", it, secs)
                train[it] = r
                rows.append(r)
            r.loss = _num(mm.group(3))
            r.seconds = secs if r.seconds is None else r.seconds
            par = mm.group(2) or ""
            sp = IMAGES.search(par)
            if sp:
                r.images_per_s = _num(sp.group(1))
            test_block = None
            continue
        mm = ITER_LR.search(msg)
        if mm:
            it = int(mm.group(1))
            r = train.get(it)
            if r is None:
                r = Row("train", it, secs)
                train[it] = r
                rows.append(r)
            r.lr = _num(mm.group(2))
            continue
        mm = OUTPUT.search(msg)
        if mm:
            kind, name, value = mm.group(1), mm.group(3), _num(mm.group(4))
            if kind == "Test" and test_block is not None:
                _put(test_block.outputs, name, value)
            elif kind == "Train" and rows:
                last_train = next((r for r in reversed(rows) if r.phase == "train"), None)
                if last_train is not None:
                    _put(last_train.outputs, name, value)
            continue
        mm = TEST_LOSS.search(msg)
        if mm and test_block is not None:
            test_block.loss = _num(mm.group(1))
    # the final "Iteration N, loss = L" Caffe prints after training has no lr: keep it.
    return Curves(source, rows)


def _put(outputs, name, value):
    if name not in outputs:
        outputs[name] = value
        return
    k = 1
    while f"{name}_{k}" in outputs:
        k += 1
    outputs[f"{name}_{k}"] = value


def parse_metrics(lines, source="<metrics>") -> Curves:
    """Rows from a caffeish metrics.jsonl (one JSON record per line)."""
    rows = []
    t0 = None
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{source}:{n}: not a JSON line ({e.msg})") from None
        if rec.get("kind") == "start":
            t0 = rec.get("time", t0)
            continue
        t = rec.get("time")
        if t0 is None and t is not None:
            t0 = t
        secs = None if t is None or t0 is None else t - t0
        kind = rec.get("kind", "train")
        outputs = {}
        for k, v in (rec.get("outputs") or {}).items():
            if isinstance(v, list):
                for j, x in enumerate(v):
                    outputs[k if j == 0 else f"{k}_{j}"] = x
            else:
                outputs[k] = v
        rows.append(Row("test" if kind == "test" else "train", int(rec.get("iter", 0)), secs,
                        rec.get("lr"), rec.get("loss"), outputs, rec.get("images_per_s"),
                        int(rec.get("net", 0) or 0)))
    return Curves(source, rows)


def find_run_file(path) -> Path:
    p = Path(path)
    if p.is_dir():
        for name in RUN_FILES:
            if (p / name).is_file():
                return p / name
        logs = sorted(p.glob("*.log"))
        if logs:
            return logs[0]
        raise DataError(f"{p}: no metrics.jsonl, train.log or *.log inside; is this a caffeish "
                        f"run directory?")
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    return p


def load_curves(path) -> Curves:
    """Curves from a run directory, a metrics.jsonl or a glog log file."""
    f = find_run_file(path)
    try:
        text = f.read_text(errors="replace")
    except OSError as e:
        raise DataError(f"{f}: {e.strerror or e}") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if f.suffix == ".jsonl" or first.lstrip().startswith("{"):
        curves = parse_metrics(lines, str(f))
    else:
        curves = parse_glog(lines, str(f))
    if not curves.rows:
        raise DataError(f"{f}: found no training iterations (lines like 'Iteration 100, loss = "
                        f"0.5') in it")
    return curves


def to_csv(curves_list, out=None) -> str:
    """One CSV table (source, phase, iter, seconds, lr, loss, images_per_s, outputs...)."""
    names = {}
    for c in curves_list:
        for ph in ("train", "test"):
            names.update(dict.fromkeys(f"{ph}:{n}" for n in c.output_names(ph)))
    out_cols = list(dict.fromkeys(n.split(":", 1)[1] for n in names))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    multi = len(curves_list) > 1
    head = (["source"] if multi else []) + ["phase", "net", "iter", "seconds", "lr", "loss",
                                            "images_per_s"] + [f"output:{n}" for n in out_cols]
    w.writerow(head)
    for c in curves_list:
        for r in c.rows:
            vals = [r.phase, r.net, r.iter, _fmt(r.seconds), _fmt(r.lr), _fmt(r.loss),
                    _fmt(r.images_per_s)] + [_fmt(r.outputs.get(n)) for n in out_cols]
            w.writerow(([c.source] if multi else []) + vals)
    text = buf.getvalue()
    if out is not None:
        Path(out).write_text(text)
    return text


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.6g}"
    return str(v)
