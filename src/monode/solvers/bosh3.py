"""Bogacki-Shampine 3(2) (`bosh3`): order 3 with an embedded order-2 estimate, 4 stages with
first-same-as-last (3 NFE per attempted step); quartic dense output through the mid-point y0 + dt/2 k2
(torchdiffeq's, so output values match it).
Reference: Bogacki & Shampine (1989)."""

from ._adaptive import AdaptiveRungeKutta
from ._tableau import ButcherTableau

BOSH3 = ButcherTableau(
    c=(0.0, 1 / 2, 3 / 4, 1.0),
    a=((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    b_error=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
    c_mid=(0.0, 0.5, 0.0, 0.0),
    order=3,
    fsal=True,
)


class Bosh3(AdaptiveRungeKutta):
    name = "bosh3"
    tableau = BOSH3
