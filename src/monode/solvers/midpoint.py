"""Explicit midpoint: y_{n+1} = y_n + dt f(t_n + dt/2, y_n + dt/2 f(t_n, y_n)). Order 2, 2 NFE per step."""

from ._fixed import ExplicitRungeKutta
from ._tableau import ButcherTableau

MIDPOINT = ButcherTableau(c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), order=2)


class Midpoint(ExplicitRungeKutta):
    name = "midpoint"
    tableau = MIDPOINT
