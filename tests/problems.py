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
        return v, -(self.omega**2) * x

    def exact(self, x0: torch.Tensor, v0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.omega
        tt = t.reshape(-1, *([1] * x0.ndim)).to(x0)
        x = x0 * torch.cos(w * tt) + v0 / w * torch.sin(w * tt)
        v = -x0 * w * torch.sin(w * tt) + v0 * torch.cos(w * tt)
        return x, v


def damped_oscillator_exact(h0: float, v0: float, gamma: float, omega: float, t: float) -> float:
    """h'' + gamma h' + omega^2 h = 0 with h(0) = h0, h'(0) = v0 (underdamped: gamma < 2 omega)."""
    alpha = gamma / 2
    beta = math.sqrt(omega**2 - alpha**2)
    c1 = h0
    c2 = (v0 + alpha * h0) / beta
    return math.exp(-alpha * t) * (c1 * math.cos(beta * t) + c2 * math.sin(beta * t))


class NesterovHForm:
    """The h-form of the paper NesterovNODE with a linear f(h) = h A^T (identity gates, xi = 0, sign -1).

    From x' = m, m' = -m - f(k x) and h = k x, k(t) = t^{-p/2} e^{t/2}, h solves
        h'' + (p/t) h' + ((p/2)(p/2 - 1)/t^2 - 1/4) h = -k(t) f(h),
    integrated here as the first-order system (h, v = h'). Independent of monode's code.
    """

    def __init__(self, a: torch.Tensor, p: float = 3.0) -> None:
        self.a, self.p = a, p

    def k(self, t: float) -> float:
        return t ** (-self.p / 2) * math.exp(t / 2)

    def __call__(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, v = state
        p = self.p
        k = t ** (-p / 2) * torch.exp(t / 2)
        c = (p / 2) * (p / 2 - 1) / t**2 - 0.25
        return v, -(p / t) * v - c * h - k * (h @ self.a.T)

    def initial(self, x0: torch.Tensor, m0: torch.Tensor, t0: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, h') at t0 from (x, m): h = k x, h' = k' x + k m with k' = -k (p/(2t) - 1/2)."""
        k = self.k(t0)
        dk = -k * (self.p / (2 * t0) - 0.5)
        return k * x0, dk * x0 + k * m0
