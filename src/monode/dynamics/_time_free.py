"""Vector-field networks of h alone: an `nn.Sequential` (or any f(h)) used where f(t, h) is expected.

`VectorField` calls its network as f(t, h), as torchdiffeq calls a field. `as_field_network` reads the
network's `forward` signature once, at construction: two required positional arguments mean (t, h) and
the network is used as it is; one means h alone and it is wrapped in `TimeFree`, which drops t; anything
else is a TypeError naming the signature (rather than a TypeError at the first forward).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

__all__ = ["TimeFree", "as_field_network"]


class TimeFree(nn.Module):
    """f(t, h) = net(h): an autonomous network as a vector-field network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def as_field_network(net: Any) -> Any:
    """`net` (an nn.Module, or a plain function without parameters) as a network called f(t, h): as it is
    when it takes (t, h) (or *args), wrapped in `TimeFree` when it takes h alone."""
    if not callable(net):
        raise TypeError(f"the network of a vector field must be an nn.Module taking (t, h) or h, got {net!r}")
    try:
        signature = inspect.signature(net.forward if isinstance(net, nn.Module) else net)
    except (TypeError, ValueError):  # a builtin or C++ forward: trust the caller
        return net
    kinds = [p.kind for p in signature.parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return net
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    if len(required) == 2 or (not required and len(positional) >= 2):
        return net
    if len(required) == 1 or (not required and len(positional) == 1):
        return TimeFree(net) if isinstance(net, nn.Module) else (lambda t, h: net(h))
    name = f"{type(net).__name__}.forward" if isinstance(net, nn.Module) else getattr(net, "__qualname__", "net")
    raise TypeError(
        f"{name}{signature} takes {len(required)} required positional arguments: the network of a vector "
        f"field takes (t, h), or h alone"
    )
