"""Elementwise activations of the fields: names, functions and their analytic derivatives.

`resolve_activation` turns a description ("tanh", ("hardtanh", c), a callable, None) into a function.
`activation_backward(act)` gives g -> g * act'(x) as one ATen op, from the activation's input x and
output y = act(x): tanh' = 1 - y^2, sigmoid' = y (1 - y), relu' = [y > 0], hardtanh(lo, hi)' =
[lo < x < hi], softplus' = sigmoid(x). It returns None for an activation it does not know (a user
callable); the field then has no closed-form VJP and the adjoint uses autograd.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ActivationSpec", "Backward", "resolve_activation", "activation_backward", "activation_function"]

ActivationSpec = Union[None, str, tuple[str, float], Callable[[torch.Tensor], torch.Tensor]]
Activation = Callable[[torch.Tensor], torch.Tensor]
Backward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(grad_output, input, output) -> grad_input."""

_NAMED: dict[str, Activation] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "relu": torch.relu,
    "hardtanh": F.hardtanh,
}


def resolve_activation(spec: ActivationSpec, name: str = "activation") -> Activation | None:
    """A gate sigma from its description; None means identity (the op is skipped, not applied).

    Accepted: None or "identity"; "tanh", "sigmoid", "softplus", "relu", "hardtanh" (clips to +-1);
    ("hardtanh", c) (clips to +-c, the papers' bounded gates); or any callable.
    """
    if spec is None or spec == "identity":
        return None
    if isinstance(spec, str) and spec in _NAMED:
        return _NAMED[spec]
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and spec[0] == "hardtanh":
        bound = float(spec[1])
        if not bound > 0:
            raise ValueError(f"{name}: the hardtanh bound must be > 0, got {spec!r}")
        return functools.partial(F.hardtanh, min_val=-bound, max_val=bound)
    if callable(spec):
        return spec
    raise ValueError(
        f"{name} must be None, 'identity', one of {sorted(_NAMED)}, ('hardtanh', bound) or a callable, got {spec!r}"
    )


_aten = torch.ops.aten


def _tanh(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _aten.tanh_backward(g, y)


def _sigmoid(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _aten.sigmoid_backward(g, y)


def _relu(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _aten.threshold_backward(g, y, 0)


def _softplus(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _aten.softplus_backward(g, x, 1.0, 20.0)


def _hardtanh(low: float, high: float) -> Backward:
    def backward(g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _aten.hardtanh_backward(g, x, low, high)

    return backward


def _hardtanh_bounds(act: object) -> tuple[float, float] | None:
    """(min_val, max_val) if `act` is F.hardtanh or a keyword-only partial of it (`("hardtanh", c)`), else None."""
    if act is F.hardtanh:
        return -1.0, 1.0
    if isinstance(act, functools.partial) and act.func is F.hardtanh and not act.args:
        return float(act.keywords.get("min_val", -1.0)), float(act.keywords.get("max_val", 1.0))
    return None


_BY_FUNCTION: dict[Callable, Backward] = {
    torch.tanh: _tanh,
    torch.sigmoid: _sigmoid,
    torch.relu: _relu,
    F.relu: _relu,
    F.softplus: _softplus,
}


def activation_backward(act: object) -> Backward | None:
    """The backward of activation `act` (a function such as torch.tanh, ("hardtanh", c)'s partial, or an
    nn.Module such as nn.Tanh()), or None if it is not one of the known ones."""
    if act is None:
        return None
    if isinstance(act, nn.Tanh):
        return _tanh
    if isinstance(act, nn.Sigmoid):
        return _sigmoid
    if isinstance(act, nn.ReLU):
        return _relu
    if isinstance(act, nn.Softplus):
        return _softplus if (act.beta, act.threshold) == (1.0, 20.0) else None
    if isinstance(act, nn.Hardtanh):
        return _hardtanh(act.min_val, act.max_val)
    bounds = _hardtanh_bounds(act)
    if bounds is not None:
        return _hardtanh(*bounds)
    try:
        return _BY_FUNCTION.get(act)  # type: ignore[call-overload]
    except TypeError:  # unhashable callable
        return None


def activation_function(act: nn.Module) -> Activation | None:
    """The plain function of a known activation module (what `MLPField` calls between its layers)."""
    if isinstance(act, nn.Tanh):
        return torch.tanh
    if isinstance(act, nn.Sigmoid):
        return torch.sigmoid
    if isinstance(act, nn.ReLU):
        return torch.relu
    return None
