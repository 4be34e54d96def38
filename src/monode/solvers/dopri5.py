"""Dormand-Prince 5(4) (`dopri5`, the default): order 5 with an embedded order-4 error estimate,
7 stages with first-same-as-last, so 6 NFE per attempted step; quartic dense output with
Shampine's mid-point weights. Reference: Dormand & Prince (1980); Shampine (1986) for c_mid."""

from ._adaptive import AdaptiveRungeKutta
from ._tableau import ButcherTableau

_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
# Shampine's embedded order-4 weights (the "DPS" pair used by torchdiffeq and MATLAB's ode45 dense output),
# so error ratios and NFE match torchdiffeq's dopri5.
_B_HAT = (1951 / 21600, 0.0, 22642 / 50085, 451 / 720, -12231 / 42400, 649 / 6300, 1 / 60)

DOPRI5 = ButcherTableau(
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _B,
    ),
    b=_B + (0.0,),
    b_error=tuple(b - bh for b, bh in zip(_B + (0.0,), _B_HAT)),
    c_mid=(
        6025192743 / 30085553152 / 2,
        0.0,
        51252292925 / 65400821598 / 2,
        -2691868925 / 45128329728 / 2,
        187940372067 / 1594534317056 / 2,
        -1776094331 / 19743644256 / 2,
        11237099 / 235043384 / 2,
    ),
    order=5,
    fsal=True,
)


class Dopri5(AdaptiveRungeKutta):
    name = "dopri5"
    tableau = DOPRI5
