"""Output values between solver steps: the state at a time inside a step [t0, t0 + dt].

* `quartic`: adaptive methods' dense output (torchdiffeq's), the quartic through y0, the mid-point
  y_mid = y0 + dt sum_j c_mid_j k_j and y1 with slopes f0 and f1 at the ends, evaluated as one linear
  combination of y0, y1 and the stages (no coefficients are formed).
* `linear` and `hermite` (cubic, slopes f0 and f1): fixed-grid methods' `interp="linear"` / `"cubic"`.

The position x = (t - t0) / dt is a float, or a 0-d tensor when gradients with respect to the times are
taken (then every weight is a tensor and the result depends on t, t0 and dt through autograd).
"""

from __future__ import annotations

from typing import Union

import torch

from ._rk import axpy, axpy_
from ._tableau import ButcherTableau

Scalar = Union[float, torch.Tensor]


def _scale(y: torch.Tensor, w: Scalar) -> torch.Tensor:
    return y * w if isinstance(w, torch.Tensor) else torch.mul(y, w)


def quartic(
    tab: ButcherTableau,
    x: Scalar,
    dt: Scalar,
    y0: torch.Tensor,
    y1: torch.Tensor,
    ks: list[torch.Tensor],
    f1: torch.Tensor,
) -> torch.Tensor:
    """The dense-output polynomial of an adaptive step of method `tab` at the position x in [0, 1]."""
    assert tab.c_mid is not None
    x2 = x * x
    x3, x4 = x2 * x, x2 * x2
    w_mid = 16 * x2 - 32 * x3 + 16 * x4
    w_y0 = 1 - 11 * x2 + 18 * x3 - 8 * x4 + w_mid
    w_y1 = -5 * x2 + 14 * x3 - 8 * x4
    w_f0, w_f1 = x - 4 * x2 + 5 * x3 - 2 * x4, x2 - 3 * x3 + 2 * x4
    used = {0} | {j for j, c in enumerate(tab.c_mid) if c != 0.0}
    weights: dict[int, Scalar] = {j: w_mid * tab.c_mid[j] for j in used}
    weights[0] = weights[0] + w_f0
    if tab.terms.f1_is_last_stage and f1 is ks[-1]:  # f1 is a stage: one term fewer
        last = len(ks) - 1
        weights[last] = weights.get(last, 0.0) + w_f1
        w_f1 = 0.0
    out = axpy_(_scale(y0, w_y0), y1, w_y1)
    for j, w in sorted(weights.items()):
        out = axpy_(out, ks[j], w * dt)
    if not (isinstance(w_f1, float) and w_f1 == 0.0):
        out = axpy_(out, f1, w_f1 * dt)
    return out


def linear(x: Scalar, y0: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
    """y0 + x (y1 - y0), exactly y0 at x = 0 and y1 at x = 1 (torchdiffeq's fixed-grid `interp="linear"`)."""
    if isinstance(x, float) and x == 0.0:
        return y0
    if isinstance(x, float) and x == 1.0:
        return y1
    return axpy(y0, y1 - y0, x)


def hermite(
    x: Scalar, dt: Scalar, y0: torch.Tensor, f0: torch.Tensor, y1: torch.Tensor, f1: torch.Tensor
) -> torch.Tensor:
    """The cubic Hermite polynomial through (y0, f0) and (y1, f1) at the position x (`interp="cubic"`)."""
    h00 = (1 + 2 * x) * (1 - x) * (1 - x)
    h10 = x * (1 - x) * (1 - x)
    h01 = x * x * (3 - 2 * x)
    h11 = x * x * (x - 1)
    out = axpy_(_scale(y0, h00), y1, h01)
    out = axpy_(out, f0, h10 * dt)
    return axpy_(out, f1, h11 * dt)
