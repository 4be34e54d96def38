"""NODE and ANODE.

    NODE:  h' = f(t, h),  h(0) = x
    ANODE: the same field on h(0) = [x, 0]: the input padded with zero channels (`ZeroAugment`),
           so f acts on dim > in_channels channels.

References: Chen, Rubanova, Bettencourt, Duvenaud (2018), Neural ordinary differential equations,
arXiv:1806.07366; Dupont, Doucet, Teh (2019), Augmented neural ODEs, arXiv:1904.01681.
"""

from __future__ import annotations

import torch

from ._base import NoCoefficients, VectorField
from ._spec import ModelSpec
from .networks import ZeroAugment

__all__ = ["NODEField", "NODE_SPEC", "ANODE_SPEC"]


class NODEField(VectorField):
    """h' = f(t, h): the field is the network itself."""

    def rhs(self, t: torch.Tensor, h: torch.Tensor, coef: NoCoefficients) -> torch.Tensor:
        return self.net(t, h)

    def rhs_forward(
        self, t: torch.Tensor, h: torch.Tensor, coef: NoCoefficients
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.closed_net.forward_saved(t, h)

    def rhs_backward(
        self, t: torch.Tensor, saved: list[torch.Tensor], coef: NoCoefficients, c: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], NoCoefficients]:
        """c . df/dh and c . df/dparams: the network's own VJP."""
        grad_h, grad_net = self.closed_net.vjp(saved, c)
        return grad_h, grad_net, NoCoefficients()


NODE_SPEC = ModelSpec(
    "node",
    NODEField,
    ZeroAugment,
    "h' = f(t, h)",
    presets={"mnist": dict(dim=1, hidden=92), "cifar10": dict(dim=3, hidden=125)},
)
ANODE_SPEC = ModelSpec(
    "anode",
    NODEField,
    ZeroAugment,
    "h' = f(t, h) on zero-augmented channels h(0) = [x, 0]",
    presets={"mnist": dict(dim=6, hidden=64), "cifar10": dict(dim=13, hidden=64)},
)
