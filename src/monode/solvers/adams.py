"""Adams multistep methods on a fixed grid: `explicit_adams` (Adams-Bashforth) and `implicit_adams`
(Adams-Bashforth-Moulton predictor-corrector; torchdiffeq also calls it `fixed_adams`), as torchdiffeq's.

Each step evaluates f(t_n, y_n) and keeps it in a history of past slopes (newest first, at most max_order - 1).
While fewer than 3 slopes are known the step is an `rk4` step (3/8 rule). Then, with k = min(history,
max_order - 1) slopes, Adams-Bashforth of k steps predicts y_{n+1} = y_n + dt sum_j b_kj f_{n-j}; the implicit
method corrects it by functional iteration of Adams-Moulton of k + 1 points, y_{n+1} = y_n + dt (m_0
f(t_{n+1}, y_{n+1}) + sum_j m_j f_{n-j}), at most max_iters times, until successive increments agree to
rtol/atol in the max norm (otherwise it warns and drops the oldest slope, as torchdiffeq). The coefficients
are the integrals of the Lagrange basis on the nodes (computed exactly here, not tabulated). As torchdiffeq,
the coefficients assume equal steps (the grid's last, shorter step uses them too). Cost: 1 evaluation per
step, plus the corrector's iterations. Reference: Hairer, Norsett & Wanner, Solving ODEs I, section III.1.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import torch

from ._errors import ODEInputError
from ._fixed import FixedStepSolver
from ._rk import rk_step
from .rk4 import RK4_38

MIN_ORDER, MAX_ORDER = 4, 12


def _integrated_lagrange(nodes: Sequence[int]) -> list[float]:
    """int_0^1 L_j(u) du for the Lagrange basis polynomials L_j on `nodes` (in units of the step)."""
    weights = []
    for j, xj in enumerate(nodes):
        poly = [Fraction(1)]  # coefficients, lowest power first
        for i, xi in enumerate(nodes):
            if i != j:  # multiply by (u - xi) / (xj - xi) = a + b u
                b = Fraction(1, xj - xi)
                a = -xi * b
                poly = [a * c + b * prev for c, prev in zip([*poly, Fraction(0)], [Fraction(0), *poly])]
        weights.append(float(sum(a / (p + 1) for p, a in enumerate(poly))))
    return weights


@functools.cache
def bashforth(k: int) -> list[float]:
    """Adams-Bashforth weights of f_n, f_{n-1}, ..., f_{n-k+1}."""
    return _integrated_lagrange(list(range(0, -k, -1)))


@functools.cache
def moulton(k: int) -> list[float]:
    """Adams-Moulton weights of f_{n+1}, f_n, ..., f_{n-k+2} (k points)."""
    return _integrated_lagrange(list(range(1, -k + 1, -1)))


def _weighted(fs: Sequence[torch.Tensor], weights: Sequence[float]) -> Any:
    """sum_j weights[j] fs[j], added left to right from 0 (torchdiffeq's `_dot_product`)."""
    out: Any = 0
    for f, w in zip(fs, weights):
        out = out + f * w
    return out


class ExplicitAdams(FixedStepSolver):
    """Adams-Bashforth of up to max_order - 1 steps. Options: those of every fixed-grid method, max_order."""

    name = "explicit_adams"
    order = 4
    nfe_per_step = 1
    implicit = False
    tolerances = True  # odeint's rtol/atol reach the corrector's convergence test
    options = FixedStepSolver.options + ("max_order", "max_iters")

    def __init__(
        self, rtol: float = 1e-3, atol: float = 1e-4, max_order: int = MAX_ORDER, max_iters: int = 4, **options: Any
    ) -> None:
        super().__init__(**options)
        if options.get("compile"):
            raise ODEInputError(
                f"{self.name}: options['compile'] is not available (the corrector's test is data-dependent)"
            )
        if isinstance(max_order, bool) or not isinstance(max_order, int) or not 1 <= max_order <= MAX_ORDER:
            raise ODEInputError(
                f"{self.name}: options['max_order'] must be an int in [1, {MAX_ORDER}], got {max_order!r}"
            )
        if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
            raise ODEInputError(f"{self.name}: options['max_iters'] must be an int >= 1, got {max_iters!r}")
        if max_order < MIN_ORDER:
            warnings.warn(f"max_order is below {MIN_ORDER}, so the solver reduces to `rk4`.", stacklevel=4)
        self.rtol, self.atol, self.max_order, self.max_iters = rtol, atol, max_order, max_iters
        self.extra_nfe = 0

    @property
    def nodes(self) -> tuple[float, ...]:
        return RK4_38.c  # t0 (the history's slope), the rk4 start's stages, t1 (the corrector)

    def step(
        self, func: Callable, times: Sequence[torch.Tensor], dt: Any, y: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        f0 = func(times[0], y)
        history = (f0, *(carry or ()))[: self.max_order - 1]
        k = min(len(history), self.max_order - 1)
        if k < MIN_ORDER - 1:  # starting steps
            self.extra_nfe += RK4_38.stages - 1
            return rk_step(func, RK4_38, times, dt, y, history[0])[0], history, f0
        dy = _weighted(history, [b * dt for b in bashforth(k)])
        if self.implicit:
            m = moulton(k + 1)
            delta = _weighted(history, m[1:]) * dt
            converged = False
            for _ in range(self.max_iters):
                dy_old = dy
                f = func(times[-1], y + dy)
                self.extra_nfe += 1
                dy = f * (dt * m[0]) + delta
                tol = torch.maximum(dy_old.abs(), dy.abs()).mul_(self.rtol).add_(self.atol)
                converged = bool(((dy_old - dy).abs() / tol).max() < 1)
                if converged:
                    break
            if not converged:
                warnings.warn("Functional iteration did not converge. Solution may be incorrect.", stacklevel=2)
                history = history[:-1]
        return y + dy, history, f0


class ImplicitAdams(ExplicitAdams):
    """Adams-Bashforth-Moulton predictor-corrector. Options: those of every fixed-grid method, max_order,
    max_iters (corrector iterations per step, default 4)."""

    name = "implicit_adams"
    implicit = True


class FixedAdams(ImplicitAdams):
    """`implicit_adams` under torchdiffeq's other name for it."""

    name = "fixed_adams"


assert math.isclose(bashforth(3)[0], 23 / 12) and math.isclose(moulton(4)[1], 19 / 24)
