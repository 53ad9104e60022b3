"""``caffeish sweep``: train a grid of ``--set`` values and rank the runs by a test output.

Each ``--set key=v1,v2,...`` is one axis of the grid (commas inside ``[...]``, ``{...}`` or quotes
do not split); a single value is fixed for every run. Every run is a normal ``caffeish train``
with its own run directory ``<out>/<nn>_<key=value,...>`` holding its snapshots, resolved
configs, metrics and log. ``jobs`` > 1 runs that many trainings at once, each in its own process
(with the CPU threads shared out between them). The result table (also written as
``sweep.csv`` and ``sweep.json`` in ``<out>``) is sorted by the chosen test output: descending,
or ascending when its name contains 'loss'.
"""
from __future__ import annotations

import csv
import itertools
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError


def split_values(text: str) -> list[str]:
    """'0.1,0.01' -> ['0.1', '0.01']; commas inside brackets or quotes stay."""
    out, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def expand_grid(sets) -> tuple[list[str], list[list[str]]]:
    """(the keys that vary, one list of ``key=value`` overrides per run)."""
    axes = []
    for s in sets or ():
        if "=" not in s:
            raise ConfigError(f"--set {s}: expected key=value[,value...]")
        key, values = s.split("=", 1)
        vals = split_values(values)
        if any(v == "" for v in vals):
            raise ConfigError(f"--set {s}: empty value in the list")
        axes.append((key.strip(), vals))
    keys = [k for k, v in axes if len(v) > 1]
    runs = [[f"{k}={v}" for (k, _), v in zip(axes, combo)]
            for combo in itertools.product(*[v for _, v in axes])]
    return keys, runs


def run_name(index: int, overrides, keys) -> str:
    parts = [o for o in overrides if o.split("=", 1)[0] in keys] or ["base"]
    name = f"{index:02d}_" + ",".join(parts)
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", name)[:120]


@dataclass
class SweepRun:
    name: str
    overrides: list
    run_dir: Path
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""


@dataclass
class SweepResult:
    out_dir: Path
    keys: list
    runs: list
    sort_by: str | None
    ascending: bool

    def metric_names(self) -> list[str]:
        names = {}
        for r in self.runs:
            names.update(dict.fromkeys(k for k in r.summary if k.startswith("test")
                                       and k != "test_iter"))
        return list(names)

    def ordered(self) -> list[SweepRun]:
        if not self.sort_by:
            return list(self.runs)

        def key(r):
            v = r.summary.get(self.sort_by)
            ok = isinstance(v, (int, float)) and v == v
            return (0 if ok else 1, (v if self.ascending else -v) if ok else 0)
        return sorted(self.runs, key=key)

    def rows(self) -> list[dict]:
        rows = []
        for r in self.ordered():
            row = {"run": r.name}
            vals = dict(o.split("=", 1) for o in r.overrides)
            for k in self.keys:
                row[k] = vals.get(k, "")
            row["status"] = r.summary.get("status", "failed" if r.error else "?")
            row["iter"] = r.summary.get("iter", "")
            row["train_loss"] = r.summary.get("train_loss", "")
            for m in self.metric_names():
                row[m] = r.summary.get(m, "")
            row["seconds"] = round(r.seconds, 1)
            rows.append(row)
        return rows

    def format(self) -> str:
        rows = self.rows()
        if not rows:
            return "no runs"
        head = list(rows[0])
        cells = [[_cell(row.get(h, "")) for h in head] for row in rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells]
        if self.sort_by:
            lines.append(f"sorted by {self.sort_by} "
                         f"({'ascending' if self.ascending else 'descending'}); runs in "
                         f"{self.out_dir}")
        return "\n".join(lines)

    def write(self):
        rows = self.rows()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if rows:
            with open(self.out_dir / "sweep.csv", "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        (self.out_dir / "sweep.json").write_text(json.dumps(
            {"keys": self.keys, "sort_by": self.sort_by, "ascending": self.ascending,
             "runs": [{"name": r.name, "overrides": r.overrides, "run_dir": str(r.run_dir),
                       "summary": r.summary, "seconds": r.seconds, "error": r.error}
                      for r in self.ordered()]}, indent=2, default=str) + "\n")


