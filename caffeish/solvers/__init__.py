"""Solvers: the training loop and the update rules."""
from . import adaptive, sgd  # noqa: F401
from .solver import SOLVER_TYPES, Solver, get_solver, register_solver  # noqa: F401
