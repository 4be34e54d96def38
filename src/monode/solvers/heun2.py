"""Heun's method (`heun2`, explicit trapezoid): y_{n+1} = y_n + dt/2 (k1 + k2) with k2 = f(t_n + dt, y_n + dt k1).
Order 2, 2 NFE per step."""

from ._fixed import ExplicitRungeKutta
from ._tableau import ButcherTableau

HEUN2 = ButcherTableau(c=(0.0, 1.0), a=((), (1.0,)), b=(1 / 2, 1 / 2), order=2)


class Heun2(ExplicitRungeKutta):
    name = "heun2"
    tableau = HEUN2