def _cell(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def default_out_dir(solver) -> Path:
    return Path("runs") / f"sweep-{Path(solver).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _snapshot_base(solver, fixed):
    from ..config.compose import resolve_solver
    p = resolve_solver(solver, [o for o in fixed if not o.startswith(("layer.", "net."))])
    prefix = p.snapshot_prefix if p.has("snapshot_prefix") else ""
    return os.path.basename(prefix) or Path(solver).stem


def plan(solver, sets, iters=None, out_dir=None):
    """(out_dir, keys, [SweepRun]) without running anything."""
    keys, grid = expand_grid(sets)
    out = Path(out_dir) if out_dir else default_out_dir(solver)
    base = _snapshot_base(solver, [])
    runs = []
    for i, ovs in enumerate(grid, 1):
        name = run_name(i, ovs, keys)
        rd = out / name
        extra = [f"snapshot_prefix={json.dumps((rd / base).as_posix())}"]
        if iters:
            extra.append(f"max_iter={int(iters)}")
        runs.append(SweepRun(name, ovs + extra, rd))
    return out, keys, runs


def _default_sort(runs):
    for r in runs:
        for k in r.summary:
            if k.startswith("test") and k != "test_iter":
                return k
    return None


def _normalise_sort(sort_by, runs):
    if not sort_by:
        return _default_sort(runs)
    if sort_by.startswith("test"):
        return sort_by
    return f"test/{sort_by}"


def run_sweep(solver, sets, iters=None, jobs=1, out_dir=None, sort_by=None, ascending=None,
              echo=print, stages=(), level=0) -> SweepResult:
    """Train every point of the grid and return the ranked result (also written to disk)."""
    from .rundir import run_summary
    out, keys, runs = plan(solver, sets, iters, out_dir)
    out.mkdir(parents=True, exist_ok=True)
    echo(f"sweep: {len(runs)} run(s) of {solver} into {out}"
         f"{f' ({jobs} at a time)' if jobs > 1 else ''}")
    if jobs <= 1:
        for k, r in enumerate(runs):
            _run_inprocess(solver, r, stages, level)
            echo(f"  {r.name}: {r.summary.get('status', 'failed')} in {r.seconds:.1f}s"
                 f"{' - ' + r.error if r.error else ''}")
            if r.summary.get("status") == "stopped":
                echo(f"sweep stopped (Ctrl-C) after {r.name}; {len(runs) - k - 1} run(s) not "
                     f"started")
                runs = runs[:k + 1]
                break
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)

        def work(r):
            _run_subprocess(solver, r, threads, stages, level)
            return r
        with ThreadPoolExecutor(max_workers=jobs) as ex:
            for r in ex.map(work, runs):
                echo(f"  {r.name}: {r.summary.get('status', 'failed')} in {r.seconds:.1f}s"
                     f"{' - ' + r.error if r.error else ''}")
    for r in runs:
        if not r.summary or "run_dir" not in r.summary:
            r.summary = run_summary(r.run_dir) if r.run_dir.exists() else {"status": "failed"}
    key = _normalise_sort(sort_by, runs)
    if ascending is None:
        ascending = bool(key and "loss" in key.lower())
    if sort_by and key and not any(key in r.summary for r in runs):
        names = sorted({k for r in runs for k in r.summary if k.startswith("test")})
        echo(f"warning: no run reported '{key}'; test outputs: {', '.join(names) or 'none'}")
    res = SweepResult(out, keys, runs, key, ascending)
    res.write()
    return res


def _run_inprocess(solver, r: SweepRun, stages, level):
    from ..errors import CaffeishError
    from .rundir import run_summary, run_training
    t = time.perf_counter()
    try:
        with open(os.devnull, "w") as quiet:
            run = run_training(solver, r.overrides, run_dir=r.run_dir, stages=stages, level=level,
                               progress=False, stream=quiet,
                               argv=["caffeish", "sweep", "--solver", str(solver)])
        r.summary = run.summary()
    except CaffeishError as e:
        r.error = str(e).splitlines()[0]
        r.summary = run_summary(r.run_dir) if r.run_dir.exists() else {}
        r.summary["status"] = "failed"
    r.seconds = time.perf_counter() - t


def _run_subprocess(solver, r: SweepRun, threads, stages, level):
    from .rundir import run_summary
    spec = {"solver": os.fspath(solver), "overrides": r.overrides, "run_dir": str(r.run_dir),
            "stages": list(stages), "level": level}
    env = dict(os.environ)
    env.setdefault("NUMBA_NUM_THREADS", str(threads))
    env.setdefault("OMP_NUM_THREADS", str(threads))
    t = time.perf_counter()
    r.run_dir.mkdir(parents=True, exist_ok=True)
    with open(r.run_dir / "stderr.txt", "w") as err:
        proc = subprocess.run([sys.executable, "-m", "caffeish.tools.sweep", "--worker",
                               json.dumps(spec)], stdout=subprocess.DEVNULL, stderr=err, env=env)
    r.seconds = time.perf_counter() - t
    r.summary = run_summary(r.run_dir)
    if proc.returncode != 0:
        text = (r.run_dir / "stderr.txt").read_text(errors="replace").strip().splitlines()
        r.error = text[-1] if text else f"exit status {proc.returncode}"
        r.summary["status"] = "failed"


def _worker(spec_json: str) -> int:
    from ..errors import CaffeishError
    from .rundir import run_training
    spec = json.loads(spec_json)
    try:
        run_training(spec["solver"], spec["overrides"], run_dir=spec["run_dir"],
                     stages=spec.get("stages", ()), level=spec.get("level", 0), progress=False,
                     argv=["caffeish", "sweep", "--worker"])
    except CaffeishError as e:
        print(f"caffeish: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2]))
    print("usage: python -m caffeish.tools.sweep --worker SPEC_JSON (used by caffeish sweep)",
          file=sys.stderr)
    sys.exit(2)
