"""The training loop: Caffe's Solver::Solve / Step / Test / Snapshot / Restore."""
from __future__ import annotations

import json
import math
import os
import signal
import time
from collections import deque

import numpy as np

from ..backend import get_backend
from ..blob import Blob
from ..config.schema import Msg
from ..errors import CaffeishError, ConfigError
from ..log import logger
from ..net import Net, load_net_param
from .lr_policy import check_policy, learning_rate

SOLVER_TYPES: dict[str, type] = {}
_LEGACY_TYPES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                 "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}


def register_solver(name):
    def deco(cls):
        if name in SOLVER_TYPES:
            raise ValueError(f"solver type {name!r} registered twice")
        cls.type = name
        SOLVER_TYPES[name] = cls
        return cls
    return deco


def load_solver_param(source) -> Msg:
    if isinstance(source, Msg):
        return source
    from ..config.yaml_loader import load_message
    path = os.fspath(source)
    if path.endswith(".prototxt"):
        from ..io.prototxt import parse_prototxt_file
        from ..io.upgrade import upgrade_solver
        return upgrade_solver(parse_prototxt_file(path, "SolverParameter"))[0]
    return load_message(path, "SolverParameter")


class _UserCallback:
    """add_callback's pair of argument-less functions, in the (solver) callback protocol."""

    def __init__(self, on_start, on_gradients_ready):
        self._start = on_start
        self._ready = on_gradients_ready

    def on_start(self, solver):
        if self._start is not None:
            self._start()

    def on_gradients_ready(self, solver):
        if self._ready is not None:
            self._ready()


def solver_type_name(param: Msg) -> str:
    if param.has("type"):
        return param.type
    if param.has("solver_type"):
        return _LEGACY_TYPES.get(param.solver_type, param.solver_type)
    return "SGD"


def get_solver(source, **kw) -> "Solver":
    """Build the solver its parameter file asks for (pycaffe's caffe.get_solver)."""
    import caffeish.config  # noqa: F401
    from . import sgd  # noqa: F401  (registers the update rules)
    param = load_solver_param(source)
    name = solver_type_name(param)
    cls = SOLVER_TYPES.get(name)
    if cls is None:
        from ..errors import did_you_mean
        raise ConfigError(f"{param.where('type')}: solver: unknown solver type '{name}'"
                          f"{did_you_mean(name, SOLVER_TYPES)}; available: "
                          f"{', '.join(SOLVER_TYPES)}")
    return cls(param, **kw)


