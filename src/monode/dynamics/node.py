"""NODE and ANODE.

    NODE (Chen et al. 2018):   h' = f(t, h),                h(0) = x
    ANODE (Dupont et al. 2019): the same field on h(0) = [x, 0]: the input padded with zero channels
                                (`ZeroAugment`), so f acts on dim > in_channels channels.
"""
from __future__ import annotations

import torch

from ._base import ModelSpec, VectorField
from .networks import ZeroAugment

__all__ = ["NODEField", "NODE_SPEC", "ANODE_SPEC"]


class NODEField(VectorField):
    """h' = f(t, h): the field is the network itself."""

    def rhs(self, t: torch.Tensor, h: torch.Tensor, coef: tuple) -> torch.Tensor:
        return self.net(t, h)

    def rhs_forward(self, t: torch.Tensor, h: torch.Tensor, coef: tuple) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.net.forward_saved(t, h)

    def rhs_backward(self, t: torch.Tensor, saved: list[torch.Tensor], coef: tuple, c: torch.Tensor
                     ) -> tuple[torch.Tensor, list[torch.Tensor], tuple]:
        """c . df/dh and c . df/dparams: the network's own VJP."""
        grad_h, grad_net = self.net.vjp(saved, c)
        return grad_h, grad_net, ()


NODE_SPEC = ModelSpec(
    "node", NODEField, ZeroAugment, "h' = f(t, h)",
    presets={"mnist": dict(dim=1, hidden=92), "cifar": dict(dim=3, hidden=125), "pv": {}, "walker": {},
             "pointcloud": {}, "silverbox": {}},
)
ANODE_SPEC = ModelSpec(
    "anode", NODEField, ZeroAugment, "h' = f(t, h) on zero-augmented channels h(0) = [x, 0]",
    presets={"mnist": dict(dim=6, hidden=64), "cifar": dict(dim=13, hidden=64), "pv": {}, "walker": {},
             "pointcloud": {}, "silverbox": {}},
)
