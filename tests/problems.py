"""Shared analytic problems for the tests: each has a vector field and its exact solution."""
from __future__ import annotations

import math

import torch


class ExpSin:
    """y' = cos(t) y, y(t0) = y0  ->  y(t) = y0 exp(sin t - sin t0). Non-autonomous, scalar per entry."""

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cos(t) * y

    @staticmethod
    def exact(y0: torch.Tensor, t0: float, t: float) -> torch.Tensor:
        return y0 * math.exp(math.sin(t) - math.sin(t0))


class LinearSystem(torch.nn.Module):
    """y' = A y (batched rows): y(t) = y0 exp(A^T (t - t0)); A a damped rotation by default."""

    def __init__(self, a: torch.Tensor | None = None) -> None:
        super().__init__()
        if a is None:
            a = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)
        self.a = torch.nn.Parameter(a)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y @ self.a.T

    def exact(self, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.stack([y0 @ torch.matrix_exp(self.a.T * (ti - t[0])) for ti in t])


class HarmonicOscillator(torch.nn.Module):
    """Tuple state (x, v): x' = v, v' = -w^2 x; x(t) = x0 cos(w t) + v0/w sin(w t)."""

    def __init__(self, omega: float = 1.5) -> None:
        super().__init__()
        self.omega = omega

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, v = state
        return v, -self.omega ** 2 * x

    def exact(self, x0: torch.Tensor, v0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.omega
        tt = t.reshape(-1, *([1] * x0.ndim)).to(x0)
        x = x0 * torch.cos(w * tt) + v0 / w * torch.sin(w * tt)
        v = -x0 * w * torch.sin(w * tt) + v0 * torch.cos(w * tt)
        return x, v


def damped_oscillator_exact(h0: float, v0: float, gamma: float, omega: float, t: float) -> float:
    """h'' + gamma h' + omega^2 h = 0 with h(0) = h0, h'(0) = v0 (underdamped: gamma < 2 omega)."""
    alpha = gamma / 2
    beta = math.sqrt(omega ** 2 - alpha ** 2)
    c1 = h0
    c2 = (v0 + alpha * h0) / beta
    return math.exp(-alpha * t) * (c1 * math.cos(beta * t) + c2 * math.sin(beta * t))
