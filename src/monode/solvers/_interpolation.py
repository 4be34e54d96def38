"""Output values between solver steps: the state at a time inside a step [t0, t0 + dt].

* `quartic_fit` and `polynomial`: adaptive methods' dense output (torchdiffeq's), the quartic through y0, the
  mid-point y_mid = y0 + dt sum_j c_mid_j k_j and y1 with slopes f0 and f1 at the ends; its coefficients are
  formed once per step, with torchdiffeq's arithmetic (float32 outputs agree to the last bit).
* `linear` and `hermite` (cubic, slopes f0 and f1): fixed-grid methods' `interp="linear"` / `"cubic"`.

The position x = (t - t0) / dt is a float, or a 0-d tensor when gradients with respect to the times are
taken (then every weight is a tensor and the result depends on t, t0 and dt through autograd).
"""

from __future__ import annotations

from typing import Union

import torch

from ._rk import axpy, axpy_, coefficients, combine, scalar
from ._tableau import ButcherTableau

Scalar = Union[float, torch.Tensor]


def _scale(y: torch.Tensor, w: Scalar) -> torch.Tensor:
    return y * w if isinstance(w, torch.Tensor) else torch.mul(y, w)


def quartic_fit(
    tab: ButcherTableau, dt: float, y0: torch.Tensor, y1: torch.Tensor, ks: list[torch.Tensor]
) -> list[torch.Tensor]:
    """The coefficients [e, d, c, b, a] of an adaptive step's dense output e + d x + c x^2 + b x^3 + a x^4: the
    quartic through y0, y_mid = y0 + dt sum_j c_mid_j k_j and y1 with slopes ks[0] and ks[-1] at the ends,
    formed as torchdiffeq forms them (dt in the state's dtype), so that outputs agree to the last bit."""
    assert tab.c_mid is not None
    h = torch.tensor(dt, dtype=y0.dtype, device=y0.device)
    y_mid = combine(y0, ks, tab.c_mid, coefficients(tab.c_mid, h, y0))
    f0, f1 = ks[0], ks[-1]
    two, three, four, five, eight, eleven, fourteen, sixteen, eighteen, thirty_two = (
        scalar(v, y0) for v in (2.0, 3.0, 4.0, 5.0, 8.0, 11.0, 14.0, 16.0, 18.0, 32.0)
    )
    # torchdiffeq's a = 2 dt (f1 - f0) - 8 (y1 + y0) + 16 y_mid, b = dt (5 f0 - 3 f1) + 18 y0 + 14 y1 - 32 y_mid,
    # c = dt (f1 - 4 f0) - 11 y0 - 5 y1 + 16 y_mid, evaluated left to right; in place on the temporaries
    mid16 = y_mid * sixteen
    a = (f1 - f0).mul_(two * h).sub_((y1 + y0).mul_(eight)).add_(mid16)
    b = (f0 * five).sub_(f1 * three).mul_(h).add_(y0 * eighteen).add_(y1 * fourteen).sub_(y_mid * thirty_two)
    c = (f1 - f0 * four).mul_(h).sub_(y0 * eleven).sub_(y1 * five).add_(mid16)
    return [y0, h * f0, c, b, a]


def polynomial(coefficients: list[torch.Tensor], x: Scalar) -> torch.Tensor:
    """sum_i coefficients[i] x^i at the position x in [0, 1] (x in the coefficients' dtype, powers formed as
    successive products, as torchdiffeq evaluates its dense output; at x = 1, a step's end, every product is
    exact, so the terms are just added)."""
    like = coefficients[0]
    if isinstance(x, float) and x == 1.0:
        total = coefficients[0] + coefficients[1]
        for coefficient in coefficients[2:]:
            total.add_(coefficient)
        return total
    x = x.to(like.dtype) if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=like.dtype, device=like.device)
    total = coefficients[0] + x * coefficients[1]
    power = x
    for coefficient in coefficients[2:]:
        power = power * x
        total.add_(power * coefficient)
    return total


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
