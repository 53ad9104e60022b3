"""Caffe's other update rules: Nesterov, AdaGrad, RMSProp, AdaDelta, Adam.

Each computes the update value into the parameter's diff (the base Solver then does
``w -= diff``), after Caffe's normalisation (iter_size), weight decay and gradient clipping.
``local_rate`` is the policy's learning rate times the parameter's ``lr_mult``. The arithmetic is
in the backend (``nesterov_update``, ``adagrad_update``, ``rmsprop_update``, ``adadelta_update``,
``adam_update``), written once per device.

History in the ``.solverstate`` follows Caffe: one blob per learnable parameter; AdaDelta and
Adam append a second set (squared-update history, second moment) after the first, so solver
states move between caffeish and Caffe.
"""
from __future__ import annotations

import math

from ..backend import get_backend
from ..errors import ConfigError
from .solver import Solver, register_solver


class _AdaptiveSolver(Solver):
    """Shared helpers: flat views of a parameter and its history, scalars in its dtype."""

    def _where(self, field):
        w = self.param.where(field) if self.param.has(field) else self.param.where()
        return f"{w}: " if w else ""

    def _config_error(self, field, message):
        return ConfigError(f"{self._where(field)}solver ({self.type}): {message}")

    def _flat(self, i):
        """(diff, history sets..., dtype) for learnable parameter ``i``: flat views of the
        active backend's arrays."""
        p = self.net.learnable_params[i]
        n = len(self.net.learnable_params)
        diff = p.dev_diff_as(p.count)
        hist = [self.history_blobs[k * n + i].dev_data_as(p.count)
                for k in range(self.n_history_sets)]
        return diff, hist, diff.dtype.type

    def _local_rate(self, i, rate):
        return rate * self.net.param_specs[i][0]


@register_solver("Nesterov")
class NesterovSolver(_AdaptiveSolver):
    """Nesterov's accelerated gradient (Sutskever et al. 2013), Caffe's form.

    h' = momentum * h + local_rate * grad;  update = (1 + momentum) * h' - momentum * h.
    """

    fused_rule = "Nesterov"

    def fused_hyper(self, rate):
        return self.param.momentum, 0.0, 0.0, 1.0

    def compute_update_value(self, i, rate):
        diff, (h,), t = self._flat(i)
        get_backend().nesterov_update(diff, h, t(self.param.momentum),
                                      t(self._local_rate(i, rate)))


@register_solver("AdaGrad")
class AdaGradSolver(_AdaptiveSolver):
    """AdaGrad (Duchi et al. 2011): h += grad^2;  update = local_rate * grad / (sqrt(h) + delta).

    Caffe refuses momentum with AdaGrad.
    """

    def _validate(self):
        super()._validate()
        if self.param.momentum != 0:
            raise self._config_error("momentum", f"momentum cannot be used with AdaGrad (got "
                                     f"{self.param.momentum:g}); remove it")

    fused_rule = "AdaGrad"

    def fused_hyper(self, rate):
        return self.param.delta, 0.0, 0.0, 1.0

    def compute_update_value(self, i, rate):
        diff, (h,), t = self._flat(i)
        get_backend().adagrad_update(diff, h, t(self.param.delta), t(self._local_rate(i, rate)))


@register_solver("RMSProp")
class RMSPropSolver(_AdaptiveSolver):
    """RMSProp (Tieleman & Hinton 2012).

    h = rms_decay * h + (1 - rms_decay) * grad^2;  update = local_rate * grad / (sqrt(h) + delta).
    Caffe refuses momentum with RMSProp and needs 0 <= rms_decay < 1.
    """

    def _validate(self):
        super()._validate()
        p = self.param
        if p.momentum != 0:
            raise self._config_error("momentum", f"momentum cannot be used with RMSProp (got "
                                     f"{p.momentum:g}); remove it")
        if not 0 <= p.rms_decay < 1:
            raise self._config_error("rms_decay", f"rms_decay should lie between 0 and 1 "
                                     f"(0 <= rms_decay < 1), got {p.rms_decay:g}")

    fused_rule = "RMSProp"

    def fused_hyper(self, rate):
        return self.param.rms_decay, self.param.delta, 0.0, 1.0

    def compute_update_value(self, i, rate):
        diff, (h,), t = self._flat(i)
        get_backend().rmsprop_update(diff, h, t(self.param.rms_decay), t(self.param.delta),
                                     t(self._local_rate(i, rate)))


@register_solver("AdaDelta")
class AdaDeltaSolver(_AdaptiveSolver):
    """AdaDelta (Zeiler 2012), Caffe's form; ``momentum`` is the decay rho, base_lr usually 1.

    h = m*h + (1-m)*grad^2;  u = grad * sqrt((hu + delta) / (h + delta));
    hu = m*hu + (1-m)*u^2;  update = local_rate * u.
    History: the squared-gradient set, then the squared-update set.
    """

    n_history_sets = 2

    fused_rule = "AdaDelta"

    def fused_hyper(self, rate):
        return self.param.momentum, self.param.delta, 0.0, 1.0

    def compute_update_value(self, i, rate):
        diff, (h, hu), t = self._flat(i)
        get_backend().adadelta_update(diff, h, hu, t(self.param.momentum), t(self.param.delta),
                                      t(self._local_rate(i, rate)))


@register_solver("Adam")
class AdamSolver(_AdaptiveSolver):
    """Adam (Kingma & Ba 2014); beta1 = momentum, beta2 = momentum2, eps = delta.

    m = b1*m + (1-b1)*grad;  v = b2*v + (1-b2)*grad^2;  t = iter + 1;
    update = local_rate * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)   (Caffe's form: the
    bias correction scales the rate, eps is added to the uncorrected sqrt(v)).
    History: the first moments, then the second moments.
    Caffe checks nothing here; beta1 = 1 would divide by zero, so 0 <= beta1, beta2 < 1 is
    required.
    """

    n_history_sets = 2

    def _validate(self):
        super()._validate()
        p = self.param
        for field, name in (("momentum", "beta1"), ("momentum2", "beta2")):
            v = getattr(p, field)
            if not 0 <= v < 1:
                raise self._config_error(field, f"{field} ({name}) must lie in [0, 1), got {v:g}")

    fused_rule = "Adam"

    def _correction(self):
        """Caffe's bias correction of the rate at this step: sqrt(1 - b2^t) / (1 - b1^t)."""
        b1, b2 = float(self.param.momentum), float(self.param.momentum2)
        step = self.iter + 1
        return math.sqrt(1.0 - b2 ** step) / (1.0 - b1 ** step)

    def fused_hyper(self, rate):
        p = self.param
        return p.momentum, p.momentum2, p.delta, self._correction()

    def compute_update_value(self, i, rate):
        diff, (m, v), t = self._flat(i)
        b1, b2 = float(self.param.momentum), float(self.param.momentum2)
        correction = t(self._correction())
        corrected = t(self._local_rate(i, rate)) * correction
        get_backend().adam_update(diff, m, v, t(b1), t(b2), t(self.param.delta), corrected)
