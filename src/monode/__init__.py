"""monode: momentum-accelerated neural ODEs on PyTorch."""

from .solvers import (
    METHODS,
    MaxStepsExceededError,
    NonFiniteStateError,
    ODEInputError,
    ODESolverError,
    SolverStats,
    StepSizeUnderflowError,
    odeint,
    odeint_adjoint,
    record_stats,
)

__version__ = "0.1.0"

__all__ = [
    "odeint",
    "odeint_adjoint",
    "METHODS",
    "SolverStats",
    "record_stats",
    "ODESolverError",
    "ODEInputError",
    "NonFiniteStateError",
    "StepSizeUnderflowError",
    "MaxStepsExceededError",
]
