"""Run directories: every ``caffeish train`` keeps what it ran and what it measured.

Where: ``runs/<name>`` in the folder of the snapshot prefix (``snapshot_prefix: snap/lenet`` ->
``snap/runs/lenet``; no prefix -> ``runs/<solver file stem>`` in the current folder), or
``--run-dir``. A new run never overwrites an old one: it takes ``<name>-2``, ``<name>-3``...;
a resumed run (``--snapshot``) continues the latest run directory of that name.

What:

- ``solver.yaml`` and ``net.yaml`` (``train_net.yaml``, ``test_net_<i>.yaml`` for solvers with
  separate nets): the resolved configuration (bases merged, ``--set`` overrides applied), with
  the solver pointing at the net copy and data paths made absolute, so
  ``caffeish train --solver <run>/solver.yaml`` runs the same thing again;
- ``metrics.jsonl``: one JSON record per line: ``{"kind": "start", "time", "iter"}`` when a run
  starts or resumes, then ``{"kind": "train", "iter", "time", "loss", "lr", "iter_per_s",
  "images_per_s"}`` at every display iteration and ``{"kind": "test", "iter", "time", "net",
  "outputs": {name: value}}`` at every test (``time`` is Unix time);
- ``train.log``: the glog-format log (what ``caffeish plot`` and Caffe's parse_log.py read);
- ``run.json``: command line, overrides, start and end time, final status.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from ..config.schema import Msg
from ..errors import CaffeishError
from ..log import GlogFormatter, logger, setup_logging

RUN_MARKERS = ("run.json", "metrics.jsonl")


def default_run_dir(param: Msg, solver_path=None) -> Path:
    """``<folder of snapshot_prefix>/runs/<prefix basename>`` (see the module doc)."""
    prefix = param.snapshot_prefix if param.has("snapshot_prefix") else ""
    base = os.path.basename(prefix) if prefix else ""
    folder = os.path.dirname(prefix) if prefix else ""
    if not base:
        base = Path(solver_path).stem if solver_path else (param.net_param.name or "run")
    return Path(folder or ".") / "runs" / base


def _numbered(base: Path):
    yield base
    k = 2
    while True:
        yield base.with_name(f"{base.name}-{k}")
        k += 1


def pick_run_dir(base, resume=False) -> Path:
    """A fresh directory ``base``, ``base-2``... or, when resuming, the latest existing one."""
    base = Path(base)
    if resume:
        last = None
        for cand in _numbered(base):
            if not cand.exists():
                break
            last = cand
        if last is not None:
            return last
    for cand in _numbered(base):
        if not cand.exists() or not any((cand / m).exists() for m in RUN_MARKERS):
            return cand
    raise AssertionError("unreachable")


# --- resolved configs ------------------------------------------------------------------------
_PATH_FIELDS = (("data_param", "source"), ("data_param", "mean_file"),
                ("image_data_param", "source"), ("image_data_param", "mean_file"),
                ("image_data_param", "root_folder"), ("hdf5_data_param", "source"),
                ("window_data_param", "source"), ("window_data_param", "mean_file"),
                ("window_data_param", "root_folder"), ("transform_param", "mean_file"),
                ("memory_data_param", None))


def absolute_data_paths(net: Msg) -> Msg:
    """A copy of ``net`` whose relative data paths are the absolute paths they resolve to now
    (the current folder first, then the net file's folder, as the data layers look), so the
    copy reads the same data from any folder."""
    from ..data.transformer import resolve_path
    net = net.copy()
    layers = []
    for lp in net.layer:
        lp = lp.copy()
        src_dir = Path(lp.src[0]).resolve().parent if lp.src and lp.src[0] and \
            not str(lp.src[0]).startswith("<") else None
        for pf, f in _PATH_FIELDS:
            if f is None or not lp.has(pf):
                continue
            sub = getattr(lp, pf)
            if not sub.has(f):
                continue
            value = getattr(sub, f)
            if not value or os.path.isabs(value):
                continue
            found, _ = resolve_path(value.rstrip("/") or value, [src_dir] if src_dir else [])
            if found is not None:
                sub = sub.copy()
                sub.set(f, str(found) + ("/" if value.endswith("/") else ""))
                lp.set(pf, sub)
        layers.append(lp)
    if layers:
        net.set("layer", layers)
    return net


def resolved_files(param: Msg) -> dict[str, str]:
    """{file name: YAML text} for the resolved solver and its nets."""
    from ..config.yaml_loader import dump_message
    solver = param.copy()
    files = {}
    if solver.has("net_param"):
        files["net.yaml"] = dump_message(absolute_data_paths(solver.net_param))
        solver.clear("net_param")
        solver.set("net", "net.yaml")
    if solver.has("train_net_param"):
        files["train_net.yaml"] = dump_message(absolute_data_paths(solver.train_net_param))
        solver.clear("train_net_param")
        solver.set("train_net", "train_net.yaml")
    if solver.test_net_param:
        names = []
        for i, n in enumerate(solver.test_net_param):
            names.append(f"test_net_{i}.yaml")
            files[names[-1]] = dump_message(absolute_data_paths(n))
        solver.clear("test_net_param")
        solver.set("test_net", names)
    files = {"solver.yaml": dump_message(solver), **files}
    return files


# --- the run -------------------------------------------------------------------------------
class MetricsWriter:
    """Solver callback that appends the solver's metric records to ``metrics.jsonl``.

    A train record gets its learning rate only after the update, so records are written one
    iteration late (and all of them at :meth:`flush`).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.solver = None
        self._next = 0

    def start(self, solver):
        """Begin with the solver's next record; the start record (written with the first
        records) carries the iteration training really starts from, after a restore."""
        self.solver = solver
        self._next = len(solver.metrics)
        self._started = time.time()
        self._start_written = False

    def _write_start(self):
        if not self._start_written:
            self._start_written = True
            self._append({"kind": "start", "iter": int(self.solver.iter),
                          "time": self._started})

    def _append(self, rec):
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec, default=_jsonable) + "\n")

    def on_gradients_ready(self, solver):
        self._write(upto_iter=solver.iter)

    def _write(self, upto_iter=None):
        self._write_start()
        recs = self.solver.metrics
        while self._next < len(recs):
            rec = recs[self._next]
            if upto_iter is not None and rec.get("kind") == "train" and \
                    rec.get("iter") == upto_iter:
                break
            self._append(rec)
            self._next += 1

    def flush(self):
        if self.solver is not None and (self._start_written or
                                        self._next < len(self.solver.metrics)):
            self._write()


