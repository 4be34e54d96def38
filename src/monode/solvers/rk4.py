"""Classical Runge-Kutta: order 4, 4 NFE per step."""

from ._fixed import ExplicitRungeKutta
from ._tableau import ButcherTableau

RK4_TABLEAU = ButcherTableau(
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
)


class RK4(ExplicitRungeKutta):
    name = "rk4"
    tableau = RK4_TABLEAU
