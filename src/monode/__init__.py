"""monode: momentum-accelerated neural ODEs on PyTorch."""

__version__ = "0.1.0"

from .solvers import (  # noqa: E402 (the version first: modules below read it)
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
from .tasks import LoadedRun, load_run  # noqa: E402

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
    "load_run",
    "LoadedRun",
]
