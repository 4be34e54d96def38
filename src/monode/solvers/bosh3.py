"""Bogacki-Shampine 3(2) (`bosh3`): order 3 with an embedded order-2 estimate, 4 stages with
first-same-as-last (3 NFE per attempted step); cubic Hermite dense output.
Reference: Bogacki & Shampine (1989)."""

from ._adaptive import AdaptiveRungeKutta
from ._tableau import ButcherTableau

BOSH3 = ButcherTableau(
    c=(0.0, 1 / 2, 3 / 4, 1.0),
    a=((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    b_error=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
    order=3,
    fsal=True,
)


class Bosh3(AdaptiveRungeKutta):
    name = "bosh3"
    tableau = BOSH3