def _jsonable(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # numpy is a dependency; kept for safety in json default
        pass
    return str(o)


class Run:
    """A prepared run: the resolved solver parameter and its directory."""

    def __init__(self, solver_param: Msg, path: Path, resumed: bool, overrides, argv,
                 progress: bool):
        self.solver_param = solver_param
        self.path = Path(path)
        self.resumed = resumed
        self.overrides = list(overrides)
        self.argv = list(argv)
        self.metrics = MetricsWriter(self.path / "metrics.jsonl")
        self.progress_enabled = progress
        self.bar = None
        self._handlers = []
        self.solver = None
        self.status = "running"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def _write_run_json(self, **extra):
        info = {"argv": self.argv, "cwd": os.getcwd(), "overrides": self.overrides,
                "resumed": self.resumed, "status": self.status}
        p = self.path / "run.json"
        old = {}
        if p.exists():
            try:
                old = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
        old.update(info)
        old.update(extra)
        p.write_text(json.dumps(old, indent=2, default=_jsonable) + "\n")

    def attach(self, solver):
        """Hook the solver: metrics file, and the progress bar on a terminal."""
        self.solver = solver
        self.metrics.start(solver)
        solver.callbacks.append(self.metrics)
        if self.bar is not None:
            self.bar.max_iter = max(int(solver.param.max_iter), 1)
            solver.callbacks.append(self.bar)
        self._write_run_json(started=time.time(), start_iter=int(solver.iter))

    def close(self, status=None):
        self.metrics.flush()
        if self.bar is not None:
            self.bar.close()
        if status is not None:
            self.status = status
        elif self.solver is not None and self.status == "running":
            self.status = "done"
        extra = {"ended": time.time()}
        if self.solver is not None:
            extra["iter"] = int(self.solver.iter)
        self._write_run_json(**extra)
        for h in self._handlers:
            logger.removeHandler(h)
            h.close()
        self._handlers = []

    def summary(self) -> dict:
        """Last train loss and the last test outputs recorded by this run."""
        return run_summary(self.path, self.status)


def run_summary(path, status=None) -> dict:
    """{run_dir, status, iter, train_loss, test/<output>...} from a run directory's metrics."""
    from .logparse import load_curves
    path = Path(path)
    try:
        info = json.loads((path / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        info = {}
    out = {"run_dir": str(path), "status": status or info.get("status", "?")}
    if "iter" in info:
        out["iter"] = info["iter"]
    try:
        c = load_curves(path / "metrics.jsonl")
    except CaffeishError:
        return out
    tr = [r for r in c.train if r.loss is not None]
    if tr:
        out["train_loss"] = tr[-1].loss
    out.setdefault("iter", max(r.iter for r in c.rows))
    te = c.test
    if te:
        last = max(r.iter for r in te)
        out["test_iter"] = last
        for r in te:
            if r.iter == last:
                for k, v in r.outputs.items():
                    out[f"test/{k}" if r.net == 0 else f"test{r.net}/{k}"] = v
    return out


def start_run(solver_path, overrides=(), run_dir=None, resume=None, logfile=None,
              progress=None, argv=None, stream=None) -> Run:
    """Resolve the solver (bases, ``--set``), make the run directory, write the resolved
    configs, and send the log to ``<run>/train.log`` (and ``logfile``, and stderr)."""
    from ..config.compose import resolve_solver
    from .progress import BarStream, ProgressBar
    param = resolve_solver(solver_path, overrides)
    base = Path(run_dir) if run_dir else default_run_dir(param, solver_path)
    path = (pick_run_dir(base, resume=bool(resume)) if not run_dir else base).absolute()
    resumed = bool(resume) and (path / "metrics.jsonl").exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        for name, text in resolved_files(param).items():
            target = path / name
            if resumed and target.exists():
                if target.read_text() == text:
                    continue
                target = path / f"{Path(name).stem}.resumed{Path(name).suffix}"
            target.write_text(text)
    except OSError as e:
        why = f"{e.strerror}: {e.filename}" if e.strerror and e.filename else str(e)
        raise CaffeishError(
            f"cannot write the run directory {path} ({why}); it goes beside snapshot_prefix "
            f"({param.snapshot_prefix or 'unset'}): point snapshot_prefix at a writable "
            "folder, or give --run-dir") from None
    stream = stream or sys.stderr
    use_bar = progress if progress is not None else bool(getattr(stream, "isatty", lambda: 0)())
    bar_stream = BarStream(stream) if use_bar else None
    setup_logging(stream=bar_stream or stream, logfile=logfile)
    h = logging.FileHandler(path / "train.log")
    h.setFormatter(GlogFormatter())
    h._caffeish = True
    logger.addHandler(h)
    run = Run(param, path, resumed, overrides, argv if argv is not None else sys.argv, use_bar)
    run._handlers.append(h)
    if bar_stream is not None:
        run.bar = ProgressBar(bar_stream, param.max_iter)
    run._write_run_json(solver=os.fspath(solver_path))
    logger.info(f"Run directory: {path}")
    return run


def run_training(solver_path, overrides=(), *, run_dir=None, weights=(), snapshot=None,
                 stages=(), level=0, sigint_effect="stop", sighup_effect="snapshot",
                 logfile=None, progress=None, on_param=None, argv=None, stream=None) -> Run:
    """``caffeish train`` as a function: resolve, make the run directory, train, close.

    ``on_param(solver_param)`` runs before the nets are built (e.g. to pick the device).
    Returns the closed :class:`Run` (``run.summary()`` has the final numbers).
    """
    from ..solvers import get_solver
    if snapshot and weights:
        raise CaffeishError("give either --snapshot (resume) or --weights (finetune), not both")
    run = start_run(solver_path, overrides, run_dir=run_dir, resume=snapshot, logfile=logfile,
                    progress=progress, argv=argv, stream=stream)
    solver = None
    try:
        if on_param is not None:
            on_param(run.solver_param)
        solver = get_solver(run.solver_param, stages=list(stages), level=level,
                            weights=list(weights or ()))
        solver.sigint_effect, solver.sighup_effect = sigint_effect, sighup_effect
        run.attach(solver)
        solver.solve(resume_file=snapshot)
        run.close("stopped" if solver.requested == "stop" else "done")
    except BaseException as e:
        run.close(f"failed: {type(e).__name__}: {e}".splitlines()[0][:300])
        raise
    finally:
        if solver is not None:
            solver.net.close()
            for n in solver.test_nets:
                n.close()
    return run
