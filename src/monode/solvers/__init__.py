"""How an ODE is integrated: `odeint`, `odeint_adjoint`, `odeint_event`, solver statistics, the method registry and the
field contract the adjoint understands."""

from ._adjoint import odeint_adjoint
from ._errors import MaxStepsExceededError, NonFiniteStateError, ODEInputError, ODESolverError, StepSizeUnderflowError
from ._events import odeint_event
from ._integrate import odeint
from ._registry import ADAPTIVE, METHODS
from ._stats import SolverStats, active_recorders, record_stats, report
from .fields import ClosedFormField, ParametrizedField

__all__ = [
    "odeint",
    "odeint_adjoint",
    "odeint_event",
    "METHODS",
    "ADAPTIVE",
    "SolverStats",
    "record_stats",
    "active_recorders",
    "report",
    "ParametrizedField",
    "ClosedFormField",
    "ODESolverError",
    "ODEInputError",
    "NonFiniteStateError",
    "StepSizeUnderflowError",
    "MaxStepsExceededError",
]
