"""Heun's third-order method (`heun3`): nodes 0, 1/3, 2/3 and weights 1/4, 0, 3/4. Order 3, 3 NFE per step.
Reference: Heun (1900), Z. Math. Phys. 45."""

from ._fixed import ExplicitRungeKutta
from ._tableau import ButcherTableau

HEUN3 = ButcherTableau(c=(0.0, 1 / 3, 2 / 3), a=((), (1 / 3,), (0.0, 2 / 3)), b=(1 / 4, 0.0, 3 / 4), order=3)


class Heun3(ExplicitRungeKutta):
    name = "heun3"
    tableau = HEUN3
