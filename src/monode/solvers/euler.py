"""Forward Euler: y_{n+1} = y_n + dt f(t_n, y_n). Order 1, 1 NFE per step."""

from ._fixed import ExplicitRungeKutta
from ._tableau import ButcherTableau

EULER = ButcherTableau(c=(0.0,), a=((),), b=(1.0,), order=1)


class Euler(ExplicitRungeKutta):
    name = "euler"
    tableau = EULER
