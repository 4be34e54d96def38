r"""NAG: the first-order fixed-step solver from Nesterov's accelerated gradient.

Derivation. Nesterov's method for min F with step s and momentum mu reads
    y_n = x_n + mu (x_n - x_{n-1}),    x_{n+1} = y_n - s grad F(y_n).
For an ODE x' = f(t, x) replace -grad F by f and the step s by c h:
    y_n = x_n + mu (x_n - x_{n-1}),    x_{n+1} = y_n + c h f(t_n + mu h, y_n).
(y_n extrapolates the state to t_n + mu h, so f is evaluated at that time.) Written with the
velocity v_n = (x_n - x_{n-1}) / h this is an exponential average of look-ahead slopes:
    v_{n+1} = mu v_n + (1 - mu) f(t_n + mu h, x_n + mu h v_n),    x_{n+1} = x_n + h v_{n+1},
which is what `step` computes (c = 1 - mu, see below). 1 NFE per step, one extra buffer (v).

As a two-step method: x_{n+1} - (1 + mu) x_n + mu x_{n-1} = c h f(t_n + mu h, y_n), so the
characteristic polynomials are rho(z) = z^2 - (1 + mu) z + mu = (z - 1)(z - mu) and sigma(z) = c z.

* Consistency (rho(1) = 0 and rho'(1) = sigma(1)): rho(1) = 0 always; rho'(1) = 1 - mu, so the
  method is consistent iff c = 1 - mu. (With the optimiser's c = 1 and mu != 0 the scheme converges
  to the solution of x' = f / (1 - mu): the wrong ODE.)
* Zero-stability (root condition): the roots of rho are 1 (simple) and mu, so it holds iff |mu| < 1.
  Nesterov's schedule mu_n = (n - 1)/(n + 2) -> 1 violates it in the limit; we use a constant mu.
* Convergence: consistent + zero-stable => convergent (Dahlquist's equivalence theorem; the
  look-ahead y_n = x_n + O(h) perturbs f by O(h), a Lipschitz perturbation that keeps the theorem's
  hypotheses).
* Order: inserting the exact solution, the local error is h^2 x''(t) (1 - mu + 2 mu^2) / 2 + O(h^3);
  1 - mu + 2 mu^2 > 0 for every real mu, so the method is exactly first order (error constant
  (1 - mu + 2 mu^2) / (2 (1 - mu)), Euler's 1/2 at mu = 0).
* Start: x_{-1} is not given; the first step is a forward Euler step (v_1 = f(t_0, x_0)), which is
  O(h^2) locally and costs the same single evaluation, so the global order stays 1.
* Variable steps (the last step of a grid, or options['exact_times']): v is a velocity, so it carries over to a
  step of a different length unchanged.

Absolute stability (x' = lambda x, w = h lambda): z^2 = (1 + (1 - mu) w) ((1 + mu) z - mu). On the
negative real axis it is stable for w in [-(2 + 2 mu) / ((1 + 2 mu)(1 - mu)), 0], wider than Euler's
[-2, 0] for every 0 < mu < 1, and the region's area grows with mu (pi at mu = 0, 3.57 at 0.25, 5.50 at
0.5, 11.6 at 0.7); like Euler's, it contains no segment of the imaginary axis. The price is accuracy:
the error constant grows as (1 - mu + 2 mu^2) / (2 (1 - mu)). Default: mu = 1/2, the most stable
momentum whose error constant is at most twice Euler's (exactly 1.0 vs 0.5): real interval [-3, 0],
region area 1.75x Euler's. `benchmarks/nag_stability.py` prints this table and plots the regions
against Euler's. Pass options=dict(momentum=...) to choose another point.

Reference: Akhtar (2023), On tuning neural ODE for stability, consistency and faster convergence,
arXiv:2312.01657. The derivation above is this library's (the paper's update rule was not available).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._errors import ODEInputError
from ._fixed import FixedStepSolver
from ._rk import axpy


class NAG(FixedStepSolver):
    """Nesterov-accelerated first-order fixed-step solver. Options: those of every fixed-grid method, and momentum."""

    name = "nag"
    order = 1
    nfe_per_step = 1
    options = FixedStepSolver.options + ("momentum",)

    def __init__(self, momentum: float = 0.5, **options: Any) -> None:
        super().__init__(**options)
        if not (isinstance(momentum, (int, float)) and -1.0 < momentum < 1.0):
            raise ODEInputError(
                f"nag: options['momentum'] must satisfy |momentum| < 1 (zero-stability), got {momentum!r}"
            )
        self.momentum = float(momentum)

    @property
    def nodes(self) -> tuple[float, ...]:
        return (0.0, self.momentum)

    def step(
        self, func: Callable, times: Sequence[torch.Tensor], dt: Any, y: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        if carry is None:  # starter: one forward Euler step, v_1 = f(t_0, x_0)
            v = func(times[0], y)
            return axpy(y, v, dt), v, v
        mu = self.momentum
        look_ahead = func(times[1], axpy(y, carry, mu * dt))
        v = torch.lerp(look_ahead, carry, mu)  # mu v + (1 - mu) f
        return axpy(y, v, dt), v, None
