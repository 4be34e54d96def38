"""Adaptive Heun (`adaptive_heun`): Heun's order-2 method with Euler as the embedded order-1 estimate,
2 stages of which the last is reused as the next step's first (1 NFE per attempted step); quartic dense
output through y0 + dt/2 f0.

As in torchdiffeq, the reused slope is the one at the Euler predictor y0 + dt f0, not at the returned
order-2 solution; NFE and values therefore match torchdiffeq's `adaptive_heun`. Reference: Süli & Mayers
(2003), An Introduction to Numerical Analysis, section 12.5, for Heun's method."""

from ._adaptive import AdaptiveRungeKutta
from ._tableau import ButcherTableau

ADAPTIVE_HEUN = ButcherTableau(
    c=(0.0, 1.0),
    a=((), (1.0,)),
    b=(1 / 2, 1 / 2),
    b_error=(1 / 2, -1 / 2),
    c_mid=(0.5, 0.0),
    order=2,
    fsal=True,
)


class AdaptiveHeun(AdaptiveRungeKutta):
    name = "adaptive_heun"
    tableau = ADAPTIVE_HEUN
