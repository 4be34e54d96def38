"""Runge-Kutta-Fehlberg 2(1) (`fehlberg2`): order 2 with an embedded order-1 estimate, 3 stages of which
the last is reused as the next step's first (2 NFE per attempted step); quartic dense output through
y0 + dt/2 k1. Cheap, for loose tolerances.

As in torchdiffeq, the step returns the order-2 solution while the reused last stage is the slope at
the order-1 solution (Fehlberg's pair is first-same-as-last for the order-1 formula); NFE and values
therefore match torchdiffeq's `fehlberg2`. Reference: Fehlberg (1969), NASA TR R-315."""

from ._adaptive import AdaptiveRungeKutta
from ._tableau import ButcherTableau

FEHLBERG2 = ButcherTableau(
    c=(0.0, 1 / 2, 1.0),
    a=((), (1 / 2,), (1 / 256, 255 / 256)),
    b=(1 / 512, 255 / 256, 1 / 512),
    b_error=(-1 / 512, 0.0, 1 / 512),
    c_mid=(0.0, 0.5, 0.0),
    order=2,
    fsal=True,
)


class Fehlberg2(AdaptiveRungeKutta):
    name = "fehlberg2"
    tableau = FEHLBERG2
