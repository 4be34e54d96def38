"""How an ODE is integrated: `odeint`, `odeint_adjoint`, solver statistics and the method registry."""
from ._errors import (MaxStepsExceededError, NonFiniteStateError, ODEInputError, ODESolverError,
                      StepSizeUnderflowError)
from ._stats import SolverStats, record_stats

from ._registry import METHODS
from .odeint import odeint, odeint_adjoint

__all__ = ["odeint", "odeint_adjoint", "METHODS", "SolverStats", "record_stats", "ODESolverError",
           "ODEInputError", "NonFiniteStateError", "StepSizeUnderflowError", "MaxStepsExceededError"]
