"""Dense output of an adaptive step: the state at any time inside [t0, t0 + dt], keyed by the tableau.

With `c_mid` (dopri5: Shampine's mid-point weights) the polynomial is the quartic through y0,
y_mid = y0 + dt sum_j c_mid_j k_j and y1 with slopes f0 and f1 at the ends; otherwise the cubic
Hermite through y0, y1 with slopes f0, f1. Either is evaluated as one linear combination of y0, y1 and
the stages, so no coefficients are formed (as torchdiffeq's `_interp_fit` + `_interp_evaluate`).
"""

from __future__ import annotations

import torch

from ._tableau import ButcherTableau


def interpolate(
    tab: ButcherTableau,
    t0: float,
    dt: float,
    y0: torch.Tensor,
    y1: torch.Tensor,
    ks: list[torch.Tensor],
    f1: torch.Tensor,
    t: float,
) -> torch.Tensor:
    """The dense-output polynomial of the step [t0, t0 + dt] of method `tab`, evaluated at t."""
    x = (t - t0) / dt
    x2, x3, x4 = x * x, x**3, x**4
    if tab.c_mid is not None:
        w_mid = 16 * x2 - 32 * x3 + 16 * x4
        w_y0 = 1 - 11 * x2 + 18 * x3 - 8 * x4 + w_mid
        w_y1 = -5 * x2 + 14 * x3 - 8 * x4
        w_f0, w_f1 = x - 4 * x2 + 5 * x3 - 2 * x4, x2 - 3 * x3 + 2 * x4
        weights = [w_mid * c for c in tab.c_mid]
    else:
        w_y0, w_y1 = 1 - 3 * x2 + 2 * x3, 3 * x2 - 2 * x3
        w_f0, w_f1 = x - 2 * x2 + x3, x3 - x2
        weights = [0.0] * len(ks)
    weights[0] += w_f0
    if tab.terms.f1_is_last_stage and f1 is ks[-1]:
        weights[-1] += w_f1
        w_f1 = 0.0
    out = torch.mul(y0, w_y0).add_(y1, alpha=w_y1)
    for k, w in zip(ks, weights):
        if w != 0.0:
            out.add_(k, alpha=w * dt)
    if w_f1 != 0.0:
        out.add_(f1, alpha=w_f1 * dt)
    return out
