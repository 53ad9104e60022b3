"""``caffeish doctor``: lints for solver and net configs, each with an ID, file:line and a fix.

=====  ==================  ==================================================================
ID     name                what it finds
=====  ==================  ==================================================================
D000   config-error        the config does not load (the loader's message)
D001   lr-policy-fields    lr_policy unset or unknown, or missing the fields it needs (step
                           without stepsize, poly without max_iter, multistep without
                           stepvalue, ...), stepsize <= 0, stepvalue not increasing
D002   lr-overflow         the learning rate grows without bound under its policy (gamma > 1
                           with step/exp/multistep, a negative inv power): it overflows
                           float32 or grows more than 100x before max_iter
D003   test-coverage       test_iter x the test batch size is not the test set's size
D004   mean-file-shape     the mean_file's C x H x W differs from the records'
D005   crop-too-large      crop_size is larger than the images
D006   label-range         labels in the data outside [0, num_output) of the classifier that
                           the loss or accuracy compares them with
D007   no-loss-path        a layer with learnable parameters (or a dead-end layer) whose
                           outputs reach no loss in the TRAIN net: it gets no backward
D008   batchnorm-lr-mult   a BatchNorm layer whose statistics blobs have a non-zero lr_mult
=====  ==================  ==================================================================

Data checks read the sources the data layers name (LMDB or LevelDB, image list, HDF5 list) when
they are present, the first ``max_records`` records for labels; a missing source only skips them
(say ``verbose`` to be told). A net without any loss (a deploy net) skips D007.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..config.schema import Msg
from ..errors import CaffeishError
from .shapes import loss_weights

LINTS = {
    "D000": "config-error", "D001": "lr-policy-fields", "D002": "lr-overflow",
    "D003": "test-coverage", "D004": "mean-file-shape", "D005": "crop-too-large",
    "D006": "label-range", "D007": "no-loss-path", "D008": "batchnorm-lr-mult",
}
POLICY_NEEDS = {"step": ["gamma", "stepsize"], "exp": ["gamma"], "inv": ["gamma", "power"],
                "multistep": ["gamma", "stepvalue"], "poly": ["power", "max_iter"],
                "sigmoid": ["gamma", "stepsize"], "fixed": []}
FIELD_HINTS = {"stepsize": "stepsize: <iterations between drops>",
               "gamma": "gamma: <factor, e.g. 0.1>", "power": "power: <exponent, e.g. 0.75>",
               "stepvalue": "stepvalue: [<iter>, <iter>, ...]",
               "max_iter": "max_iter: <total iterations>"}
DATA_TYPES = ("Data", "ImageData", "HDF5Data")
METRIC_TYPES = ("Accuracy", "Silence", "ArgMax")
FLOAT32_MAX = 3.4028234663852886e38
GROWTH_LIMIT = 100.0


@dataclass
class Finding:
    id: str
    where: str
    message: str
    hint: str

    @property
    def name(self) -> str:
        return LINTS[self.id]

    def format(self) -> str:
        loc = f"{self.where}: " if self.where else ""
        return f"{loc}{self.id} {self.name}: {self.message}\n    fix: {self.hint}"


@dataclass
class Report:
    findings: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def add(self, id_, where, message, hint):
        f = Finding(id_, where or "", message, hint)
        if not any((x.id, x.where, x.message) == (f.id, f.where, f.message)
                   for x in self.findings):
            self.findings.append(f)

    def format(self, verbose=False) -> str:
        lines = [f.format() for f in self.findings]
        if verbose:
            lines += [f"note: {n}" for n in self.notes]
        if self.findings:
            lines.append(f"{len(self.findings)} problem(s) found")
        return "\n".join(lines)


# --- solver lints --------------------------------------------------------------------------------
def lint_lr_policy(p: Msg, rep: Report):
    where = p.where("lr_policy") or p.where()
    if not p.has("lr_policy"):
        rep.add("D001", p.where(), "lr_policy is not set",
                f"add lr_policy: one of {', '.join(POLICY_NEEDS)} (e.g. lr_policy: fixed)")
        return
    pol = p.lr_policy
    if pol not in POLICY_NEEDS:
        from ..errors import did_you_mean
        rep.add("D001", where, f"unknown lr_policy '{pol}'{did_you_mean(pol, POLICY_NEEDS)}",
                f"use one of {', '.join(POLICY_NEEDS)}")
        return
    missing = [f for f in POLICY_NEEDS[pol] if not p.has(f)]
    if missing:
        rep.add("D001", where, f"lr_policy '{pol}' needs {' and '.join(missing)}, which "
                               f"{'is' if len(missing) == 1 else 'are'} not set",
                "add " + " and ".join(FIELD_HINTS[m] for m in missing))
    if pol in ("step", "sigmoid") and p.has("stepsize") and p.stepsize <= 0:
        rep.add("D001", p.where("stepsize"), f"stepsize is {p.stepsize}; lr_policy '{pol}' "
                                             f"divides by it", "set stepsize to a positive "
                                                               "number of iterations")
    if pol == "multistep" and list(p.stepvalue) != sorted(p.stepvalue):
        rep.add("D001", p.where("stepvalue"), f"stepvalue {list(p.stepvalue)} is not "
                                              f"increasing; later steps would never be reached",
                "list the stepvalue iterations in increasing order")


def lr_at(p: Msg, it: int) -> float:
    """The rate of Caffe's policy at iteration ``it`` (float64; inf on overflow)."""
    pol, base = p.lr_policy, float(p.base_lr)
    try:
        if pol == "fixed":
            return base
        if pol == "step":
            return base * float(p.gamma) ** (it // max(int(p.stepsize), 1))
        if pol == "exp":
            return base * float(p.gamma) ** it
        if pol == "inv":
            return base * (1.0 + float(p.gamma) * it) ** (-float(p.power))
        if pol == "multistep":
            return base * float(p.gamma) ** sum(1 for s in p.stepvalue if it >= s)
        if pol == "poly":
            return base * (1.0 - it / float(p.max_iter)) ** float(p.power)
        if pol == "sigmoid":
            return base / (1.0 + math.exp(-float(p.gamma) * (it - int(p.stepsize))))
    except OverflowError:
        return math.inf
    except (ZeroDivisionError, ValueError):
        return math.nan
    return base


def lint_lr_overflow(p: Msg, rep: Report):
    pol = p.lr_policy if p.has("lr_policy") else None
    if pol not in POLICY_NEEDS or any(not p.has(f) for f in POLICY_NEEDS[pol]):
        return
    if not p.has("base_lr") or not p.max_iter:
        return
    base = abs(float(p.base_lr))
    last = int(p.max_iter)
    points = sorted({0, last} | {int(s) for s in p.stepvalue if 0 <= s <= last})
    first_bad = None
    for it in points:
        r = abs(lr_at(p, it))
        if not math.isfinite(r) or r > FLOAT32_MAX:
            first_bad = it
            break
    gamma_where = p.where("gamma") if p.has("gamma") else p.where("lr_policy")
    if first_bad is not None:
        lo, hi = 0, first_bad
        while lo < hi:  # first iteration that overflows (the policies here are monotone)
            mid = (lo + hi) // 2
            r = abs(lr_at(p, mid))
            if math.isfinite(r) and r <= FLOAT32_MAX:
                lo = mid + 1
            else:
                hi = mid
        rep.add("D002", gamma_where,
                f"with lr_policy '{pol}' the learning rate overflows float32 at iteration {lo} "
                f"(max_iter {last})", _growth_hint(p))
        return
    end = abs(lr_at(p, last))
    if base > 0 and end > GROWTH_LIMIT * base:
        rep.add("D002", gamma_where,
                f"with lr_policy '{pol}' the learning rate grows from {base:g} to {end:.3g} by "
                f"iteration {last} ({end / base:.3g}x)", _growth_hint(p))


def _growth_hint(p):
    if p.lr_policy == "inv":
        return "use a positive power (the rate decays as (1 + gamma*iter)^-power)"
    return "use gamma < 1 (e.g. 0.1): the policy multiplies the rate by gamma"


def _data_layers(net: Msg, phase: str, stages=(), level=0):
    from ..net import filter_net
    state = Msg("NetState", {"phase": phase, "level": level, "stage": list(stages)})
    return [lp for lp in filter_net(net, state)], state


# --- data sources ------------------------------------------------------------------------------
@dataclass
class SourceInfo:
    path: Path | None
    count: int | None = None
    shape: tuple | None = None     # (C, H, W) of the first record
    labels: Counter | None = None
    scanned: int = 0
    error: str | None = None


class Sources:
    def __init__(self, max_records: int):
        self.max_records = max_records
        self.cache: dict = {}

    def info(self, lp: Msg) -> SourceInfo:
        from ..data.transformer import resolve_path
        p = getattr(lp, {"Data": "data_param", "ImageData": "image_data_param",
                         "HDF5Data": "hdf5_data_param"}[lp.type])
        dirs = [Path(lp.src[0]).resolve().parent] if lp.src and lp.src[0] and \
            not str(lp.src[0]).startswith("<") else []
        if not p.source:
            return SourceInfo(None, error="no source set")
        found, tried = resolve_path(p.source, dirs)
        if found is None:
            return SourceInfo(None, error=f"source {p.source!r} not found (tried "
                                          f"{', '.join(str(t) for t in tried)})")
        key = (lp.type, str(found))
        if key not in self.cache:
            try:
                self.cache[key] = getattr(self, f"_{lp.type.lower()}")(found, lp, p, dirs)
            except CaffeishError as e:
                self.cache[key] = SourceInfo(found, error=str(e))
            except Exception as e:  # an unreadable source is reported, not fatal for doctor
                self.cache[key] = SourceInfo(found, error=f"{type(e).__name__}: {e}")
        return self.cache[key]

    def _data(self, found, lp, p, dirs):
        from ..data.datum import datum_to_array, decode_datum
        from ..data.db import backend_name, open_db
        info = SourceInfo(found, labels=Counter())
        tp = lp.transform_param
        with open_db(found, backend_name(p.backend) if p.has("backend") else None) as r:
            info.count = len(r)
            for _, value in r:
                d = decode_datum(value)
                if info.shape is None:
                    arr = datum_to_array(d, bool(tp.force_color), bool(tp.force_gray))
                    info.shape = tuple(int(x) for x in arr.shape)
                info.labels[int(d.label)] += 1
                info.scanned += 1
                if info.scanned >= self.max_records:
                    break
        return info

    def _imagedata(self, found, lp, p, dirs):
        info = SourceInfo(found, labels=Counter())
        lines = [ln.strip() for ln in Path(found).read_text().splitlines() if ln.strip()]
        info.count = len(lines)
        for ln in lines[:self.max_records]:
            if " " in ln:
                try:
                    info.labels[int(ln.rsplit(" ", 1)[1])] += 1
                except ValueError:
                    pass
            info.scanned += 1
        if lines:
            rel = lines[0].rsplit(" ", 1)[0]
            img = Path(p.root_folder + rel) if p.root_folder else Path(rel)
            if not img.is_absolute() and not img.exists():
                for d in dirs:
                    if (d / img).exists():
                        img = d / img
            try:
                from PIL import Image
                with Image.open(img) as im:
                    w, h = im.size
                info.shape = (3 if p.is_color else 1, h, w)
                if p.new_height and p.new_width:
                    info.shape = (info.shape[0], int(p.new_height), int(p.new_width))
            except Exception:  # first image unreadable: shape unknown, other checks still run
                info.shape = None
        return info

    def _hdf5data(self, found, lp, p, dirs):
        import h5py
        info = SourceInfo(found, labels=Counter())
        files = [ln.strip() for ln in Path(found).read_text().splitlines() if ln.strip()]
        total = 0
        for f in files:
            path = Path(f) if Path(f).is_absolute() or Path(f).exists() else Path(found).parent / f
            with h5py.File(path, "r") as h:
                first = h[lp.top[0]]
                total += first.shape[0]
                if len(lp.top) > 1 and lp.top[1] in h and info.scanned < self.max_records:
                    for v in h[lp.top[1]][: self.max_records - info.scanned].reshape(-1):
                        info.labels[int(v)] += 1
                        info.scanned += 1
        info.count = total
        return info


def _owner(lp, name):
    """The message whose ``name`` (crop_size, mean_file) applies: Caffe's deprecated data_param /
    image_data_param copies win over transform_param when set."""
    legacy = lp.data_param if lp.type == "Data" else (
        lp.image_data_param if lp.type == "ImageData" else None)
    if legacy is not None and legacy.has(name):
        return legacy
    return lp.transform_param


def lint_data(lp: Msg, src: SourceInfo, rep: Report):
    if src.shape is None:
        return
    c, h, w = src.shape
    crop_owner = _owner(lp, "crop_size")
    crop = int(crop_owner.crop_size)
    if crop and (crop > h or crop > w):
        rep.add("D005", crop_owner.where("crop_size"),
                f"layer '{lp.name}': crop_size {crop} is larger than the {h} x {w} images of "
                f"{src.path}", f"use crop_size <= {min(h, w)}, or resize the images (e.g. "
                               f"convert_imageset --resize_height/--resize_width)")
    mean_owner = _owner(lp, "mean_file")
    if mean_owner.has("mean_file") and mean_owner.mean_file:
        from ..data.transformer import load_mean_file, resolve_path
        dirs = [Path(lp.src[0]).resolve().parent] if lp.src and lp.src[0] else []
        found, _ = resolve_path(mean_owner.mean_file, dirs)
        if found is None:
            return
        try:
            m = load_mean_file(found)
        except CaffeishError:
            return
        if tuple(m.shape) != (c, h, w):
            rep.add("D004", mean_owner.where("mean_file"),
                    f"layer '{lp.name}': mean_file {found} is {' x '.join(map(str, m.shape))} "
                    f"but the records of {src.path} are {c} x {h} x {w}",
                    "recompute the mean from these records (compute_image_mean DB mean."
                    "binaryproto), or use mean_value: [...] per channel")


def _producers(layers):
    """{blob name: [layers writing it, in order]}."""
    out = {}
    for lp in layers:
        for t in lp.top:
            out.setdefault(t, []).append(lp)
    return out


def _classifier_of(blob, layers, producers):
    """The layer that fixes the class count of ``blob``: its last InnerProduct/Convolution
    producer, walking back through in-place and element-wise layers."""
    seen = set()
    while blob and blob not in seen:
        seen.add(blob)
        for lp in reversed(producers.get(blob, [])):
            if lp.type == "InnerProduct":
                return lp, lp.inner_product_param, int(lp.inner_product_param.num_output)
            if lp.type in ("Convolution", "Deconvolution"):
                return lp, lp.convolution_param, int(lp.convolution_param.num_output)
            if lp.bottom and lp.type in ("Softmax", "ReLU", "Dropout", "Sigmoid", "TanH",
                                         "Scale", "BatchNorm", "Bias", "Flatten", "Reshape",
                                         "Power", "ELU", "PReLU"):
                blob = lp.bottom[0]
                break
        else:
            return None
    return None


def lint_labels(lp: Msg, layers, src: SourceInfo, rep: Report):
    if not src.labels or len(lp.top) < 2:
        return
    label = lp.top[1]
    producers = _producers(layers)
    for cons in layers:
        if len(cons.bottom) < 2 or cons.bottom[1] != label:
            continue
        if not (cons.type.endswith("Loss") or cons.type == "Accuracy"):
            continue
        found = _classifier_of(cons.bottom[0], layers, producers)
        if found is None:
            continue
        clf, cparam, n = found
        ignore = None
        if cons.has("loss_param") and cons.loss_param.has("ignore_label"):
            ignore = int(cons.loss_param.ignore_label)
        if cons.type == "Accuracy" and cons.accuracy_param.has("ignore_label"):
            ignore = int(cons.accuracy_param.ignore_label)
        bad = {k: v for k, v in src.labels.items() if (k < 0 or k >= n) and k != ignore}
        if not bad:
            continue
        lo, hi = min(src.labels), max(src.labels)
        shown = ", ".join(str(k) for k in sorted(bad)[:8]) + (", ..." if len(bad) > 8 else "")
        part = f" of the first {src.scanned}" if src.count and src.scanned < src.count else ""
        rep.add("D006", cparam.where("num_output") or clf.where(),
                f"layer '{clf.name}' has num_output {n} but {sum(bad.values())} record(s)"
                f"{part} in {src.path} have labels outside [0, {n}) ({shown}); '{cons.name}' "
                f"({cons.type}) compares them",
                f"set num_output: {hi + 1} (labels span {lo}..{hi}), or relabel the data to "
                f"0..{n - 1}")


def lint_test_coverage(p: Msg, test_nets, sources: Sources, rep: Report):
    for i, (net, state) in enumerate(test_nets):
        if i >= len(p.test_iter):
            continue
        layers, _ = _data_layers(net, "TEST", state.stage, state.level)
        data = [lp for lp in layers if lp.type in DATA_TYPES and not lp.bottom]
        if not data:
            continue
        lp = data[0]
        src = sources.info(lp)
        if src.count is None:
            rep.notes.append(f"test net #{i}: test coverage not checked: {src.error}")
            continue
        batch = int(getattr(lp, {"Data": "data_param", "ImageData": "image_data_param",
                                 "HDF5Data": "hdf5_data_param"}[lp.type]).batch_size)
        it = int(p.test_iter[i])
        seen, n = it * batch, src.count
        if seen == n:
            continue
        best = math.ceil(n / batch)
        divisors = [b for b in range(max(1, batch // 2), batch * 2 + 1) if n % b == 0]
        alt = (f", or a batch size that divides {n} (e.g. batch_size: "
               f"{min(divisors, key=lambda b: abs(b - batch))} with test_iter: "
               f"{n // min(divisors, key=lambda b: abs(b - batch))})" if divisors else "")
        if seen < n:
            msg = (f"test net #{i}: test_iter {it} x batch_size {batch} = {seen} covers only "
                   f"{seen} of the {n} records in {src.path} ({100 * seen / n:.1f}%)")
        else:
            msg = (f"test net #{i}: test_iter {it} x batch_size {batch} = {seen} is more than "
                   f"the {n} records in {src.path}: {seen - n} are counted twice")
        fix = n // batch if n % batch == 0 else best
        rep.add("D003", p.where("test_iter"), msg, f"test_iter: {fix}"
                f"{' (the last batch wraps around)' if n % batch else ''}{alt}")


def lint_loss_paths(net: Msg, rep: Report, stages=(), level=0):
    layers, _ = _data_layers(net, "TRAIN", stages, level)
    weights = [loss_weights(lp) for lp in layers]
    if not any(w != 0 for ws in weights for w in ws):
        return
    consumers = Counter(b for lp in layers for b in lp.bottom)
    under = set()
    contributes = [False] * len(layers)
    for i in reversed(range(len(layers))):
        lp = layers[i]
        c = any(w != 0 for w in weights[i]) or any(t in under for t in lp.top)
        contributes[i] = c
        if c:
            under.update(lp.bottom)
    for lp, c in zip(layers, contributes):
        if c or not lp.bottom or lp.type in METRIC_TYPES:
            continue
        learnable = _has_learnable(lp)
        dead_end = all(consumers[t] == 0 or
                       all(other.type in METRIC_TYPES for other in layers if t in other.bottom)
                       for t in lp.top) and not learnable
        outputs_unused = all(consumers[t] == 0 for t in lp.top)
        if learnable:
            rep.add("D007", lp.where(),
                    f"layer '{lp.name}' ({lp.type}) has learnable parameters but its outputs "
                    f"reach no loss in the TRAIN net: its weights never change",
                    "connect its output to a loss (or give a top loss_weight), set lr_mult: 0 "
                    "if it is meant to stay frozen, or exclude it from TRAIN")
        elif dead_end and outputs_unused:
            rep.add("D007", lp.where(),
                    f"layer '{lp.name}' ({lp.type}) is computed every TRAIN iteration but its "
                    f"outputs are used by nothing and reach no loss",
                    "remove it, exclude it from TRAIN (include: {phase: TEST}), or give its "
                    "top a loss_weight")


def _has_learnable(lp):
    n_blobs = None
    if lp.type in ("Convolution", "Deconvolution"):
        n_blobs = 2 if lp.convolution_param.bias_term else 1
    elif lp.type == "InnerProduct":
        n_blobs = 2 if lp.inner_product_param.bias_term else 1
    elif lp.type in ("Scale",):
        n_blobs = 2 if lp.scale_param.bias_term else 1
    elif lp.type in ("PReLU", "Bias", "Embed", "Parameter"):
        n_blobs = 1
    if n_blobs is None:
        return False
    specs = list(lp.param)
    return any((specs[j].lr_mult if j < len(specs) else 1.0) != 0 for j in range(n_blobs))


def lint_batchnorm(net: Msg, rep: Report):
    for lp in net.layer:
        if lp.type != "BatchNorm":
            continue
        for j, spec in enumerate(lp.param):
            if spec.has("lr_mult") and spec.lr_mult != 0:
                rep.add("D008", spec.where("lr_mult") or lp.where("param"),
                        f"layer '{lp.name}' (BatchNorm): param[{j}] has lr_mult "
                        f"{spec.lr_mult:g}; BatchNorm's blobs are running statistics (mean, "
                        f"variance, scale factor), not weights, and Caffe refuses to train them",
                        "set lr_mult: 0 for all three param entries (or drop them: Caffe then "
                        "fixes them at 0); learn the affine part in a Scale layer with "
                        "bias_term: true")


# --- driver ------------------------------------------------------------------------------------
def _net_lints(net: Msg, stages, level, sources: Sources, rep: Report, phases=("TRAIN", "TEST")):
    lint_batchnorm(net, rep)
    lint_loss_paths(net, rep, stages, level)
    for ph in phases:
        layers, _ = _data_layers(net, ph, stages, level)
        for lp in layers:
            if lp.type not in DATA_TYPES or lp.bottom:
                continue
            src = sources.info(lp)
            if src.error:
                rep.notes.append(f"layer '{lp.name}' ({ph}): data checks skipped: {src.error}")
                continue
            lint_data(lp, src, rep)
            lint_labels(lp, layers, src, rep)


def diagnose(path, overrides=(), max_records=200_000) -> Report:
    """Run every lint on a solver or net config file."""
    from ..config.compose import resolve_net, resolve_solver
    from .inspect import file_kind
    rep = Report()
    sources = Sources(max_records)
    try:
        kind = file_kind(path)
        if kind == "solver":
            p = resolve_solver(path, overrides)
        else:
            net = resolve_net(path, overrides)
    except CaffeishError as e:
        msg = str(e)
        where, _, rest = msg.partition(": ")
        if not (":" in where and os.path.exists(where.rsplit(":", 1)[0])):
            where, rest = os.fspath(path), msg
        rep.add("D000", where, rest, "fix the config as the message says")
        return rep
    if kind == "net":
        _net_lints(net, (), 0, sources, rep)
        return rep
    lint_lr_policy(p, rep)
    lint_lr_overflow(p, rep)
    train = p.net_param if p.has("net_param") else (
        p.train_net_param if p.has("train_net_param") else None)
    ts = p.train_state
    if train is not None:
        _net_lints(train, list(ts.stage), int(ts.level), sources, rep, phases=("TRAIN",))
    tests = [(m, p.test_state[i] if i < len(p.test_state) else Msg("NetState"))
             for i, m in enumerate(p.test_net_param)]
    if not tests and train is not None and p.test_iter:
        tests = [(train, p.test_state[0] if p.test_state else Msg("NetState"))]
    for net, st in tests:
        lint_batchnorm(net, rep)
        for lp in _data_layers(net, "TEST", st.stage, st.level)[0]:
            if lp.type in DATA_TYPES and not lp.bottom:
                src = sources.info(lp)
                if src.error:
                    rep.notes.append(f"layer '{lp.name}' (TEST): data checks skipped: "
                                     f"{src.error}")
                    continue
                layers, _ = _data_layers(net, "TEST", st.stage, st.level)
                lint_data(lp, src, rep)
                lint_labels(lp, layers, src, rep)
    lint_test_coverage(p, tests, sources, rep)
    return rep
