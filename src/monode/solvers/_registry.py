"""Name -> solver class. A new method is one file plus one line here."""

from typing import Union

from ._adaptive import AdaptiveRungeKutta
from ._fixed import FixedStepSolver
from .bosh3 import Bosh3
from .dopri5 import Dopri5
from .euler import Euler
from .midpoint import Midpoint
from .nag import NAG
from .rk4 import RK4

Solver = Union[type[AdaptiveRungeKutta], type[FixedStepSolver]]
METHODS: dict[str, Solver] = {cls.name: cls for cls in (Dopri5, Bosh3, Euler, Midpoint, RK4, NAG)}
ADAPTIVE = frozenset({"dopri5", "bosh3"})
