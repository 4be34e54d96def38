r"""Continuous normalising flows (Chen et al. 2018; FFJORD, Grathwohl et al. 2019).

    flow = CNF(MLPField(2, 64, time=True), dim=2, t_end=0.5)
    nll = -flow.log_prob(x).mean()          # train on this; backprop or adjoint
    x_new = flow.sample(1000)

A CNF carries data x = z(0) along dz/dt = f(t, z) to z(T), which should be distributed as the base
N(0, I). The density of z(t) obeys the instantaneous change of variables
    d log p_t(z(t)) / dt = -tr(df/dz (t, z(t))),
so the solver integrates the augmented state (z, delta) from delta(0) = 0 with
    dz/dt = f(t, z),        d delta/dt = -tr(df/dz),
where delta(T) = log p_T(z(T)) - log p_0(x) is the change of log density along the path (FFJORD's
delta_logp). The log-likelihood of the data is therefore
    log p(x) = log N(z(T); 0, I) - delta(T) = log N(z(T); 0, I) + \int_0^T tr(df/dz) dt.
Check: f(z) = A z gives z(T) = expm(A T) x and delta(T) = -tr(A) T = -log det expm(A T).
Sampling inverts the flow: z ~ N(0, I) integrated from T back to 0 gives x.

Solver accuracy. The formula is exact for the continuous flow. A coarse solve is a discrete map whose
log-determinant is not the discretised trace integral (Euler: log det(I + hJ) != h tr J), so with
large fixed steps training can push the estimated NLL below the data's entropy: it is then the
likelihood of no normalised density. Evaluate such models with an accurate solver (`solver=`).

Trace. "exact": sum_i df_i/dz_i, one autograd pass per dimension (d passes: right for small d such as
the 2-D toys). "hutchinson": tr(J) ~ e^T J e with E[e e^T] = I (e Gaussian or Rademacher), one
vector-Jacobian product per evaluation. The estimate is unbiased, and so is the log-likelihood,
which is linear in it (z(T) does not depend on e). e is drawn once per solve and held fixed in time,
so the solver integrates one smooth ODE, and the adjoint's backward solve sees the same e. Both
assume f treats each sample of the batch independently (no batch norm): the gradient of the batch
sum of f_i is then the per-sample df_i/dz.

Momentum models (HBNODE, ...) are not offered: their phase-space flow starts from (x, m0) with m0 a
deterministic function of x, a point mass in m, so the change of variables on the full state does
not give the density of x (that would need m0 as a latent variable and a bound, not an exact NLL).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..solvers import odeint, odeint_adjoint

__all__ = ["CNF", "CNFField", "divergence", "hutchinson_noise", "standard_normal_log_prob", "TRACES", "NOISES"]

TRACES = ("exact", "hutchinson")
NOISES = ("gaussian", "rademacher")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) per row of z [B, d]: -|z|^2 / 2 - d log(2 pi) / 2."""
    return -0.5 * z.pow(2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def hutchinson_noise(like: Tensor, kind: str = "gaussian", generator: torch.Generator | None = None) -> Tensor:
    """A probe e shaped like `like` with E[e e^T] = I: standard normal or Rademacher (+-1, each with prob. 1/2)."""
    if kind == "gaussian":
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    _check_choice("noise", kind, NOISES)
    signs = torch.randint(0, 2, like.shape, generator=generator, device=like.device)
    return (2 * signs - 1).to(like.dtype)


def divergence(f: Tensor, z: Tensor, noise: Tensor | None = None, create_graph: bool = False) -> Tensor:
    """tr(df/dz) per sample [B] for f = f(z) of shape [B, d]: exact (noise None) or e^T (df/dz) e (noise e).

    create_graph=True keeps the result differentiable (with respect to z and f's parameters).
    """
    if not f.requires_grad:  # f does not depend on z (nor on anything else that needs gradients)
        return f.new_zeros(f.shape[0])

    def vjp(v: Tensor) -> Tensor:
        (g,) = torch.autograd.grad(f, z, v, create_graph=create_graph, retain_graph=True, allow_unused=True)
        return torch.zeros_like(z) if g is None else g

    if noise is not None:
        return (vjp(noise) * noise).sum(1)
    eye = torch.eye(f.shape[1], dtype=f.dtype, device=f.device)
    return torch.stack([vjp(eye[i].expand_as(f))[:, i] for i in range(f.shape[1])]).sum(0)


class CNFField(nn.Module):
    """The augmented dynamics d/dt (z, delta) = (f(t, z), -tr df/dz) of a network f(t, z).

    noise=None takes the exact trace; a tensor e (like z) the Hutchinson estimate e^T (df/dz) e. The
    result is differentiable (create_graph) exactly when gradients are enabled at the call, so the
    same field serves backprop through the solver, both passes of the adjoint and no-grad evaluation.
    """

    def __init__(self, net: nn.Module, noise: Tensor | None = None) -> None:
        super().__init__()
        self.net, self.noise = net, noise

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        z, _ = state
        differentiable = torch.is_grad_enabled()
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            dz = self.net(t, z)
            div = divergence(dz, z, self.noise, create_graph=differentiable)
        if not differentiable:
            dz, div = dz.detach(), div.detach()
        return dz, -div


class CNF(nn.Module):
    """A continuous normalising flow with base N(0, I) on R^dim: `log_prob(x)` and `sample(n)`.

    Args:
        net: the field f(t, z) -> dz/dt on [B, dim], per sample (e.g. `MLPField(dim, 64, time=True)`,
            a smooth activation such as tanh).
        dim: the data dimension.
        t_end: T; the flow runs over [0, T].
        trace: "exact" or "hutchinson": the estimator `log_prob` uses unless told otherwise.
        noise: Hutchinson's probe, "gaussian" or "rademacher".
        method: the solver, passed to `monode.solvers.odeint`.
        rtol: its relative tolerance.
        atol: its absolute tolerance.
        options: its options, e.g. dict(step_size=0.05).
        adjoint: gradients by `odeint_adjoint` instead of backprop through the solver.
    """

    def __init__(
        self,
        net: nn.Module,
        dim: int,
        *,
        t_end: float = 1.0,
        trace: str = "exact",
        noise: str = "gaussian",
        method: str | None = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        options: dict | None = None,
        adjoint: bool = False,
    ) -> None:
        super().__init__()
        _check_choice("trace", trace, TRACES)
        _check_choice("noise", noise, NOISES)
        if not t_end > 0:
            raise ValueError(f"t_end must be > 0, got {t_end!r}")
        self.net, self.dim, self.t_end = net, int(dim), float(t_end)
        self.trace, self.noise = trace, noise
        self.solver: dict[str, Any] = dict(method=method, rtol=rtol, atol=atol, options=options)
        self.adjoint = adjoint

    def _solver(self, overrides: dict | None) -> dict[str, Any]:
        return {**self.solver, **(overrides or {})}

    def _times(self, like: Tensor, backward: bool = False) -> Tensor:
        span = [self.t_end, 0.0] if backward else [0.0, self.t_end]
        return torch.tensor(span, dtype=like.dtype, device=like.device)

    def forward(self, x: Tensor, trace: str | None = None, solver: dict | None = None) -> tuple[Tensor, Tensor]:
        """(z(T), delta(T)) for data x [B, dim].

        `trace` overrides the flow's estimator; `solver` (keys method, rtol, atol, options) overrides
        the flow's solver settings for this call, e.g. an accurate solver to evaluate a model trained
        with coarse fixed steps.
        """
        trace = self.trace if trace is None else _check_choice("trace", trace, TRACES)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape [batch, {self.dim}], got {tuple(x.shape)}")
        field = CNFField(self.net, hutchinson_noise(x, self.noise) if trace == "hutchinson" else None)
        state0 = (x, x.new_zeros(x.shape[0]))
        solve = odeint_adjoint if self.adjoint else odeint
        z, delta = solve(field, state0, self._times(x), **self._solver(solver))
        return z[-1], delta[-1]

    def log_prob(self, x: Tensor, trace: str | None = None, solver: dict | None = None) -> Tensor:
        """log p(x) per row of x [B, dim]: log N(z(T); 0, I) - delta(T) (`trace`, `solver` as in forward)."""
        z, delta = self(x, trace, solver)
        return standard_normal_log_prob(z) - delta

    def sample(self, n: int, generator: torch.Generator | None = None, solver: dict | None = None) -> Tensor:
        """n samples [n, dim]: base draws z ~ N(0, I) carried from t = T back to 0 by f alone."""
        ref = next(self.parameters(), torch.empty(0))
        z = torch.randn(n, self.dim, generator=generator, dtype=ref.dtype).to(ref.device)
        return odeint(self.net, z, self._times(z, backward=True), **self._solver(solver))[-1]
