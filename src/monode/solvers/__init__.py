"""How an ODE is integrated: `odeint`, `odeint_adjoint`, solver statistics and the method registry."""
from ._errors import (MaxStepsExceededError, NonFiniteStateError, ODEInputError, ODESolverError,
                      StepSizeUnderflowError)
from ._stats import SolverStats, record_stats

try:  # the engine lands in this package; until then re-export torchdiffeq with the same API
    from .odeint import odeint, odeint_adjoint  # noqa: F401
    from ._registry import METHODS  # noqa: F401
except ImportError:  # pragma: no cover - temporary during bring-up
    from torchdiffeq import odeint, odeint_adjoint  # type: ignore  # noqa: F401
    METHODS = {}

__all__ = ["odeint", "odeint_adjoint", "METHODS", "SolverStats", "record_stats", "ODESolverError",
           "ODEInputError", "NonFiniteStateError", "StepSizeUnderflowError", "MaxStepsExceededError"]
