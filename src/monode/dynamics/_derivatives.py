"""Analytic derivatives of the elementwise activations, for fields that compute their own VJPs.

`activation_backward(act)` gives g -> g * act'(x) as one fused ATen op, given the activation's
input x and output y = act(x): tanh' = 1 - y^2, sigmoid' = y (1 - y), relu' = [y > 0],
hardtanh(lo, hi)' = [lo < x < hi], softplus' = sigmoid(x). It returns None for an activation it
does not know (a user callable), and the caller then falls back to autograd.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

Backward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(grad_output, input, output) -> grad_input."""

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


def hardtanh_bounds(act: object) -> Optional[tuple[float, float]]:
    """(min_val, max_val) if `act` is F.hardtanh or a keyword-only partial of it (`("hardtanh", c)`), else None."""
    if act is F.hardtanh:
        return -1.0, 1.0
    if isinstance(act, functools.partial) and act.func is F.hardtanh and not act.args:
        return float(act.keywords.get("min_val", -1.0)), float(act.keywords.get("max_val", 1.0))
    return None


_BY_FUNCTION: dict[Callable, Backward] = {torch.tanh: _tanh, torch.sigmoid: _sigmoid, torch.relu: _relu,
                                          F.relu: _relu, F.softplus: _softplus}


def activation_backward(act: object) -> Optional[Backward]:
    """The backward of activation `act` (a function such as torch.tanh, ("hardtanh", c)'s partial, or an
    nn.Module such as nn.Tanh()), or None if it is not one of the known ones."""
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
    bounds = hardtanh_bounds(act)
    if bounds is not None:
        return _hardtanh(*bounds)
    try:
        return _BY_FUNCTION.get(act)  # type: ignore[arg-type]
    except TypeError:  # unhashable callable
        return None


def activation_function(act: nn.Module) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """The plain function of a known activation module (what `MLPField` calls on its fast path)."""
    if isinstance(act, nn.Tanh):
        return torch.tanh
    if isinstance(act, nn.Sigmoid):
        return torch.sigmoid
    if isinstance(act, nn.ReLU):
        return torch.relu
    return None
