"""Fourth-order Runge-Kutta, two variants, 4 NFE per step each.

`rk4` is Kutta's 3/8 rule (nodes 0, 1/3, 2/3, 1; weights 1/8, 3/8, 3/8, 1/8), as torchdiffeq's `rk4`, so
the same call gives the same numbers; it has a smaller error constant than the classical method.
`rk4_classic` is the classical method (nodes 0, 1/2, 1/2, 1; weights 1/6, 1/3, 1/3, 1/6), monode's `rk4`
before 0.2. Reference: Kutta (1901), Z. Math. Phys. 46."""

from ._fixed import ExplicitRungeKutta
from ._tableau import ButcherTableau

RK4_38 = ButcherTableau(
    c=(0.0, 1 / 3, 2 / 3, 1.0),
    a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
    b=(1 / 8, 3 / 8, 3 / 8, 1 / 8),
    order=4,
)
RK4_CLASSIC = ButcherTableau(
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
)


class RK4(ExplicitRungeKutta):
    name = "rk4"
    tableau = RK4_38


class RK4Classic(ExplicitRungeKutta):
    name = "rk4_classic"
    tableau = RK4_CLASSIC
