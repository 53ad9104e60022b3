"""SGD with momentum (Caffe's SGDSolver)."""
from __future__ import annotations

from ..backend import get_backend
from .solver import Solver, register_solver


@register_solver("SGD")
class SGDSolver(Solver):
    """history = momentum * history + lr * lr_mult * grad;  w -= history."""

    fused_rule = "SGD"

    def fused_hyper(self, rate):
        return self.param.momentum, 0.0, 0.0, 1.0

    def compute_update_value(self, i, rate):
        local_rate = rate * self.net.param_specs[i][0]
        p = self.net.learnable_params[i]
        get_backend().sgd_update(p.dev_diff, self.history_blobs[i].dev_data,
                                 self.param.momentum, local_rate)
