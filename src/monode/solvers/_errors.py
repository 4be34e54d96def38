"""Exceptions raised by the solvers. Each message names the option at fault and the value received."""

from __future__ import annotations


class ODESolverError(RuntimeError):
    """Base class of every error a monode solve raises at run time."""


class ODEInputError(ValueError):
    """Bad arguments to `odeint` / `odeint_adjoint` (shapes, times, tolerances, options)."""


class NonFiniteStateError(ODESolverError, FloatingPointError):
    """The state or the vector field became NaN or Inf during a solve."""


class StepSizeUnderflowError(ODESolverError):
    """An adaptive solver shrank its step until `t + dt == t`."""


class MaxStepsExceededError(ODESolverError):
    """A solve needed more steps than `options['max_num_steps']` allows."""
