"""Name -> solver class. A new method is one file plus one line here."""

from typing import Union

from ._adaptive import AdaptiveRungeKutta
from ._fixed import FixedStepSolver
from .adams import ExplicitAdams, FixedAdams, ImplicitAdams
from .adaptive_heun import AdaptiveHeun
from .bosh3 import Bosh3
from .dopri5 import Dopri5
from .dopri8 import Dopri8
from .euler import Euler
from .fehlberg2 import Fehlberg2
from .heun2 import Heun2
from .heun3 import Heun3
from .midpoint import Midpoint
from .nag import NAG
from .rk4 import RK4, RK4Classic
from .scipy_solver import ScipySolver
from .tsit5 import Tsit5

SolverClass = Union[type[AdaptiveRungeKutta], type[FixedStepSolver], type[ScipySolver]]
"""Every registered class builds a `_interface.Solver`."""
METHODS: dict[str, SolverClass] = {
    cls.name: cls
    for cls in (Dopri8, Dopri5, Tsit5, Bosh3, Fehlberg2, AdaptiveHeun, Euler, Midpoint, Heun2, Heun3, RK4, RK4Classic,
                ExplicitAdams, ImplicitAdams, FixedAdams, ScipySolver, NAG)
}  # fmt: skip
ADAPTIVE = frozenset(name for name, cls in METHODS.items() if issubclass(cls, AdaptiveRungeKutta))
