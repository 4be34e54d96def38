"""SONODE: a second-order neural ODE as a first-order system.

    y' = v,    v' = f(t, [y, v])

f sees y and v concatenated on the channel dimension (2*dim channels in, dim out); the initial
velocity v(0) comes from a learned network (`InitialVelocity`), h = y is read out.

Reference: Norcliffe, Bodnar, Day, Simidjievski, Lio (2020), On second order behaviour in augmented
neural ODEs, arXiv:2006.07220.
"""

from __future__ import annotations

import torch

from ._base import NoCoefficients, VectorField
from ._spec import ModelSpec
from .networks import InitialVelocity

__all__ = ["SecondOrderField", "SONODE_SPEC"]


class SecondOrderField(VectorField):
    """State (y, v): y' = v, v' = f(t, [y, v])."""

    state_size = 2

    @classmethod
    def f_channels(cls, dim: int) -> tuple[int, int]:
        return 2 * dim, dim

    def rhs(
        self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], coef: NoCoefficients
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y, v = state
        return v, self.net(t, torch.cat([y, v], 1))

    def rhs_forward(
        self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], coef: NoCoefficients
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], list[torch.Tensor]]:
        y, v = state
        f, saved = self.closed_net.forward_saved(t, torch.cat([y, v], 1))
        return (v, f), saved

    def rhs_backward(
        self,
        t: torch.Tensor,
        saved: list[torch.Tensor],
        coef: NoCoefficients,
        cotangent: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[tuple, list[torch.Tensor], tuple]:
        """With g = c_v . df/d[y, v]: (g_y, c_y + g_v)."""
        c_y, c_v = cotangent
        grad_in, grad_net = self.closed_net.vjp(saved, c_v)
        dim = c_y.shape[1]
        return (grad_in[:, :dim], grad_in[:, dim:] + c_y), grad_net, NoCoefficients()


SONODE_SPEC = ModelSpec(
    "sonode",
    SecondOrderField,
    InitialVelocity,
    "y'' = f(t, y, y')",
    presets={"mnist": dict(dim=5, hidden=50), "cifar10": dict(dim=12, hidden=50)},
)
