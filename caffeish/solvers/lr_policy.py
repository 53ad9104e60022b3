"""Caffe's learning-rate policies (SGDSolver::GetLearningRate)."""
from __future__ import annotations

import math

from ..errors import ConfigError

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


def check_policy(param):
    """Catch missing policy fields before training starts, naming the solver file line."""
    pol = param.lr_policy
    where = param.where("lr_policy")
    pre = f"{where}: " if where else ""
    if not param.has("lr_policy"):
        raise ConfigError(f"{param.where() + ': ' if param.where() else ''}solver: lr_policy is "
                          f"not set; choose one of {', '.join(POLICIES)} (e.g. lr_policy: fixed)")
    if pol not in POLICIES:
        from ..errors import did_you_mean
        raise ConfigError(f"{pre}solver: unknown lr_policy '{pol}'{did_you_mean(pol, POLICIES)}; "
                          f"choose one of {', '.join(POLICIES)}")
    needs = {"step": ["gamma", "stepsize"], "exp": ["gamma"], "inv": ["gamma", "power"],
             "multistep": ["gamma", "stepvalue"], "poly": ["power", "max_iter"],
             "sigmoid": ["gamma", "stepsize"]}.get(pol, [])
    missing = [f for f in needs if not param.has(f)]
    if missing:
        raise ConfigError(f"{pre}solver: lr_policy '{pol}' needs {', '.join(missing)}; add "
                          f"{' and '.join(m + ': ...' for m in missing)} to the solver")
    if pol in ("step", "sigmoid") and param.stepsize <= 0:
        raise ConfigError(f"{param.where('stepsize')}: solver: stepsize must be > 0 for "
                          f"lr_policy '{pol}'")
    if pol == "multistep":
        sv = list(param.stepvalue)
        if sv != sorted(sv):
            raise ConfigError(f"{param.where('stepvalue')}: solver: stepvalue must be increasing, "
                              f"got {sv}")


def learning_rate(param, it: int, current_step: int) -> tuple[float, int]:
    """(rate at iteration ``it``, updated current_step) for the solver's lr_policy. A rate that
    is not a finite real number (``inv`` with 1 + gamma * iter <= 0, ``poly`` past max_iter
    with a fractional power, ``exp`` overflowing) is a ConfigError naming the fields."""
    try:
        rate, current_step = _rate(param, it, current_step)
    except (ZeroDivisionError, OverflowError):
        rate = math.inf
    if isinstance(rate, complex) or not math.isfinite(rate):
        pol = param.lr_policy
        fields = {"step": ("gamma", "stepsize"), "exp": ("gamma",), "inv": ("gamma", "power"),
                  "multistep": ("gamma", "stepvalue"), "poly": ("power", "max_iter"),
                  "sigmoid": ("gamma", "stepsize")}.get(pol, ())
        shown = ", ".join(f"{f} {getattr(param, f)}" for f in ("base_lr",) + fields)
        where = param.where("lr_policy")
        raise ConfigError(f"{where + ': ' if where else ''}solver: lr_policy '{pol}' gives the "
                          f"learning rate {rate} at iteration {it} ({shown}); change those "
                          "fields so the rate stays a finite number")
    return float(rate), current_step


def _rate(param, it: int, current_step: int):
    pol = param.lr_policy
    base = param.base_lr
    if pol == "fixed":
        return base, current_step
    if pol == "step":
        current_step = it // param.stepsize
        return base * param.gamma ** current_step, current_step
    if pol == "exp":
        return base * param.gamma ** it, current_step
    if pol == "inv":
        return base * (1.0 + param.gamma * it) ** (-param.power), current_step
    if pol == "multistep":
        sv = param.stepvalue
        if current_step < len(sv) and it >= sv[current_step]:
            current_step += 1
        return base * param.gamma ** current_step, current_step
    if pol == "poly":
        return base * (1.0 - it / float(param.max_iter)) ** param.power, current_step
    if pol == "sigmoid":
        z = -param.gamma * (it - param.stepsize)
        return (0.0 if z > 700 else base / (1.0 + math.exp(z))), current_step   # exp(z) = inf
    raise ConfigError(f"unknown lr_policy {pol!r}")