def _fmt_eta(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Solver:
    """Base solver: owns the train net, the test nets, the loop, snapshots and resume.

    Subclasses implement ``compute_update_value(i, param_blob, rate)`` and name their history.
    """

    type = "?"
    n_history_sets = 1

    def __init__(self, param, stages=(), level=0, weights=None):
        import caffeish.config  # noqa: F401
        param = load_solver_param(param)
        self.param = param
        self.file = param.src[0] if param.src else None
        self.base_dir = os.path.dirname(os.path.abspath(self.file)) if self.file else os.getcwd()
        self._validate()
        seed = int(param.random_seed)
        self.seed = seed if seed >= 0 else None
        if self.seed is not None:
            np.random.seed(self.seed % 2**32)   # random_seed is an int64
        self.iter = 0
        self.current_step = 0
        self.requested = None
        self.callbacks = []
        self._init_train_net(stages, level)
        self._init_test_nets(stages, level)
        for w in list(param.weights) + (list(weights) if weights else []):
            self.copy_weights(w)
        self.history_blobs = [Blob(p.shape, p.dtype, name=f"history{k}[{j}]")
                              for k in range(self.n_history_sets)
                              for j, p in enumerate(self.net.learnable_params)]
        self._packed = None
        self.losses = deque(maxlen=max(1, int(param.average_loss)))
        self.smoothed_loss = 0.0
        self.metrics = []
        self.metrics_file = None
        # Pack now, not at the first step: a pycaffe script that keeps
        # `w = solver.net.params['conv1'][0].data` must see the updates in w.
        self.param_buffers()

    # --- construction --------------------------------------------------------------------
    def _validate(self):
        p = self.param
        if not p.has("base_lr"):
            raise ConfigError(f"{p.where() + ': ' if p.where() else ''}solver: base_lr is not set")
        check_policy(p)
        if p.average_loss < 1:
            raise ConfigError(f"{p.where('average_loss')}: solver: average_loss must be >= 1")
        if p.iter_size < 1:
            raise ConfigError(f"{p.where('iter_size')}: solver: iter_size must be >= 1")
        if p.regularization_type not in ("L1", "L2"):
            raise ConfigError(f"{p.where('regularization_type')}: solver: regularization_type "
                              f"must be L1 or L2, got '{p.regularization_type}'")
        if p.snapshot_format == "HDF5" and p.snapshot:
            try:
                import h5py  # noqa: F401
            except ImportError:
                raise ConfigError(f"{p.where('snapshot_format') or 'solver'}: snapshot_format "
                                  f"HDF5 needs the h5py package, which is not installed: pip "
                                  f"install 'caffeish[hdf5]' (or use snapshot_format: "
                                  f"BINARYPROTO)") from None
        if p.snapshot and not p.has("snapshot_prefix"):
            raise ConfigError(f"{p.where('snapshot')}: solver: snapshot is set but "
                              f"snapshot_prefix is not; add snapshot_prefix: <path prefix>")
        if p.test_interval and not p.test_iter and self._has_test_net_source():
            raise ConfigError(f"{p.where('test_interval')}: solver: test_interval is set but "
                              f"test_iter is not; add test_iter: <batches per test>")

    def _has_test_net_source(self):
        p = self.param
        return bool(p.test_net or p.test_net_param or p.has("net") or p.has("net_param"))

    def resolve(self, path):
        """A path named in the solver file: relative to the solver file's folder."""
        if os.path.isabs(path):
            return path
        return os.path.join(self.base_dir, path)

    def _net_source(self, which):
        p = self.param
        sources = []
        if which == "train":
            for f in ("train_net", "train_net_param", "net", "net_param"):
                if p.has(f):
                    sources.append(f)
            if not sources:
                raise ConfigError(f"{p.where() + ': ' if p.where() else ''}solver: no net given; "
                                  f"add net: <net.yaml>")
            if len(sources) > 1:
                raise ConfigError(f"{p.where(sources[1])}: solver: give exactly one of train_net, "
                                  f"train_net_param, net, net_param (found {', '.join(sources)})")
            f = sources[0]
            if f.endswith("_param"):
                return getattr(p, f)
            path = self.resolve(getattr(p, f))
            if not os.path.exists(path):
                raise ConfigError(f"{p.where(f)}: solver: net file '{getattr(p, f)}' not found "
                                  f"(looked for {path}; paths are relative to the solver file)")
            return load_net_param(path)
        raise ValueError(which)

    def _init_train_net(self, stages, level):
        p = self.param
        state = p.train_state.copy() if p.has("train_state") else Msg("NetState")
        state.set("stage", list(state.stage) + list(stages))
        if level:
            state.set("level", level)
        logger.info(f"Creating training net from {self.file or 'solver'}")
        self.net = Net(self._net_source("train"), phase="TRAIN", state=state, seed=self.seed,
                       verbose=True)
        self.images_per_iter = self._batch_size(self.net) * int(p.iter_size)

    def _init_test_nets(self, stages, level):
        p = self.param
        sources = [("test_net_param", m) for m in p.test_net_param]
        sources += [("test_net", load_net_param(self.resolve(f))) for f in p.test_net]
        if not sources and (p.has("net") or p.has("net_param")) and p.test_iter:
            sources = [("net", self._net_source("train"))]
        if len(p.test_iter) != len(sources) and sources:
            raise ConfigError(f"{p.where('test_iter')}: solver: {len(sources)} test net(s) but "
                              f"{len(p.test_iter)} test_iter value(s); give one per test net")
        self.test_nets = []
        for i, (_, src) in enumerate(sources):
            state = p.test_state[i].copy() if i < len(p.test_state) else Msg("NetState")
            state.set("stage", list(state.stage) + list(stages))
            if level:
                state.set("level", level)
            logger.info(f"Creating test net (#{i})")
            net = Net(src, phase="TEST", state=state,
                      seed=None if self.seed is None else self.seed + 1000 + i, verbose=True)
            net.share_weights_from(self.net)
            self.test_nets.append(net)

    @staticmethod
    def _batch_size(net):
        for name in net.layer_names:
            layer = net.layer_dict[name]
            if layer.type in ("Data", "ImageData", "MemoryData", "HDF5Data", "DummyData", "Input",
                              "WindowData") and net.top_vecs[net.layer_names.index(name)]:
                shape = net.top_vecs[net.layer_names.index(name)][0].shape
                return shape[0] if shape else 1
        return 1

    def copy_weights(self, path):
        self.net.copy_from(path)

    # --- the update --------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate the next update uses (pycaffe's ``solver.lr``)."""
        rate, _ = learning_rate(self.param, self.iter, self.current_step)   # no state change
        return float(rate)

    def get_learning_rate(self):
        rate, self.current_step = learning_rate(self.param, self.iter, self.current_step)
        return rate

    @property
    def history(self) -> list:
        """The update history as host arrays (one per learnable parameter and history set, in
        the .solverstate's order); writing into them changes the solver's state."""
        return [h.data for h in self.history_blobs]

    def clip_gradients(self, packed=None):
        clip = self.param.clip_gradients
        if clip < 0:
            return
        be = get_backend()
        params = self.net.learnable_params
        diffs = [packed.diff_array(be)] if packed is not None else [p.dev_diff for p in params]
        sumsq = sum(be.sumsq(d) for d in diffs)
        l2 = math.sqrt(sumsq)
        if l2 > clip:
            scale = clip / l2
            logger.info(f"Gradient clipping: scaling down gradients (L2 norm {l2:g} > {clip:g}) "
                        f"by scale factor {scale:g}")
            for d in diffs:
                be.scal(scale, d)

    def normalize(self, i):
        if self.param.iter_size > 1:
            get_backend().scal(1.0 / self.param.iter_size, self.net.learnable_params[i].dev_diff)

    def regularize(self, i):
        p = self.net.learnable_params[i]
        decay = self.param.weight_decay * self.net.param_specs[i][1]
        if decay == 0:
            return
        be = get_backend()
        if self.param.regularization_type == "L2":
            be.l2_regularize(p.dev_diff, p.dev_data, decay)
        else:
            be.l1_regularize(p.dev_diff, p.dev_data, decay)

    def compute_update_value(self, i, rate):
        raise NotImplementedError

    # --- every parameter in one pass ---------------------------------------------------------
    fused_rule = None   # the backend's FUSED_RULES name of compute_update_value's rule
    _packing_refused = False   # set when the parameters cannot share one buffer (dtypes)

    def fused_hyper(self, rate):
        """(a, b, c, corr) of ``fused_rule`` (see backend fused_update) at learning rate ``rate``."""
        raise NotImplementedError

    def _fused_rule(self):
        """``fused_rule`` when this class's update steps are the ones it describes (a subclass
        that overrides one of them, without its own fused_rule, takes the per-parameter path)."""
        if self.fused_rule is None:
            return None
        mro = type(self).__mro__
        owner = next(k for k in mro if "fused_rule" in vars(k))
        for step in ("compute_update_value", "normalize", "regularize", "clip_gradients"):
            defined = next(k for k in mro if step in vars(k))
            if defined is not owner and defined is not Solver:
                return None
        return self.fused_rule

    def param_buffers(self):
        """The packed parameters (``caffeish.param_buffers.ParamBuffers``), packing them on first
        use and again when a blob's storage was replaced; None when they cannot be packed
        (no learnable parameters, or several dtypes)."""
        pb = self._packed
        if pb is not None and pb.intact():
            return pb
        self._packed = None
        params = self.net.learnable_params
        if not params or self._packing_refused:
            return None
        from ..param_buffers import ParamBuffers
        n = len(params)
        hist = [self.history_blobs[k * n:(k + 1) * n] for k in range(self.n_history_sets)]
        try:
            self._packed = ParamBuffers(params, self.net.param_specs, hist,
                                        [self.net] + list(self.test_nets))
        except ValueError:  # several dtypes
            self._packing_refused = True
        return self._packed

    def clear_param_diffs(self):
        pb = self.param_buffers()
        if pb is None:
            self.net.clear_param_diffs()
        else:
            pb.clear_diffs(get_backend())

    def _fused_update(self, rate) -> bool:
        """The whole update (clip, normalise, regularise, rule, w -= update) in one backend pass
        over the packed parameters; False when it does not apply (no packing, debug_info, a
        rule without a fused form)."""
        rule = self._fused_rule()
        if rule is None or self.net.debug_info:
            return False
        pb = self.param_buffers()
        if pb is None:
            return False
        be = get_backend()
        p = self.param
        self.clip_gradients(pb)
        a, b, c, corr = self.fused_hyper(rate)
        be.fused_update(be.FUSED_RULES[rule], *pb.arrays(be), *pb.meta(be), rate,
                        p.weight_decay, p.regularization_type != "L2",
                        1.0 / p.iter_size if p.iter_size > 1 else 1.0, a, b, c, corr)
        return True

    def apply_update(self):
        rate = self.get_learning_rate()
        if self.param.display and self.iter % self.param.display == 0:
            logger.info(f"Iteration {self.iter}, lr = {rate:g}")
        self.rate = rate
        if self._fused_update(rate):
            return
        self.clip_gradients()
        for i, p in enumerate(self.net.learnable_params):
            self.normalize(i)
            self.regularize(i)
            self.compute_update_value(i, rate)
        if self.net.debug_info:
            self.net.update_debug_info()
        be = get_backend()
        for p in self.net.learnable_params:
            be.axpy(-1.0, p.dev_diff, p.dev_data)  # Caffe's Blob::Update: data -= diff

    # --- loop ----------------------------------------------------------------------------------
    def add_callback(self, on_start=None, on_gradients_ready=None):
        """pycaffe's Solver.add_callback: ``on_start()`` runs at the start of every iteration
        (after any test pass, before the forward pass), ``on_gradients_ready()`` once the
        iteration's gradients are in ``net.params[...][j].diff``, before the update applies
        them. Both take no arguments; either may be None."""
        for fn, what in ((on_start, "on_start"), (on_gradients_ready, "on_gradients_ready")):
            if fn is not None and not callable(fn):
                raise TypeError(f"add_callback: {what} must be callable or None, got "
                                f"{type(fn).__name__}")
        self.callbacks.append(_UserCallback(on_start, on_gradients_ready))

    def step(self, iters: int):
        p = self.param
        start_iter = self.iter
        stop_iter = self.iter + iters
        t_start = time.perf_counter()
        t_last, it_last = t_start, self.iter
        while self.iter < stop_iter:
            self.clear_param_diffs()
            if p.test_interval and self.iter % p.test_interval == 0 and \
                    (self.iter > 0 or p.test_initialization):
                t0 = time.perf_counter()
                self.test_all()
                t_start += time.perf_counter() - t0
                t_last += time.perf_counter() - t0
                if self.requested == "stop":
                    break
            for cb in self.callbacks:
                start = getattr(cb, "on_start", None)
                if start is not None:
                    start(self)
            display = p.display and self.iter % p.display == 0
            self.net.debug_info = bool(display and (p.debug_info or self.net.param.debug_info))
            loss = 0.0
            for _ in range(p.iter_size):
                loss += self.net.forward_backward()
            loss /= p.iter_size
            if not math.isfinite(loss):
                where = self.net.first_nonfinite()
                detail = (f"; the first non-finite output is blob '{where[1]}' of layer "
                          f"'{where[0]}'" if where else "")
                raise CaffeishError(f"Iteration {self.iter}: loss is {loss}{detail}. Lower base_lr "
                                    f"(now {p.base_lr:g}) or check the input scaling.")
            self._update_smoothed_loss(loss, start_iter)
            for cb in self.callbacks:
                cb.on_gradients_ready(self)
            if display:
                now = time.perf_counter()
                done = self.iter - it_last
                ips = done / (now - t_last) if now > t_last and done else float("nan")
                eta = (p.max_iter - self.iter) / ips if ips == ips and ips > 0 else float("nan")
                speed = (f" ({ips:.4g} iter/s, {ips * self.images_per_iter:.0f} images/s, "
                         f"ETA {_fmt_eta(eta)})" if done else "")
                logger.info(f"Iteration {self.iter}{speed}, loss = {self.smoothed_loss:g}")
                self._log_outputs(self.net, "Train", [self._output_values(self.net)])
                self._record(kind="train", loss=self.smoothed_loss,
                             iter_per_s=ips if done else None,
                             images_per_s=ips * self.images_per_iter if done else None)
                t_last, it_last = now, self.iter
            self.apply_update()
            self.iter += 1
            if self.param.display and (self.iter - 1) % self.param.display == 0:
                self._record_lr()
            if p.snapshot and self.iter % p.snapshot == 0 or self.requested == "snapshot":
                self.snapshot()
                if self.requested == "snapshot":
                    self.requested = None
            if self.requested == "stop":
                break
        self.net.debug_info = bool(self.net.param.debug_info)

    def _record_lr(self):
        if self.metrics and self.metrics[-1].get("kind") == "train":
            self.metrics[-1]["lr"] = self.rate

    def _update_smoothed_loss(self, loss, start_iter):
        self.losses.append(loss)
        self.smoothed_loss = float(np.mean(self.losses))

    def _output_values(self, net):
        return {name: net.blobs[name].data.copy() for name in net.outputs}

    def _log_outputs(self, net, label, values_list):
        k = 0
        weights = net.blob_loss_weights
        out = {}
        for name in net.outputs:
            vals = np.mean([np.asarray(v[name], np.float64) for v in values_list], axis=0)
            w = weights.get(name, 0.0)
            for x in np.ravel(vals):
                extra = f" (* {w:g} = {w * x:g} loss)" if w else ""
                logger.info(f"    {label} net output #{k}: {name} = {x:g}{extra}")
                k += 1
            out[name] = float(np.ravel(vals)[0]) if np.size(vals) == 1 else np.ravel(vals).tolist()
        return out

    def test_all(self):
        results = []
        for i in range(len(self.test_nets)):
            results.append(self.test(i))
        return results

    def test(self, i=0):
        net = self.test_nets[i]
        logger.info(f"Iteration {self.iter}, Testing net (#{i})")
        values = []
        loss = 0.0
        for _ in range(self.param.test_iter[i]):
            loss += net.forward_loss()
            values.append(self._output_values(net))
        if self.param.test_compute_loss:
            logger.info(f"Test loss: {loss / self.param.test_iter[i]:g}")
        out = self._log_outputs(net, "Test", values)
        self._record(kind="test", net=i, outputs=out)
        return out

    def _record(self, **kw):
        rec = {"iter": self.iter, "time": time.time(), **kw}
        self.metrics.append(rec)
        if self.metrics_file:
            with open(self.metrics_file, "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    def solve(self, resume_file=None):
        p = self.param
        if p.has("snapshot_prefix") and (p.snapshot or p.snapshot_after_train):
            self._make_snapshot_folder()     # now, not after hours of training
        logger.info(f"Solving {self.net.name or 'net'}")
        logger.info(f"Learning Rate Policy: {p.lr_policy}")
        if resume_file:
            self.restore(resume_file)
        old = self._install_signals()
        try:
            self.step(p.max_iter - self.iter)
            if p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0):
                self.snapshot()
            if self.requested == "stop":
                logger.info("Optimization stopped early.")
                return
            if p.display and self.iter % p.display == 0:
                loss = self.net.forward_loss()
                logger.info(f"Iteration {self.iter}, loss = {loss:g}")
            if p.test_interval and self.iter % p.test_interval == 0:
                self.test_all()
            logger.info("Optimization Done.")
        finally:
            self._restore_signals(old)

    # --- signals -------------------------------------------------------------------------------
    def _install_signals(self):
        effects = {"stop": "stop", "snapshot": "snapshot", "none": None}
        sigint = effects.get(getattr(self, "sigint_effect", "stop"))
        sighup = effects.get(getattr(self, "sighup_effect", "snapshot"))

        def handler(effect):
            def h(signum, frame):
                logger.info(f"Caught signal {signum}: {effect or 'ignored'} requested")
                if effect:
                    self.requested = effect
            return h
        old = {}
        try:
            old[signal.SIGINT] = signal.signal(signal.SIGINT, handler(sigint))
            if hasattr(signal, "SIGHUP"):
                old[signal.SIGHUP] = signal.signal(signal.SIGHUP, handler(sighup))
        except ValueError:  # not the main thread
            pass
        return old

    @staticmethod
    def _restore_signals(old):
        for s, h in old.items():
            signal.signal(s, h)

    # --- snapshots -----------------------------------------------------------------------------
    def snapshot_paths(self, it=None):
        it = self.iter if it is None else it
        prefix = self.param.snapshot_prefix
        ext = ".h5" if self.param.snapshot_format == "HDF5" else ""
        return f"{prefix}_iter_{it}.caffemodel{ext}", f"{prefix}_iter_{it}.solverstate{ext}"

    def _make_snapshot_folder(self, model_path=None):
        d = os.path.dirname(model_path or self.snapshot_paths()[0])
        if d:
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as e:
                raise CaffeishError(
                    f"cannot create the snapshot folder {d} ({e.strerror or e}); point "
                    f"snapshot_prefix ({self.param.snapshot_prefix}) at a writable "
                    "folder") from None

    def snapshot(self):
        from ..io.formats import array_to_blob, write_solverstate
        model_path, state_path = self.snapshot_paths()
        self._make_snapshot_folder(model_path)
        extra = {"format": 1, "train": self.net.get_state(),
                 "test": [n.get_state() for n in self.test_nets],
                 "global_rng": _np_global_state(), "losses": list(self.losses)}
        extra = json.dumps(extra, default=_json_default).encode()
        if self.param.snapshot_format == "HDF5":
            from ..io import hdf5_snapshot as h5
            logger.info(f"Snapshotting to HDF5 file {model_path}")
            h5.save_net_hdf5(self.net, model_path, with_diff=bool(self.param.snapshot_diff))
            logger.info(f"Snapshotting solver state to HDF5 file {state_path}")
            h5.save_solverstate_hdf5(state_path, self.iter, model_path, self.current_step,
                                     [h.data_readonly() for h in self.history_blobs], extra)
            return model_path, state_path
        logger.info(f"Snapshotting to binary proto file {model_path}")
        from ..weights import save_caffemodel
        save_caffemodel(self.net, model_path, with_diff=bool(self.param.snapshot_diff))
        state = Msg("SolverState")
        state.set("iter", self.iter)
        state.set("learned_net", model_path)
        state.set("current_step", self.current_step)
        state.set("history", [array_to_blob(h.data_readonly().astype(np.float32))
                              for h in self.history_blobs])
        state.set("caffeish_state", extra)
        logger.info(f"Snapshotting solver state to binary proto file {state_path}")
        write_solverstate(state, state_path)
        return model_path, state_path

    def restore(self, state_path):
        from ..io.formats import blob_to_array, read_solverstate
        state_path = os.fspath(state_path)
        if not os.path.exists(state_path):
            raise CaffeishError(f"{state_path}: solver state not found (pass the .solverstate "
                                f"file written by a snapshot)")
        logger.info(f"Restoring previous solver status from {state_path}")
        from ..io.hdf5_snapshot import is_hdf5, read_solverstate_hdf5
        st = read_solverstate_hdf5(state_path) if is_hdf5(state_path) else \
            read_solverstate(state_path)
        self.iter = int(st.iter)
        self.current_step = int(st.current_step)
        if st.learned_net:
            model = st.learned_net
            if not os.path.exists(model):
                alt = os.path.join(os.path.dirname(state_path), os.path.basename(model))
                if os.path.exists(alt):
                    model = alt
                else:
                    raise CaffeishError(f"{state_path}: its weights file '{st.learned_net}' was "
                                        f"not found (also looked for {alt})")
            self.net.copy_from(model, log=False)
        hist = list(st.history)
        if len(hist) != len(self.history_blobs):
            raise CaffeishError(f"{state_path}: holds {len(hist)} history blobs but this "
                                f"{self.type} solver's net needs {len(self.history_blobs)}; was "
                                f"it written for another net or solver type?")
        for j, (h, bp) in enumerate(zip(self.history_blobs, hist)):
            arr = blob_to_array(bp)
            if arr.size != h.count:
                raise CaffeishError(f"{state_path}: history blob {j} has {arr.size} values, the "
                                    f"net's parameter has {h.count}")
            h.data[...] = arr.reshape(h.shape)
        if st.has("caffeish_state"):
            try:
                extra = json.loads(bytes(st.caffeish_state).decode())
                self.net.set_state(_from_json(extra.get("train", {})))
                for n, s in zip(self.test_nets, extra.get("test", [])):
                    n.set_state(_from_json(s))
                if extra.get("global_rng"):
                    _set_np_global_state(extra["global_rng"])
                self.losses.extend(float(v) for v in extra.get("losses", []))
            except CaffeishError:
                raise
            except (ValueError, TypeError, KeyError, IndexError, AttributeError,
                    OverflowError) as e:
                raise CaffeishError(
                    f"{state_path}: its caffeish state (data positions and RNG states, the "
                    f"part Caffe ignores) is damaged ({type(e).__name__}: {e}); resume from "
                    "another snapshot, or start from its weights with --weights "
                    f"{st.learned_net or '<the .caffemodel>'}") from None
        else:
            logger.info(f"{state_path}: no caffeish RNG/data state (written by Caffe?); data "
                        f"order and dropout masks restart from the seed")


def _np_global_state():
    s = np.random.get_state()
    return [s[0], s[1].tolist(), s[2], s[3], s[4]]


def _set_np_global_state(s):
    np.random.set_state((s[0], np.array(s[1], dtype=np.uint32), s[2], s[3], s[4]))


def _json_default(o):
    if isinstance(o, np.ndarray):
        return {"__ndarray__": o.tolist(), "dtype": str(o.dtype)}
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(f"cannot serialise {type(o)}")


def _from_json(o):
    if isinstance(o, dict):
        if "__ndarray__" in o:
            return np.array(o["__ndarray__"], dtype=o["dtype"])
        return {k: _from_json(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_from_json(v) for v in o]
    return o
